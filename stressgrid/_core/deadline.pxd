cimport cython
from libc.stdint cimport int64_t

from stressgrid._core.timers cimport Timed

# The loop's timers have millisecond steps: a deadline this close is treated as passed.
cdef enum:
    DEADLINE_SLACK_US = 500


@cython.final
cdef class DeadlineTimer(Timed):
    cdef object owner               # its on_deadline() is the callback
    cdef readonly int64_t deadline_us   # the deadline armed (0: none)

    cpdef arm(self, int64_t deadline_us)
    cpdef cancel(self)


cdef inline bint deadline_passed(int64_t deadline_us, int64_t now_us) noexcept:
    return now_us + DEADLINE_SLACK_US >= deadline_us
