"""Fleet security against a real coordinator: who may join, and what a generator may write into a run."""
import os
import re
import stat
import subprocess
import sys
import threading
import time

import pytest
import zmq

from stressgrid import wire
from stressgrid.generator.coordinator_link import secure
from stressgrid.join_token import JoinToken
from tests.coordinator.support import (ROOT, FakeGenerator, coordinator_env, coordinator_process, snapshot,
                                       wait_until)


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
    fake = FakeGenerator(coordinator, "gen-0")
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


# -- the join token ------------------------------------------------------------------------


def plain_dealer(coordinator, identity, token=None):
    """A DEALER without CURVE, or (``token``) with the CURVE keys of some other token."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, identity.encode())
    socket.setsockopt(zmq.LINGER, 0)
    if token is not None:
        secure(socket, token)
    socket.connect(coordinator.generator_url)
    return socket


def attack_messages(identity, run_id):
    histogram = b"\x05" + b"\xff" * 8 + b"\x7f" + b"\x00" + b"\xff" * 8 + b"\x7f"  # 2 x (2**63-1)
    return [wire.Register(generator_id=identity, version="0", cores=1, workers=1, capacity=1000),
            wire.Telemetry(run_id=run_id, metrics={"histograms": {"conn_us": [histogram, 0]},
                                                   "counters": {"conn_count": 1_000_000}},
                           active_device_number=0, errors={}),
            wire.Event(run_id=run_id, kind="run_done", message="fake")]


def test_a_peer_without_the_join_token_is_refused_and_changes_nothing(coordinator, generator):
    api = coordinator.api
    assert stat.S_IMODE(os.stat(coordinator.join_token_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(coordinator.data_dir / "coordinator.key").st_mode) == 0o600
    status, run, _ = api.post("/api/runs", long_plan())
    assert status == 201, run
    generator.wait_for(wire.StartCohort)
    generator.telemetry(snapshot({"conn_us": [100]}, {"conn_count": 3}), active=5)
    real_key = coordinator.join_token.coordinator_public
    wrong_token = JoinToken.new(real_key)  # the coordinator's public key is no secret; the fleet's is
    peers = [plain_dealer(coordinator, "plain"), plain_dealer(coordinator, "guess", wrong_token),
             plain_dealer(coordinator, "gen-0", wrong_token)]
    try:
        for peer in peers:
            for message in attack_messages(peer.getsockopt(zmq.IDENTITY).decode(), run["id"]):
                peer.send(wire.encode(message), zmq.NOBLOCK)  # queued until a handshake that never ends
        wait_until(lambda: api.state()["ingest"]["refused_connections"] >= 3, message="3 refused peers")
        assert [g["id"] for g in api.state()["generators"]] == ["gen-0"]
        for peer in peers:
            assert not peer.poll(200), "a refused peer heard back from the coordinator"
    finally:
        for peer in peers:
            peer.close(0)
    detail = abort_answered(api, generator, run["id"])
    summary = detail["summary"]
    assert summary["totals"] == {"conn_count": 3}
    assert summary["histograms"]["conn_us"]["count"] == 1
    assert summary["generators"] == {"gen-0": 5}
    assert not any(e["kind"] in ("run_done", "stale_telemetry") for e in summary["events"])
    refusals = [line for line in coordinator.stderr().splitlines() if "refused" in line]
    assert len(refusals) == 1, refusals  # logged, at most once per 10 s


def test_rotating_the_join_token_refuses_the_old_one_from_the_next_connection(coordinator, generator):
    old = coordinator.join_token
    rotated = subprocess.run([sys.executable, "-m", "coordinator_app", "join-token", "--rotate",
                              "--data-dir", str(coordinator.data_dir)], cwd=ROOT, env=coordinator_env(),
                             capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    new = JoinToken.parse(rotated.stdout)
    assert new == coordinator.join_token and new.fleet_secret != old.fleet_secret
    assert new.coordinator_public == old.coordinator_public
    printed = subprocess.run([sys.executable, "-m", "coordinator_app", "join-token", "--data-dir",
                              str(coordinator.data_dir)], cwd=ROOT, env=coordinator_env(),
                             capture_output=True, text=True, timeout=60)
    assert JoinToken.parse(printed.stdout) == new
    refused_before = coordinator.api.state()["ingest"]["refused_connections"]
    late = FakeGenerator(coordinator, "late-old", register=False, token=old)
    fresh = FakeGenerator(coordinator, "fresh", token=new)
    try:
        late.register(wait=False)
        wait_until(lambda: coordinator.api.state()["ingest"]["refused_connections"] > refused_before,
                   message="the old token refused")
        ids = [g["id"] for g in coordinator.api.wait_generators(2)["generators"]]
        assert sorted(ids) == ["fresh", "gen-0"]  # gen-0's connection predates the rotation
        assert not late.messages(wire.Registered)
    finally:
        late.close()
        fresh.close()


# -- identity ------------------------------------------------------------------------------


def answer_to_register(fake, timeout=10.0):
    """Send one Register; the coordinator's answer to it (Registered, or an Error refusing it)."""
    def answers():
        return [m for m in fake.received if isinstance(m, wire.Registered)
                or (isinstance(m, wire.Error) and m.message != wire.NOT_REGISTERED)]
    before = len(answers())
    fake.register(wait=False)
    wait_until(lambda: len(answers()) > before, timeout, message="an answer to Register")
    return answers()[-1]


