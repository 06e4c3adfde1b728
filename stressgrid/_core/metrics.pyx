# cython: freethreading_compatible = False
"""HDR histograms, counters and the per-worker recorder.

The hot path is ``Histogram.record_c`` (a couple of integer operations and one
array increment) and ``Counter.value += n``; protocol cores hold these objects
directly so no dictionary lookup happens per event.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.math cimport sqrt
from libc.stdint cimport INT64_MAX, int64_t, uint64_t, uint8_t
from libc.string cimport memset

import math

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

LOWEST = LOWEST_VALUE
HIGHEST = HIGHEST_VALUE
SIGNIFICANT_FIGURES = 3
COUNTS_LENGTH = COUNTS_LEN

# Percentiles every summary reports, in CSV column order.
PERCENTILES = (
    ("pc1", 1.0), ("pc10", 10.0), ("pc25", 25.0), ("median", 50.0),
    ("pc75", 75.0), ("pc90", 90.0), ("pc99", 99.0), ("pc99_9", 99.9),
)


cdef inline int64_t saturating_add(int64_t a, int64_t b) noexcept nogil:
    # Both are counts (never negative).
    return a + b if b <= INT64_MAX - a else INT64_MAX


cdef inline Py_ssize_t index_of(int64_t value) noexcept nogil:
    # Same arithmetic as HdrHistogram._counts_index_for with unit magnitude 0.
    cdef int bucket = 64 - __builtin_clzll(<unsigned long long>(value | SUB_BUCKET_MASK)) \
        - (SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1)
    cdef int64_t sub_bucket = value >> bucket
    return ((bucket + 1) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) + (sub_bucket - SUB_BUCKET_HALF_COUNT)


cdef inline int bucket_of_index(Py_ssize_t index) noexcept nogil:
    cdef int bucket = (index >> SUB_BUCKET_HALF_COUNT_MAGNITUDE) - 1
    return bucket if bucket > 0 else 0


cdef inline int64_t lowest_value_at(Py_ssize_t index) noexcept nogil:
    cdef int bucket = (index >> SUB_BUCKET_HALF_COUNT_MAGNITUDE) - 1
    cdef int64_t sub_bucket = (index & (SUB_BUCKET_HALF_COUNT - 1)) + SUB_BUCKET_HALF_COUNT
    if bucket < 0:
        sub_bucket -= SUB_BUCKET_HALF_COUNT
        bucket = 0
    return sub_bucket << bucket


cdef inline int64_t highest_value_at(Py_ssize_t index) noexcept nogil:
    return lowest_value_at(index) + (<int64_t>1 << bucket_of_index(index)) - 1


cdef inline int64_t median_value_at(Py_ssize_t index) noexcept nogil:
    return lowest_value_at(index) + ((<int64_t>1 << bucket_of_index(index)) >> 1)


def value_range_of_index(Py_ssize_t index):
    """Lowest and highest value that land in bucket ``index``."""
    if index < 0 or index >= COUNTS_LEN:
        raise IndexError(index)
    return lowest_value_at(index), highest_value_at(index)


def index_of_value(int64_t value):
    """Bucket index of ``value`` after clamping to the recordable range."""
    if value < LOWEST_VALUE:
        value = LOWEST_VALUE
    elif value > HIGHEST_VALUE:
        value = HIGHEST_VALUE
    return index_of(value)


cdef inline uint8_t *write_varint(uint8_t *out, uint64_t value) noexcept nogil:
    while value >= 0x80:
        out[0] = <uint8_t>(value & 0x7f) | 0x80
        out += 1
        value >>= 7
    out[0] = <uint8_t>value
    return out + 1


cdef inline const uint8_t *read_varint(const uint8_t *p, const uint8_t *end,
                                       uint64_t *out) noexcept nogil:
    # NULL when the varint is cut short or longer than 64 bits. Most index deltas and
    # counts fit one byte, so that case is tested first.
    cdef uint64_t value = 0
    cdef int shift = 0
    cdef uint8_t byte
    if p < end and p[0] < 0x80:
        out[0] = p[0]
        return p + 1
    while p < end and shift <= 63:
        byte = p[0]
        p += 1
        value |= (<uint64_t>(byte & 0x7f)) << shift
        if not (byte & 0x80):
            out[0] = value
            return p
        shift += 7
    return NULL


cdef class Histogram:
    """Counts of microsecond values in the shared HDR bucket layout.

    Values below 1 us or above 60 s are clamped into range and counted in
    ``clamped``; nothing recorded is ever dropped.
    """

    def __cinit__(self, str name=""):
        self.counts = <int64_t *>PyMem_Malloc(COUNTS_LEN * sizeof(int64_t))
        if self.counts == NULL:
            raise MemoryError()
        memset(self.counts, 0, COUNTS_LEN * sizeof(int64_t))
        self.name = name
        self.min_index = COUNTS_LEN
        self.max_index = -1

    def __dealloc__(self):
        PyMem_Free(self.counts)

    cdef void record_c(self, int64_t value) noexcept:
        cdef Py_ssize_t index
        if value < LOWEST_VALUE:
            value = LOWEST_VALUE
            self.clamped += 1
        elif value > HIGHEST_VALUE:
            value = HIGHEST_VALUE
            self.clamped += 1
        index = index_of(value)
        self.counts[index] += 1
        self.total += 1
        if index < self.min_index:
            self.min_index = index
        if index > self.max_index:
            self.max_index = index

    def record(self, int64_t value):
        """Record one value in microseconds."""
        self.record_c(value)

    def record_many(self, values):
        """Record every value of an iterable (used by tests and tools)."""
        cdef int64_t value
        for value in values:
            self.record_c(value)

    @property
    def total_count(self):
        return self.total

    @property
    def clamped_count(self):
        return self.clamped

    def __len__(self):
        return self.total

    cdef void clear(self) noexcept:
        if self.max_index >= 0:
            memset(self.counts + self.min_index, 0,
                   (self.max_index - self.min_index + 1) * sizeof(int64_t))
        self.total = 0
        self.clamped = 0
        self.min_index = COUNTS_LEN
        self.max_index = -1

    def reset(self):
        """Forget every recorded value."""
        self.clear()

    cdef void add_histogram(self, Histogram other) noexcept:
        cdef Py_ssize_t i
        # Saturating: the wire cannot make one merge overflow (``add_encoded``), but sums
        # over a long run must not wrap either.
        for i in range(other.min_index, other.max_index + 1):
            self.counts[i] = saturating_add(self.counts[i], other.counts[i])
        self.total = saturating_add(self.total, other.total)
        self.clamped = saturating_add(self.clamped, other.clamped)
        if other.min_index < self.min_index:
            self.min_index = other.min_index
        if other.max_index > self.max_index:
            self.max_index = other.max_index

    def add(self, Histogram other not None):
        """Add another histogram's counts to this one (an exact merge)."""
        self.add_histogram(other)

    def count_at_index(self, Py_ssize_t index):
        if index < 0 or index >= COUNTS_LEN:
            raise IndexError(index)
        return self.counts[index]

    def nonzero(self):
        """``(index, count)`` for every non-empty bucket, ascending."""
        cdef Py_ssize_t i
        return [(i, self.counts[i]) for i in range(self.min_index, self.max_index + 1)
                if self.counts[i]]

    # -- wire form -------------------------------------------------------

    def encode(self):
        """Sparse form: varint pairs of (index delta, count), clamped count.

        Returns ``(bytes, clamped)``; ``Histogram.decode`` or ``add_encoded``
        take it back.
        """
        cdef Py_ssize_t i, previous = 0, nonzero = 0
        if self.max_index < 0:
            return (b"", self.clamped)
        for i in range(self.min_index, self.max_index + 1):
            if self.counts[i]:
                nonzero += 1
        buffer = PyBytes_FromStringAndSize(NULL, nonzero * 20)
        cdef uint8_t *start = <uint8_t *>PyBytes_AS_STRING(buffer)
        cdef uint8_t *out = start
        for i in range(self.min_index, self.max_index + 1):
            if self.counts[i]:
                out = write_varint(out, <uint64_t>(i - previous))
                out = write_varint(out, <uint64_t>self.counts[i])
                previous = i
        return (buffer[:out - start], self.clamped)

    def add_encoded(self, bytes data not None, int64_t clamped=0, int64_t max_count=INT64_MAX):
        """Add a histogram in its sparse wire form to this one.

        Raises ``ValueError`` on a truncated or out-of-range encoding, on one
        that holds more than ``max_count`` values, and on one whose counts
        would overflow a bucket, the total or the clamped count of this
        histogram; this histogram is then unchanged.
        """
        cdef const uint8_t *start = <const uint8_t *>PyBytes_AS_STRING(data)
        cdef const uint8_t *end = start + PyBytes_GET_SIZE(data)
        cdef const uint8_t *p = start
        cdef const uint8_t *applied = start
        cdef uint64_t delta, count
        cdef Py_ssize_t index = 0, low = COUNTS_LEN, high = -1
        cdef int64_t added = 0
        # The most this encoding may add: its own cap, and what the total can still take.
        cdef int64_t room = INT64_MAX - self.total
        if clamped < 0:
            raise ValueError("negative clamped count")
        if clamped > INT64_MAX - self.clamped:
            raise ValueError("histogram clamped count overflows")
        if max_count < room:
            room = max_count
        # One pass that applies as it decodes (the coordinator's merge is this loop); a bad
        # pair part-way through is undone below, so a bad message never half-merges.
        while p < end:
            p = read_varint(p, end, &delta)
            if p != NULL:
                p = read_varint(p, end, &count)
            if p == NULL:
                self.subtract_encoded(start, applied)
                raise ValueError("truncated histogram encoding")
            if delta >= COUNTS_LEN or index + <Py_ssize_t>delta >= COUNTS_LEN:
                self.subtract_encoded(start, applied)
                raise ValueError("histogram bucket out of range")
            # Pairs may repeat a bucket (delta 0), so each sum is checked, not just each count.
            if count > <uint64_t>(room - added) or \
                    <int64_t>count > INT64_MAX - self.counts[index + <Py_ssize_t>delta]:
                self.subtract_encoded(start, applied)
                raise ValueError("histogram counts overflow")
            index += <Py_ssize_t>delta
            self.counts[index] += <int64_t>count
            added += <int64_t>count
            if index < low:
                low = index
            high = index
            applied = p
        self.total += added
        self.clamped += clamped
        if low < self.min_index:
            self.min_index = low
        if high > self.max_index:
            self.max_index = high

    cdef int64_t subtract_encoded(self, const uint8_t *p, const uint8_t *end) noexcept:
        # Takes back the bucket counts of pairs add_encoded applied (all of them, or those before
        # it met a bad one); they decoded cleanly once, so they do again. Returns their sum.
        cdef uint64_t delta, count
        cdef Py_ssize_t index = 0
        cdef int64_t taken = 0
        while p < end:
            p = read_varint(p, end, &delta)
            p = read_varint(p, end, &count)
            index += <Py_ssize_t>delta
            self.counts[index] -= <int64_t>count
            taken += <int64_t>count
        return taken

    cdef void take_back_encoded(self, bytes data, int64_t clamped, Py_ssize_t min_index,
                                Py_ssize_t max_index) noexcept:
        # Undoes a whole add_encoded of ``data`` that succeeded, bounds (as they were before it) included.
        cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
        self.total -= self.subtract_encoded(p, p + PyBytes_GET_SIZE(data))
        self.clamped -= clamped
        self.min_index = min_index
        self.max_index = max_index

    @classmethod
    def decode(cls, encoded, str name=""):
        """Build a histogram from ``encode()``'s output."""
        data, clamped = encoded
        histogram = cls(name)
        histogram.add_encoded(data, clamped)
        return histogram

    # -- statistics (same definitions as the hdrhistogram package) -------

    cdef int64_t value_at_percentile_c(self, double percentile) noexcept:
        cdef int64_t target
        cdef int64_t running = 0
        cdef Py_ssize_t i
        if self.total == 0:
            return 0
        if percentile > 100.0:
            percentile = 100.0
        target = <int64_t>((percentile * self.total / 100.0) + 0.5)
        if target < 1:
            target = 1
        for i in range(self.min_index, self.max_index + 1):
            running += self.counts[i]
            if running >= target:
                if percentile:
                    return highest_value_at(i)
                return lowest_value_at(i)
        return 0

    def value_at_percentile(self, double percentile):
        return self.value_at_percentile_c(percentile)

    @property
    def min(self):
        return lowest_value_at(self.min_index) if self.total else 0

    @property
    def max(self):
        return highest_value_at(self.max_index) if self.total else 0

    @property
    def mean(self):
        cdef Py_ssize_t i
        cdef double total = 0.0
        if not self.total:
            return 0.0
        for i in range(self.min_index, self.max_index + 1):
            if self.counts[i]:
                total += <double>self.counts[i] * <double>median_value_at(i)
        return total / self.total

    @property
    def stddev(self):
        cdef Py_ssize_t i
        cdef double mean, deviation, total = 0.0
        if not self.total:
            return 0.0
        mean = self.mean
        for i in range(self.min_index, self.max_index + 1):
            if self.counts[i]:
                deviation = <double>median_value_at(i) - mean
                total += deviation * deviation * self.counts[i]
        return sqrt(total / self.total)

    def summary(self):
        """Dict of count, mean, min, pc1..pc99, pc99_9, max, stddev, clamped."""
        cdef int64_t running = 0
        cdef int64_t target
        cdef Py_ssize_t i, p = 0
        cdef double percentile
        result = {"count": self.total, "mean": self.mean, "min": self.min}
        # One pass over the buckets for every percentile.
        values = {}
        if self.total:
            i = self.min_index
            for name, percentile in PERCENTILES:
                target = <int64_t>((percentile * self.total / 100.0) + 0.5)
                if target < 1:
                    target = 1
                while running < target and i <= self.max_index:
                    running += self.counts[i]
                    i += 1
                values[name] = highest_value_at(i - 1)
        else:
            for name, _ in PERCENTILES:
                values[name] = 0
        result.update(values)
        result["max"] = self.max
        result["stddev"] = self.stddev
        result["clamped"] = self.clamped
        return result

    def to_hdrhistogram(self):
        """The same counts as an ``hdrh.histogram.HdrHistogram``.

        Lets the `hdrhistogram` package's percentile code and log format run
        on our data.
        """
        from hdrh.histogram import HdrHistogram
        cdef Py_ssize_t i
        result = HdrHistogram(LOWEST_VALUE, HIGHEST_VALUE, SIGNIFICANT_FIGURES)
        if self.total:
            for i in range(self.min_index, self.max_index + 1):
                if self.counts[i]:
                    result.counts[i] = self.counts[i]
            result.set_internal_tacking_values(self.min_index, self.max_index, self.total)
        return result

    def copy(self):
        cdef Histogram result = Histogram(self.name)
        result.add_histogram(self)
        return result

    def __eq__(self, other):
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.total == (<Histogram>other).total
                and self.clamped == (<Histogram>other).clamped
                and self.nonzero() == other.nonzero())

    def __repr__(self):
        return f"<Histogram {self.name!r} count={self.total}>"

    def __reduce__(self):
        return (Histogram.decode, (self.encode(), self.name))


