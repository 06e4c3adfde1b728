"""Workers never start more devices than they can hold; what finds no room is counted."""
import time

from stressgrid import wire
from stressgrid.generator.limits import RESERVED_FILES_PER_WORKER
from tests.support.servers import redis_server

from .conftest import Redis, error_lines_since, merged, script_cohort

PER_WORKER = 20
IDLE = "await delay(60000)\n"


def test_a_cohort_larger_than_the_room_left_is_cut_short_and_its_unplaced_devices_counted(coordinator, start_agent,
                                                                                          tmp_path):
    start_agent(coordinator.url, workers=2, open_files=RESERVED_FILES_PER_WORKER + PER_WORKER)
    register = coordinator.register()
    assert register.capacity == 2 * PER_WORKER
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        since = time.monotonic()
        coordinator.send(script_cohort(port, IDLE, 2 * PER_WORKER - 6, cohort_id="1"))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 2 * PER_WORKER - 6)
        # 6 places left, 10 asked: 4 devices find no room.
        coordinator.send(script_cohort(port, IDLE, 10, cohort_id="2", address_offset=2 * PER_WORKER - 6))
        event = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "cohort_cut_short")
        assert event.message == ("cohort '2' of run 'run-1' cut short: 4 of 10 devices found no room "
                                 f"(this generator holds at most {2 * PER_WORKER})")
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 2 * PER_WORKER)
        coordinator.wait_for_state(lambda: redis.device_connections() == 2 * PER_WORKER, 10, "every placed device")
        # A full generator places nothing more.
        coordinator.send(script_cohort(port, IDLE, 3, cohort_id="3"))
        coordinator.wait_for_state(
            lambda: merged(coordinator.telemetry_since(since)).counter("device_unplaced_error_count") == 7,
            15, "7 unplaced devices counted")
        line = error_lines_since(coordinator, since)["device_unplaced_error_count"]
        assert "cohort '2' of run 'run-1' cut short" in line
        assert redis.device_connections() == 2 * PER_WORKER
        # Stopping frees the room again.
        for cohort_id in ("1", "2", "3"):
            coordinator.send(wire.StopCohort(run_id="run-1", cohort_id=cohort_id))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 0)
        coordinator.send(script_cohort(port, IDLE, 2 * PER_WORKER, cohort_id="4", run_id="run-2"))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 2 * PER_WORKER)
        redis.close()
