# cython: freethreading_compatible = False
"""A device of the devices executor, stepped by one compiled object instead of an asyncio task.

A device used to run as a ``Task`` around a wrapper coroutine (open the client,
run the script, count a failure, rest, start again). The task, its entry in
asyncio's registry of tasks and the wrapper's frame took about 750 bytes of an
idle device. ``DeviceRunner`` is the task and the wrapper in one object:

- it steps the coroutine in hand (the client's ``open()``, then the script) as a
  task steps its coroutine: it waits on whatever future-like object the coroutine
  yields (a ``Future``, a ``Sleep`` of ``delay``, a ``Task`` of ``gather``) with
  itself as the done callback, and steps again on a bare ``yield``;
- between two passes of the script it rests on one loop handle: none after a pass
  that ended normally, ``RESTART_AFTER_ERROR_S`` after a failure;
- while it steps, ``asyncio.current_task()`` is the runner, with the task methods
  that asyncio's own helpers call on it (``cancel``, ``cancelling``,
  ``uncancel``): ``asyncio.timeout`` and the connect deadlines work inside a
  script as they do in a task. Scripts' own ``create_task``/``gather`` make
  ordinary tasks, which copy the device's context and so find the device.

``cancel()`` stops the device as cancelling its task did: the cancellation is
thrown into the coroutine at the point where it waits; a script that lets it pass
ends the device, one that raises ``CancelledError`` of its own accord is counted
(``device_cancelled_error_count``) and starts again. To ``asyncio.wait`` a
runner is a future that is done when its device has ended.
"""
import asyncio
import contextvars

from cpython.ref cimport PyObject

from stressgrid._core.device cimport Device

from asyncio.tasks import _enter_task, _leave_task

from stressgrid._core.device import set_current_device

cdef object CancelledError = asyncio.CancelledError
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


cdef class DeviceRunner:
    """Runs ``block``'s script on ``device`` over and over until cancelled or ``stop.is_set``.

    ``on_failure(exc, block)`` counts a failed pass; ``on_end(runner)`` is called
    once, when the device has ended. ``start()`` schedules the first pass.
    """

    cdef readonly Device device
    cdef object block
    cdef object row
    cdef object stop
    cdef object on_failure
    cdef object on_end
    cdef object loop
    cdef object context
    cdef object coro          # the coroutine in hand: the client's open(), then the script
    cdef bint in_script
    cdef object waiting       # the future-like object the coroutine waits on
    cdef object handle        # the loop handle of the next pass, while resting
    cdef list done_callbacks  # (callback, context) pairs of whoever waits for the end
    cdef int state
    cdef int cancel_requests
    cdef bint must_cancel
    cdef public object _asyncio_future_blocking

    def __cinit__(self, Device device not None, block, row, stop, on_failure, on_end):
        self.device = device
        self.block = block
        self.row = row
        self.stop = stop
        self.on_failure = on_failure
        self.on_end = on_end
        self.loop = device.loop
        self.context = copy_context()
        self.context.run(set_current_device, device)
        self.state = RESTING
        self._asyncio_future_blocking = False

    def start(self):
        """Schedule the first pass of the script."""
        self.handle = self.loop.call_soon(self, None, context=self.context)

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

    cdef _begin_pass(self):
        if self.stop.is_set:
            self._end()
            return
        cdef Device device = self.device
        client = device.client = self.block.module.create_client(device)
        self.coro = client.open()
        self.in_script = False
        self.state = STEPPING
        self._step(None)

    cdef _step(self, exc):
        cdef PyObject *raw = NULL
        cdef int sent
        cdef object result
        cdef object blocking
        block = self.block
        while True:
            if self.must_cancel:
                self.must_cancel = False
                if not isinstance(exc, CancelledError):
                    exc = CancelledError()
            _enter_task(self.loop, self)
            try:
                if exc is None:
                    sent = PyIter_Send(self.coro, None, &raw)
                    result = <object>raw
                    decref(raw)
                else:
                    try:
                        result = self.coro.throw(exc)
                    except StopIteration:
                        sent = PYGEN_RETURN
                    else:
                        sent = PYGEN_NEXT
                    exc = None
            except CancelledError as error:
                _leave_task(self.loop, self)
                self._pass_failed(error, True)
                return
            except (Exception, SystemExit) as error:  # noqa: BLE001 - scripts may raise anything
                _leave_task(self.loop, self)
                self._pass_failed(error, False)
                return
            except BaseException:
                _leave_task(self.loop, self)
                self._close_pass()
                self._end()
                raise
            _leave_task(self.loop, self)
            if sent == PYGEN_RETURN:
                if self.in_script:
                    self._pass_ended(False)
                    return
                # The client is open: the script's turn.
                self.coro = block.function(block.params, self.device.device_id, self.row)
                self.in_script = True
                continue
            blocking = getattr(result, "_asyncio_future_blocking", None)
            if blocking is not None and blocking:
                if result.get_loop() is not self.loop:
                    exc = RuntimeError(f"the device awaited {result!r}, which belongs to another event loop")
                    continue
                result._asyncio_future_blocking = False
                result.add_done_callback(self, context=self.context)
                self.waiting = result
                if self.must_cancel and result.cancel():
                    self.must_cancel = False
                return
            if result is None:   # a bare yield (asyncio.sleep(0)): step again on the next turn
                self.loop.call_soon(self, None, context=self.context)
                return
            exc = RuntimeError(f"the device's coroutine yielded {result!r}, which is not awaitable "
                               f"by a task (await it, do not yield it)")

    cdef _pass_failed(self, error, bint cancelled):
        if cancelled and (self.cancel_requests > 0 or self.stop.is_set):
            self._close_pass()   # a stop
            self._end()
            return
        self.on_failure(error, self.block)
        self._pass_ended(True)

    cdef _pass_ended(self, bint failed):
        self._close_pass()
        if self.stop.is_set:
            self._end()
        elif failed:
            self.state = RESTING
            self.handle = self.loop.call_later(RESTART_AFTER_ERROR_S, self, None, context=self.context)
        else:
            self.state = RESTING
            self.handle = self.loop.call_soon(self, None, context=self.context)

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
        self.on_end(self)
        callbacks, self.done_callbacks = self.done_callbacks, None
        if callbacks is not None:
            for callback, context in callbacks:
                self.loop.call_soon(callback, self, context=context)

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
        return self.loop

    def get_context(self):
        return self.context

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
            self.loop.call_soon(callback, self, context=context)
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

