cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class SleepQueue:
    cdef readonly object loop
    cdef list heap                  # pending Sleeps, a binary heap on due_us
    cdef object handle              # the loop timer for the earliest, while one is set
    cdef int64_t handle_at_us       # when that loop timer is due

    cpdef Sleep sleep(self, int64_t due_us)
    cdef _arm(self, int64_t due_us)
    cdef _remove(self, Py_ssize_t index)
    cdef _sift_up(self, Py_ssize_t index)
    cdef _sift_down(self, Py_ssize_t index)


@cython.final
cdef class Sleep:
    cdef SleepQueue queue
    cdef readonly int64_t due_us
    cdef Py_ssize_t index           # in the queue's heap, -1 out of it
    cdef object callback            # the first done callback (a task's wakeup) and its context
    cdef object context
    cdef list more                  # further (callback, context) pairs, rarely any
    cdef int state
    cdef bint yielded
    cdef public bint _asyncio_future_blocking

    cdef _finish(self, int state)
    cdef _raise_unless_over(self)
