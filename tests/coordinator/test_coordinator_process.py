"""The scheduler and the generator socket of a real coordinator process, seen from generators."""
import csv
import io
import json
import tarfile
import time

import msgpack
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from stressgrid import wire
from stressgrid._core.metrics import Histogram
from stressgrid.plan.split import split_exactly
from tests.coordinator.support import FakeGenerator, coordinator_process, reconnect, snapshot, wait_until


def plan(name, blocks, addresses=None, **opts):
    defaults = {"ramp_steps": 1, "rampup_step_ms": 200, "sustain_ms": 500, "rampdown_step_ms": 200,
                "cooldown_ms": 200, "report_interval_ms": 1000}
    defaults.update(opts)
    return {"name": name,
            "addresses": addresses or [{"host": "127.0.0.1", "port": 9, "protocol": "udp"}],
            "blocks": [{"script": "await send(b'x')", "params": {"block": i}, "size": size}
                       for i, size in enumerate(blocks)],
            "opts": defaults}


@pytest.fixture
def coordinator(tmp_path):
    with coordinator_process(tmp_path, generator_timeout=1.5) as running:
        yield running


@pytest.fixture
def generators(coordinator):
    made = []

    def make(count, prefix="gen"):
        new = [FakeGenerator(coordinator, f"{prefix}-{i}") for i in range(count)]
        made.extend(new)
        coordinator.api.wait_generators(len(made))
        return new

    yield make
    for fake in made:
        fake.close()


def archive_files(api, detail):
    status, data, _ = api.get(detail["result_url"])
    assert status == 200
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            if member.isfile():
                files[member.name.split("/", 1)[1]] = archive.extractfile(member).read()
    return files


def test_ramp_splits_every_cohort_exactly_and_round_robin_runs_across_generators(coordinator, generators):
    fakes = generators(3)
    sizes = [10, 7]
    steps = 4
    addresses = [{"host": "127.0.0.1", "port": 9, "protocol": "udp"},
                 {"host": "127.0.0.2", "port": 9, "protocol": "udp"}]
    status, run, _ = coordinator.api.post("/api/runs", plan("split", sizes, addresses, ramp_steps=steps,
                                                           rampup_step_ms=150, rampdown_step_ms=150))
    assert status == 201, run
    detail = coordinator.api.wait_run_finished(run["id"], timeout=30)
    assert detail["state"] == "done"
    starts = [(fake.generator_id, m) for fake in fakes for m in fake.messages(wire.StartCohort)]
    stops = [(fake.generator_id, m) for fake in fakes for m in fake.messages(wire.StopCohort)]
    # Every cohort is the exact ramp-step share of every block, split without loss.
    for cohort in range(steps):
        parts = [m for _, m in starts if m.cohort_id == str(cohort)]
        for block, size in enumerate(sizes):
            assert sum(b["size"] for m in parts for b in m.blocks if b["params"]["block"] == block) == \
                split_exactly(size, steps)[cohort]
        assert all(m.run_id == run["id"] and len(m.addresses) == 2 for m in parts)
        assert all(m.addresses[1]["ip"] == "127.0.0.2" for m in parts)
    assert sum(b["size"] for _, m in starts for b in m.blocks) == sum(sizes)
    # The round-robin cursor tiles 0..17 in the order cohorts were started.
    position = 0
    for _, message in sorted(starts, key=lambda item: item[1].address_offset):
        assert message.address_offset == position
        position += sum(b["size"] for b in message.blocks)
    assert position == 17
    # Each generator is told to stop exactly the cohorts it started, newest first.
    for fake in fakes:
        started = [m.cohort_id for m in fake.messages(wire.StartCohort)]
        stopped = [m.cohort_id for m in fake.messages(wire.StopCohort)]
        assert stopped == sorted(started, key=int, reverse=True)
    assert len(stops) == len(starts)
    summary = detail["summary"]
    assert summary["devices_requested"] == summary["devices_started"] == 17
    assert sum(summary["generators"].values()) == 17 and len(summary["generators"]) == 3
    phases = [e["message"] for e in summary["events"] if e["kind"] == "phase"]
    assert phases == ["sustain", "rampdown", "cooldown"]