def add_encoded_all(list merges not None):
    """Add each ``(histogram, data, clamped)`` of ``merges`` as ``Histogram.add_encoded`` does:
    all of them, or, when one is bad, none (those before it are taken back) and ``ValueError``
    naming the histogram.

    One snapshot's histograms merge this way without a decoded copy of each: a histogram
    owns 139 KB of buckets, and allocating and freeing one per merge cost more than the merge.
    """
    cdef Histogram histogram
    cdef list applied = []
    cdef Py_ssize_t min_index, max_index
    for histogram, data, clamped in merges:
        min_index = histogram.min_index
        max_index = histogram.max_index
        try:
            histogram.add_encoded(data, clamped)
        except (ValueError, OverflowError) as exc:
            failed = histogram.name
            for histogram, data, clamped, min_index, max_index in reversed(applied):
                histogram.take_back_encoded(data, clamped, min_index, max_index)
            raise ValueError(f"histogram {failed!r}: {exc}") from None
        applied.append((histogram, data, clamped, min_index, max_index))


cdef class Counter:
    """A cumulative event count; hot paths do ``counter.value += n``."""

    def __cinit__(self, str name=""):
        self.name = name
        self.value = 0

    def inc(self, int64_t n=1):
        self.value += n

    def __repr__(self):
        return f"<Counter {self.name!r} value={self.value}>"


