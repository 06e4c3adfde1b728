# cython: freethreading_compatible = False
"""``await delay(ms)`` and ``await pace(ms)`` without a loop timer, a future and a generator
per sleeping device.

A device that waits in ``delay`` used to hold a ``Future``, a loop timer (its
handle, the loop's timer object and libuv's), the timer's argument tuple, a
generator and its frame: about 1 KB, most of an idle device. Here it holds one
``Sleep``, and all the sleeps of a loop share one ``SleepQueue``: a binary heap
on the due time, with one loop timer set for the earliest.

To asyncio's ``Task`` a ``Sleep`` is a future (``_asyncio_future_blocking``,
``add_done_callback``, ``cancel``, ``result`` ...): the task waits on it, a
cancelled task cancels it (it leaves the heap at once, so a stopped device keeps
nothing in it), and ``asyncio.wait_for``, ``gather`` and ``shield`` take it as
they take a future. It is its own iterator, so ``await`` makes no generator.
Like a future's, its callbacks are called through ``loop.call_soon`` once it is
done. Due times are on ``monotonic_us``; the loop timer fires within its
millisecond (``SLACK_US``), as ``asyncio.sleep`` would.
"""
import asyncio
import contextvars

from libc.stdint cimport int64_t

from stressgrid._core.device cimport monotonic_us

cdef object CancelledError = asyncio.CancelledError
cdef object InvalidStateError = asyncio.InvalidStateError
cdef object copy_context = contextvars.copy_context

# The loop's timers count whole milliseconds: a sleep due within this is due now.
cdef int64_t SLACK_US = 500

cdef enum:
    PENDING = 0
    DONE = 1
    CANCELLED = 2


cdef class SleepQueue:
    """The pending sleeps of one event loop, earliest first, behind one loop timer."""

    def __cinit__(self, loop):
        self.loop = loop
        self.heap = []
        self.handle = None
        self.handle_at_us = 0

    cpdef Sleep sleep(self, int64_t due_us):
        """A ``Sleep`` done at ``due_us``."""
        cdef Sleep sleep = Sleep.__new__(Sleep)
        sleep.queue = self
        sleep.due_us = due_us
        sleep.index = len(self.heap)
        self.heap.append(sleep)
        self._sift_up(sleep.index)
        if self.handle is None or due_us < self.handle_at_us:
            self._arm(due_us)
        return sleep

    @property
    def pending(self):
        """How many sleeps wait."""
        return len(self.heap)

    cdef _arm(self, int64_t due_us):
        if self.handle is not None:
            self.handle.cancel()
        cdef int64_t wait_us = due_us - monotonic_us()
        self.handle_at_us = due_us
        self.handle = self.loop.call_later(wait_us / 1e6 if wait_us > 0 else 0, self._fire)

    def _fire(self):
        cdef Sleep sleep
        cdef int64_t now = monotonic_us() + SLACK_US
        self.handle = None
        while self.heap and (<Sleep>self.heap[0]).due_us <= now:
            sleep = <Sleep>self.heap[0]
            self._remove(0)
            sleep._finish(DONE)
        if self.heap:
            self._arm((<Sleep>self.heap[0]).due_us)

    cdef _remove(self, Py_ssize_t index):
        cdef list heap = self.heap
        cdef Sleep removed = <Sleep>heap[index]
        cdef Sleep last = <Sleep>heap.pop()
        removed.index = -1
        if last is removed:
            return
        heap[index] = last
        last.index = index
        self._sift_up(index)
        self._sift_down(last.index)

    cdef _sift_up(self, Py_ssize_t index):
        cdef list heap = self.heap
        cdef Sleep item = <Sleep>heap[index]
        cdef Sleep parent
        while index > 0:
            parent = <Sleep>heap[(index - 1) >> 1]
            if parent.due_us <= item.due_us:
                break
            heap[index] = parent
            parent.index = index
            index = (index - 1) >> 1
        heap[index] = item
        item.index = index

    cdef _sift_down(self, Py_ssize_t index):
        cdef list heap = self.heap
        cdef Py_ssize_t size = len(heap)
        cdef Sleep item = <Sleep>heap[index]
        cdef Sleep child
        cdef Py_ssize_t pick
        while True:
            pick = 2 * index + 1
            if pick >= size:
                break
            if pick + 1 < size and (<Sleep>heap[pick + 1]).due_us < (<Sleep>heap[pick]).due_us:
                pick += 1
            child = <Sleep>heap[pick]
            if item.due_us <= child.due_us:
                break
            heap[index] = child
            child.index = index
            index = pick
        heap[index] = item
        item.index = index


cdef class Sleep:
    """See the module docstring. Made by ``SleepQueue.sleep``."""

    def __cinit__(self):
        self.index = -1
        self.state = PENDING
        self._asyncio_future_blocking = False

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
        if self.index >= 0:
            self.queue._remove(self.index)
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
