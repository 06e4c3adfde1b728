"""Cohorts on two workers against real redis-servers: exact splits and exact merged totals."""
import psutil

from stressgrid import wire
from stressgrid.plan.constants import CPU_HISTOGRAM
from stressgrid.generator.host_metrics import NETWORK_RX_BYTES, NETWORK_TX_BYTES, TCP_RETRANSMITS
from tests.support.servers import redis_server

from .conftest import Redis, connections_to, merged, redis_cohort


def test_merged_totals_equal_what_the_workers_did(coordinator, agent, tmp_path):
    devices = 4
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        connections_before = redis.connections_received()
        coordinator.send(redis_cohort(port, devices, iterations=3, delay_ms=20))
        started = coordinator.last_sent_at
        coordinator.wait_until(
            lambda m: isinstance(m, wire.Telemetry)
            and merged(coordinator.telemetry_since(started)).histogram("set_us").total_count >= 150,
            timeout=30, what="150 SETs in telemetry")
        coordinator.send(wire.StopCohort(run_id="run-1", cohort_id="1"))
        coordinator.expect(wire.Telemetry, timeout=10, where=lambda m: m.active_device_number == 0)
        telemetry = coordinator.telemetry_since(started)
        totals = merged(telemetry)
        redis_sets = redis.command_calls("set")
        redis_gets = redis.command_calls("get")
        redis_connections = redis.connections_received() - connections_before
        redis.close()

    client_sets = totals.histogram("set_us").total_count
    client_gets = totals.histogram("get_us").total_count
    # A command counts on the client only once its reply is in, so redis is never behind;
    # it is ahead by at most one command per device: those cut off by the stop.
    assert client_sets >= 150
    assert 0 <= redis_sets - client_sets <= devices
    assert 0 <= redis_gets - client_gets <= devices
    assert 0 <= redis_connections - totals.counter("conn_count") <= devices
    assert totals.counter("conn_count") >= client_sets // 3  # 3 SET/GET pairs per connection
    assert totals.counter("send_count") >= client_sets + client_gets
    # Retransmits are the whole host's (other programs too); devices had no errors.
    device_errors = {name: n for name, n in totals.errors().items() if name != TCP_RETRANSMITS}
    assert not device_errors, device_errors
    # The devices' metrics are all under their run's id; a host at rest reports under "".
    assert {m.run_id for m in telemetry} <= {"run-1", ""}
    assert merged([m for m in telemetry if m.run_id == "run-1"]).histogram("set_us").total_count == client_sets
    assert all(m.run_id == "run-1" for m in telemetry if m.active_device_number)
    # Every report carries one CPU sample and the host's traffic, with the current run's message.
    cpu_samples = [merged([m]).histogram(CPU_HISTOGRAM).total_count for m in telemetry]
    assert set(cpu_samples) <= {0, 1}
    assert all(samples == 1 for samples, m in zip(cpu_samples, telemetry) if m.active_device_number)
    assert totals.counter(NETWORK_RX_BYTES) >= client_gets * 1024
    assert totals.counter(NETWORK_TX_BYTES) >= client_sets * 1024
    assert max(m.active_device_number for m in telemetry) == devices
    assert all(m.metrics["gauges"]["active_device_number"] == m.active_device_number for m in telemetry)


def test_abort_is_answered_once_the_workers_last_metrics_are_sent(coordinator, agent, tmp_path):
    devices = 6
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(redis_cohort(port, devices, delay_ms=5))
        started = coordinator.last_sent_at
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == devices)
        coordinator.send(wire.Abort(run_id="run-1"))
        assert coordinator.expect(wire.RunStopped, timeout=10).run_id == "run-1"
        before_answer = coordinator.telemetry_since(started)
        redis_sets = redis.command_calls("set")
        # The next report (a second later) carries nothing of the run: the answer meant "that was all".
        after_answer = coordinator.expect(wire.Telemetry, timeout=5)
        redis.close()
    totals = merged(before_answer)
    client_sets = totals.histogram("set_us").total_count
    assert client_sets > 0 and 0 <= redis_sets - client_sets <= devices
    assert before_answer[-1].active_device_number == 0
    assert after_answer.active_device_number == 0
    assert not after_answer.metrics["histograms"].get("set_us")
    assert not after_answer.metrics["counters"].get("send_count")


def test_cohorts_split_exactly_and_continue_the_address_round_robin(coordinator, agent, tmp_path):
    redis_a_dir, redis_b_dir = tmp_path / "a", tmp_path / "b"
    redis_a_dir.mkdir()
    redis_b_dir.mkdir()
    with redis_server(redis_a_dir) as port_a, redis_server(redis_b_dir) as port_b:
        redis_a, redis_b = Redis(port_a), Redis(port_b)
        ports = {port_a, port_b}

        def state():
            workers = agent.worker_pids()
            return (redis_a.device_connections(), redis_b.device_connections(),
                    sorted(connections_to(pid, ports) for pid in workers))

        # 7 devices over 2 workers: 4 + 3; over 2 addresses from offset 0: A B A B A B A.
        coordinator.send(redis_cohort(None, 7, cohort_id="1", ports=[port_a, port_b], address_offset=0))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 7)
        coordinator.wait_for_state(lambda: state() == (4, 3, [3, 4]), 10, "4 + 3 connections")
        # The coordinator's cursor is now 7: B A B A B A B. The remainder goes to the other worker.
        coordinator.send(redis_cohort(None, 7, cohort_id="2", ports=[port_a, port_b], address_offset=7))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 14)
        coordinator.wait_for_state(lambda: state() == (7, 7, [7, 7]), 10, "7 + 7 connections")
        # Stopping cohort 1 leaves exactly cohort 2's devices: 3 on A, 4 on B.
        coordinator.send(wire.StopCohort(run_id="run-1", cohort_id="1"))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 7)
        coordinator.wait_for_state(lambda: state()[:2] == (3, 4), 10, "cohort 2 only")
        # Abort stops every cohort of the run.
        coordinator.send(wire.Abort(run_id="run-1"))
        assert coordinator.expect(wire.RunStopped, timeout=15).run_id == "run-1"
        coordinator.wait_for_state(lambda: state() == (0, 0, [0, 0]), 10, "no connections")
        redis_a.close()
        redis_b.close()


def test_a_script_that_fails_to_start_is_reported_as_an_event(coordinator, agent, tmp_path):
    with redis_server(tmp_path) as port:
        bad = redis_cohort(port, 2)
        bad = wire.StartCohort(run_id=bad.run_id, cohort_id="bad", blocks=[dict(bad.blocks[0], script="await (")],
                               addresses=bad.addresses, opts=bad.opts, address_offset=0)
        coordinator.send(bad)
        event = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "worker_error")
        assert "bad" in event.message and "syntax" in event.message.lower()
        # The workers are fine and run the next cohort.
        coordinator.send(redis_cohort(port, 3, cohort_id="good"))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == 3)
    assert all(psutil.pid_exists(pid) for pid in agent.worker_pids())