# Every HTTP response counts in ``response_count`` and in its status class's counter.
RESPONSE_COUNTER = "response_count"
STATUS_CLASS_COUNTERS = ("response_1xx_count", "response_2xx_count", "response_3xx_count",
                         "response_4xx_count", "response_5xx_count")


@cython.final
cdef class ResponseCounters:
    """A recorder's ``response_count`` and its status classes, ``response_1xx_count`` to
    ``response_5xx_count``: ``count(status)`` adds one response to both (a status outside
    100-599 to the total only)."""

    def __cinit__(self, Recorder recorder not None, str prefix=""):
        self.total = recorder.counter(prefix + RESPONSE_COUNTER)
        self.informational, self.success, self.redirection, self.client_error, self.server_error = \
            [recorder.counter(prefix + name) for name in STATUS_CLASS_COUNTERS]

    cdef void count(self, int status) noexcept:
        self.total.value += 1
        if status < 100 or status >= 600:
            return
        if status < 200:
            self.informational.value += 1
        elif status < 300:
            self.success.value += 1
        elif status < 400:
            self.redirection.value += 1
        elif status < 500:
            self.client_error.value += 1
        else:
            self.server_error.value += 1

    def add(self, int status):
        """``count`` from Python (the protocols written in Python, and tests)."""
        self.count(status)


