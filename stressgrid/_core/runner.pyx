# cython: freethreading_compatible = False
"""A device of the devices executor, stepped by one compiled object instead of an asyncio task.

A device used to run as a ``Task`` around a wrapper coroutine (open the client,
run the script, count a failure, rest, start again). The task, its entry in
asyncio's registry of tasks and the wrapper's frame took about 750 bytes of an
idle device, and the task's context another 184. ``DeviceRunner`` is the task and
the wrapper in one object:

- it steps the coroutine in hand (the client's ``open()``, then the script) as a
  task steps its coroutine: it waits on whatever future-like object the coroutine
  yields (a ``Future``, a ``Task`` of ``gather``) with itself as the done callback,
  and steps again on a bare ``yield``;
- what our own functions return (a request's or a sleep's ``Pending``,
  ``stressgrid._core.pending``) it waits on as a ``Waker``: a protocol that completes
  the request wakes it at once, and the script's next step runs inside that
  protocol's callback, with no future, no loop handle and no task step between the
  response and the script;
- between two passes of the script it rests on one loop handle: none after a pass
  that ended normally, ``RESTART_AFTER_ERROR_S`` after a failure;
- while it steps, ``asyncio.current_task()`` is the runner, with the task methods
  that asyncio's own helpers call on it (``cancel``, ``cancelling``,
  ``uncancel``): ``asyncio.timeout`` and the connect deadlines work inside a
  script as they do in a task;
- while it steps, its device is the running one (``device.step_into``), so the
  script functions find it with no context per device: the runners of a cohort
  step in one shared context (``RunnerGroup``). A task the script makes
  (``create_task``, ``gather``) is made by ``DeviceTaskFactory``, the loop's task
  factory, in a copy of that context that holds the device.

``cancel()`` stops the device as cancelling its task did: the cancellation is
thrown into the coroutine at the point where it waits; a script that lets it pass
ends the device, one that raises ``CancelledError`` of its own accord is counted
(``device_cancelled_error_count``) and starts again. To ``asyncio.wait`` a
runner is a future that is done when its device has ended.
"""
import asyncio
import contextvars

from cpython.ref cimport PyObject

from stressgrid._core.device cimport Device, step_into, step_out
from stressgrid._core.pending cimport Pending, Waker

from asyncio.tasks import _current_tasks, _enter_task, _leave_task

from stressgrid._core.device import set_current_device

cdef object CancelledError = asyncio.CancelledError
cdef object Task = asyncio.Task
cdef object copy_context = contextvars.copy_context

# A device whose pass failed starts again after this long.
RESTART_AFTER_ERROR_S = 1.0

cdef enum:
    RESTING = 0    # between passes (or before the first): ``handle`` will start the next
    STEPPING = 1   # a coroutine is in hand, waiting on ``waiting`` or a bare yield
    ENDED = 2


cdef extern from "Python.h":
    # -1 (PYGEN_ERROR): the coroutine raised; 0 (PYGEN_RETURN): it returned *result;
    # 1 (PYGEN_NEXT): it yielded *result. *result is a new reference.
    int PyIter_Send(object iterator, object argument, PyObject **result) except -1
    void decref "Py_DECREF"(PyObject *o)

cdef enum:
    PYGEN_RETURN = 0
    PYGEN_NEXT = 1


cdef extern from "Python.h":
    int PyContext_Enter(object context) except -1
    int PyContext_Exit(object context) except -1
    PyObject *PyDict_GetItem(object dictionary, object key)


cdef class RunnerGroup:
    """What the runners of a cohort share: their loop, the context they step in, the
    cohort's stop flag (``stop.is_set``) and the engine's hooks: ``on_failure(exc,
    block)`` counts a failed pass, ``on_end(runner)`` is called once per device, when it
    has ended."""

    cdef readonly object loop
    cdef object context
    cdef object stop
    cdef object on_failure
    cdef object on_end

    def __cinit__(self, loop, stop, on_failure, on_end):
        self.loop = loop
        self.context = contextvars.Context()
        self.stop = stop
        self.on_failure = on_failure
        self.on_end = on_end


# The runner whose coroutine is running, for the task factory.
cdef DeviceRunner _stepping = None


