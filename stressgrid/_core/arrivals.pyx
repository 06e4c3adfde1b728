# cython: freethreading_compatible = False
"""The schedule of an open-model (arrival-rate) share: when each iteration is due.

The fleet's rate is a list of segments ``(duration_us, start_milli, end_milli)``:
straight lines of thousandths of an iteration a second. Their integral, the
"work" ``W(t)`` in thousandth-iteration microseconds per second, reaches
``k * 10**9`` at the time iteration ``k`` of the whole fleet is due. A share
``(offset, stride)`` runs the iterations ``offset, offset + stride, ...``.

Each time is computed from its own ``k``, never by adding up intervals, so a
long run does not drift and every worker of the fleet agrees on the schedule:
in 128-bit integers on a constant rate (exact), and in closed form with one
square root on a ramp. With ``poisson`` arrivals the share's iterations come
at exponential intervals of mean ``stride`` iterations of the fleet's
schedule instead, so the fleet's arrivals together are a Poisson process of
the planned rate.

Each iteration also gets one of the blocks, weighted by their sizes: the
``k``-th iteration of the fleet runs the block of ``(k * P) mod S`` (``S`` the
weights' sum, ``P`` a multiplier prime to it near ``0.618 S``): every ``S``
consecutive iterations hold every block exactly its weight of times, well
spread among them.
"""
from libc.math cimport ceil, log, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

import math
import os

cdef int64_t ITERATION = 1000000000  # one iteration of work: 1000 milli x 10**6 us