def test_the_socket_thread_runs_the_timeline_never_early(coordinator, generators):
    # The exact times are the scheduler's (test_run_scheduler.py, on a fake clock); here the real
    # clock drives it: every phase comes in order and none before its time.
    fake, = generators(1)
    status, run, _ = coordinator.api.post("/api/runs", plan("timing", [4], ramp_steps=2, rampup_step_ms=400,
                                                           sustain_ms=600, rampdown_step_ms=300,
                                                           cooldown_ms=500))
    assert status == 201
    detail = coordinator.api.wait_run_finished(run["id"])
    phases = [(e["message"], e["elapsed_s"]) for e in detail["summary"]["events"] if e["kind"] == "phase"]
    assert [name for name, _ in phases] == ["sustain", "rampdown", "cooldown"]
    assert all(elapsed >= planned for (_, elapsed), planned in zip(phases, (0.8, 1.4, 2.0), strict=True))
    done = detail["summary"]["events"][-1]
    assert done["kind"] == "run_done" and done["elapsed_s"] >= 2.5
    stops = fake.messages(wire.StopCohort)
    assert [m.cohort_id for m in stops] == ["1", "0"]


def test_a_silent_generator_is_dropped_from_the_run_with_an_event(coordinator, generators):
    steady, flaky = generators(2)
    status, run, _ = coordinator.api.post("/api/runs", plan("drop", [20], ramp_steps=4, rampup_step_ms=1000,
                                                           sustain_ms=200, rampdown_step_ms=100))
    assert status == 201
    flaky.wait_for(wire.StartCohort)
    flaky.alive = False  # stops heartbeating: a generator that vanished
    detail = coordinator.api.wait_run_finished(run["id"], timeout=30)
    lost = [e for e in detail["summary"]["events"] if e["kind"] == "generator_lost"]
    assert [e["generator"] for e in lost] == [flaky.generator_id]
    # Silent for the 1.5 s timeout (its last heartbeat came at most 0.5 s before the run started).
    assert lost[0]["elapsed_s"] >= 1.0
    # Cohorts after the drop all went to the remaining generator; none were lost to rounding.
    started = steady.messages(wire.StartCohort)
    later = [m for m in started if "." not in m.cohort_id and int(m.cohort_id) >= 3]
    assert sum(b["size"] for m in later for b in m.blocks) == 5
    # What the dropped one held was started again there, as replacement cohorts ("0.1").
    held = sum(b["size"] for m in flaky.messages(wire.StartCohort) for b in m.blocks)
    replacements = [m for m in started if "." in m.cohort_id]
    assert held > 0 and sum(b["size"] for m in replacements for b in m.blocks) == held
    assert [e["kind"] for e in detail["summary"]["events"]].count("devices_replaced") == 1
    summary = detail["summary"]
    assert summary["devices_started"] == 20
    assert [g["id"] for g in coordinator.api.state()["generators"]] == [steady.generator_id]


def test_malformed_and_unexpected_messages_get_errors_and_change_nothing(coordinator, generators):
    good, = generators(1)
    rogue = FakeGenerator(coordinator, "rogue", register=False)
    try:
        valid_telemetry = wire.encode(wire.Telemetry(run_id="", metrics=snapshot(counters={"x_count": 1}),
                                                     active_device_number=0, errors={}))
        cases = [
            b"\xc1 not msgpack",
            msgpack.packb([1, 2, 3]),
            msgpack.packb({"t": "register", "v": 99}),
            msgpack.packb({"t": "launch_missiles", "v": wire.PROTOCOL_VERSION}),
            msgpack.packb({"t": "heartbeat", "v": wire.PROTOCOL_VERSION, "sent_at": "soon"}),
            msgpack.packb({"t": "register", "v": wire.PROTOCOL_VERSION, "generator_id": "x"}),
            wire.encode(wire.StartCohort(run_id="r", cohort_id="0", blocks=[], addresses=[], opts={},
                                         address_offset=0)),
            valid_telemetry,  # from a generator that never registered
        ]
        for payload in cases:
            rogue.send_raw(payload)
        rogue.send_raw(b"two", b"frames")
        errors = rogue.wait_for(wire.Error, count=len(cases) + 1)
        messages = [e.message for e in errors]
        assert any("msgpack" in m for m in messages)
        assert any("version" in m for m in messages)
        assert any("unknown message type" in m for m in messages)
        assert any("start_cohort" in m for m in messages)
        assert any(m == wire.NOT_REGISTERED for m in messages)
        assert any("frame" in m for m in messages)
        # A registered generator's bad telemetry is refused whole, its good telemetry counted.
        bad = snapshot({"conn_us": [5]}, {"x_count": 5})
        bad["histograms"]["conn_us"] = (b"\x80", 0)
        good.telemetry(bad)
        assert "bad telemetry" in good.wait_for(wire.Error)[0].message
        good.send_raw(valid_telemetry)
        state = wait_until(lambda: (s := coordinator.api.state())["telemetry"]["counters"].get("x_count") and s)
        assert state["telemetry"]["counters"]["x_count"]["total"] == 1
        assert state["ingest"]["rejected"] >= len(cases)
        assert [g["id"] for g in state["generators"]] == ["gen-0"]
        assert coordinator.process.poll() is None
    finally:
        rogue.close()