cdef class DeviceRunner(Waker):
    """Runs ``block``'s script on ``device`` over and over, until cancelled or until its
    group's ``stop.is_set``. ``start()`` schedules the first pass."""

    cdef readonly Device device
    cdef RunnerGroup group
    cdef object block
    cdef object row
    cdef object coro          # the coroutine in hand: the client's open(), then the script
    cdef object waiting       # the future-like object the coroutine waits on
    cdef object handle        # the loop handle of the next pass, while resting
    cdef list done_callbacks  # (callback, context) pairs of whoever waits for the end
    cdef int cancel_requests
    cdef unsigned char state
    cdef bint in_script
    cdef bint must_cancel

    def __cinit__(self, RunnerGroup group not None, Device device not None, block, row):
        self.group = group
        self.device = device
        self.block = block
        self.row = row
        self.state = RESTING

    @property
    def _asyncio_future_blocking(self):
        # To asyncio.isfuture a runner is a future (of its device's end); never a yielded one.
        return False

    def start(self):
        """Schedule the first pass of the script."""
        self.handle = self.group.loop.call_soon(self, None, context=self.group.context)

    # -- stepping -------------------------------------------------------------------

    def __call__(self, waited=None):
        """The loop calls the runner: to start a pass, after a bare yield, or when the
        future-like ``waited`` is done."""
        if self.state == RESTING:
            self.handle = None
            self._begin_pass()
            return
        if self.state == ENDED:
            return
        exc = None
        if waited is not None:
            self.waiting = None
            try:
                waited.result()
            except BaseException as error:  # noqa: BLE001 - handed to the coroutine
                exc = error
        self._step(exc)

    cdef int wake(self, Pending pending) except -1:
        """``pending``, which the coroutine awaits, is complete: step it now, in the group's
        context, unless a task (or a runner) is running or that context is in use: then
        through the loop."""
        cdef RunnerGroup group = self.group
        if self.waiting is not pending:
            return 0
        # The running task of each loop is in asyncio's _current_tasks (3.10 to 3.13, the
        # dict _enter_task fills): a step inside a task's would make _enter_task refuse.
        if PyDict_GetItem(_current_tasks, group.loop) is not NULL:
            group.loop.call_soon(self, pending, context=group.context)
            return 0
        try:
            PyContext_Enter(group.context)
        except RuntimeError:   # entered already: this call comes from inside it
            group.loop.call_soon(self, pending, context=group.context)
            return 0
        self.waiting = None
        try:
            self._step(None)
        finally:
            PyContext_Exit(group.context)
        return 0

    cdef _begin_pass(self):
        if self.group.stop.is_set:
            self._end()
            return
        cdef Device device = self.device
        client = device.client = self.block.module.create_client(device)
        self.coro = client.open()
        self.in_script = False
        self.state = STEPPING
        self._step(None)

    cdef object _resume(self, exc, int *sent):
        """Send ``None`` into the coroutine, or throw ``exc``: what it yielded or returned
        (``sent`` says which); what it raised, raised."""
        cdef PyObject *raw = NULL
        if exc is None:
            sent[0] = PyIter_Send(self.coro, None, &raw)
            result = <object>raw
            decref(raw)
            return result
        try:
            result = self.coro.throw(exc)
        except StopIteration as stop:
            sent[0] = PYGEN_RETURN
            return stop.value
        sent[0] = PYGEN_NEXT
        return result

    cdef _step(self, exc):
        global _stepping
        cdef int sent = 0
        cdef Pending pending
        cdef RunnerGroup group = self.group
        loop = group.loop
        block = self.block
        while True:
            if self.must_cancel:
                self.must_cancel = False
                if not isinstance(exc, CancelledError):
                    exc = CancelledError()
            try:
                _enter_task(loop, self)
                _stepping = self
                step_into(self.device)
                try:
                    result = self._resume(exc, &sent)
                finally:
                    step_out()
                    _stepping = None
                    _leave_task(loop, self)
            except CancelledError as error:
                self._pass_failed(error, True)
                return
            except (Exception, SystemExit) as error:  # noqa: BLE001 - scripts may raise anything
                self._pass_failed(error, False)
                return
            except BaseException:
                self._close_pass()
                self._end()
                raise
            exc = None
            if sent == PYGEN_RETURN:
                if self.in_script:
                    self._pass_ended(False)
                    return
                # The client is open: the script's turn.
                self.coro = block.function(block.params, self.device.device_id, self.row)
                self.in_script = True
                continue
            if isinstance(result, Pending):
                pending = <Pending>result
                if pending.queue.loop is not loop:
                    exc = RuntimeError(f"the device awaited {result!r}, which belongs to another event loop")
                    continue
                pending.wait_by(self, group.context)
                self.waiting = pending
                if self.must_cancel and pending.cancel():
                    self.must_cancel = False
                return
            blocking = getattr(result, "_asyncio_future_blocking", None)
            if blocking is not None and blocking:
                if result.get_loop() is not loop:
                    exc = RuntimeError(f"the device awaited {result!r}, which belongs to another event loop")
                    continue
                result._asyncio_future_blocking = False
                result.add_done_callback(self, context=group.context)
                self.waiting = result
                if self.must_cancel and result.cancel():
                    self.must_cancel = False
                return
            if result is None:   # a bare yield (asyncio.sleep(0)): step again on the next turn
                loop.call_soon(self, None, context=group.context)
                return
            exc = RuntimeError(f"the device's coroutine yielded {result!r}, which is not awaitable "
                               f"by a task (await it, do not yield it)")

    cdef _pass_failed(self, error, bint cancelled):
        if cancelled and (self.cancel_requests > 0 or self.group.stop.is_set):
            self._close_pass()   # a stop
            self._end()
            return
        self.group.on_failure(error, self.block)
        self._pass_ended(True)

    cdef _pass_ended(self, bint failed):
        cdef RunnerGroup group = self.group
        self._close_pass()
        if group.stop.is_set:
            self._end()
            return
        self.state = RESTING
        if failed:
            self.handle = group.loop.call_later(RESTART_AFTER_ERROR_S, self, None, context=group.context)
        else:
            self.handle = group.loop.call_soon(self, None, context=group.context)

    cdef _close_pass(self):
        cdef Device device = self.device
        self.coro = None
        self.waiting = None
        client = device.client
        device.client = None
        device.reset()
        if client is not None:
            client.close()

    cdef _end(self):
        if self.state == ENDED:
            return
        self.state = ENDED
        self.coro = None
        self.handle = None
        self.group.on_end(self)
        callbacks, self.done_callbacks = self.done_callbacks, None
        if callbacks is not None:
            for callback, context in callbacks:
                self.group.loop.call_soon(callback, self, context=context)

    # -- what asyncio calls on the current task ------------------------------------------

    def cancel(self, msg=None):
        """Stop the device: ``False`` if it has already ended."""
        if self.state == ENDED:
            return False
        self.cancel_requests += 1
        if self.state == RESTING:
            if self.handle is not None:
                self.handle.cancel()
            self._end()
            return True
        if self.waiting is not None and self.waiting.cancel(msg):
            return True
        self.must_cancel = True
        return True

    def cancelling(self):
        """Cancellations asked for and not taken back (``uncancel``)."""
        return self.cancel_requests

    def uncancel(self):
        if self.cancel_requests > 0:
            self.cancel_requests -= 1
        return self.cancel_requests

    def get_coro(self):
        """The coroutine in hand (the script's, or the client's ``open()``), ``None`` at rest."""
        return self.coro

    def get_loop(self):
        return self.group.loop

    # -- the future of the device's end: for asyncio.wait ------------------------------------

    def done(self):
        return self.state == ENDED

    def cancelled(self):
        return self.state == ENDED and self.cancel_requests > 0

    def result(self):
        if self.state != ENDED:
            raise asyncio.InvalidStateError("the device is running")
        return None

    def exception(self):
        return self.result()   # a device's end carries no exception: its failures are counted

    def add_done_callback(self, callback, *, context=None):
        if context is None:
            context = copy_context()
        if self.state == ENDED:
            self.group.loop.call_soon(callback, self, context=context)
            return
        if self.done_callbacks is None:
            self.done_callbacks = []
        self.done_callbacks.append((callback, context))

    def remove_done_callback(self, callback):
        if self.done_callbacks is None:
            return 0
        kept = [(c, x) for c, x in self.done_callbacks if c != callback]
        removed = len(self.done_callbacks) - len(kept)
        self.done_callbacks = kept or None
        return removed

    def __repr__(self):
        return f"<DeviceRunner {self.device.device_id} {('resting', 'running', 'ended')[self.state]}>"


cdef class DeviceTaskFactory:
    """The loop's task factory (``install_task_factory``): a task made while a runner steps
    (a script's ``create_task``, ``gather``...) gets a copy of the running context that holds
    the runner's device, so the script functions find it there. Other tasks are made as the
    factory it replaced (or the loop) would make them."""

    cdef object previous

    def __cinit__(self, previous):
        self.previous = previous

    def __call__(self, loop, coro, context=None):
        if _stepping is not None and context is None:
            context = copy_context()
            context.run(set_current_device, _stepping.device)
        if self.previous is not None:
            return self.previous(loop, coro) if context is None else self.previous(loop, coro, context=context)
        return Task(coro, loop=loop, context=context)


def install_task_factory(loop):
    """Make ``loop``'s tasks with ``DeviceTaskFactory`` (once per loop)."""
    previous = loop.get_task_factory()
    if not isinstance(previous, DeviceTaskFactory):
        loop.set_task_factory(DeviceTaskFactory(previous))
