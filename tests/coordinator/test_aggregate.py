"""Aggregation, the CSV layout and the HdrHistogram logs, driven with real recorder snapshots."""
import csv
import io
import random

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from coordinator_app.aggregate import TelemetryAggregator
from coordinator_app.validate import InvalidMessage, TelemetryCheck
from coordinator_app.writers import RunInfo, csv_format
from coordinator_app.writers.archive import ArchiveWriter
from stressgrid import wire
from stressgrid._core.metrics import Histogram
from tests.coordinator.support import snapshot

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Gen:
    def __init__(self):
        self.active_devices = 0
        self.cpu_percent = 0.0
        self.cpu_pending = None
        self.suspect = False


def telemetry(snap, active=0, errors=None):
    # Through the real codec and checks, as the coordinator receives it.
    message = wire.decode(wire.encode(wire.Telemetry(run_id="", metrics=snap,
                                                     active_device_number=active, errors=errors or {})))
    return TelemetryCheck().check(message, capacity=1000)


def test_merges_are_exact_across_generators_seconds_and_intervals():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    generators = [Gen(), Gen(), Gen()]
    rng = random.Random(7)
    expected = Histogram()
    expected_count = 0
    aggregator.start_run()
    reports = []
    for second in range(5):
        for g in generators:
            values = [rng.randint(1, 5_000_000) for _ in range(rng.randint(0, 300))]
            expected.record_many(values)
            n = rng.randint(0, 50)
            expected_count += n
            aggregator.ingest(g, telemetry(snapshot({"body_us": values}, {"response_count": n}),
                                           active=10))
        clock.now += 1
        tick = aggregator.tick(generators)
        assert tick["active_device_number"] == 30 and tick["generator_count"] == 3
        if second == 2:
            reports.append(aggregator.cut_interval(generators))
    last, totals = aggregator.finish_run(generators)
    reports.append(last)
    merged = Histogram()
    for report in reports:
        merged.add(report.histograms["body_us"])
    assert merged == expected
    assert totals.histograms["body_us"] == expected
    assert sum(r.counters.get("response_count", 0) for r in reports) == expected_count
    assert totals.totals["response_count"] == expected_count == reports[-1].totals["response_count"]
    assert [r.clock for r in reports] == [0, 1]


def test_a_malformed_message_is_rejected_whole():
    aggregator = TelemetryAggregator()
    gen = Gen()
    good = snapshot({"conn_us": [10, 20]}, {"conn_count": 2})
    bad = dict(good)
    bad["histograms"] = dict(good["histograms"])
    bad["histograms"]["zz_us"] = (b"\xff\xff", 0)  # truncated varint, after a good histogram
    with pytest.raises(ValueError):
        aggregator.ingest(gen, telemetry(bad))
    assert aggregator.rejected == 1
    for broken in ({"histograms": {"x": "nope"}}, {"counters": {"c": -1}}, {"counters": {"c": 1.5}},
                   {"histograms": []}, {"histograms": {"x": (b"", -1)}}):
        with pytest.raises(InvalidMessage):
            telemetry(broken)
    assert not aggregator.pending.histograms and not aggregator.pending.counters
    aggregator.ingest(gen, telemetry(good))
    tick = aggregator.tick([gen])
    assert tick["histograms"]["conn_us"]["count"] == 2
    assert tick["counters"]["conn_count"]["total"] == 2


def test_cpu_max_per_generator_flags_over_80_percent():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    cool, hot = Gen(), Gen()
    aggregator.ingest(cool, telemetry(snapshot({"cpu_percent": [20, 30]})))
    aggregator.ingest(hot, telemetry(snapshot({"cpu_percent": [50, 91]})))
    aggregator.ingest(hot, telemetry(snapshot({"cpu_percent": [60]})))  # peak of the second counts
    clock.now += 1
    tick = aggregator.tick([cool, hot])
    assert cool.cpu_percent == 30 and hot.cpu_percent == 91
    assert tick["max_cpu_percent"] == 91 and tick["cpu_warning"] is True
    assert tick["histograms"]["cpu_percent"]["count"] == 5
    clock.now += 1
    aggregator.ingest(hot, telemetry(snapshot({"cpu_percent": [12]})))
    clock.now += 1
    tick = aggregator.tick([cool, hot])
    assert hot.cpu_percent == 12 and cool.cpu_percent == 30  # no report: last value stays
    assert tick["cpu_warning"] is False


