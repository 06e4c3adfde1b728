"""Checks of what generators send, and fuzzing of the whole ingest path behind them.

The fuzz tests drive decode -> validate -> merge -> the CSV and HdrHistogram
log writers with arbitrary msgpack and arbitrary histogram encodings: the
only exceptions allowed are ``WireError`` and ``ValueError`` (validation),
and whatever was accepted must still be written.
"""
import tempfile

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator_app import run_scope
from coordinator_app.aggregate import TelemetryAggregator
from coordinator_app.registry import Generator
from coordinator_app.validate import (MAX_COUNTER_VALUE, MAX_HISTOGRAM_VALUES, InvalidMessage,
                                      TelemetryCheck, check_event, check_register)
from coordinator_app.writers import FinalReport, RunInfo
from coordinator_app.writers.archive import ArchiveWriter
from stressgrid import __version__, wire
from tests.coordinator.support import snapshot
from tests.support.varint import varint


def register(**fields):
    values = {"generator_id": "gen-1.a_b", "version": __version__, "cores": 4, "workers": 4,
              "capacity": 1000, **fields}
    return wire.Register(**values)


def telemetry(metrics=None, active=0, errors=None, run_id="run-1"):
    return wire.Telemetry(run_id=run_id, metrics=metrics or snapshot(), active_device_number=active,
                          errors=errors or {})


def test_a_good_register_passes():
    check_register(register())
    check_register(register(generator_id="x" * 64, cores=1, workers=1, capacity=1))


@pytest.mark.parametrize("fields, named", [
    ({"generator_id": ""}, "generator_id"),
    ({"generator_id": "x" * 65}, "generator_id"),
    ({"generator_id": "<img src=x onerror=alert(1)>"}, "generator_id"),
    ({"generator_id": "a/b"}, "generator_id"),
    ({"version": ""}, "version"),
    ({"version": "1\n2"}, "version"),
    ({"cores": -5}, "cores"),
    ({"workers": 0}, "workers"),
    ({"capacity": 2 ** 64 - 1}, "capacity"),
    ({"capacity": 0}, "capacity"),
])
def test_a_bad_register_is_refused_naming_the_field(fields, named):
    with pytest.raises(InvalidMessage, match=named):
        check_register(register(**fields))


def test_events_need_a_metric_like_kind_and_a_bounded_text():
    check_event(wire.Event(run_id="", kind="worker_error", message="boom"))
    for kind, text in (("Worker Error", "x"), ("", "x"), ("k" * 101, "x"), ("ok", "x" * 2001)):
        with pytest.raises(InvalidMessage):
            check_event(wire.Event(run_id="", kind=kind, message=text))


@pytest.mark.parametrize("message, named", [
    (telemetry(active=-1), "active_device_number"),
    (telemetry(active=1001), "active_device_number"),
    (telemetry(snapshot(counters={"conn_count": 1}) | {"extra": {}}), "metrics"),
    (telemetry({"histograms": {"Bad-Name": [b"", 0]}}), "Bad-Name"),
    (telemetry({"histograms": {"x" * 101: [b"", 0]}}), "histogram name"),
    (telemetry({"histograms": {"conn_us": [b"", -1]}}), "conn_us"),
    (telemetry({"histograms": {"conn_us": [b"", MAX_HISTOGRAM_VALUES + 1]}}), "conn_us"),
    (telemetry({"histograms": {"conn_us": "nope"}}), "conn_us"),
    (telemetry({"counters": {"conn_count": -1}}), "conn_count"),
    (telemetry({"counters": {"conn_count": 2 ** 64 - 1}}), "conn_count"),
    (telemetry({"counters": {"conn_count": True}}), "conn_count"),
    (telemetry({"counters": {1: 1}}), "counter name"),
    (telemetry({"counters": []}), "maps"),
    (telemetry(errors={"error_x": "y" * 2001}), "error_x"),
    (telemetry(errors={"Error X": "y"}), "error name"),
])
def test_bad_telemetry_is_refused_naming_the_field(message, named):
    with pytest.raises(InvalidMessage, match=named):
        TelemetryCheck().check(message, capacity=1000)


def test_distinct_metric_keys_are_capped_per_run_and_the_rest_dropped_and_counted():
    check = TelemetryCheck(max_keys=3)
    first = telemetry(snapshot({"a_us": [1]}, {"b_count": 1}))
    assert check.check(first, 10) is first  # nothing to drop: the message itself
    second = check.check(telemetry(snapshot({"a_us": [2], "c_us": [3]}, {"b_count": 1, "d_count": 5}),
                                   errors={"error_e": "line"}), 10)
    assert set(second.metrics["histograms"]) == {"a_us", "c_us"}
    assert second.metrics["counters"] == {"b_count": 1}
    assert second.errors == {}
    assert check.dropped == 2
    check.start_run()
    assert check.dropped == 0
    assert check.check(telemetry(snapshot(counters={"d_count": 5})), 10).metrics["counters"] == {"d_count": 5}


# -- fuzzing the ingest path -------------------------------------------------------------



