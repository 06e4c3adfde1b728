from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    ctypedef long long int128 "__int128"


cdef class Schedule:
    cdef int64_t *segment_start
    cdef int64_t *segment_duration
    cdef int64_t *segment_from
    cdef int64_t *segment_to
    cdef int128 *segment_work2  # twice the work done before each segment
    cdef Py_ssize_t segment_count
    cdef Py_ssize_t segment
    cdef int128 total_work2
    cdef readonly int64_t end_us
    cdef readonly int64_t offset
    cdef readonly int64_t stride
    cdef readonly bint poisson
    cdef int64_t *cumulative
    cdef int block_count
    cdef int64_t total_weight
    cdef int64_t multiplier
    cdef uint64_t random_state
    cdef double position
    cdef int64_t index
    cdef readonly bint over
    cdef readonly int64_t next_us
    cdef readonly int64_t next_k
    cdef readonly int next_block

    cdef _set_weights(self, weights)
    cdef int block_of(self, int64_t k) noexcept
    cdef double _work_at(self, int64_t t) noexcept
    cdef bint _find_segment(self, double work2) noexcept
    cdef void _place_uniform(self) noexcept
    cdef double _exponential(self) noexcept
    cdef void _place_poisson(self) noexcept
    cdef void advance_c(self) noexcept
