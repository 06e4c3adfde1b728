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
    # An arrival-rate iteration's scheduled start (monotonic us) until its first HTTP request
    # takes it; 0 otherwise.
    cdef public int64_t intended_start_us
    cdef dict timings

    cdef _start(self, str key, int64_t now)
    cdef _stop(self, str key, int64_t now)


cdef int64_t monotonic_us() noexcept nogil
cdef Device running_device()
cdef str timing_histogram_name(str key)
cdef str metric_key(object key)
