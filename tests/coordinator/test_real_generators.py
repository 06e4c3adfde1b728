"""The coordinator driving real generator host agents against a real redis-server."""
import csv
import io
import signal
import tarfile

import pytest

from tests.conftest import example
from tests.coordinator.support import (coordinator_process, device_errors, generator_processes, redis_info, wait_until)
from tests.support.servers import redis_server


def redis_plan(port, name="redis", size=20, steps=2, sustain_ms=2500, **opts):
    return {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "tcp"}],
            "blocks": [{"script": example("redis_tcp.py"), "params": {"delay_ms": 100}, "size": size}],
            "opts": {"ramp_steps": steps, "rampup_step_ms": 500, "sustain_ms": sustain_ms,
                     "rampdown_step_ms": 300, "cooldown_ms": 1500, "report_interval_ms": 1000, **opts}}


def connected_clients(port):
    return int(redis_info(port)["connected_clients"]) - 1  # minus this INFO connection


@pytest.fixture
def setup(tmp_path):
    with redis_server(tmp_path) as redis_port, coordinator_process(tmp_path) as coordinator, \
            generator_processes(coordinator, tmp_path, ["real-a", "real-b"]) as generators:
        coordinator.api.wait_generators(2)
        yield coordinator, generators, redis_port


def test_a_run_on_two_real_generators_reaches_every_device_and_reports_it(setup):
    coordinator, generators, redis_port = setup
    api = coordinator.api
    status, run, _ = api.post("/api/runs", redis_plan(redis_port, size=20))
    assert status == 201, run
    # During sustain, every device holds its own connection to redis.
    state = wait_until(lambda: (s := api.state())["run"] and s["run"]["state"] == "sustain"
                       and s["telemetry"]["active_device_number"] == 20 and s, timeout=10)
    assert state["telemetry"]["generator_count"] == 2
    assert sorted(g["active_device_number"] for g in state["generators"]) == [10, 10]
    assert connected_clients(redis_port) == 20
    assert state["telemetry"]["counters"]["send_count"]["total"] > 0
    assert {"set_us", "get_us"} <= set(state["telemetry"]["histograms"])
    detail = api.wait_run_finished(run["id"], timeout=30)
    assert detail["state"] == "done"
    summary = detail["summary"]
    assert summary["devices_started"] == 20 and summary["generators"] == {"real-a": 10, "real-b": 10}
    assert summary["maxima"]["active_device_number"] == 20
    assert device_errors(summary) == {}
    totals = summary["totals"]
    # Each timed SET and GET is one send; ramp-down may cut each device's last exchange short.
    sets = summary["histograms"]["set_us"]["count"]
    gets = summary["histograms"]["get_us"]["count"]
    assert sets > 50 and 0 <= sets - gets <= 20
    assert 0 <= totals["send_count"] - (sets + gets) <= 20
    assert "cpu_percent" in summary["histograms"] and totals["network_rx_bytes"] > 0
    assert connected_clients(redis_port) == 0  # ramp-down closed every connection
    status, data, _ = api.get(detail["result_url"])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        text = archive.extractfile(f"{run['id']}/results.csv").read().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert int(rows[-1]["send_count"]) == totals["send_count"]
    assert max(int(r["active_device_number"]) for r in rows) == 20
    assert {"set_us", "set_us_pc99", "cpu_percent_max", "network_tx_bytes_per_second"} <= set(rows[0])


def test_abort_stops_real_devices_at_once(setup):
    coordinator, _, redis_port = setup
    api = coordinator.api
    status, run, _ = api.post("/api/runs", redis_plan(redis_port, size=10, steps=1, sustain_ms=60000))
    assert status == 201
    wait_until(lambda: connected_clients(redis_port) == 10, timeout=10)
    assert api.post(f"/api/runs/{run['id']}/abort")[0] == 202
    wait_until(lambda: connected_clients(redis_port) == 0, timeout=5, message="devices to disconnect")
    detail = api.wait_run_finished(run["id"])
    assert detail["state"] == "aborted" and detail["result_url"]
    # Both generators confirmed with their last metrics; the report did not time out on them.
    events = {e["kind"] for e in detail["summary"]["events"]}
    assert "run_aborted" in events and "abort_unanswered" not in events
    assert detail["summary"]["totals"]["send_count"] > 0