_pairs = st.lists(st.tuples(st.one_of(st.integers(0, 40), st.integers(0, 2 ** 64 - 1)),
                            st.one_of(st.integers(0, 1000), st.integers(0, 2 ** 64 - 1))),
                  max_size=12)
_encodings = st.one_of(
    _pairs.map(lambda pairs: b"".join(varint(d) + varint(c) for d, c in pairs)),
    st.binary(max_size=64))
_names = st.one_of(st.sampled_from(["conn_us", "body_us", "cpu_percent", "response_count"]),
                   st.text(max_size=12))
_ints = st.one_of(st.integers(-2, 1000), st.integers(-2 ** 63, 2 ** 64 - 1))
_histogram_maps = st.dictionaries(_names, st.one_of(st.tuples(_encodings, _ints).map(list),
                                                    st.none(), _ints), max_size=5)
_telemetry_bodies = st.fixed_dictionaries({
    "t": st.just("telemetry"), "v": st.just(wire.PROTOCOL_VERSION),
    "run_id": st.sampled_from(["run-1", "", "other"]),
    "metrics": st.fixed_dictionaries({}, optional={
        "histograms": _histogram_maps,
        "counters": st.dictionaries(_names, _ints, max_size=5),
        "gauges": st.dictionaries(_names, _ints, max_size=2)}),
    "active_device_number": _ints,
    "errors": st.dictionaries(_names, st.one_of(st.text(max_size=20), _ints), max_size=3),
})
_msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), _ints, st.floats(), st.text(max_size=10), st.binary(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.text(max_size=10), _ints), children, max_size=4)),
    max_leaves=20)


class IngestPipeline:
    """What the coordinator does with a generator's bytes, minus the socket."""

    def __init__(self, data_dir):
        self.generator = Generator(routing_id=b"g1", generator_id="g1", version=__version__, cores=1,
                                   workers=1, capacity=1000, registered_at=0.0, last_seen=0.0)
        self.check = TelemetryCheck(max_keys=50)
        self.aggregator = TelemetryAggregator()
        self.aggregator.start_run()
        self.archive = ArchiveWriter(data_dir)
        self.run = RunInfo(id="run-1", name="fuzz", plan={}, started_at=1.0, report_interval_ms=1000)
        self.archive.start(self.run)
        self.accepted = 0

    def receive(self, payload):
        try:
            message = wire.decode(payload)
            scope = run_scope.scope_of(getattr(message, "run_id", ""), self.run.id)
            if isinstance(message, wire.Telemetry) and run_scope.merges(scope, True):
                message = self.check.check(message, self.generator.capacity)
                self.aggregator.ingest(self.generator, message)
                self.accepted += 1
        except (wire.WireError, ValueError):
            pass

    def write_reports(self):
        self.aggregator.tick([self.generator])
        self.archive.interval(self.run, self.aggregator.cut_interval([self.generator]))
        last, totals = self.aggregator.finish_run([self.generator])
        if last is not None:
            self.archive.interval(self.run, last)
        final = FinalReport(state="done", started_at=1.0, finished_at=2.0, devices_requested=1,
                            devices_started=1, generators={"g1": 1}, events=[], totals=totals)
        return self.archive.finish(self.run, final)


_fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fuzz
@given(st.lists(_telemetry_bodies, min_size=1, max_size=6))
def test_arbitrary_telemetry_never_breaks_ingest_or_the_writers(bodies):
    with tempfile.TemporaryDirectory() as data_dir:
        pipeline = IngestPipeline(data_dir)
        for body in bodies:
            pipeline.receive(msgpack.packb(body, use_bin_type=True))
        result = pipeline.write_reports()
        assert result["archive"] == "run-1.tar.gz"
        totals = pipeline.aggregator.totals
        assert all(0 <= value <= MAX_COUNTER_VALUE * len(bodies) for value in totals.values())


@_fuzz
@given(st.one_of(_msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True)), st.binary(max_size=80)))
def test_arbitrary_bytes_are_rejected_or_accepted_never_crash(payload):
    with tempfile.TemporaryDirectory() as data_dir:
        pipeline = IngestPipeline(data_dir)
        pipeline.receive(payload)
        pipeline.write_reports()


def test_the_overflow_attack_is_refused_and_the_honest_data_kept():
    # Two counts of 2**63-1 on one bucket used to wrap it and abort the HdrHistogram writer.
    with tempfile.TemporaryDirectory() as data_dir:
        pipeline = IngestPipeline(data_dir)
        honest = snapshot({"conn_us": [100, 200]})
        pipeline.receive(wire.encode(telemetry(honest)))
        attack = varint(5) + varint(2 ** 63 - 1) + varint(0) + varint(2 ** 63 - 1)
        pipeline.receive(wire.encode(telemetry({"histograms": {"conn_us": [attack, 0]}})))
        assert pipeline.accepted == 1 and pipeline.aggregator.rejected == 1
        pipeline.write_reports()
        assert pipeline.aggregator.latest["histograms"]["conn_us"]["count"] == 2
