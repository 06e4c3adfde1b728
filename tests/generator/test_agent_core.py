"""The agent's logic without processes or sockets: messages and a fake clock in, effects out.

The cases that need a real process (a worker in a CPU loop killed by SIGKILL,
a crash restarted by the pool) stay in ``test_stopping.py`` and
``test_failures.py``; here each stop, abort, kill and restart is driven
through ``AgentCore`` with the time passed in.
"""
import pytest

from stressgrid import wire
from stressgrid.generator.agent_core import (ACTIVE_DEVICES_GAUGE, DEVICE_UNPLACED_COUNTER, WORKER_CRASHED_COUNTER,
                                             WORKER_KILLED_COUNTER, AgentCore)
from stressgrid.generator.supervisor import WorkerExit
from stressgrid.metrics import MetricsAggregate

pytestmark = pytest.mark.unit

ADDRESS = {"host": "127.0.0.1", "port": 1, "protocol": "udp"}
STOP_TIMEOUT_S = 10.0
GRACE_S = 30.0


def cohort(size, cohort_id="1", run_id="r"):
    return wire.StartCohort(run_id=run_id, cohort_id=cohort_id,
                            blocks=[{"script": "await delay(1000)", "params": {}, "size": size}],
                            addresses=[ADDRESS], opts={}, address_offset=0)


def telemetry(run_id, active, counters=None, errors=None):
    return wire.Telemetry(run_id=run_id, metrics={"histograms": {}, "counters": counters or {}, "gauges": {}},
                          active_device_number=active, errors=errors or {})


def ready_core(workers=2, capacity=1000, now=0.0):
    """A core whose workers started as pids 100, 101, ... and said they are ready."""
    core = AgentCore([capacity] * workers, STOP_TIMEOUT_S, GRACE_S)
    for index in range(workers):
        assert not core.worker_started(index, 100 + index, now)
        assert not core.from_worker(index, wire.WorkerReady(worker_index=index, pid=100 + index), now)
    return core


def of_type(messages, kind):
    return [message for message in messages if isinstance(message, kind)]


def assert_answers(outbox, run_id):
    """``outbox`` answers the stop of ``run_id``: its telemetry, then ``RunStopped``."""
    *reports, answer = outbox.to_coordinator
    assert answer == wire.RunStopped(run_id=run_id)
    assert reports and all(isinstance(m, wire.Telemetry) for m in reports)


def counted(outbox):
    merged = MetricsAggregate()
    for message in of_type(outbox.to_coordinator, wire.Telemetry):
        merged.add_snapshot(message.metrics)
    return merged.counters


def test_a_cohort_is_split_over_the_ready_workers_and_a_late_one_gets_its_share_when_ready():
    core = AgentCore([1000, 1000], STOP_TIMEOUT_S, GRACE_S)
    core.worker_started(0, 100, 0.0)
    core.worker_started(1, 101, 0.0)
    core.from_worker(0, wire.WorkerReady(worker_index=0, pid=100), 0.0)
    outbox = core.from_coordinator(cohort(5), 1.0)
    assert [(index, sum(b["size"] for b in m.blocks)) for index, m in outbox.to_workers] == [(0, 3)]
    # A WorkerReady from another process than the one started for that index is ignored.
    assert not core.from_worker(1, wire.WorkerReady(worker_index=1, pid=999), 2.0)
    outbox = core.from_worker(1, wire.WorkerReady(worker_index=1, pid=101), 2.0)
    assert [(index, m.address_offset, sum(b["size"] for b in m.blocks)) for index, m in outbox.to_workers] \
        == [(1, 3, 2)]
    assert not outbox.to_coordinator  # a first start is no event


def test_an_abort_is_answered_after_every_worker_with_what_they_flushed_first():
    core = ready_core()
    core.from_coordinator(cohort(4), 0.0)
    outbox = core.from_coordinator(wire.Abort(run_id="r"), 1.0)
    assert sorted(index for index, m in outbox.to_workers if m == wire.Abort(run_id="r")) == [0, 1]
    assert not outbox.to_coordinator
    assert not core.from_worker(0, telemetry("r", 0, {"request_count": 3}), 1.1).to_coordinator
    assert not core.from_worker(0, wire.RunStopped(run_id="r"), 1.2).to_coordinator
    core.from_worker(1, telemetry("r", 0, {"request_count": 4}), 1.3)
    outbox = core.from_worker(1, wire.RunStopped(run_id="r"), 1.4)
    assert_answers(outbox, "r")
    [flushed] = [m for m in outbox.to_coordinator if isinstance(m, wire.Telemetry) and m.run_id == "r"]
    assert flushed.metrics["counters"]["request_count"] == 7
    assert core.next_deadline() is None  # both confirmed: nothing owed