cdef int128 ceil_div(int128 a, int128 b) noexcept:
    """``ceil(a / b)`` for ``b > 0``."""
    if a >= 0:
        return (a + b - 1) // b
    return -((-a) // b)


cdef class Schedule:
    """The due times (microseconds from the schedule's start) of one share's iterations.

    ``next_us``, ``next_k`` and ``next_block`` describe the next iteration; ``over``
    is true once the schedule has no more. ``advance()`` moves to the one after.
    ``from_us`` starts the share partway through (a replacement of a lost share).
    """

    def __cinit__(self):
        self.segment_start = NULL
        self.segment_duration = NULL
        self.segment_from = NULL
        self.segment_to = NULL
        self.segment_work2 = NULL
        self.cumulative = NULL

    def __init__(self, segments, weights, int64_t offset=0, int64_t stride=1, bint poisson=False,
                 int64_t from_us=0, seed=None):
        cdef Py_ssize_t i, n = len(segments)
        cdef int64_t duration, start_rate, end_rate, at = 0
        cdef int128 work2 = 0
        if n < 1:
            raise ValueError("a schedule needs at least one segment")
        if stride < 1 or not 0 <= offset < stride:
            raise ValueError(f"share ({offset}, {stride}) must have 0 <= offset < stride")
        if not weights or any(not isinstance(w, int) or w < 1 for w in weights):
            raise ValueError("block weights must be positive integers")
        self.segment_start = <int64_t *>malloc(n * sizeof(int64_t))
        self.segment_duration = <int64_t *>malloc(n * sizeof(int64_t))
        self.segment_from = <int64_t *>malloc(n * sizeof(int64_t))
        self.segment_to = <int64_t *>malloc(n * sizeof(int64_t))
        self.segment_work2 = <int128 *>malloc(n * sizeof(int128))
        if (self.segment_start == NULL or self.segment_duration == NULL or self.segment_from == NULL
                or self.segment_to == NULL or self.segment_work2 == NULL):
            raise MemoryError()
        for i, (duration, start_rate, end_rate) in enumerate(segments):
            if duration < 0 or start_rate < 0 or end_rate < 0:
                raise ValueError(f"segment {i}: durations and rates must not be negative")
            self.segment_start[i] = at
            self.segment_duration[i] = duration
            self.segment_from[i] = start_rate
            self.segment_to[i] = end_rate
            self.segment_work2[i] = work2
            work2 += <int128>(start_rate + end_rate) * duration
            at += duration
        self.segment_count = n
        self.end_us = at
        self.total_work2 = work2
        self.offset = offset
        self.stride = stride
        self.poisson = poisson
        self._set_weights(weights)
        self.random_state = <uint64_t>(int.from_bytes(os.urandom(8), "little") if seed is None else seed) | 1
        self.segment = 0
        self.over = False
        cdef double first_k = self._work_at(from_us) / ITERATION if from_us > 0 else 0.0
        if poisson:
            self.index = 0
            self.position = first_k + stride * self._exponential()
            self._place_poisson()
        else:
            self.index = 0 if first_k <= offset else <int64_t>ceil((first_k - offset) / stride)
            self._place_uniform()

    def __dealloc__(self):
        free(self.segment_start)
        free(self.segment_duration)
        free(self.segment_from)
        free(self.segment_to)
        free(self.segment_work2)
        free(self.cumulative)

    cdef _set_weights(self, weights):
        cdef int64_t divisor = 0
        cdef Py_ssize_t i
        for weight in weights:
            divisor = math.gcd(divisor, weight)
        reduced = [weight // divisor for weight in weights]
        total = sum(reduced)
        if total >= (1 << 31):
            raise ValueError("the block weights together must be under 2**31")
        self.block_count = len(reduced)
        self.cumulative = <int64_t *>malloc(self.block_count * sizeof(int64_t))
        if self.cumulative == NULL:
            raise MemoryError()
        running = 0
        for i, weight in enumerate(reduced):
            running += weight
            self.cumulative[i] = running
        self.total_weight = total
        multiplier = max(1, int(total * 0.6180339887498949))
        while math.gcd(multiplier, total) != 1:
            multiplier += 1
        self.multiplier = multiplier % total if total > 1 else 0

    cdef int block_of(self, int64_t k) noexcept:
        """The block of the fleet's iteration ``k``."""
        cdef int64_t slot, low = 0, high = self.block_count - 1, middle
        if self.block_count == 1:
            return 0
        slot = <int64_t>((<uint64_t>(k % self.total_weight) * <uint64_t>self.multiplier)
                         % <uint64_t>self.total_weight)
        while low < high:
            middle = (low + high) // 2
            if slot < self.cumulative[middle]:
                high = middle
            else:
                low = middle + 1
        return <int>low

    cdef double _work_at(self, int64_t t) noexcept:
        """``W(t)`` (an approximation, for a start partway through)."""
        cdef Py_ssize_t i
        cdef double tau, duration
        for i in range(self.segment_count):
            duration = self.segment_duration[i]
            if t < self.segment_start[i] + self.segment_duration[i]:
                tau = t - self.segment_start[i]
                return (<double>self.segment_work2[i] / 2.0 + self.segment_from[i] * tau
                        + (self.segment_to[i] - self.segment_from[i]) * tau * tau / (2.0 * duration))
        return <double>self.total_work2 / 2.0

    cdef bint _find_segment(self, double work2) noexcept:
        """Move ``segment`` to the one in which the work reaches ``work2``; false past the end."""
        while self.segment < self.segment_count:
            if work2 < <double>(self.segment_work2[self.segment]
                                + <int128>(self.segment_from[self.segment] + self.segment_to[self.segment])
                                * self.segment_duration[self.segment]):
                return True
            self.segment += 1
        return False

    cdef void _place_uniform(self) noexcept:
        cdef int64_t k = self.offset + self.stride * self.index
        cdef int128 target2 = <int128>k * (2 * ITERATION)
        cdef int128 rest2, work_end2
        cdef int64_t i, duration, start_rate, end_rate, tau
        cdef double a, b, c
        while True:
            if self.segment >= self.segment_count:
                self.over = True
                return
            i = self.segment
            work_end2 = (self.segment_work2[i]
                         + <int128>(self.segment_from[i] + self.segment_to[i]) * self.segment_duration[i])
            if target2 < work_end2:
                break
            self.segment += 1
        duration = self.segment_duration[i]
        start_rate = self.segment_from[i]
        end_rate = self.segment_to[i]
        rest2 = target2 - self.segment_work2[i]  # twice the work still to do in this segment
        if rest2 <= 0:
            tau = 0
        elif start_rate == end_rate:
            tau = <int64_t>ceil_div(rest2, 2 * <int128>start_rate)
        else:
            # (end - start) / duration * tau**2 + 2 * start * tau = rest2, in its stable form.
            a = <double>(end_rate - start_rate) / duration
            b = 2.0 * start_rate
            c = <double>rest2
            tau = <int64_t>ceil(2.0 * c / (b + sqrt(b * b + 4.0 * a * c)) - 1e-6)
            if tau > duration:
                tau = duration
        self.next_us = self.segment_start[i] + tau
        self.next_k = k
        self.next_block = self.block_of(k)
        if self.next_us >= self.end_us:
            self.over = True

    cdef double _exponential(self) noexcept:
        # xorshift64*, then -log(U) with U in (0, 1].
        cdef uint64_t x = self.random_state
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        self.random_state = x
        return -log(((x * <uint64_t>2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0)
                    + (1.0 / 9007199254740992.0))

    cdef void _place_poisson(self) noexcept:
        cdef double work2 = self.position * (2.0 * ITERATION)
        cdef double rest2, a, b, tau
        cdef Py_ssize_t i
        if not self._find_segment(work2):
            self.over = True
            return
        i = self.segment
        rest2 = work2 - <double>self.segment_work2[i]
        a = <double>(self.segment_to[i] - self.segment_from[i]) / self.segment_duration[i]
        b = 2.0 * self.segment_from[i]
        tau = 2.0 * rest2 / (b + sqrt(b * b + 4.0 * a * rest2)) if rest2 > 0 else 0.0
        if tau > self.segment_duration[i]:
            tau = self.segment_duration[i]
        self.next_us = self.segment_start[i] + <int64_t>ceil(tau - 1e-6)
        self.next_k = self.offset + self.stride * self.index
        self.next_block = self.block_of(self.next_k)
        if self.next_us >= self.end_us:
            self.over = True

    cdef void advance_c(self) noexcept:
        if self.over:
            return
        self.index += 1
        if self.poisson:
            self.position += self.stride * self._exponential()
            self._place_poisson()
        else:
            self._place_uniform()

    def advance(self):
        """Move to the next iteration."""
        self.advance_c()

    def take_until(self, int64_t until_us):
        """The iterations due before ``until_us`` from here, as ``(us, k, block)``; advances."""
        result = []
        while not self.over and self.next_us < until_us:
            result.append((self.next_us, self.next_k, self.next_block))
            self.advance_c()
        return result

    @property
    def duration_us(self):
        return self.end_us
