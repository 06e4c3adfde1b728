cimport cython
from libc.stdint cimport int64_t, uint8_t

# One shared bucket layout: 1 us .. 60 s, 3 significant digits, identical to
# the `hdrhistogram` package's HdrHistogram(1, 60_000_000, 3).
cdef enum:
    LOWEST_VALUE = 1
    HIGHEST_VALUE = 60000000
    SUB_BUCKET_HALF_COUNT_MAGNITUDE = 10
    SUB_BUCKET_HALF_COUNT = 1024
    SUB_BUCKET_MASK = 2047
    BUCKET_COUNT = 16
    COUNTS_LEN = 17408


cdef class Histogram:
    cdef int64_t *counts
    cdef public str name
    cdef int64_t total
    cdef int64_t clamped
    cdef Py_ssize_t min_index
    cdef Py_ssize_t max_index

    cdef void record_c(self, int64_t value) noexcept
    cdef void add_histogram(self, Histogram other) noexcept
    cdef int64_t subtract_encoded(self, const uint8_t *p, const uint8_t *end) noexcept
    cdef void take_back_encoded(self, bytes data, int64_t clamped, Py_ssize_t min_index,
                                Py_ssize_t max_index) noexcept
    cdef void clear(self) noexcept
    cdef int64_t value_at_percentile_c(self, double percentile) noexcept


cdef class Counter:
    cdef public str name
    cdef public int64_t value


@cython.final
cdef class ResponseCounters:
    cdef Counter total
    cdef Counter informational
    cdef Counter success
    cdef Counter redirection
    cdef Counter client_error
    cdef Counter server_error

    cdef void count(self, int status) noexcept


@cython.final
cdef class RequestGroup:
    cdef readonly str name
    cdef readonly str intended_headers_name  # the twin of its headers_us from the step's intended start
    cdef Histogram headers
    cdef Histogram body
    cdef ResponseCounters responses

    cdef void record(self, int64_t sent_us, int64_t headers_us, int64_t done_us, int status) noexcept


cdef class Recorder:
    cdef dict histograms
    cdef dict counters
    cdef dict gauges
    cdef ResponseCounters responses
    cdef dict groups

    cpdef Histogram histogram(self, str name)
    cpdef Counter counter(self, str name)
    cpdef ResponseCounters response_counters(self)
    cpdef RequestGroup request_group(self, str name)
