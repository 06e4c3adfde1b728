cimport cython
from libc.stdint cimport int64_t

from stressgrid._core.pending cimport Pending
from stressgrid._core.timers cimport TimerQueue


@cython.final
cdef class Sleep(Pending):
    pass


cpdef Sleep sleep_until(TimerQueue queue, int64_t due_us, bint exact=*)
