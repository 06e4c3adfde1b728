"""Run history and archives across coordinator restarts and crashes."""
import csv
import io
import json
import shutil
import signal
import tarfile
import time

from stressgrid import wire
from tests.coordinator.support import (FakeGenerator, coordinator_process, generator_processes, snapshot,
                                       wait_until)
from tests.support.servers import free_port


def plan(name, sustain_ms):
    return {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": 9, "protocol": "udp"}],
            "blocks": [{"script": "await send(b'x')", "params": {}, "size": 3}],
            "opts": {"ramp_steps": 1, "rampup_step_ms": 100, "sustain_ms": sustain_ms,
                     "rampdown_step_ms": 100, "cooldown_ms": 100, "report_interval_ms": 1000}}


def csv_rows(api, detail):
    status, data, _ = api.get(detail["result_url"])
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        text = archive.extractfile(f"{detail['id']}/results.csv").read().decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_history_and_archives_survive_a_restart_and_a_crash_mid_run_is_marked_aborted(tmp_path):
    data_dir = tmp_path / "data"
    ports = {"management_port": free_port(), "generator_port": free_port()}
    with coordinator_process(tmp_path, data_dir=data_dir, **ports) as first:
        fake = FakeGenerator(first, "persist")
        first.api.wait_generators(1)
        status, done_run, _ = first.api.post("/api/runs", plan("finished", 300))
        assert status == 201
        fake.wait_for(wire.StartCohort, lambda m: m.run_id == done_run["id"])  # telemetry carries its run id
        fake.telemetry(snapshot(counters={"response_count": 7}), active=3)
        finished = first.api.wait_run_finished(done_run["id"])
        status, crashed_run, _ = first.api.post("/api/runs", plan("crashed", 60000))
        assert status == 201
        fake.wait_for(wire.StartCohort, lambda m: m.run_id == crashed_run["id"])
        # Let two report intervals reach the disk, then kill the coordinator outright.
        for _ in range(3):
            fake.telemetry(snapshot(counters={"response_count": 5}), active=3)
            fake.wait_for(wire.Heartbeat, count=len(fake.messages(wire.Heartbeat)) + 1)
        written = data_dir / "runs" / crashed_run["id"] / "results.csv"
        wait_until(lambda: written.exists() and len(written.read_text().splitlines()) >= 3, timeout=10)
        # ... and a checkpoint of the report that holds all three (one every 5 s).
        checkpoint = data_dir / "runs" / crashed_run["id"] / "checkpoint.json"
        wait_until(lambda: checkpoint.exists()
                   and json.loads(checkpoint.read_text())["totals"].get("response_count") == 15, timeout=15)
        killed_at = time.time()
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        fake.close()
    with coordinator_process(tmp_path, data_dir=data_dir, **ports) as second:
        runs = {r["id"]: r for r in second.api.get("/api/runs")[1]["runs"]}
        assert runs[done_run["id"]]["state"] == "done"
        assert runs[crashed_run["id"]]["state"] == "aborted"
        assert "coordinator stopped" in runs[crashed_run["id"]]["note"]
        detail = second.api.get(f"/api/runs/{done_run['id']}")[1]
        assert detail["summary"]["totals"] == finished["summary"]["totals"] == {"response_count": 7}
        assert int(csv_rows(second.api, detail)[-1]["response_count"]) == 7
        crashed = second.api.get(f"/api/runs/{crashed_run['id']}")[1]
        rows = csv_rows(second.api, crashed)
        assert len(rows) >= 2 and int(rows[-1]["response_count"]) >= 5
        # The crashed run keeps its whole-run report up to its last checkpoint, which is when it
        # ended, not when the coordinator came back.
        summary = crashed["summary"]
        assert summary["totals"] == {"response_count": 15} and summary["devices_started"] == 3
        assert crashed["result"] == summary["result"] == "aborted"
        assert crashed["finished_at"] == summary["finished_at"] <= killed_at
        assert "coordinator stopped" in summary["note"] and summary["summary"] is not None
        with tarfile.open(fileobj=io.BytesIO(second.api.get(crashed["result_url"])[1])) as archive:
            names = archive.getnames()
            packed = json.load(archive.extractfile(f"{crashed['id']}/summary.json"))
        assert packed["totals"] == {"response_count": 15}
        assert f"{crashed['id']}/report.html" in names and f"{crashed['id']}/checkpoint.json" not in names
        status, report, _ = second.api.get(crashed["report_url"])
        assert status == 200 and b"crashed" in report and b"coordinator stopped" in report
        assert second.api.state()["run"] is None


def test_sigterm_during_a_run_aborts_it_and_still_writes_the_archive(tmp_path):
    data_dir = tmp_path / "data"
    ports = {"management_port": free_port(), "generator_port": free_port()}
    with coordinator_process(tmp_path, data_dir=data_dir, **ports) as first:
        fake = FakeGenerator(first, "term")
        first.api.wait_generators(1)
        status, run, _ = first.api.post("/api/runs", plan("terminated", 60000))
        assert status == 201
        fake.telemetry(snapshot(counters={"response_count": 4}), active=3)
        fake.wait_for(wire.StartCohort)
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(30) == 0
        assert fake.wait_for(wire.Abort, timeout=5)[0].run_id == run["id"]
        fake.close()
    assert (data_dir / "results" / f"{run['id']}.tar.gz").exists()
    with coordinator_process(tmp_path, data_dir=data_dir, **ports) as second:
        detail = second.api.get(f"/api/runs/{run['id']}")[1]
        assert detail["state"] == "aborted" and detail["summary"]["note"] == "the coordinator stopped"
        assert second.api.get(detail["result_url"])[0] == 200


def test_real_generators_register_again_with_a_restarted_coordinator(tmp_path):
    ports = {"management_port": free_port(), "generator_port": free_port()}
    with coordinator_process(tmp_path, data_dir=tmp_path / "a", **ports) as first:
        with generator_processes(first, tmp_path, ["phoenix"]) as generators:
            first.api.wait_generators(1)
            first.stop()
            # A coordinator keeps its keys and join token over a restart (they live in its data
            # directory); this one starts with a fresh history but the same fleet credentials.
            (tmp_path / "b").mkdir()
            for name in ("coordinator.key", "join-token"):
                shutil.copy2(tmp_path / "a" / name, tmp_path / "b" / name)
            with coordinator_process(tmp_path, data_dir=tmp_path / "b", **ports) as second:
                state = second.api.wait_generators(1, timeout=20)
                assert state["generators"][0]["id"] == "phoenix"
                assert generators[0].process.poll() is None
