from stressgrid._core.timers cimport Timed, TimerQueue


cdef class Pending

cdef enum:
    PENDING = 0
    DONE = 1
    CANCELLED = 2


# What steps a coroutine that awaits a Pending (the device runner, ``stressgrid._core.runner``):
# ``Pending.complete`` hands it the pending at once instead of through a loop handle.
cdef class Waker:
    cdef int wake(self, Pending pending) except -1


# A Timed entry only for Sleep (sleeps.pyx); a request's Pending never enters the heap.
cdef class Pending(Timed):
    cdef object callback            # the first done callback (a runner or a task's wakeup)...
    cdef object context             # ...and its context
    cdef list more                  # further (callback, context) pairs, rarely any
    cdef object value               # the result, or the exception when ``failed``
    cdef unsigned char state
    cdef bint failed
    cdef bint yielded
    cdef bint by_waker              # ``callback`` is a Waker: ``complete`` may wake it at once
    cdef public bint _asyncio_future_blocking

    cdef int wait_by(self, Waker waker, context) except -1
    cpdef complete(self, result)
    cdef _finish(self, int state, bint now)
    cdef _raise_unless_over(self)


cdef Pending pending_on(TimerQueue queue)
