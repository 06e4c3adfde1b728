# cython: freethreading_compatible = False
"""``await delay(ms)`` and ``await pace(ms)`` without a loop timer, a future and a generator
per sleeping device.

A device that waits in ``delay`` used to hold a ``Future``, a loop timer (its
handle, the loop's timer object and libuv's), the timer's argument tuple, a
generator and its frame: about 1 KB, most of an idle device. Here it holds one
``Sleep``, an entry of its loop's ``TimerQueue`` (``stressgrid._core.timers``).

To asyncio's ``Task`` a ``Sleep`` is a future (``_asyncio_future_blocking``,
``add_done_callback``, ``cancel``, ``result`` ...): the task waits on it, a
cancelled task cancels it (it leaves the heap at once, so a stopped device keeps
nothing in it), and ``asyncio.wait_for``, ``gather`` and ``shield`` take it as
they take a future. It is its own iterator, so ``await`` makes no generator.
Like a future's, its callbacks are called through ``loop.call_soon`` once it is
done. Due times are on ``monotonic_us``; the queue ends a sleep within the loop
timers' millisecond, as ``asyncio.sleep`` would.
"""
import asyncio
import contextvars

from libc.stdint cimport int64_t

from stressgrid._core.timers cimport Timed, TimerQueue

cdef object CancelledError = asyncio.CancelledError
cdef object InvalidStateError = asyncio.InvalidStateError
cdef object copy_context = contextvars.copy_context

cdef enum:
    PENDING = 0
    DONE = 1
    CANCELLED = 2


cpdef Sleep sleep_until(TimerQueue queue, int64_t due_us):
    """A ``Sleep`` done at ``due_us``, in ``queue``."""
    cdef Sleep sleep = Sleep.__new__(Sleep)
    queue.push(sleep, due_us)
    return sleep


cdef class Sleep(Timed):
    """See the module docstring. Made by ``sleep_until``."""

    def __cinit__(self):
        self.state = PENDING
        self._asyncio_future_blocking = False

    cdef expire(self):
        if self.state == PENDING:   # not cancelled by what expired before it in the same batch
            self._finish(DONE)

    cdef _finish(self, int state):
        self.state = state
        loop = self.queue.loop
        if self.callback is not None:
            loop.call_soon(self.callback, self, context=self.context)
            self.callback = self.context = None
        if self.more is not None:
            for callback, context in self.more:
                loop.call_soon(callback, self, context=context)
            self.more = None

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
            raise InvalidStateError("the sleep is not over")

    def result(self):
        self._raise_unless_over()
        return None  # a sleep ends with no value

    def exception(self):
        self._raise_unless_over()
        return None

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
            removed += 1
        if self.more is not None:
            kept = [(c, x) for c, x in self.more if c != callback]
            removed += len(self.more) - len(kept)
            self.more = kept or None
        return removed

    @property
    def _cancel_message(self):
        return None  # gather reads it of a cancelled future; a sleep has none

    def _make_cancelled_error(self):
        return CancelledError()

    def cancel(self, msg=None):
        if self.state != PENDING:
            return False
        self.queue.remove(self)
        self._finish(CANCELLED)
        return True

    # -- await: the sleep is its own iterator ------------------------------------------

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if self.state == PENDING and not self.yielded:
            self.yielded = True
            self._asyncio_future_blocking = True
            return self
        if self.state == CANCELLED:
            raise CancelledError()
        if self.state == PENDING:
            raise RuntimeError("await wasn't used with future")
        raise StopIteration(None)
