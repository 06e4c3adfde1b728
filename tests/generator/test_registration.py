"""Registration, heartbeats and surviving a coordinator that goes away and comes back."""
import os
import re
import time

import msgpack
import pytest

import stressgrid
from stressgrid import wire

from stressgrid.generator.config import config_from
from stressgrid.generator.coordinator_link import REGISTER_RETRY_S, CoordinatorLink
from stressgrid.join_token import ENV as JOIN_TOKEN_ENV

from .conftest import JOIN_TOKEN, FakeCoordinator


def test_registers_with_identity_version_and_capacity(coordinator, start_agent):
    agent = start_agent(coordinator.url)
    register = coordinator.register()
    assert register.generator_id == "test-generator"
    assert register.version == stressgrid.__version__
    assert register.cores == os.cpu_count()
    assert register.workers == 2
    assert register.capacity > 0
    identity = coordinator.matched.identity
    assert re.fullmatch(rb"test-generator/[0-9a-f]{16}", identity)  # the id, and this process's instance
    # Once registered it heartbeats every second and reports telemetry.
    first = coordinator.expect(wire.Heartbeat)
    first_at = coordinator.matched.at
    coordinator.expect(wire.Heartbeat)
    assert 0.5 < coordinator.matched.at - first_at < 2.0
    assert first.sent_at > 0
    coordinator.expect(wire.Telemetry)
    assert agent.process.poll() is None
    assert "caps this host" in agent.log() or "holds up to" in agent.log()
    # Each line names the generator once.
    assert f"INFO generator test-generator: 2 workers, coordinator {coordinator.url}\n" in agent.log()
    assert "test-generator: generator test-generator" not in agent.log()


def test_register_is_repeated_until_answered(coordinator, start_agent):
    start_agent(coordinator.url)
    coordinator.expect(wire.Register, timeout=15)
    coordinator.expect(wire.Register, timeout=5)
    # Unanswered, it sends neither heartbeats nor telemetry.
    assert not [m for _, _, m in coordinator.received if isinstance(m, (wire.Heartbeat, wire.Telemetry))]
    coordinator.register()
    coordinator.expect(wire.Telemetry)


def test_register_is_paced_by_the_retry_interval_until_answered(zmq_context):
    """The pacing, on an injected clock: one Register a second, no heartbeat, until Registered."""
    now = [1000.0]
    config = config_from(["--coordinator", "tcp://127.0.0.1:9", "--id", "paced"],
                         {JOIN_TOKEN_ENV: JOIN_TOKEN.encode()})
    link = CoordinatorLink(zmq_context, config, cores=1, workers=1, capacity=10, clock=lambda: now[0])
    sent = []
    link.send = lambda message: sent.append((now[0], type(message).__name__)) or True
    try:
        while now[0] <= 1003.5:
            link.tick()
            now[0] += 0.25
        assert sent == [(1000.0 + i * REGISTER_RETRY_S, "Register") for i in range(4)]
        link.heard()
        link.on_registered(wire.Registered(coordinator_version="test"))
        assert link.registered
        sent.clear()
        link.tick()
        assert [kind for _, kind in sent] == ["Heartbeat"]
    finally:
        link.close()


def test_not_registered_error_makes_it_register_again(coordinator, agent):
    coordinator.expect(wire.Heartbeat)
    coordinator.send(wire.Error(message=wire.NOT_REGISTERED))
    sent_at = time.monotonic()
    coordinator.expect(wire.Register, timeout=3)
    assert coordinator.matched.at - sent_at < 1.5


def test_other_coordinator_errors_do_not_re_register(coordinator, agent):
    coordinator.send(wire.Error(message="telemetry for an unknown run"))
    coordinator.expect(wire.Telemetry)
    since = time.monotonic()
    coordinator.wait_for_state(lambda: time.monotonic() - since > 2.5, 10, "2.5 s of traffic")
    assert not [m for at, _, m in coordinator.received if at >= since and isinstance(m, wire.Register)]


def test_silent_coordinator_is_registered_with_again(coordinator, agent):
    coordinator.heartbeating = False
    silent_since = coordinator.last_sent_at
    coordinator.expect(wire.Register, timeout=10)
    silence = coordinator.matched.at - silent_since
    assert 2.5 < silence < 6.0


def test_coordinator_restart_is_survived(zmq_context, coordinator, agent):
    coordinator.expect(wire.Heartbeat)
    port = coordinator.port
    coordinator.close()
    restarted = FakeCoordinator(zmq_context, port)
    try:
        register = restarted.register(timeout=15)
        assert register.generator_id == "test-generator"
        restarted.expect(wire.Telemetry)
        restarted.expect(wire.Heartbeat)
    finally:
        restarted.close()
    assert agent.process.poll() is None


BAD_MESSAGES = {
    "garbage bytes": b"\xc1\xff not msgpack at all",
    "not a map": msgpack.packb([1, 2, 3]),
    "unknown type": msgpack.packb({"t": "launch_missiles", "v": wire.PROTOCOL_VERSION}),
    "wrong version": msgpack.packb({"t": "heartbeat", "v": wire.PROTOCOL_VERSION + 41, "sent_at": 1.0}),
    "missing field": msgpack.packb({"t": "stop_cohort", "v": wire.PROTOCOL_VERSION, "run_id": "r"}),
    "wrong direction": wire.encode(wire.Telemetry(run_id="", metrics={}, active_device_number=0, errors={})),
    "bad blocks": wire.encode(wire.StartCohort(run_id="r", cohort_id="1", blocks=[{"size": "many"}],
                                               addresses=[], opts={}, address_offset=0)),
    "bad addresses": wire.encode(wire.StartCohort(
        run_id="r", cohort_id="1", blocks=[{"script": "await delay(1)", "params": {}, "size": 1}],
        addresses=[{"port": 1}], opts={}, address_offset=0)),
}


@pytest.mark.parametrize("name", list(BAD_MESSAGES))
def test_malformed_messages_are_answered_with_error(coordinator, agent, name):
    coordinator.send_raw(BAD_MESSAGES[name])
    error = coordinator.expect(wire.Error, timeout=5)
    assert error.message
    # The agent is alive and keeps talking.
    coordinator.expect(wire.Heartbeat)
    coordinator.expect(wire.Telemetry)
    assert agent.process.poll() is None
    assert "Traceback" not in agent.log()


def test_errors_name_the_problem(coordinator, agent):
    coordinator.send_raw(BAD_MESSAGES["unknown type"])
    assert "launch_missiles" in coordinator.expect(wire.Error, timeout=5).message
    coordinator.send_raw(BAD_MESSAGES["wrong version"])
    assert "version" in coordinator.expect(wire.Error, timeout=5).message
    coordinator.send_raw(BAD_MESSAGES["bad addresses"])
    assert "addresses[0]" in coordinator.expect(wire.Error, timeout=5).message
