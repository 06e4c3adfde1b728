# cython: freethreading_compatible = False
"""What a device awaits: one compiled object per request or sleep instead of a ``Future``.

A script that awaits ``get()`` used to wait on a ``Future``: made by the loop (its
``__init__`` looks the loop's debug flag up by name), completed with
``set_result``, which put a handle in the loop's ready queue, whose turn called the
device's runner, which asked the future for its result and sent it into the
coroutine. A ``Pending`` is that future's replacement on the hot path:

- the device runner (``stressgrid._core.runner``), a ``Waker``, waits on it with no
  callback tuple and no context copy (``wait_by``);
- ``complete(result)``, called by a protocol when the response is complete, wakes
  that runner at once: the script's next step runs right there, inside the
  protocol's ``data_received``, with no loop handle in between;
- ``await`` takes the result through the type's ``am_send`` slot: no
  ``StopIteration`` is raised to hand the value over.

To everything else (asyncio's ``Task``, ``gather``, ``wait_for``, ``asyncio.timeout``
and the protocols' slower paths) it is a future: ``_asyncio_future_blocking``,
``add_done_callback``, ``set_result``, ``set_exception``, ``cancel``, ``result``...,
whose callbacks run through ``loop.call_soon`` as a future's do. A ``Sleep``
(``stressgrid._core.sleeps``) is a ``Pending`` that its loop's timer queue completes.
"""
import asyncio
import contextvars

from cpython.ref cimport Py_INCREF, PyObject

from stressgrid._core.timers cimport TimerQueue, timers_of

cdef object CancelledError = asyncio.CancelledError
cdef object InvalidStateError = asyncio.InvalidStateError
cdef object copy_context = contextvars.copy_context

cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    void PyErr_SetObject(object type, object value)
    void PyErr_SetNone(object type)

cdef extern from *:
    """
    typedef PySendResult (*sg_sendfunc)(PyObject *, PyObject *, PyObject **);

    static int sg_install_am_send(PyObject *type, sg_sendfunc send) {
        PyTypeObject *t = (PyTypeObject *)type;
        if (t->tp_as_async == NULL) {
            PyErr_SetString(PyExc_TypeError, "the type has no async slots");
            return -1;
        }
        t->tp_as_async->am_send = send;
        PyType_Modified(t);
        return 0;
    }
    """
    ctypedef PySendResult (*sg_sendfunc)(PyObject *, PyObject *, PyObject **) noexcept
    int install_am_send "sg_install_am_send"(object type, sg_sendfunc send) except -1


cdef Pending pending_on(TimerQueue queue):
    """A new ``Pending`` of ``queue``'s loop (it does not enter the queue's heap)."""
    cdef Pending pending = Pending.__new__(Pending)
    pending.queue = queue
    return pending


def new_pending(loop):
    """A new ``Pending`` of ``loop``: what a protocol hands a script to await its result."""
    return pending_on(timers_of(loop))


cdef class Waker:
    """Steps a coroutine that awaits a ``Pending``; see ``Pending.wait_by``."""

    cdef int wake(self, Pending pending) except -1:
        """``pending`` is complete: step the coroutine now, or schedule it."""
        raise NotImplementedError


