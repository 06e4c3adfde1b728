cimport cython
from libc.stdint cimport int64_t

from stressgrid._core.timers cimport Timed, TimerQueue


@cython.final
cdef class Sleep(Timed):
    cdef object callback            # the first done callback (a task's wakeup) and its context
    cdef object context
    cdef list more                  # further (callback, context) pairs, rarely any
    cdef int state
    cdef bint yielded
    cdef public bint _asyncio_future_blocking

    cdef _finish(self, int state)
    cdef _raise_unless_over(self)


cpdef Sleep sleep_until(TimerQueue queue, int64_t due_us)