# A request a script names (``get(path, name="login")``) also counts in its group's metrics,
# ``request_<name>_headers_us``, ``request_<name>_body_us``, ``request_<name>_response_count``
# and its status classes. Each group holds two histograms, so a worker keeps at most this many.
REQUEST_GROUP_PREFIX = "request_"
MAX_REQUEST_GROUPS = 100


@cython.final
cdef class RequestGroup:
    """The metrics of the requests a script gave one name (see ``REQUEST_GROUP_PREFIX``)."""

    def __cinit__(self, Recorder recorder not None, str name not None):
        cdef str prefix = f"{REQUEST_GROUP_PREFIX}{name}_"
        self.name = name
        self.intended_headers_name = prefix + "intended_headers_us"
        self.headers = recorder.histogram(prefix + "headers_us")
        self.body = recorder.histogram(prefix + "body_us")
        self.responses = ResponseCounters(recorder, prefix)

    cdef void record(self, int64_t sent_us, int64_t headers_us, int64_t done_us, int status) noexcept:
        """A whole response of this group: sent, headers and done on the monotonic clock (us)."""
        self.headers.record_c(headers_us - sent_us)
        self.body.record_c(done_us - headers_us)
        self.responses.count(status)


cdef class Recorder:
    """Every metric of one worker: histograms, counters and gauges by name.

    ``histogram(name)`` / ``counter(name)`` return the same object for a name
    for the life of the recorder, so callers can keep it. ``snapshot()``
    returns the deltas since the previous snapshot and resets them.
    """

    def __cinit__(self):
        self.histograms = {}
        self.counters = {}
        self.gauges = {}
        self.groups = {}

    cpdef Histogram histogram(self, str name):
        cdef object found = self.histograms.get(name)
        if found is None:
            found = Histogram(name)
            self.histograms[name] = found
        return <Histogram>found

    cpdef RequestGroup request_group(self, str name):
        """The one ``RequestGroup`` of ``name`` (a checked metric key); ``ValueError`` past
        ``MAX_REQUEST_GROUPS`` names."""
        cdef object found = self.groups.get(name)
        if found is None:
            if len(self.groups) >= MAX_REQUEST_GROUPS:
                raise ValueError(f"request name {name!r}: a worker keeps at most {MAX_REQUEST_GROUPS} "
                                 f"request names")
            found = self.groups[name] = RequestGroup(self, name)
        return <RequestGroup>found

    cpdef ResponseCounters response_counters(self):
        """The recorder's one ``ResponseCounters``."""
        if self.responses is None:
            self.responses = ResponseCounters(self)
        return self.responses

    cpdef Counter counter(self, str name):
        cdef object found = self.counters.get(name)
        if found is None:
            found = Counter(name)
            self.counters[name] = found
        return <Counter>found

    def record(self, str name, int64_t value):
        """Record ``value`` (us) in histogram ``name``."""
        self.histogram(name).record_c(value)

    def inc(self, str name, int64_t n=1):
        """Add ``n`` to counter ``name``."""
        cdef Counter counter = self.counter(name)
        counter.value += n

    def set_gauge(self, str name, value):
        self.gauges[name] = value

    def snapshot(self):
        """Deltas since the last snapshot in wire form, then reset.

        ``{"histograms": {name: (bytes, clamped)}, "counters": {name: int},
        "gauges": {name: number}}``; empty histograms and zero counters are
        left out.
        """
        cdef Histogram histogram
        cdef Counter counter
        histograms = {}
        counters = {}
        for name, histogram in self.histograms.items():
            if histogram.total:
                histograms[name] = histogram.encode()
                histogram.clear()
        for name, counter in self.counters.items():
            if counter.value:
                counters[name] = counter.value
                counter.value = 0
        return {"histograms": histograms, "counters": counters, "gauges": dict(self.gauges)}