def test_an_end_run_with_no_ready_worker_is_answered_at_once():
    core = AgentCore([10], STOP_TIMEOUT_S, GRACE_S)
    core.worker_started(0, 100, 0.0)
    outbox = core.from_coordinator(wire.EndRun(run_id="r"), 1.0)
    assert not outbox.to_workers
    assert_answers(outbox, "r")


def test_a_worker_that_does_not_confirm_in_time_is_killed_counted_and_named_and_the_run_answered():
    core = ready_core()
    core.from_coordinator(cohort(4), 0.0)
    core.from_worker(1, wire.Event(run_id="r", kind="worker_loop_stalled", message="held at line 3"), 0.5)
    core.from_coordinator(wire.Abort(run_id="r"), 1.0)
    core.from_worker(0, wire.RunStopped(run_id="r"), 1.5)
    assert core.next_deadline() == 1.0 + STOP_TIMEOUT_S
    assert not core.tick(1.0 + STOP_TIMEOUT_S - 0.001)
    outbox = core.tick(1.0 + STOP_TIMEOUT_S)
    assert outbox.kills == [1]
    [killed] = of_type(outbox.to_coordinator, wire.Event)
    assert killed.kind == "worker_killed" and killed.run_id == "r"  # the run being stopped, not "at rest"
    assert "worker 1 (pid 101) did not confirm abort of run 'r' within 10 s" in killed.message
    assert "its last report: held at line 3" in killed.message
    # Its exit (a kill, already counted) answers the abort, with the kill in the telemetry before it.
    outbox = core.worker_exited(WorkerExit(1, 101, -9, killed=True), 11.2)
    assert_answers(outbox, "r")
    assert counted(outbox) == {WORKER_KILLED_COUNTER: 1}
    assert not of_type(outbox.to_coordinator, wire.Event)
    [report] = [m for m in of_type(outbox.to_coordinator, wire.Telemetry) if m.metrics["counters"]]
    assert report.run_id == "r" and WORKER_KILLED_COUNTER in report.errors


def test_a_worker_whose_devices_keep_ending_gets_more_time():
    core = ready_core(workers=1)
    core.from_coordinator(cohort(100), 0.0)
    core.from_worker(0, telemetry("r", 100), 0.5)
    core.from_coordinator(wire.Abort(run_id="r"), 1.0)
    core.from_worker(0, telemetry("r", 60), 9.0)  # progress: due 10 s from now
    assert not core.tick(11.0).kills
    assert core.next_deadline() == 19.0
    assert core.tick(19.0).kills == [0]


def test_a_crash_is_counted_and_the_restarted_worker_gets_its_devices_back():
    core = ready_core()
    core.from_coordinator(cohort(4), 0.0)
    outbox = core.worker_exited(WorkerExit(0, 100, 3), 5.0)
    [crashed] = of_type(outbox.to_coordinator, wire.Event)
    assert crashed.kind == "worker_crashed" and "worker 0 (pid 100) exited with status 3 with 2 devices" \
        in crashed.message
    assert not core.worker_started(0, 200, 5.0)
    outbox = core.from_worker(0, wire.WorkerReady(worker_index=0, pid=200), 5.5)
    assert [(index, sum(b["size"] for b in m.blocks)) for index, m in outbox.to_workers] == [(0, 2)]
    [restarted] = of_type(outbox.to_coordinator, wire.Event)
    assert restarted.kind == "worker_restarted"
    assert "restarted as pid 200, re-creating 2 devices in 1 cohorts" in restarted.message
    assert counted(core.report(6.0)) == {WORKER_CRASHED_COUNTER: 1}


def test_a_stop_that_cannot_be_delivered_is_not_waited_for():
    core = ready_core()
    core.from_coordinator(cohort(4), 0.0)
    core.from_coordinator(wire.Abort(run_id="r"), 1.0)
    core.from_worker(0, wire.RunStopped(run_id="r"), 1.1)
    outbox = core.undelivered(1, wire.Abort(run_id="r"), 1.2)
    assert_answers(outbox, "r")
    assert core.next_deadline() is None


