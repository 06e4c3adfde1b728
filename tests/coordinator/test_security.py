"""Run integrity against a real coordinator: what a generator may write into a run, and what not."""
import re

import pytest

from stressgrid import wire
from tests.coordinator.support import FakeGenerator, coordinator_process, snapshot, wait_until


def long_plan(name="guarded", size=5):
    return {"name": name, "addresses": [{"host": "127.0.0.1", "port": 9, "protocol": "udp"}],
            "blocks": [{"script": "await send(b'x')", "params": {}, "size": size}],
            "opts": {"ramp_steps": 1, "rampup_step_ms": 100, "sustain_ms": 600_000,
                     "rampdown_step_ms": 100, "cooldown_ms": 100, "report_interval_ms": 1000}}


@pytest.fixture
def coordinator(tmp_path):
    with coordinator_process(tmp_path, generator_timeout=3.0) as running:
        yield running


@pytest.fixture
def generator(coordinator):
    fake = FakeGenerator(coordinator.generator_url, "gen-0")
    coordinator.api.wait_generators(1)
    yield fake
    fake.close()


def abort_answered(api, fake, run_id):
    """Abort the run, answer for ``fake`` as a generator does, and return the finished run."""
    status, _, _ = api.post(f"/api/runs/{run_id}/abort")
    assert status == 202
    fake.wait_for(wire.Abort, lambda m: m.run_id == run_id)
    fake.send(wire.RunStopped(run_id=run_id))
    return api.wait_run_finished(run_id, timeout=20)


def test_only_the_active_runs_data_is_merged_the_rest_counted_and_ghost_devices_stopped(coordinator, generator):
    api = coordinator.api
    status, run, _ = api.post("/api/runs", long_plan())
    assert status == 201, run
    generator.wait_for(wire.StartCohort)
    generator.telemetry(snapshot({"conn_us": [100, 200]}, {"conn_count": 5}), active=5)
    for _ in range(3):  # replayed or injected data of a run that is over
        generator.telemetry(snapshot({"conn_us": [59_000_000]}, {"conn_count": 1_000_000}), run_id="old-run")
    generator.telemetry(snapshot(counters={"idle_count": 7}), run_id="")  # a host at rest
    # Devices of a run the coordinator does not know: told to stop at once.
    generator.telemetry(snapshot(counters={"conn_count": 9}), active=2, run_id="ghost-run")
    assert generator.wait_for(wire.Abort, lambda m: m.run_id == "ghost-run")
    generator.send(wire.Event(run_id="old-run", kind="worker_error", message="not of this run"))
    wait_until(lambda: api.state()["ingest"]["other_runs"] == 5, message="5 messages of other runs counted")

    detail = abort_answered(api, generator, run["id"])
    summary = detail["summary"]
    assert summary["totals"] == {"conn_count": 5}
    assert summary["histograms"]["conn_us"]["count"] == 2
    assert summary["histograms"]["conn_us"]["max"] < 1000
    assert not any(e["kind"] == "worker_error" for e in summary["events"])
    # Said at once, then at most once per interval: the rest in one line at the run's end.
    stale = [e for e in summary["events"] if e["kind"] == "stale_telemetry"]
    assert len(stale) == 2, stale
    counts = [int(re.match(r"(\d+) message", e["message"]).group(1)) for e in stale]
    assert sum(counts) == 5 and counts[0] == 1
    assert "ghost-run" in stale[-1]["message"] or "old-run" in stale[-1]["message"]
