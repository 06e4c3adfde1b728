# cython: freethreading_compatible = False
"""One deadline on an event loop, on the monotonic microsecond clock.

``DeadlineTimer(loop, owner)`` calls ``owner.on_deadline()`` once the deadline
given to ``arm`` has passed (within ``DEADLINE_SLACK_US``). It is an entry of
its loop's ``TimerQueue`` (``stressgrid._core.timers``), not a loop timer of its
own, and it moves in that queue only when a deadline comes that is earlier than
where it waits: arming a later deadline (the next request of a device, say)
costs no heap work, the early entry just goes back in for the deadline when it
comes due. ``cancel()`` forgets the deadline and leaves the queue.

HTTP/1, HTTP/2 and WebSocket keep their deadlines with it. It is built to add
little to a device: one object, no loop timer, and the owner is called by name,
so no bound method is made per arm or kept. The owner refers to its timer and
the timer to its owner: an owner drops its timer when it closes.
"""
from libc.stdint cimport int64_t

from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.timers cimport TimerQueue, timers_of

SLACK_US = DEADLINE_SLACK_US


def passed(int64_t deadline_us, int64_t now_us):
    """Whether ``deadline_us`` counts as passed at ``now_us`` (the timer's slack included)."""
    return deadline_passed(deadline_us, now_us)


cdef class DeadlineTimer(Timed):
    """See the module docstring."""

    def __cinit__(self, loop, owner):
        self.queue = timers_of(loop)
        self.owner = owner
        self.deadline_us = 0

    cpdef arm(self, int64_t deadline_us):
        """The deadline is ``deadline_us`` now (earlier or later than before)."""
        cdef TimerQueue queue = self.queue
        self.deadline_us = deadline_us
        if self.index < 0:
            queue.push(self, deadline_us)
        elif deadline_us < self.due_us:
            queue.remove(self)
            queue.push(self, deadline_us)

    cpdef cancel(self):
        """No deadline any more; the entry leaves the queue."""
        self.deadline_us = 0
        self.queue.remove(self)

    @property
    def armed(self):
        """True while a deadline is set."""
        return self.deadline_us != 0

    cdef expire(self):
        cdef int64_t deadline = self.deadline_us
        if deadline == 0 or self.index >= 0:
            return   # cancelled, or armed again, by what expired before it in the same batch
        if not deadline_passed(deadline, monotonic_us()):
            self.queue.push(self, deadline)    # waited for an earlier deadline: on to this one
            return
        self.deadline_us = 0
        self.owner.on_deadline()
