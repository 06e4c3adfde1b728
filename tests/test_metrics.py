"""The recorder's histograms agree with the hdrhistogram package on the same values."""
import math
import pickle

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from stressgrid._core.metrics import (COUNTS_LENGTH, HIGHEST, LOWEST, Histogram, Recorder,
                                      index_of_value, value_range_of_index)
from stressgrid.metrics import MetricsAggregate, rate_name
from tests.support.varint import varint

pytestmark = pytest.mark.unit

PERCENTILES = {"pc1": 1, "pc10": 10, "pc25": 25, "median": 50, "pc75": 75, "pc90": 90,
               "pc99": 99, "pc99_9": 99.9}

values_strategy = st.lists(st.integers(min_value=LOWEST, max_value=HIGHEST), min_size=1, max_size=300)


def reference(values):
    histogram = HdrHistogram(LOWEST, HIGHEST, 3)
    for value in values:
        histogram.record_value(value)
    return histogram


def assert_same_summary(ours, values):
    """Our summary of ``values`` is the hdrhistogram package's.

    Its percentiles come from one walk of its counts (``get_percentile_to_value_dict``, the
    same values as ``get_value_at_percentile``); its mean and standard deviation are its own
    definitions (each value taken at its bucket's median equivalent) summed over the values,
    rather than over its whole counts array twice: the same numbers, a fortieth of the time.
    """
    theirs = reference(values)
    summary = ours.summary()
    assert summary["count"] == theirs.get_total_count()
    percentiles = theirs.get_percentile_to_value_dict(list(PERCENTILES.values()))
    for name, percentile in PERCENTILES.items():
        assert summary[name] == percentiles[percentile], name
    assert summary["min"] == theirs.get_min_value()
    assert summary["max"] == theirs.get_max_value()
    medians = [theirs._hdr_median_equiv_value(value) for value in values]
    mean = sum(medians) / len(medians)
    assert summary["mean"] == pytest.approx(mean, rel=1e-9)
    stddev = math.sqrt(sum((median - mean) ** 2 for median in medians) / len(medians))
    assert summary["stddev"] == pytest.approx(stddev, rel=1e-6, abs=1e-6)


def test_layout_matches_hdrhistogram():
    theirs = HdrHistogram(LOWEST, HIGHEST, 3)
    assert COUNTS_LENGTH == theirs.counts_len
    for value in (1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 65535, 1_000_000, HIGHEST):
        assert index_of_value(value) == theirs._counts_index_for(value), value
        low, high = value_range_of_index(index_of_value(value))
        assert low == theirs.get_lowest_equivalent_value(value)
        assert high == theirs.get_highest_equivalent_value(value)


def test_fixed_values_summary():
    values = [1, 5, 5, 100, 999, 1000, 1001, 2500, 12345, 250_000, 59_999_999]
    ours = Histogram("x")
    ours.record_many(values)
    assert_same_summary(ours, values)


@settings(max_examples=150, deadline=None)
@given(values_strategy)
def test_summary_agrees_with_hdrhistogram(values):
    ours = Histogram("x")
    ours.record_many(values)
    assert_same_summary(ours, values)


@settings(max_examples=100, deadline=None)
@given(values_strategy, values_strategy)
def test_merge_is_exact(first, second):
    a, b = Histogram("a"), Histogram("b")
    a.record_many(first)
    b.record_many(second)
    merged = Histogram.decode(a.encode())
    merged.add_encoded(*b.encode())
    assert_same_summary(merged, first + second)
    direct = Histogram("all")
    direct.record_many(first + second)
    assert merged == direct


@settings(max_examples=100, deadline=None)
@given(values_strategy)
def test_encoding_round_trip(values):
    ours = Histogram("x")
    ours.record_many(values)
    assert Histogram.decode(ours.encode()) == ours
    assert pickle.loads(pickle.dumps(ours)) == ours


def test_out_of_range_values_are_clamped_and_counted():
    ours = Histogram("x")
    ours.record_many([0, -5, HIGHEST + 1, 10**12, 500])
    summary = ours.summary()
    assert summary["count"] == 5
    assert summary["clamped"] == 4
    assert summary["min"] == LOWEST
    assert summary["max"] == reference([HIGHEST]).get_max_value()
    # The clamped count survives the wire.
    assert Histogram.decode(ours.encode()).clamped_count == 4