cdef class Pending(Timed):
    """See the module docstring. Made by ``pending_on`` (or as a ``Sleep``)."""

    def __cinit__(self):
        self.state = PENDING
        self._asyncio_future_blocking = False

    cdef int wait_by(self, Waker waker, context) except -1:
        """``waker`` awaits this: ``complete`` wakes it at once; anything else (an error, a
        cancellation) calls it through the loop, in ``context``, as a done callback."""
        self._asyncio_future_blocking = False
        if self.callback is None and self.more is None:
            self.callback, self.context = waker, context
            self.by_waker = True
        else:
            self.add_done_callback(waker, context=context)
        return 0

    cpdef complete(self, result):
        """Finish with ``result`` and wake the runner that awaits it at once. ``False`` when it
        was done already (cancelled: nobody waits for the result any more)."""
        if self.state != PENDING:
            return False
        self.value = result
        self._finish(DONE, True)
        return True

    cdef _finish(self, int state, bint now):
        self.state = state
        loop = self.queue.loop
        callback, context = self.callback, self.context
        by_waker = self.by_waker
        self.callback = self.context = None
        self.by_waker = False
        cdef bint waking = now and by_waker
        if callback is not None and not waking:
            loop.call_soon(callback, self, context=context)
        if self.more is not None:
            for each, its_context in self.more:
                loop.call_soon(each, self, context=its_context)
            self.more = None
        if waking:  # last: the runner's step may run for a while, the others go in order
            (<Waker>callback).wake(self)

    # -- the future protocol, as asyncio's Task and its helpers use it --------------

    def get_loop(self):
        return self.queue.loop

    def done(self):
        return self.state != PENDING

    def cancelled(self):
        return self.state == CANCELLED

    cdef _raise_unless_over(self):
        if self.state == CANCELLED:
            raise CancelledError()
        if self.state == PENDING:
            raise InvalidStateError("the result is not ready")

    def result(self):
        self._raise_unless_over()
        if self.failed:
            raise self.value
        return self.value

    def exception(self):
        self._raise_unless_over()
        return self.value if self.failed else None

    def set_result(self, result):
        """Finish with ``result``; whoever awaits it is called through the loop."""
        if self.state != PENDING:
            raise InvalidStateError("already done")
        self.value = result
        self._finish(DONE, False)

    def set_exception(self, exception):
        if self.state != PENDING:
            raise InvalidStateError("already done")
        if isinstance(exception, type):
            exception = exception()
        if isinstance(exception, StopIteration):
            raise TypeError("StopIteration interacts badly with generators and cannot be raised "
                            "into a future")
        self.value = exception
        self.failed = True
        self._finish(DONE, False)

    def add_done_callback(self, callback, *, context=None):
        if context is None:
            context = copy_context()
        if self.state != PENDING:
            self.queue.loop.call_soon(callback, self, context=context)
        elif self.callback is None and self.more is None:
            self.callback, self.context = callback, context
        else:
            if self.more is None:
                self.more = []
            self.more.append((callback, context))

    def remove_done_callback(self, callback):
        cdef int removed = 0
        if self.callback is not None and self.callback == callback:
            self.callback = self.context = None
            self.by_waker = False
            removed += 1
        if self.more is not None:
            kept = [(c, x) for c, x in self.more if c != callback]
            removed += len(self.more) - len(kept)
            self.more = kept or None
        return removed

    @property
    def _cancel_message(self):
        return None  # gather reads it of a cancelled future; a pending has none

    def _make_cancelled_error(self):
        return CancelledError()

    def cancel(self, msg=None):
        if self.state != PENDING:
            return False
        if self.index >= 0:
            self.queue.remove(self)
        self._finish(CANCELLED, False)
        return True

    # -- await: it is its own iterator -------------------------------------------------

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        # What am_send does (below), for whoever iterates it by hand.
        if self.state == PENDING and not self.yielded:
            self.yielded = True
            self._asyncio_future_blocking = True
            return self
        if self.state == PENDING:
            raise RuntimeError("await wasn't used with future")
        raise StopIteration(self.result())


cdef PySendResult _send(PyObject *raw, PyObject *argument, PyObject **result) noexcept:
    """``await``'s step: yield the pending itself until it is done, then return its result
    (or raise its exception) without a ``StopIteration``."""
    cdef Pending pending = <Pending>raw
    cdef object value
    if pending.state == DONE:
        if pending.failed:
            value = pending.value
            PyErr_SetObject(type(value), value)
            return PYGEN_ERROR
        value = pending.value
        Py_INCREF(value)
        result[0] = <PyObject *>value
        return PYGEN_RETURN
    if pending.state == CANCELLED:
        PyErr_SetNone(CancelledError)
        return PYGEN_ERROR
    if pending.yielded:
        PyErr_SetObject(RuntimeError, "await wasn't used with future")
        return PYGEN_ERROR
    pending.yielded = True
    pending._asyncio_future_blocking = True
    Py_INCREF(pending)
    result[0] = <PyObject *>pending
    return PYGEN_NEXT


install_am_send(Pending, _send)
