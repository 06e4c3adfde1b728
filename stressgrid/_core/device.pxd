from libc.stdint cimport int64_t

from stressgrid._core.metrics cimport Recorder, RequestGroup


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
    # How late the step the device is in started: its arrival-rate iteration, or its tick of
    # pace(); -1 while its steps are not measured from an intended start. Each latency it
    # records then also goes, this much longer, into an ``intended_`` twin (``record_intended``).
    cdef public int64_t step_delay_us
    cdef public bint in_iteration  # an arrival-rate iteration is running on it
    cdef int64_t pace_interval_us  # pace(): the tick's length, 0 before the first call
    cdef int64_t pace_next_us      # pace(): the next tick not yet taken
    cdef dict timings

    cdef _start(self, str key, int64_t now)
    cdef _stop(self, str key, int64_t now)
    cpdef record_intended(self, str twin, int64_t value)
    cpdef record_intended_headers(self, int64_t headers_us, RequestGroup group)


cdef void step_into(Device device) noexcept
cdef void step_out() noexcept
cdef object device_or_none()
cdef Device running_device()
cdef tuple timing_names(str key)
cdef str metric_key(object key)
cpdef double wait_seconds(object timeout_ms, Device device) except -1.0