def test_a_second_connection_claiming_a_connected_generators_id_is_refused_not_handed_over(coordinator,
                                                                                          generator):
    api = coordinator.api
    # The same routing id as the connected generator: ZeroMQ refuses the connection outright.
    twin = FakeGenerator(coordinator, "gen-0", register=False)
    # Another connection that claims the id: the coordinator refuses it with an event.
    claimer = FakeGenerator(coordinator, "gen-0", register=False, identity="gen-0/other-instance")
    try:
        twin.register(wait=False)
        answer = answer_to_register(claimer)
        assert isinstance(answer, wire.Error) and "in use by a connected generator" in answer.message
        assert isinstance(answer_to_register(claimer), wire.Error)  # it keeps trying: no second event
        status, run, _ = api.post("/api/runs", long_plan(size=6))
        assert status == 201, run
        assert generator.wait_for(wire.StartCohort)[0].blocks[0]["size"] == 6
        generator.telemetry(snapshot(counters={"conn_count": 6}), active=6)
        detail = abort_answered(api, generator, run["id"])
    finally:
        twin.close()
        claimer.close()
    for intruder in (twin, claimer):
        assert not intruder.messages(wire.StartCohort) and not intruder.messages(wire.Registered)
    summary = detail["summary"]
    assert summary["generators"] == {"gen-0": 6} and summary["totals"] == {"conn_count": 6}
    events = [e for e in api.state()["events"] if e["kind"] == "generator_id_refused"]
    assert len(events) == 1 and events[0]["generator"] == "gen-0"
    assert [g["id"] for g in api.state()["generators"]] == ["gen-0"]


def test_a_generator_that_really_restarted_registers_again_on_its_new_connection(tmp_path):
    # A generator timeout longer than the restart silence: the old record is still there.
    with coordinator_process(tmp_path, generator_timeout=10.0) as coordinator:
        api = coordinator.api
        old = FakeGenerator(coordinator, "gen-0", identity="gen-0/old-instance")
        old.close()  # the process is gone: no more heartbeats from the old connection
        restarted = FakeGenerator(coordinator, "gen-0", register=False, identity="gen-0/new-instance")
        retry = threading.Event()  # never set: paces the retries as an agent's REGISTER_RETRY_S does
        try:
            deadline = time.monotonic() + 10
            answer = answer_to_register(restarted)
            while isinstance(answer, wire.Error):  # refused only while the old connection could be alive
                assert "in use" in answer.message and time.monotonic() < deadline
                retry.wait(0.5)
                answer = answer_to_register(restarted)
            assert isinstance(answer, wire.Registered)
            state = wait_until(lambda: (s := api.state()) and "generator_restarted" in
                               [e["kind"] for e in s["events"]] and s, message="the restart event")
            assert [g["id"] for g in state["generators"]] == ["gen-0"]
            assert [e["kind"] for e in state["events"]].count("generator_restarted") == 1
            assert not any(e["kind"] == "generator_lost" for e in state["events"])
        finally:
            restarted.close()