def test_a_generator_killed_mid_run_is_dropped_and_the_run_completes(setup):
    coordinator, generators, redis_port = setup
    api = coordinator.api
    status, run, _ = api.post("/api/runs", redis_plan(redis_port, size=10, steps=1, sustain_ms=3000))
    assert status == 201
    wait_until(lambda: connected_clients(redis_port) == 10, timeout=10)
    victim = generators[1]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    detail = api.wait_run_finished(run["id"], timeout=30)
    assert detail["state"] == "done"
    lost = [e for e in detail["summary"]["events"] if e["kind"] == "generator_lost"]
    assert [e["generator"] for e in lost] == [victim.generator_id]
    assert [g["id"] for g in api.state()["generators"]] == [generators[0].generator_id]
    # Its devices' load left the run: an error of the run, with the devices it held.
    lost_error = detail["summary"]["errors"]["generator_lost_error_count"]
    assert lost_error["count"] == 1 and lost_error["line"].endswith("with 5 devices of the run")


def command_calls(port, command):
    stats = redis_info(port, "commandstats").get(f"cmdstat_{command}")
    return int(dict(part.split("=") for part in stats.split(","))["calls"]) if stats else 0


def test_without_a_cooldown_the_report_still_holds_every_command_redis_served(setup):
    coordinator, _, redis_port = setup
    api = coordinator.api
    devices = 10
    status, run, _ = api.post("/api/runs", redis_plan(redis_port, size=devices, steps=1, sustain_ms=2000,
                                                      cooldown_ms=0))
    assert status == 201, run
    detail = api.wait_run_finished(run["id"], timeout=30)
    assert detail["state"] == "done"
    summary = detail["summary"]
    # Each generator confirmed the end with its last metrics.
    assert "end_unanswered" not in {e["kind"] for e in summary["events"]}
    served = command_calls(redis_port, "set") + command_calls(redis_port, "get")
    timed = summary["histograms"]["set_us"]["count"] + summary["histograms"]["get_us"]["count"]
    assert served > 100
    # At most one exchange per device was cut short by the ramp-down.
    assert 0 <= served - timed <= devices
    assert abs(summary["totals"]["send_count"] - served) <= devices


def test_a_stopped_generators_devices_start_again_on_the_other_and_its_own_stop_when_it_returns(setup):
    coordinator, generators, redis_port = setup
    api = coordinator.api
    status, run, _ = api.post("/api/runs", redis_plan(redis_port, size=10, steps=1, sustain_ms=15000))
    assert status == 201
    wait_until(lambda: connected_clients(redis_port) == 10, timeout=10)
    victim = generators[1]
    victim.process.send_signal(signal.SIGSTOP)
    try:
        # Dropped after the generator timeout; its 5 devices start again on the other one,
        # while its own connections, frozen, stay open.
        wait_until(lambda: any(e["kind"] == "devices_replaced" for e in api.state()["events"]), timeout=15,
                   message="the devices to be replaced")
        wait_until(lambda: connected_clients(redis_port) == 15, timeout=10, message="5 new connections")
    finally:
        victim.process.send_signal(signal.SIGCONT)
    # Back, it registers again and is told to stop what it still ran of the run.
    wait_until(lambda: connected_clients(redis_port) == 10, timeout=15, message="its old devices to stop")
    state = wait_until(lambda: (s := api.state())["run"] and s["telemetry"]["active_device_number"] == 10 and s,
                       timeout=10)
    assert state["run"]["devices_started"] == 10
    api.post(f"/api/runs/{run['id']}/abort")
    detail = api.wait_run_finished(run["id"], timeout=30)
    summary = detail["summary"]
    assert summary["generators"] == {generators[0].generator_id: 10}
    kinds = [e["kind"] for e in summary["events"]]
    assert kinds.index("generator_lost") < kinds.index("devices_replaced")
    assert summary["errors"]["generator_lost_error_count"]["count"] == 1