def test_loop_lag_p99_of_all_workers_is_told_beside_cpu_and_flagged_over_100_ms():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    aggregator.start_run()
    quick, blocked = Gen(), Gen()
    aggregator.ingest(quick, telemetry(snapshot({"worker_loop_lag_us": [200] * 90})))
    aggregator.ingest(blocked, telemetry(snapshot({"worker_loop_lag_us": [300_000] * 10})))
    clock.now += 1
    tick = aggregator.tick([quick, blocked])
    assert 299_000 <= tick["loop_lag_p99_us"] <= 301_000 and tick["loop_lag_warning"] is True
    aggregator.ingest(quick, telemetry(snapshot({"worker_loop_lag_us": [200] * 100})))
    clock.now += 1
    tick = aggregator.tick([quick, blocked])
    assert tick["loop_lag_p99_us"] < 1000 and tick["loop_lag_warning"] is False
    assert 299_000 <= aggregator.maxima["max_loop_lag_p99_us"] <= 301_000  # the worst second stays


def test_error_lines_keep_the_first_of_each_kind_with_counts():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    gen = Gen()
    aggregator.start_run()
    aggregator.ingest(gen, telemetry(snapshot(counters={"key_error_count": 2}),
                                     errors={"key_error_count": "line 3: x['a'] -> KeyError: 'a'"}))
    aggregator.ingest(gen, telemetry(snapshot(counters={"key_error_count": 1}),
                                     errors={"key_error_count": "a later line"}))
    clock.now += 1
    tick = aggregator.tick([gen])
    assert tick["errors"] == {"key_error_count": {"count": 3, "line": "line 3: x['a'] -> KeyError: 'a'"}}
    _, totals = aggregator.finish_run([gen])
    assert totals.error_report()["key_error_count"]["count"] == 3


def test_per_second_rates_and_run_maxima():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    gen = Gen()
    aggregator.start_run()
    for n in (10, 40, 20):
        aggregator.ingest(gen, telemetry(snapshot(counters={"response_count": n}), active=n))
        clock.now += 2  # two-second ticks: rates are per second
        tick = aggregator.tick([gen])
        assert tick["counters"]["response_count"]["per_second"] == n / 2
    _, totals = aggregator.finish_run([gen])
    assert totals.maxima["response_per_second"] == 20
    assert totals.maxima["active_device_number"] == 40
    assert totals.totals == {"response_count": 70}


def test_the_last_partial_second_is_told_only_when_something_arrived_in_it():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    gen = Gen()
    aggregator.start_run()
    clock.now += 1
    aggregator.tick([gen])
    clock.now += 0.25
    assert aggregator.last_second([gen]) is None  # nothing since the tick
    aggregator.ingest(gen, telemetry(snapshot({"body_us": [10, 20]}, {"response_count": 8}), active=2))
    clock.now += 0.25
    last = aggregator.last_second([gen])
    assert last["histograms"]["body_us"]["count"] == 2
    # A generator's once-a-second report in a quarter second is not 32 responses a second.
    assert last["counters"]["response_count"]["per_second"] == 8
    _, totals = aggregator.finish_run([gen])
    assert totals.maxima["response_per_second"] == 8


def test_csv_has_clock_then_sorted_keys_with_histograms_expanded_in_place():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    gen = Gen()
    started = clock()
    aggregator.start_run()
    aggregator.ingest(gen, telemetry(snapshot({"conn_us": [100, 300], "body_us": [5]},
                                              {"response_count": 4, "conn_count": 2}), active=3))
    clock.now += 2
    first = aggregator.cut_interval([gen])
    aggregator.ingest(gen, telemetry(snapshot({"conn_us": [200]}, {"zzz_count": 1}), active=3))
    clock.now += 1
    last, _ = aggregator.finish_run([gen])
    rows = [csv_format.interval_row(first, started), csv_format.interval_row(last, started)]
    table = list(csv.reader(io.StringIO(csv_format.render(rows))))
    suffixes = ["", "_min", "_pc1", "_pc10", "_pc25", "_median", "_pc75", "_pc90", "_pc99",
                "_max", "_stddev"]
    assert table[0] == (["clock", "elapsed_s", "active_device_number"] + ["body_us" + s for s in suffixes]
                        + ["conn_count", "conn_per_second"] + ["conn_us" + s for s in suffixes]
                        + ["response_count", "response_per_second", "zzz_count", "zzz_per_second"])
    row0 = dict(zip(table[0], table[1]))
    row1 = dict(zip(table[0], table[2]))
    assert row0["clock"] == "0" and row1["clock"] == "1"
    assert row0["elapsed_s"] == "2.0" and row1["elapsed_s"] == "3.0"
    assert row0["conn_us"] == "200.0" and row0["conn_us_min"] == "100" and row0["conn_us_max"] == "300"
    assert row0["conn_count"] == "2" and float(row0["conn_per_second"]) == 1.0
    assert row0["response_count"] == "4" and float(row0["response_per_second"]) == 2.0
    assert row0["zzz_count"] == "0"
    # Cumulative counters carry over; a histogram absent from an interval is empty.
    assert row1["response_count"] == "4" and float(row1["response_per_second"]) == 0.0
    assert row1["zzz_count"] == "1" and row1["body_us"] == ""
    assert row1["conn_us_median"] == "200" and row0["active_device_number"] == "3"


