"""Every failure reaches the verdict: a crashing worker and a device cancelled by its script are errors."""
import re

from stressgrid import wire

from .conftest import error_lines_since, merged, one_device_on_redis

CRASH = "import os\nawait send('PING\\r\\n')\nos._exit(3)\n"
SELF_CANCEL = "import asyncio\nawait send('INCR hits\\r\\n')\nawait recv()\nraise asyncio.CancelledError()\n"


def test_a_worker_crash_loop_is_counted_as_errors(coordinator, start_agent, tmp_path):
    with one_device_on_redis(coordinator, start_agent, tmp_path, CRASH) as (redis, since):
        crash = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_crashed")
        assert re.fullmatch(r"worker 0 \(pid \d+\) exited with status 3 with 1 devices", crash.message)
        # It is restarted with its device, which crashes it again: each time is an error.
        coordinator.wait_for_state(
            lambda: merged(coordinator.telemetry_since(since)).counter("worker_crashed_error_count") >= 2,
            20, "two crashes counted")
        line = error_lines_since(coordinator, since)["worker_crashed_error_count"]
        assert re.fullmatch(r"worker 0 \(pid \d+\) exited with status 3", line)
        assert redis.command_calls("ping") >= 2
        coordinator.send(wire.Abort(run_id="run-1"))
        assert coordinator.expect(wire.RunStopped, timeout=15).run_id == "run-1"


def test_a_device_its_script_cancels_is_counted_and_restarted(coordinator, start_agent, tmp_path):
    with one_device_on_redis(coordinator, start_agent, tmp_path, SELF_CANCEL) as (redis, since):
        event = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "device_cancelled")
        assert "line 4: raise asyncio.CancelledError() -> asyncio.exceptions.CancelledError" in event.message
        coordinator.wait_for_state(
            lambda: merged(coordinator.telemetry_since(since)).counter("device_cancelled_error_count") >= 2,
            15, "two cancellations counted")
        # Restarted like any failing device: it keeps its place and keeps coming back.
        assert redis.command_calls("incr") >= 2
        assert coordinator.expect(wire.Telemetry, timeout=5).active_device_number == 1
        # A real stop still ends it, at once.
        coordinator.send(wire.Abort(run_id="run-1"))
        assert coordinator.expect(wire.RunStopped, timeout=10).run_id == "run-1"
        assert not [m for _, _, m in coordinator.received if isinstance(m, wire.Event) and m.kind == "worker_killed"]
        coordinator.expect(wire.Telemetry, timeout=5, where=lambda m: m.active_device_number == 0)
