# cython: freethreading_compatible = False
"""One deadline on an event loop, on the monotonic microsecond clock.

``DeadlineTimer(loop, owner)`` calls ``owner.on_deadline()`` once the deadline
given to ``arm`` has passed (within ``DEADLINE_SLACK_US``). It keeps at most one loop
timer and moves it only when a deadline comes that is earlier than where that
timer is set: arming a later deadline (the next request of a device, say)
costs no timer work, the early timer just sets itself again for the deadline
when it fires. ``cancel()`` forgets the deadline and the loop timer.

HTTP/1, HTTP/2 and WebSocket keep their deadlines with it. It is built to add
little to a device: the loop's timer calls the timer object itself, and the
owner is called by name, so no bound method is made per arm or kept. The owner
refers to its timer and the timer to its owner: an owner drops its timer when
it closes.
"""
from libc.stdint cimport int64_t

from stressgrid._core.device cimport monotonic_us

SLACK_US = DEADLINE_SLACK_US


def passed(int64_t deadline_us, int64_t now_us):
    """Whether ``deadline_us`` counts as passed at ``now_us`` (the timer's slack included)."""
    return deadline_passed(deadline_us, now_us)


cdef class DeadlineTimer:
    """See the module docstring."""

    def __cinit__(self, loop, owner):
        self.loop = loop
        self.owner = owner
        self.handle = None
        self.handle_at_us = 0
        self.deadline_us = 0

    cpdef arm(self, int64_t deadline_us):
        """The deadline is ``deadline_us`` now (earlier or later than before)."""
        self.deadline_us = deadline_us
        if self.handle is None:
            self._set_handle(deadline_us, monotonic_us())
        elif deadline_us < self.handle_at_us:
            self.handle.cancel()
            self._set_handle(deadline_us, monotonic_us())

    cpdef cancel(self):
        """No deadline any more; the loop timer goes too."""
        self.deadline_us = 0
        handle = self.handle
        if handle is not None:
            self.handle = None
            handle.cancel()

    @property
    def armed(self):
        """True while a deadline is set."""
        return self.deadline_us != 0

    cdef _set_handle(self, int64_t at_us, int64_t now_us):
        self.handle_at_us = at_us
        self.handle = self.loop.call_later((at_us - now_us) / 1e6 if at_us > now_us else 0.0, self)

    def __call__(self):
        """The loop's timer fired."""
        cdef int64_t now, deadline = self.deadline_us
        self.handle = None
        if deadline == 0:
            return
        now = monotonic_us()
        if not deadline_passed(deadline, now):
            self._set_handle(deadline, now)    # set for an earlier deadline: on to this one
            return
        self.deadline_us = 0
        self.owner.on_deadline()