def test_conversion_to_hdrhistogram_object():
    values = [3, 17, 17, 900, 45_000]
    converted = _ours(values).to_hdrhistogram()
    theirs = reference(values)
    for percentile in PERCENTILES.values():
        assert converted.get_value_at_percentile(percentile) == theirs.get_value_at_percentile(percentile)
    assert converted.get_total_count() == 5
    assert converted.get_min_value() == theirs.get_min_value()
    assert converted.get_max_value() == theirs.get_max_value()


def _ours(values):
    histogram = Histogram("x")
    histogram.record_many(values)
    return histogram


def test_empty_histogram_summary():
    summary = Histogram("x").summary()
    assert summary["count"] == 0 and summary["max"] == 0 and summary["median"] == 0
    assert Histogram("x").encode() == (b"", 0)


@pytest.mark.parametrize("data", [
    b"\x80",  # a varint cut short
    b"\x01",  # an index delta without its count
    b"\xff" * 11,  # a varint longer than 64 bits
    b"\x90\x88\x01\x01",  # a bucket past the last one
    b"\x00" + b"\x80" * 9 + b"\x01",  # a count of 2**63, past int64
])
def test_malformed_encoding_is_rejected_without_partial_merge(data):
    target = _ours([10, 20])
    before = target.copy()
    with pytest.raises(ValueError):
        target.add_encoded(data, 0)
    assert target == before


@settings(max_examples=200, deadline=None)
@given(values_strategy, st.data())
def test_an_encoding_bad_part_way_through_is_taken_back_whole(values, data):
    """Pairs before the bad one were already added: they are subtracted again."""
    encoded, _ = _ours(values).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    # A cut-off varint, or a bucket past the last one, after the good pairs.
    tail = data.draw(st.sampled_from([b"\x80", b"\x01", b"\x90\x88\x01\x01", b"\xff" * 11]))
    target = _ours([10, 20, 5_000_000])
    before = target.copy()
    with pytest.raises(ValueError):
        target.add_encoded(_whole_pairs(encoded, cut) + tail, 0)
    assert target == before
    assert target.summary() == before.summary()


def _whole_pairs(encoded, cut):
    """``encoded`` up to the last complete (index delta, count) pair before byte ``cut``."""
    varint_ends = [i + 1 for i, byte in enumerate(encoded) if not byte & 0x80]
    pair_ends = [0] + varint_ends[1::2]
    return encoded[:max(end for end in pair_ends if end <= cut)]


def test_recorder_snapshot_resets_and_keeps_objects():
    recorder = Recorder()
    latency = recorder.histogram("get_us")
    assert recorder.histogram("get_us") is latency
    latency.record(120)
    recorder.inc("response_count", 3)
    recorder.counter("idle_count")  # registered but never incremented
    first = recorder.snapshot()
    assert first["counters"] == {"response_count": 3}
    assert set(first["histograms"]) == {"get_us"}
    second = recorder.snapshot()
    assert second["counters"] == {} and second["histograms"] == {}
    latency.record(7)
    assert Histogram.decode(recorder.snapshot()["histograms"]["get_us"]).summary()["max"] == 7


def test_aggregate_merges_snapshots_exactly():
    workers = [Recorder() for _ in range(3)]
    everything = []
    for n, recorder in enumerate(workers):
        values = [n * 100 + i for i in range(1, 50)]
        everything += values
        recorder.histogram("conn_us").record_many(values)
        recorder.inc("conn_count", len(values))
    aggregate = MetricsAggregate()
    for recorder in workers:
        aggregate.add_snapshot(recorder.snapshot())
    assert aggregate.counter("conn_count") == len(everything)
    assert_same_summary(aggregate.histograms["conn_us"], everything)


@pytest.mark.parametrize("snapshot", [
    None, [], {"histograms": []}, {"counters": {"x_count": "1"}},
    {"histograms": {"a_us": (b"\x80", 0)}}, {"histograms": {"a_us": b"abc"}},
])
def test_aggregate_rejects_malformed_snapshots(snapshot):
    aggregate = MetricsAggregate()
    with pytest.raises(ValueError):
        aggregate.add_snapshot(snapshot)
    assert aggregate.counters == {} and aggregate.histograms == {}