def test_a_stop_cohort_is_confirmed_by_its_echo():
    core = ready_core()
    core.from_coordinator(cohort(4), 0.0)
    stop = wire.StopCohort(run_id="r", cohort_id="1")
    outbox = core.from_coordinator(stop, 1.0)
    assert sorted(index for index, m in outbox.to_workers) == [0, 1]
    core.from_worker(0, stop, 1.5)
    core.from_worker(1, stop, 1.6)
    assert core.next_deadline() is None and not core.book


@pytest.mark.parametrize("lose", ["registered_anew", "silence"])
def test_a_coordinator_that_lost_track_of_this_generator_stops_every_device(lose):
    core = ready_core()
    core.from_coordinator(cohort(4), 0.0)
    if lose == "silence":
        assert not core.coordinator_silent(GRACE_S - 0.1, 29.0)
        outbox = core.coordinator_silent(GRACE_S, 30.0)
    else:
        outbox = core.registered_anew(30.0)
    assert sorted(index for index, m in outbox.to_workers if isinstance(m, wire.Abort)) == [0, 1]
    assert not core.book and not of_type(outbox.to_coordinator, wire.RunStopped)


def test_devices_beyond_capacity_are_counted_and_told():
    core = ready_core(capacity=3)
    outbox = core.from_coordinator(cohort(10), 0.0)
    assert sum(sum(b["size"] for b in m.blocks) for _, m in outbox.to_workers) == 6
    [event] = of_type(outbox.to_coordinator, wire.Event)
    assert event.kind == "cohort_cut_short" and "4 of 10 devices found no room" in event.message
    assert counted(core.report(1.0)) == {DEVICE_UNPLACED_COUNTER: 4}


def test_each_error_kind_goes_out_with_its_first_line_once_until_the_host_is_idle():
    core = ready_core()
    core.from_coordinator(cohort(2), 0.0)
    core.from_worker(0, telemetry("r", 1, {"conn_refused_error_count": 1}, {"conn_refused_error_count": "a"}), 0.5)
    core.from_worker(1, telemetry("r", 1, {"conn_refused_error_count": 1}, {"conn_refused_error_count": "b"}), 0.6)
    [report] = core.report(1.0).to_coordinator
    assert report.errors == {"conn_refused_error_count": "a"}
    assert report.metrics["counters"]["conn_refused_error_count"] == 2
    assert report.active_device_number == 2 and report.metrics["gauges"][ACTIVE_DEVICES_GAUGE] == 2
    core.from_worker(0, telemetry("r", 1, {"conn_refused_error_count": 1}, {"conn_refused_error_count": "c"}), 1.5)
    assert core.report(2.0).to_coordinator[0].errors == {}
    core.from_coordinator(wire.StopCohort(run_id="r", cohort_id="1"), 3.0)  # idle: forgotten
    core.from_coordinator(cohort(2, cohort_id="2"), 4.0)
    core.from_worker(0, telemetry("r", 1, {"conn_refused_error_count": 1}, {"conn_refused_error_count": "d"}), 4.5)
    assert core.report(5.0).to_coordinator[0].errors == {"conn_refused_error_count": "d"}


def test_bad_telemetry_is_answered_and_not_merged():
    core = ready_core()
    bad = wire.Telemetry(run_id="r", metrics={"histograms": {"x": [1]}, "counters": {}, "gauges": {}},
                         active_device_number=0, errors={})
    outbox = core.from_worker(1, bad, 0.5)
    [(index, error)] = outbox.to_workers
    assert index == 1 and isinstance(error, wire.Error) and "bad telemetry" in error.message
    reports = core.report(1.0).to_coordinator
    assert reports and not any(m.metrics["histograms"] or m.metrics["counters"] for m in reports)


def test_a_message_the_agent_does_not_take_is_answered():
    core = ready_core()
    outbox = core.from_coordinator(wire.WorkerReady(worker_index=0, pid=1), 0.0)
    assert isinstance(outbox.to_coordinator[0], wire.Error) and "'worker_ready'" in outbox.to_coordinator[0].message
    outbox = core.from_worker(0, cohort(1), 0.0)
    assert isinstance(outbox.to_workers[0][1], wire.Error)
