"""Stopping always works: a worker that cannot stop its devices is killed, and the load ends."""
import re

from stressgrid import wire
from tests.support.servers import redis_server

from .conftest import Redis, merged, script_cohort

SPIN = "spins = 0\nwhile True:\n    spins += 1\n"
# A script that swallows every cancellation and keeps loading the target.
STUBBORN = """import asyncio
while True:
    try:
        await send("INCR hits\\r\\n")
        await recv()
        await delay(5)
    except asyncio.CancelledError:
        pass
"""
STOP_TIMEOUT_S = 2.0


def start_stopping_agent(coordinator, start_agent):
    agent = start_agent(coordinator.url, workers=2,
                        environment={"STRESSGRID_WORKER_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S)})
    coordinator.register()
    return agent


def events_of(coordinator, kind, since=0.0):
    return [m for at, _, m in coordinator.received if at >= since and isinstance(m, wire.Event) and m.kind == kind]


def test_an_abort_kills_workers_whose_devices_spin_and_names_the_line(coordinator, start_agent, tmp_path):
    agent = start_stopping_agent(coordinator, start_agent)
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(script_cohort(port, SPIN, 2))
        coordinator.wait_for_state(lambda: redis.device_connections() == 2, 15, "both devices connected")
        before = agent.worker_pids()
        # Both loops are held: the watchdogs say where.
        stalls = [coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_loop_stalled")
                  for _ in range(2)]
        assert all(re.search(r"a device holds it at line [23]: (while True:|spins \+= 1)", e.message) for e in stalls)
        coordinator.send(wire.Abort(run_id="run-1"))
        assert coordinator.expect(wire.RunStopped, timeout=20).run_id == "run-1"
        killed = events_of(coordinator, "worker_killed")
        assert len(killed) == 2
        for event in killed:
            assert f"did not confirm abort of run 'run-1' within {STOP_TIMEOUT_S:g} s" in event.message
            assert re.search(r"its last report: the event loop has not turned .* at line [23]: ", event.message)
        assert {int(re.search(r"pid (\d+)", e.message).group(1)) for e in killed} == set(before)
        # The kills are errors of the run (not of a host at rest), sent before the answer.
        assert {event.run_id for event in killed} == {"run-1"}
        counted = merged(m for m in coordinator.telemetry_since(0) if m.metrics and m.run_id == "run-1")
        assert counted.counters.get("worker_killed_error_count") == 2
        # Both workers start again, empty.
        coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_restarted")
        coordinator.wait_for_state(lambda: redis.device_connections() == 0, 10, "no connections")
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 0)
        redis.close()
    assert agent.process.poll() is None


def test_after_an_abort_a_script_that_swallows_cancellation_loads_the_target_no_more(coordinator, start_agent,
                                                                                      tmp_path):
    start_stopping_agent(coordinator, start_agent)
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(script_cohort(port, STUBBORN, 2))
        coordinator.wait_for_state(lambda: redis.command_calls("incr") > 100, 15, "INCRs at redis")
        coordinator.send(wire.Abort(run_id="run-1"))
        refused = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "devices_refuse_stop")
        assert "devices still run after they were cancelled (line " in refused.message
        killed = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_killed")
        assert "did not confirm abort of run 'run-1'" in killed.message
        assert "devices still run after they were cancelled" in killed.message
        assert coordinator.expect(wire.RunStopped, timeout=20).run_id == "run-1"
        # Redis's own count stops growing once the run has answered the abort.
        after_answer = redis.command_calls("incr")
        for _ in range(3):
            coordinator.expect(wire.Telemetry, timeout=5)
        assert redis.command_calls("incr") == after_answer
        assert redis.device_connections() == 0
        redis.close()