def test_a_snapshot_bad_part_way_merges_nothing():
    aggregate = MetricsAggregate()
    first = Recorder()
    first.histogram("a_us").record_many([50, 60, 70])
    first.histogram("b_us").record_many([1000])
    aggregate.add_snapshot(first.snapshot())
    before = {name: (h.nonzero(), h.total_count, h.clamped_count, h.summary())
              for name, h in aggregate.histograms.items()}
    wide = Recorder()
    wide.histogram("a_us").record_many([1, 5_000_000])  # would widen a_us both ways
    snapshot = wide.snapshot()
    encoded = snapshot["histograms"]["a_us"][0]
    snapshot["histograms"]["a_us"] = (encoded, 7)
    snapshot["histograms"]["new_us"] = (encoded, 0)
    snapshot["histograms"]["b_us"] = (b"\x80", 0)  # truncated: after a_us and new_us merged
    with pytest.raises(ValueError, match="'b_us'.*truncated"):
        aggregate.add_snapshot(snapshot)
    after = {name: (h.nonzero(), h.total_count, h.clamped_count, h.summary())
             for name, h in aggregate.histograms.items()}
    assert after == before


def test_rate_names():
    assert rate_name("response_count") == "response_per_second"
    assert rate_name("conn_refused_error_count") == "conn_refused_error_per_second"



def test_add_encoded_refuses_counts_whose_sum_would_overflow_and_changes_nothing():
    top = 2 ** 63 - 1
    target = Histogram()
    target.record_many([100, 100, 5000])
    before = target.nonzero()
    index = before[0][0]
    for data in (varint(index) + varint(top) + varint(0) + varint(top),  # one bucket, twice
                 varint(index) + varint(top),  # on top of what the bucket already holds
                 varint(1) + varint(top) + varint(1) + varint(top)):  # the total
        with pytest.raises(ValueError, match="overflow"):
            target.add_encoded(data, 0)
        assert target.nonzero() == before and target.total_count == 3
    clamped = Histogram()
    clamped.add_encoded(b"", top)
    with pytest.raises(ValueError, match="clamped"):
        clamped.add_encoded(b"", 1)
    with pytest.raises(ValueError, match="overflow"):
        target.add_encoded(varint(index) + varint(6), 0, 5)  # more values than allowed
    target.add_encoded(varint(index) + varint(2) + varint(0) + varint(3), 0, 5)
    assert target.count_at_index(index) == before[0][1] + 5


def test_merging_histograms_saturates_instead_of_wrapping():
    big = Histogram()
    big.add_encoded(varint(7) + varint(2 ** 63 - 10))
    total = big.copy()
    total.add(big)
    assert total.count_at_index(7) == total.total_count == 2 ** 63 - 1


def test_response_counters_count_every_response_and_its_status_class():
    from stressgrid._core.metrics import STATUS_CLASS_COUNTERS
    from stressgrid.plan.constants import STATUS_CLASS_COUNTERS as BASE_NAMES
    assert [name[:-len("_count")] for name in STATUS_CLASS_COUNTERS] == list(BASE_NAMES)
    recorder = Recorder()
    responses = recorder.response_counters()
    assert recorder.response_counters() is responses   # one per recorder, kept by the cores
    for status in (100, 101, 200, 204, 299, 301, 304, 404, 499, 500, 503, 599, 600, 99, 0):
        responses.add(status)
    counters = recorder.snapshot()["counters"]
    assert counters == {"response_count": 15, "response_1xx_count": 2, "response_2xx_count": 3,
                        "response_3xx_count": 2, "response_4xx_count": 2, "response_5xx_count": 3}


def test_request_groups_are_one_per_name_and_bounded_per_worker():
    from stressgrid._core.metrics import MAX_REQUEST_GROUPS, REQUEST_GROUP_PREFIX
    from stressgrid.plan.constants import REQUEST_GROUP_PREFIX as PREFIX
    assert REQUEST_GROUP_PREFIX == PREFIX
    recorder = Recorder()
    login = recorder.request_group("login")
    assert recorder.request_group("login") is login and login.name == "login"
    # What a group records (named requests over HTTP/1 and HTTP/2 against real servers):
    # tests/http_parity/test_status_classes_and_checks.py.
    for n in range(1, MAX_REQUEST_GROUPS):
        recorder.request_group(f"n{n}")
    with pytest.raises(ValueError, match=f"at most {MAX_REQUEST_GROUPS} request names"):
        recorder.request_group("one_more")
