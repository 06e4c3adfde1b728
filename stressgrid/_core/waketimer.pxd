cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class WakeTimer:
    cdef object loop
    cdef object callback
    cdef int fd                     # the kernel's timer file, or -1 on the fallback
    cdef object handle              # the fallback's loop timer, while one is set
    cdef readonly int64_t at_us     # the instant armed (0: none)

    cpdef arm(self, int64_t at_us)
    cpdef disarm(self)
