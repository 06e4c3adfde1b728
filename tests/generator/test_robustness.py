"""A worker killed mid-run, a coordinator that vanishes, and stopping by signal."""
import os
import signal
import time

import psutil
import pytest

from stressgrid import wire
from tests.support.servers import redis_server

from .conftest import Redis, connections_to, redis_cohort, wait_for


def test_killed_worker_is_restarted_with_its_devices(coordinator, agent, tmp_path):
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 6, cohort_id="1"))
        coordinator.send(redis_cohort(port, 3, cohort_id="2", address_offset=6))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 9)
        coordinator.wait_for_state(lambda: redis.device_connections() == 9, 10, "9 connections")
        before = agent.worker_pids()
        victim = before[0]
        victim_devices = connections_to(victim, {port})
        assert victim_devices in (4, 5)

        os.kill(victim, signal.SIGKILL)
        event = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_restarted")
        assert f"pid {victim}" in event.message and "SIGKILL" in event.message
        assert f"re-creating {victim_devices} devices in 2 cohorts" in event.message
        # Telemetry went on, and the full population is back, on a new process.
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 9)
        coordinator.wait_for_state(lambda: redis.device_connections() == 9, 10, "9 connections again")
        after = agent.worker_pids()
        assert len(after) == 2 and victim not in after and before[1] in after
        assert sorted(connections_to(pid, {port}) for pid in after) == [4, 5]
        # The restarted worker's cohorts are the live ones: stopping them empties it too.
        coordinator.send(wire.StopCohort(run_id="run-1", cohort_id="1"))
        coordinator.send(wire.StopCohort(run_id="run-1", cohort_id="2"))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 0)
        coordinator.wait_for_state(lambda: redis.device_connections() == 0, 10, "no connections")
        redis.close()
    assert agent.process.poll() is None


def test_an_abort_is_answered_even_when_a_worker_dies_before_answering(coordinator, agent, tmp_path):
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 4))
        coordinator.wait_for_state(lambda: redis.device_connections() == 4, 15, "4 connections")
        frozen, running = agent.worker_pids()
        os.kill(frozen, signal.SIGSTOP)  # it cannot answer the abort
        try:
            coordinator.send(wire.Abort(run_id="run-1"))
            # The other worker answers; the agent still waits for the frozen one.
            assert wait_for(lambda: connections_to(running, {port}) == 0, 10)
        finally:
            os.kill(frozen, signal.SIGKILL)
        assert coordinator.expect(wire.RunStopped, timeout=15).run_id == "run-1"
        # The restarted worker does not bring the aborted run's devices back.
        event = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_restarted")
        assert f"pid {frozen}" in event.message and "re-creating 0 devices" in event.message
        coordinator.wait_for_state(lambda: redis.device_connections() == 0, 10, "no connections")
        coordinator.expect(wire.Telemetry, timeout=5, where=lambda m: m.active_device_number == 0)
        redis.close()


def test_devices_stop_when_the_coordinator_vanishes(coordinator, start_agent, tmp_path):
    grace_s = 2.0
    agent = start_agent(coordinator.url, grace_s=grace_s)
    coordinator.register()
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 4))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 4)
        coordinator.wait_for_state(lambda: redis.device_connections() == 4, 10, "4 connections")
        # The coordinator goes quiet: no heartbeats, no answers.
        coordinator.heartbeating = False
        silent_since = coordinator.last_sent_at
        coordinator.wait_for_state(lambda: redis.device_connections() == 0, 15, "devices stopped")
        stopped_after = time.monotonic() - silent_since
        redis.close()
    assert stopped_after >= grace_s
    assert "no word from the coordinator" in agent.log()
    # The agent itself keeps going, trying to register again.
    coordinator.expect(wire.Register, timeout=10)
    assert agent.process.poll() is None and len(agent.worker_pids()) == 2


@pytest.mark.parametrize("known", [True, False], ids=["known", "anew"])
def test_registering_again_keeps_the_devices_only_where_the_coordinator_kept_the_agent(
        coordinator, start_agent, tmp_path, known):
    agent = start_agent(coordinator.url, grace_s=30.0)
    first = coordinator.register()
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 4))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 4)
        # Heartbeats stop: the agent's link registers again, as the same instance.
        coordinator.heartbeating = False
        again = coordinator.register(timeout=10, known=known)
        coordinator.heartbeating = True
        assert again.instance == first.instance and again.instance
        if known:  # the coordinator kept its place: the devices go on
            since = time.monotonic()
            telemetry = coordinator.wait_until(
                lambda m: isinstance(m, wire.Telemetry) and time.monotonic() - since > 2, 10, "2 s of telemetry")
            assert telemetry.active_device_number == 4 and redis.device_connections() == 4
            assert "its devices go on" in agent.log() and "anew" not in agent.log()
        else:  # a coordinator that lost track of it: whatever it ran is no run's any more
            coordinator.wait_for_state(lambda: redis.device_connections() == 0, 15, "devices stopped")
            assert "the coordinator registered this generator anew" in agent.log()
        redis.close()


def test_devices_keep_running_while_the_coordinator_talks(coordinator, start_agent, tmp_path):
    agent = start_agent(coordinator.url, grace_s=2.0)
    coordinator.register()
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 4))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 4)
        since = time.monotonic()
        # Well past the grace period, heartbeats keep the devices alive.
        telemetry = coordinator.wait_until(
            lambda m: isinstance(m, wire.Telemetry) and time.monotonic() - since > 4.5, 10, "4.5 s")
        assert telemetry.active_device_number == 4
        assert redis.device_connections() == 4
        redis.close()
    assert "no word from the coordinator" not in agent.log()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_devices_workers_and_exits_cleanly(coordinator, agent, tmp_path, signum):
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 5))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 5)
        coordinator.wait_for_state(lambda: redis.device_connections() == 5, 10, "5 connections")
        workers = [psutil.Process(pid) for pid in agent.worker_pids()]
        agent.signal(signum)
        assert agent.process.wait(20) == 0
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive
        # The workers closed their sockets; redis sees the last close within moments.
        assert wait_for(lambda: redis.device_connections() == 0, timeout=5)
        redis.close()
    assert "Traceback" not in agent.log()


def test_workers_exit_when_the_agent_is_killed(coordinator, agent, tmp_path):
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 4))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 4)
        workers = [psutil.Process(pid) for pid in agent.worker_pids()]
        assert len(workers) == 2
        agent.signal(signal.SIGKILL)
        agent.process.wait(5)
        # No orphaned load: each worker notices its parent is gone within a second or two.
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
        assert wait_for(lambda: redis.device_connections() == 0, timeout=5)
        redis.close()


def test_a_fresh_registration_stops_devices_the_coordinator_no_longer_knows(coordinator, agent, tmp_path):
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, 3))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 3)
        # A coordinator that lost its state says it does not know this generator.
        coordinator.send(wire.Error(message=wire.NOT_REGISTERED))
        coordinator.register(timeout=5)
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 0)
        coordinator.wait_for_state(lambda: redis.device_connections() == 0, 10, "devices stopped")
        # New cohorts run as usual.
        coordinator.send(redis_cohort(port, 2, run_id="run-2"))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 2)
        redis.close()


def test_bad_coordinator_address_is_a_clear_error(start_agent, tmp_path):
    agent = start_agent("localhost:9696")
    assert agent.process.wait(20) != 0
    assert "cannot use coordinator address 'localhost:9696'" in agent.log()
    assert "Traceback" not in agent.log()
