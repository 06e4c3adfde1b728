"""Feeder rows over a real fleet: two generator hosts of two workers each, counted by redis."""
import subprocess

from tests.coordinator.support import coordinator_process, device_errors, generator_processes, wait_until
from tests.support.servers import redis_server, require

# Each device counts its row once at redis, then idles: redis holds how often each row was used.
SCRIPT = """\
await send(f"HINCRBY seen {row['id']} 1\\r\\n")
reply = await recv()
assert reply.startswith(b":"), reply
await delay(600000)
"""


def rows_seen(port):
    """``HGETALL seen``: how many devices used each row id."""
    out = subprocess.run([require("redis-cli"), "-p", str(port), "--raw", "HGETALL", "seen"],
                         check=True, capture_output=True, text=True).stdout.split()
    return {out[i]: int(out[i + 1]) for i in range(0, len(out), 2)}


def test_rows_are_spread_exactly_over_two_generators_of_two_workers(tmp_path):
    small = [{"id": f"a{j}"} for j in range(10)]  # 23 devices: rows a0..a2 used 3 times, the rest twice
    large = [{"id": f"b{j}", "unused": "x" * 10} for j in range(50)]  # 7 devices: rows b0..b6 once
    plan = {"name": "feeder", "addresses": [{"host": "127.0.0.1", "port": 0, "protocol": "tcp"}],
            "blocks": [{"script": SCRIPT, "size": 23, "data": small},
                       {"script": SCRIPT, "size": 7, "data": large}],
            "opts": {"ramp_steps": 3, "rampup_step_ms": 300, "sustain_ms": 600000, "rampdown_step_ms": 0,
                     "cooldown_ms": 0, "report_interval_ms": 1000}}
    with redis_server(tmp_path) as port, coordinator_process(tmp_path) as coordinator, \
            generator_processes(coordinator, tmp_path, ["feed-a", "feed-b"], workers=2):
        api = coordinator.api
        api.wait_generators(2)
        plan["addresses"][0]["port"] = port
        status, run, _ = api.post("/api/runs", plan)
        assert status == 201, run
        wait_until(lambda: sum(rows_seen(port).values()) >= 30, timeout=30, message="30 devices to count a row")
        state = wait_until(lambda: (s := api.state())["telemetry"].get("active_device_number") == 30 and s,
                           timeout=10, message="telemetry of 30 devices")
        assert sorted(g["active_device_number"] for g in state["generators"]) == [14, 16]  # as split_blocks deals them
        assert api.post(f"/api/runs/{run['id']}/abort")[0] == 202
        detail = api.wait_run_finished(run["id"], timeout=30)
        seen = rows_seen(port)
    assert device_errors(detail["summary"]) == {}
    expected = {f"a{j}": 3 if j < 3 else 2 for j in range(10)} | {f"b{j}": 1 for j in range(7)}
    assert seen == expected