def test_a_bad_histogram_mid_message_is_undone_and_its_sender_validated_from_then_on():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    honest, broken = Gen(), Gen()
    expected = Histogram()
    for values in ([10, 20, 30], [40_000, 50]):
        expected.record_many(values)
        aggregator.ingest(honest, telemetry(snapshot({"a_us": values, "b_us": values}, {"n_count": 1})))
    bad = snapshot({"a_us": [999_999], "b_us": [7]}, {"n_count": 100})
    bad["histograms"]["b_us"] = (b"\x01", 0)  # a_us merges, then b_us turns out truncated
    with pytest.raises(ValueError):
        aggregator.ingest(broken, telemetry(bad))
    assert broken.suspect and not honest.suspect
    bad2 = snapshot({"a_us": [123]})
    bad2["histograms"]["z_us"] = (b"\x80\x80", 0)
    with pytest.raises(ValueError):
        aggregator.ingest(broken, telemetry(bad2))  # validated first: nothing to undo
    aggregator.ingest(broken, telemetry(snapshot({"a_us": [5]}, {"n_count": 1})))
    expected.record(5)
    clock.now += 1
    tick = aggregator.tick([honest, broken])
    assert tick["histograms"]["a_us"]["count"] == expected.total_count == 6
    assert tick["histograms"]["a_us"]["max"] == expected.max
    assert tick["histograms"]["b_us"]["count"] == 5
    assert tick["counters"]["n_count"]["total"] == 3
    assert aggregator.rejected == 2 and aggregator.messages == 3


def test_a_new_run_starts_with_no_telemetry_or_rates_from_before_it():
    clock = Clock()
    aggregator = TelemetryAggregator(clock, clock)
    generator = Gen()
    aggregator.ingest(generator, telemetry(snapshot({"body_us": [5]}, {"response_count": 40})))
    clock.now += 1
    assert aggregator.tick([generator])["counters"]["response_count"]["total"] == 40
    # Telemetry that arrives between the last tick and the run's start is not the run's.
    aggregator.ingest(generator, telemetry(snapshot({"body_us": [7]}, {"response_count": 9})))
    aggregator.start_run()
    assert aggregator.latest == {}
    clock.now += 1
    tick = aggregator.tick([generator])
    assert tick["counters"] == {} and tick["histograms"] == {}


def test_an_hdr_log_whose_first_interval_starts_with_the_run_keeps_that_interval(tmp_path):
    # The run starts at a time whose milliseconds round up: the log's StartTime must not
    # then lie after its first interval (a reader skips intervals before the start).
    started = 1_700_000_000.1236
    clock = Clock()
    aggregator = TelemetryAggregator(clock, lambda: started + clock.now - 1000.0)
    gen = Gen()
    aggregator.start_run()
    aggregator.ingest(gen, telemetry(snapshot({"conn_us": [100, 200, 300]})))
    clock.now += 1
    report = aggregator.cut_interval([gen])
    assert report.started_at == started
    writer = ArchiveWriter(tmp_path)
    run = RunInfo(id="hdr", name="hdr", plan={}, started_at=started, report_interval_ms=1000)
    writer.start(run)
    writer.interval(run, report)
    writer.close()
    reader = HistogramLogReader(str(tmp_path / "runs" / "hdr" / "hdr" / "conn_us.hlog"),
                                HdrHistogram(1, 60_000_000, 3))
    interval = reader.get_next_interval_histogram()
    assert interval is not None and interval.get_total_count() == 3
