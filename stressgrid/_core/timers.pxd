cimport cython
from libc.stdint cimport int64_t


# An entry of a TimerQueue: a Sleep (sleeps.pyx) or a DeadlineTimer (deadline.pyx).
cdef class Timed:
    cdef TimerQueue queue
    cdef readonly int64_t due_us     # the queue expires it no sooner (while index >= 0)...
    cdef readonly int64_t latest_us  # ...and no later (the loop's lateness aside)
    cdef Py_ssize_t index            # in the queue's heap, -1 out of it

    cdef expire(self)


@cython.final
cdef class TimerQueue:
    cdef readonly object loop
    cdef list heap                   # Timed entries, a binary heap on latest_us
    cdef object handle               # the loop timer for the earliest, while one is set
    cdef int64_t handle_at_us        # when that loop timer is due
    cdef int slack_shift             # an entry may expire (its wait >> slack_shift) late...
    cdef int64_t max_slack_us        # ...and never more than this

    cdef push(self, Timed entry, int64_t due_us, bint exact=*)
    cdef int64_t _slack(self, int64_t wait_us)
    cdef remove(self, Timed entry)
    cdef _arm(self, int64_t due_us)
    cdef _remove_at(self, Py_ssize_t index)
    cdef _sift_up(self, Py_ssize_t index)
    cdef _sift_down(self, Py_ssize_t index)


cdef TimerQueue timers_of(loop)
