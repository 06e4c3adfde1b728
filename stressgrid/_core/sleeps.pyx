# cython: freethreading_compatible = False
"""``await delay(ms)`` and ``await pace(ms)`` without a loop timer, a future and a generator
per sleeping device.

A device that waits in ``delay`` used to hold a ``Future``, a loop timer (its
handle, the loop's timer object and libuv's), the timer's argument tuple, a
generator and its frame: about 1 KB, most of an idle device. Here it holds one
``Sleep``, an entry of its loop's ``TimerQueue`` (``stressgrid._core.timers``).

A ``Sleep`` is a ``Pending`` (``stressgrid._core.pending``): to asyncio's ``Task``
a future, to the device runner something it waits on with no callback of its own; a
cancelled sleep leaves the heap at once, so a stopped device keeps nothing in it.
Its result is ``None``; whoever waits is called through ``loop.call_soon`` once it
is over. Due times are on ``monotonic_us``; the queue ends a sleep within the loop
timers' millisecond, as ``asyncio.sleep`` would.
"""
from libc.stdint cimport int64_t

from stressgrid._core.pending cimport DONE, PENDING
from stressgrid._core.timers cimport TimerQueue


cpdef Sleep sleep_until(TimerQueue queue, int64_t due_us, bint exact=False):
    """A ``Sleep`` done at ``due_us`` in ``queue``: within the queue's slack (a long one may end a
    little late, ``stressgrid._core.timers``), or within the loop's millisecond if ``exact``."""
    cdef Sleep sleep = Sleep.__new__(Sleep)
    queue.push(sleep, due_us, exact)
    return sleep


cdef class Sleep(Pending):
    """See the module docstring. Made by ``sleep_until``."""

    cdef expire(self):
        if self.state == PENDING:   # not cancelled by what expired before it in the same batch
            self._finish(DONE, False)
