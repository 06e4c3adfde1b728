from libc.stdint cimport int64_t

from stressgrid._core.metrics cimport Recorder


cdef class Device:
    cdef public str device_id
    cdef public object address
    cdef public object opts
    cdef public Recorder recorder
    cdef public object client
    cdef public object loop
    cdef public double timeout_s
    cdef dict timings

    cdef void clear_timings(self)
    cdef _stop(self, key, int64_t now)


cdef int64_t monotonic_us() noexcept nogil