def test_unknown_generators_are_told_to_register_and_can(coordinator, generators):
    fake = FakeGenerator(coordinator, "late", register=False)
    try:
        fake.send(wire.Heartbeat(sent_at=time.time()))
        assert fake.wait_for(wire.Error)[0].message == wire.NOT_REGISTERED
        fake.register()
        coordinator.api.wait_generators(1)
        # The coordinator heartbeats every registered generator (test_run_scheduler.py: every second).
        beats = fake.wait_for(wire.Heartbeat, count=2, timeout=5)
        assert beats[1].sent_at > beats[0].sent_at
    finally:
        fake.close()


def test_a_short_run_keeps_every_value_exact_in_csv_summary_and_hdr_logs(coordinator, generators):
    fakes = generators(2)
    status, run, _ = coordinator.api.post("/api/runs", plan("exact", [4], sustain_ms=1500,
                                                           report_interval_ms=1000))
    assert status == 201
    for fake in fakes:
        fake.wait_for(wire.StartCohort)
    expected = Histogram()
    sent = 0
    for round_ in range(4):
        for i, fake in enumerate(fakes):
            values = [100 + 37 * k + 1000 * i + round_ for k in range(50)]
            expected.record_many(values)
            sent += 3
            cpu = [97] if (i, round_) == (1, 2) else [30]
            fake.telemetry(snapshot({"headers_us": values, "cpu_percent": cpu}, {"response_count": 3}),
                           active=2)
        time.sleep(0.25)
    detail = coordinator.api.wait_run_finished(run["id"])
    summary = detail["summary"]
    assert summary["totals"]["response_count"] == sent == 24
    assert summary["histograms"]["headers_us"]["count"] == expected.total_count == 400
    assert summary["histograms"]["headers_us"]["max"] == expected.max
    # A generator over 80% CPU is flagged once in the report and kept in it.
    hot = [e for e in summary["events"] if e["kind"] == "generator_cpu_high"]
    assert [e["generator"] for e in hot] == [fakes[1].generator_id] and "97%" in hot[0]["message"]
    assert summary["maxima"]["max_cpu_percent"] == 97
    files = archive_files(coordinator.api, detail)
    rows = list(csv.DictReader(io.StringIO(files["results.csv"].decode())))
    assert [int(r["clock"]) for r in rows] == list(range(len(rows))) and len(rows) >= 2
    assert int(rows[-1]["response_count"]) == 24
    assert max(int(r["headers_us_max"]) for r in rows if r["headers_us_max"]) == expected.max
    assert min(int(r["headers_us_min"]) for r in rows if r["headers_us_min"]) == expected.min
    assert json.loads(files["summary.json"])["totals"]["response_count"] == 24
    events = [json.loads(line) for line in files["events.jsonl"].decode().splitlines()]
    assert events[0]["kind"] == "run_started" and events[0]["message"] == "4 devices on 2 generators"
    # The HdrHistogram log holds every value, interval by interval.
    log_path = coordinator.data_dir / "check.hlog"
    log_path.write_bytes(files["hdr/headers_us.hlog"])
    reader = HistogramLogReader(str(log_path), HdrHistogram(1, 60_000_000, 3))
    total = HdrHistogram(1, 60_000_000, 3)
    while (interval := reader.get_next_interval_histogram()) is not None:
        total.add(interval)
    assert total.get_total_count() == 400
    assert total.get_max_value() == expected.to_hdrhistogram().get_max_value()
    assert total.get_value_at_percentile(99) == expected.value_at_percentile(99)


def test_a_generator_reconnecting_with_its_identity_once_the_old_connection_closed_keeps_its_place(coordinator, generators):
    first, = generators(1)
    first.close()
    again = reconnect(coordinator, first.generator_id)
    try:
        state = wait_until(lambda: (s := coordinator.api.state())["generators"][0]["registrations"] == 2 and s)
        assert [g["id"] for g in state["generators"]] == [first.generator_id]
        # The new connection receives the coordinator's heartbeats.
        again.wait_for(wire.Heartbeat, count=2, timeout=5)
    finally:
        again.close()
