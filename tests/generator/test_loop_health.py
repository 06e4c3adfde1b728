"""Loop health: every worker's loop lag is a generator metric, and a stall names the script line."""
import time

from stressgrid import wire
from stressgrid.plan.constants import LOOP_LAG_HISTOGRAM

from .conftest import merged, one_device_on_redis

BLOCKING = "import time\nawait send('PING\\r\\n')\ntime.sleep(2)\nawait delay(60000)\n"


def test_a_script_that_blocks_the_loop_is_an_event_with_its_line_and_a_lag_sample(coordinator, start_agent,
                                                                                  tmp_path):
    with one_device_on_redis(coordinator, start_agent, tmp_path, BLOCKING) as (redis, since):
        stall = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_loop_stalled")
        assert stall.message.startswith("worker 0 (pid ")
        assert "a device holds it at line 3: time.sleep(2)" in stall.message
        # The loop turns again: its next telemetry carries the late wake-up.
        coordinator.wait_for_state(
            lambda: merged(coordinator.telemetry_since(since)).histogram(LOOP_LAG_HISTOGRAM).max >= 1_000_000,
            15, "a loop lag sample of a second or more")
        assert merged(coordinator.telemetry_since(since)).histogram(LOOP_LAG_HISTOGRAM).max < 3_000_000
        assert redis.command_calls("ping") == 1


def test_an_idle_worker_reports_a_small_loop_lag_and_no_stall(coordinator, start_agent):
    start_agent(coordinator.url, workers=2)
    coordinator.register()
    since = time.monotonic()
    for _ in range(3):
        coordinator.expect(wire.Telemetry, timeout=10)
    lag = merged(coordinator.telemetry_since(since)).histogram(LOOP_LAG_HISTOGRAM)
    assert lag.total_count >= 10 and lag.value_at_percentile(50.0) < 1_000_000
    assert not [m for _, _, m in coordinator.received if isinstance(m, wire.Event) and m.kind == "worker_loop_stalled"]
