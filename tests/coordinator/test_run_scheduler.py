"""The sans-IO run scheduler, driven by a fake clock: exact times, exact messages."""
import dataclasses
import json

import pytest

from coordinator_app.effects import (DeleteRun, FinishRun, InsertRun, SetRunState, WriteCheckpoint, WriteEvent, WriteFinish, WriteSecond,
                                     WriteStart)
from coordinator_app.run_scheduler import Conflict, Instant, RunScheduler, RunState
from stressgrid import wire
from stressgrid.plan import Plan, PlanError
from stressgrid.plan.resolve import resolve_addresses
from tests.coordinator.support import snapshot

pytestmark = pytest.mark.unit

T0 = 1000.0
WALL_OFFSET = 1_700_000_000.0
ADDRESSES = [{"host": "127.0.0.1", "port": 9, "protocol": "udp"},
             {"host": "127.0.0.2", "port": 9, "protocol": "udp"}]


class FakeClock:
    """Monotonic and wall time that only move when the test says so."""

    def __init__(self):
        self.monotonic = T0

    def at(self, seconds=None):
        """The ``Instant`` ``seconds`` after T0 (default: now), which becomes now."""
        if seconds is not None:
            self.monotonic = T0 + seconds
        return Instant(self.monotonic, WALL_OFFSET + self.monotonic)


def make_plan(sizes=(4,), **opts):
    defaults = {"ramp_steps": 2, "rampup_step_ms": 400, "sustain_ms": 600, "rampdown_step_ms": 300,
                "cooldown_ms": 500, "report_interval_ms": 1000}
    defaults.update(opts)
    plan = Plan.from_dict({"name": "sched", "addresses": ADDRESSES,
                           "blocks": [{"script": "await send(b'x')", "params": {"block": i}, "size": size}
                                      for i, size in enumerate(sizes)],
                           "opts": defaults})
    return plan, resolve_addresses(plan.addresses)


def register(scheduler, clock, *names):
    for name in names:
        out = scheduler.receive(name.encode(), wire.Register(generator_id=name, version="1", cores=1,
                                                             workers=2, capacity=100), clock.at())
        assert out.messages == [(name.encode(), wire.Registered(coordinator_version="test"))]


def heartbeat(scheduler, clock, *names):
    for name in names:
        assert scheduler.receive(name.encode(), wire.Heartbeat(sent_at=0.0), clock.at()).messages == []


def drive(scheduler, clock, until, alive=()):
    """Advance deadline by deadline up to ``until`` s after T0: ``[(elapsed s, outbox)]``.

    The generators named in ``alive`` heartbeat at every deadline and answer an
    ``EndRun`` at once with ``RunStopped`` (what that answer causes is added to
    the outbox that sent the ``EndRun``).
    """
    happened = []
    while scheduler.next_deadline() <= T0 + until:
        clock.monotonic = scheduler.next_deadline()
        heartbeat(scheduler, clock, *alive)
        out = scheduler.advance(clock.at())
        for routing_id, message in list(out.messages):
            if isinstance(message, wire.EndRun) and routing_id.decode() in alive:
                merge(out, scheduler.receive(routing_id, wire.RunStopped(run_id=message.run_id), clock.at()))
        happened.append((round(clock.monotonic - T0, 9), out))
    return happened


def merge(out, more):
    """Add what outbox ``more`` asks for to outbox ``out``."""
    out.messages += more.messages
    out.events += more.events
    out.writes += more.writes
    out.store += more.store
    out.publish = out.publish or more.publish


def sent(out, skip=(wire.Heartbeat,)):
    """The messages of an outbox in short form, heartbeats left out."""
    result = []
    for routing_id, message in out.messages:
        if isinstance(message, skip):
            continue
        if isinstance(message, wire.StartCohort):
            result.append(("start", routing_id.decode(), message.cohort_id,
                           [b["size"] for b in message.blocks], message.address_offset))
        elif isinstance(message, wire.StopCohort):
            result.append(("stop", routing_id.decode(), message.cohort_id))
        else:
            result.append((type(message).__name__, routing_id.decode()))
    return result


def events(out):
    return [(e["kind"], e["message"]) for e in out.events]


def writes(out, kind):
    """The fields of each writer effect of type ``kind`` in ``out``."""
    return [tuple(getattr(effect, field.name) for field in dataclasses.fields(effect))
            for effect in out.writes if isinstance(effect, kind)]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def scheduler(clock):
    return RunScheduler(generator_timeout_s=5.0, heartbeat_interval_s=1.0, coordinator_version="test",
                        at=clock.at())


def test_steps_phases_reports_and_the_end_come_at_their_exact_times(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")
    plan, addresses = make_plan()
    out = scheduler.submit("run-1", plan, addresses, clock.at())
    run = scheduler.run
    # Cohort 0 (2 of the 4 devices) goes out at once, one device per generator.
    assert out.messages == [
        (b"gen-a", wire.StartCohort(run_id="run-1", cohort_id="0", blocks=[dict(run.blocks[0], size=1)],
                                    addresses=run.addresses, opts=run.opts, address_offset=0)),
        (b"gen-b", wire.StartCohort(run_id="run-1", cohort_id="0", blocks=[dict(run.blocks[0], size=1)],
                                    addresses=run.addresses, opts=run.opts, address_offset=1)),
    ]
    assert [a["ip"] for a in run.addresses] == ["127.0.0.1", "127.0.0.2"]
    assert out.store == [InsertRun("run-1", "sched", "rampup", WALL_OFFSET + T0, 4, plan.to_dict())]
    assert [type(effect) for effect in out.writes] == [WriteStart, WriteEvent]
    assert events(out) == [("run_started", "4 devices on 2 generators")]
    assert out.reply["state"] == "rampup" and out.reply["remaining_ms"] == 2500
    assert scheduler.next_deadline() == T0 + 0.4

    driven = drive(scheduler, clock, 10, alive=("gen-a", "gen-b"))
    # Each second's telemetry goes to the writers (for the report's charts) with the run's info.
    assert [(elapsed, args[0].id) for elapsed, out in driven for args in writes(out, WriteSecond)][:2] \
        == [(1.0, "run-1"), (2.0, "run-1")]
    timeline = [(elapsed, sent(out), events(out),
                 [type(e).__name__ for e in out.writes if not isinstance(e, (WriteEvent, WriteSecond))], out.store)
                for elapsed, out in driven]
    assert timeline == [
        (0.4, [("start", "gen-a", "1", [1], 2), ("start", "gen-b", "1", [1], 3)], [], [], []),
        (0.8, [], [("phase", "sustain")], [], [SetRunState("run-1", "sustain")]),
        (1.0, [], [], ["WriteInterval"], []),  # the first report interval and the one-second tick
        (1.4, [("stop", "gen-a", "1"), ("stop", "gen-b", "1")], [("phase", "rampdown")], [],
         [SetRunState("run-1", "rampdown")]),
        (1.7, [("stop", "gen-a", "0"), ("stop", "gen-b", "0")], [], [], []),
        (2.0, [], [("phase", "cooldown")], ["WriteInterval"], [SetRunState("run-1", "cooldown")]),
        # The end: each generator is asked for its last metrics; its answer ends the run.
        (2.5, [("EndRun", "gen-a"), ("EndRun", "gen-b")], [("run_done", "")], ["WriteFinish"], []),
        # Once the run has ended only the one-second tick remains.
        (3.0, [], [], [], []), (4.0, [], [], [], []), (5.0, [], [], [], []), (6.0, [], [], [], []),
        (7.0, [], [], [], []), (8.0, [], [], [], []), (9.0, [], [], [], []), (10.0, [], [], [], []),
    ]
    assert scheduler.run.state is RunState.FINISHING and scheduler.run.phase is RunState.COOLDOWN


def test_the_final_report_holds_exact_times_events_and_devices(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sizes=(3,), ramp_steps=1)
    scheduler.submit("run-1", plan, addresses, clock.at())
    happened = drive(scheduler, clock, 2.5, alive=("gen-a",))
    (info, last, final), = [args for _, out in happened for args in writes(out, WriteFinish)]
    summary = final.to_dict()
    assert summary["state"] == "done" and summary["duration_s"] == 1.8
    assert summary["devices_requested"] == summary["devices_started"] == 3
    assert summary["generators"] == {"gen-a": 3}
    assert [(e["kind"], e["message"], e["elapsed_s"]) for e in summary["events"]] == [
        ("run_started", "3 devices on 1 generator", 0.0), ("phase", "sustain", 0.4),
        ("phase", "rampdown", 1.0), ("phase", "cooldown", 1.3), ("run_done", "", 1.8)]
    assert scheduler.run.state is RunState.FINISHING
    assert scheduler.state(clock.at())["run"]["outcome"] == "done"


def test_a_due_step_waits_for_its_exact_time_and_not_a_microsecond_less(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan()
    scheduler.submit("run-1", plan, addresses, clock.at())
    assert sent(scheduler.advance(clock.at(0.399999))) == []
    assert sent(scheduler.advance(clock.at(0.4))) == [("start", "gen-a", "1", [2], 2)]
    assert scheduler.advance(clock.at(0.799999)).events == []
    assert events(scheduler.advance(clock.at(0.8))) == [("phase", "sustain")]
    assert scheduler.state(clock.at())["run"]["phase_remaining_ms"] == 600


def test_heartbeats_go_to_every_generator_each_second_and_the_silent_are_dropped(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")
    beats = []
    for elapsed, out in drive(scheduler, clock, 6, alive=("gen-a",)):
        beats.append((elapsed, [(r.decode(), m.sent_at) for r, m in out.messages]))
        if out.events:
            beats.append((elapsed, events(out)))
    assert beats == [
        (1.0, [("gen-a", WALL_OFFSET + T0 + 1.0), ("gen-b", WALL_OFFSET + T0 + 1.0)]),
        (2.0, [("gen-a", WALL_OFFSET + T0 + 2.0), ("gen-b", WALL_OFFSET + T0 + 2.0)]),
        (3.0, [("gen-a", WALL_OFFSET + T0 + 3.0), ("gen-b", WALL_OFFSET + T0 + 3.0)]),
        (4.0, [("gen-a", WALL_OFFSET + T0 + 4.0), ("gen-b", WALL_OFFSET + T0 + 4.0)]),
        (5.0, [("gen-a", WALL_OFFSET + T0 + 5.0), ("gen-b", WALL_OFFSET + T0 + 5.0)]),
        # Silent for more than the 5 s timeout: dropped at the next tick.
        (6.0, [("gen-a", WALL_OFFSET + T0 + 6.0)]),
        (6.0, [("generator_lost", "gen-b went silent for more than 5 s and was dropped")]),
    ]
    assert [g["id"] for g in scheduler.state(clock.at())["generators"]] == ["gen-a"]


def test_a_dropped_generators_devices_start_again_on_the_others_with_their_targets(clock):
    scheduler = RunScheduler(generator_timeout_s=1.5, heartbeat_interval_s=1.0, coordinator_version="test",
                             at=clock.at())
    register(scheduler, clock, "steady", "flaky")
    plan, addresses = make_plan(sizes=(20,), ramp_steps=4, rampup_step_ms=1000, sustain_ms=200,
                                rampdown_step_ms=100, cooldown_ms=0)
    first = scheduler.submit("run-1", plan, addresses, clock.at())
    happened = [(0.0, first)] + drive(scheduler, clock, 5, alive=("steady",))
    messages = [(elapsed, m) for elapsed, out in happened for m in sent(out)]
    assert messages == [
        (0.0, ("start", "steady", "0", [3], 0)), (0.0, ("start", "flaky", "0", [2], 3)),
        (1.0, ("start", "steady", "1", [2], 5)), (1.0, ("start", "flaky", "1", [3], 7)),
        # The cohort due at the tick that drops the generator is sent before the drop.
        (2.0, ("start", "steady", "2", [3], 10)), (2.0, ("start", "flaky", "2", [2], 13)),
        # Each of its cohorts starts again on the generator left, with the same targets.
        (2.0, ("start", "steady", "0.1", [2], 3)), (2.0, ("start", "steady", "1.1", [3], 7)),
        (2.0, ("start", "steady", "2.1", [2], 13)),
        (3.0, ("start", "steady", "3", [5], 15)),
        # A replacement stops with the cohort it replaces.
        (4.2, ("stop", "steady", "3")), (4.3, ("stop", "steady", "2")), (4.3, ("stop", "steady", "2.1")),
        (4.4, ("stop", "steady", "1")), (4.4, ("stop", "steady", "1.1")),
        (4.5, ("stop", "steady", "0")), (4.5, ("stop", "steady", "0.1")),
        # Only the generator left is asked for its last metrics.
        (4.6, ("EndRun", "steady")),
    ]
    lost = [(elapsed, e["kind"], e["message"]) for elapsed, out in happened for e in out.events
            if e["kind"] in ("generator_lost", "devices_replaced")]
    assert lost == [(2.0, "generator_lost", "flaky went silent for more than 1.5 s and was dropped"),
                    (2.0, "devices_replaced", "7 devices of flaky started again on the other generators")]
    (_, _, final), = [args for _, out in happened for args in writes(out, WriteFinish)]
    assert final.state == "done" and final.devices_started == 20
    assert final.generators == {"steady": 20}
    # The lost generator is an error of the run, with what was lost.
    assert final.totals.error_report() == {"generator_lost_error_count": {
        "count": 1, "line": "flaky went silent for more than 1.5 s and was dropped, with 7 devices of the run"}}


def test_a_cohort_that_cannot_be_sent_is_not_counted_nor_stopped(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")
    plan, addresses = make_plan(sizes=(4,), ramp_steps=1)
    out = scheduler.submit("run-1", plan, addresses, clock.at())
    (_, to_b), = [(r, m) for r, m in out.messages if r == b"gen-b"]
    lost = scheduler.undelivered(b"gen-b", to_b, clock.at())
    assert events(lost) == [("cohort_not_sent", "cohort 0: could not reach generator")]
    assert lost.events[0]["generator"] == "gen-b"
    assert scheduler.state(clock.at())["run"]["devices_started"] == 2
    stops = [m for _, out in drive(scheduler, clock, 1.0, alive=("gen-a", "gen-b")) for m in sent(out)]
    assert stops == [("stop", "gen-a", "0")]


def test_a_second_submit_is_rejected_while_a_run_is_active_or_being_written(scheduler, clock):
    plan, addresses = make_plan(ramp_steps=1, sustain_ms=0, rampdown_step_ms=0, cooldown_ms=0,
                                rampup_step_ms=100)
    with pytest.raises(Conflict) as refused:
        scheduler.submit("run-0", plan, addresses, clock.at())
    assert refused.value.code == "no_generators"
    register(scheduler, clock, "gen-a")
    scheduler.submit("run-1", plan, addresses, clock.at())
    with pytest.raises(Conflict) as refused:
        scheduler.submit("run-2", plan, addresses, clock.at(0.05))
    assert refused.value.code == "run_active" and "run-1" in refused.value.message
    assert scheduler.run.id == "run-1"
    assert sent(scheduler.advance(clock.at(0.1))) == [("stop", "gen-a", "0"), ("EndRun", "gen-a")]
    with pytest.raises(Conflict):  # ending: waiting for the generator's last metrics
        scheduler.submit("run-2", plan, addresses, clock.at(0.15))
    # ended; its report is being written
    assert writes(scheduler.receive(b"gen-a", wire.RunStopped(run_id="run-1"), clock.at(0.2)), WriteFinish)
    with pytest.raises(Conflict):
        scheduler.submit("run-2", plan, addresses, clock.at(0.2))
    with pytest.raises(Conflict) as refused:  # its report is not written yet
        scheduler.forget("run-1", clock.at(0.2))
    assert refused.value.code == "run_active"
    written = {"summary": {"state": "done", "finished_at": 1.5, "note": ""}, "archive": "run-1.tar.gz"}
    assert scheduler.run_written("run-other", {}, clock.at()).publish is False
    out = scheduler.run_written("run-1", written, clock.at())
    assert out.publish is True
    # The run is stored as it ended by the scheduler's outbox, the one writer of run state.
    assert out.store == [FinishRun("run-1", "done", 1.5, "run-1.tar.gz", written["summary"], "")]
    assert scheduler.forget("run-1", clock.at()).store == [DeleteRun("run-1")]
    assert scheduler.submit("run-2", plan, addresses, clock.at()).reply["id"] == "run-2"


def test_abort_waits_for_every_generators_answer_and_counts_what_came_before_it(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    drive(scheduler, clock, 1.2, alive=("gen-a", "gen-b"))
    out = scheduler.abort("run-1", clock.at(1.25))
    assert out.messages == [(b"gen-a", wire.Abort(run_id="run-1")), (b"gen-b", wire.Abort(run_id="run-1"))]
    assert events(out) == [("run_aborted", "aborted on request")]
    assert out.reply["state"] == "aborting" and out.reply["abort_unconfirmed"] == 2 and out.reply["remaining_ms"] == 0
    assert scheduler.run.state is RunState.ABORTING and out.reply["phase"] == "sustain"
    assert scheduler.run.next_deadline() == T0 + 1.25 + 5.0  # the generator timeout after the abort
    # Aborting again changes nothing and sends nothing.
    assert scheduler.abort("run-1", clock.at()).messages == []
    with pytest.raises(Conflict) as refused:
        scheduler.abort("run-0", clock.at())
    assert refused.value.code == "not_active"
    late = wire.Telemetry(run_id="run-1", metrics=snapshot(counters={"late_count": 4}), active_device_number=0,
                          errors={})
    scheduler.receive(b"gen-b", late, clock.at(1.5))
    assert scheduler.receive(b"gen-b", wire.RunStopped(run_id="other-run"), clock.at()).writes == []
    scheduler.receive(b"gen-b", wire.RunStopped(run_id="run-1"), clock.at())
    assert scheduler.state(clock.at())["run"]["abort_unconfirmed"] == 1
    scheduler.receive(b"gen-a", late, clock.at(1.6))
    out = scheduler.receive(b"gen-a", wire.RunStopped(run_id="run-1"), clock.at())
    (_, last, final), = writes(out, WriteFinish)
    assert final.state == "aborted" and final.note == "aborted on request"
    assert final.totals.totals == {"late_count": 8}
    assert [e["kind"] for e in final.events] == ["run_started", "phase", "run_aborted"]
    assert scheduler.run.state is RunState.FINISHING and out.publish


def test_the_end_waits_for_each_generators_last_metrics_and_counts_them(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b", "idle")
    plan, addresses = make_plan(sizes=(2,), ramp_steps=1, cooldown_ms=0)
    scheduler.submit("run-1", plan, addresses, clock.at())
    happened = drive(scheduler, clock, 1.3, alive=("idle",))  # gen-a and gen-b answer by hand
    assert [m for _, out in happened for m in sent(out)][-4:] == [
        ("stop", "gen-a", "0"), ("stop", "gen-b", "0"),
        ("EndRun", "gen-a"), ("EndRun", "gen-b")]  # idle ran no cohort: it owes no answer
    state = scheduler.state(clock.at())["run"]
    assert state["state"] == "ending" and state["phase"] == "rampdown" and state["remaining_ms"] == 0
    assert scheduler.run.state is RunState.ENDING and scheduler.run.next_deadline() == T0 + 1.3 + 5.0
    # Abort while ending changes nothing: the devices have stopped already.
    assert scheduler.abort("run-1", clock.at()).messages == []
    last = wire.Telemetry(run_id="run-1", metrics=snapshot({"set_us": [100, 300]}, counters={"last_count": 3}),
                          active_device_number=0, errors={})
    for name in ("gen-a", "gen-b"):
        assert not writes(scheduler.receive(name.encode(), last, clock.at(1.4)), WriteFinish)
    assert not writes(scheduler.receive(b"gen-a", wire.RunStopped(run_id="run-1"), clock.at()), WriteFinish)
    out = scheduler.receive(b"gen-b", wire.RunStopped(run_id="run-1"), clock.at(1.5))
    (_, _, final), = writes(out, WriteFinish)
    assert final.state == "done" and final.totals.totals == {"last_count": 6}
    # What arrived after the last one-second tick (at 1.0 s) is the report's last point, before
    # the report itself; its rates are per second over a whole second, not over the 0.5 s left.
    assert [type(effect) for effect in out.writes if not isinstance(effect, WriteEvent)][-2:] == \
        [WriteSecond, WriteFinish]
    (_, telemetry), = writes(out, WriteSecond)
    assert telemetry["histograms"]["set_us"]["count"] == 4
    assert telemetry["counters"]["last_count"] == {"per_second": 6.0, "total": 6}
    assert final.finished_at == WALL_OFFSET + T0 + 1.5
    assert [e["kind"] for e in final.events][-1] == "run_done"


def test_an_unanswered_end_finishes_the_run_done_after_the_generator_timeout(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")
    plan, addresses = make_plan(sizes=(2,), ramp_steps=1, cooldown_ms=0)
    scheduler.submit("run-1", plan, addresses, clock.at())
    drive(scheduler, clock, 1.3)
    scheduler.receive(b"gen-a", wire.RunStopped(run_id="run-1"), clock.at(1.4))
    out = scheduler.advance(clock.at(6.3))
    assert ("end_unanswered", "gen-b did not confirm the end of the run within 5 s; "
                              "its last metrics may be missing") in events(out)
    (_, _, final), = writes(out, WriteFinish)
    assert final.state == "done"


def test_an_unanswered_abort_ends_the_run_after_the_generator_timeout(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    scheduler.abort("run-1", clock.at(0.5))
    scheduler.receive(b"gen-a", wire.RunStopped(run_id="run-1"), clock.at(0.6))
    happened = drive(scheduler, clock, 5.5, alive=("gen-a", "gen-b"))
    assert [elapsed for elapsed, _ in happened] == [1.0, 2.0, 3.0, 4.0, 5.0, 5.5]
    assert all(not writes(out, WriteFinish) for _, out in happened[:-1])
    end = happened[-1][1]
    assert events(end) == [("abort_unanswered", "gen-b did not confirm the abort within 5 s; "
                                                "its last metrics may be missing")]
    (_, _, final), = writes(end, WriteFinish)
    assert final.state == "aborted" and final.events[-1]["elapsed_s"] == 5.5


def test_a_generator_that_registers_anew_or_is_dropped_owes_no_answer(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    drive(scheduler, clock, 2.0, alive=("gen-a",))  # gen-b is silent from the start
    scheduler.abort("run-1", clock.at(2.0))
    register(scheduler, clock, "gen-a")  # restarted: it runs nothing any more
    assert scheduler.state(clock.at())["run"]["abort_unconfirmed"] == 1
    happened = drive(scheduler, clock, 7.0, alive=("gen-a",))
    finished = [(elapsed, events(out)) for elapsed, out in happened if writes(out, WriteFinish)]
    # Dropped at the tick after 5 s of silence, before the abort's own deadline (7.0).
    assert finished == [(6.0, [("generator_lost", "gen-b went silent for more than 5 s and was dropped")])]


def test_an_abort_that_reaches_no_generator_ends_the_run_at_once(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    out = scheduler.abort("run-1", clock.at(0.5))
    ended = scheduler.undelivered(b"gen-a", out.messages[0][1], clock.at())
    (_, _, final), = writes(ended, WriteFinish)
    assert final.state == "aborted"


def test_stopping_the_coordinator_aborts_the_run_and_still_writes_its_report(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    out = scheduler.stop(clock.at(3.0))
    assert sent(out) == [("Abort", "gen-a")]
    (_, _, final), = writes(out, WriteFinish)
    assert final.state == "aborted" and final.note == "the coordinator stopped"
    assert scheduler.stop(clock.at()).writes == []


def test_unknown_senders_and_bad_messages_are_answered_with_errors_and_counted(scheduler, clock):
    answer = scheduler.receive(b"stranger", wire.Heartbeat(sent_at=0.0), clock.at())
    assert answer.messages == [(b"stranger", wire.Error(message=wire.NOT_REGISTERED))]
    register(scheduler, clock, "gen-a")
    cohort = wire.StartCohort(run_id="r", cohort_id="0", blocks=[], addresses=[], opts={}, address_offset=0)
    assert scheduler.receive(b"gen-a", cohort, clock.at()).messages == [
        (b"gen-a", wire.Error(message="unexpected message 'start_cohort' from a generator"))]
    bad = snapshot({"conn_us": [5]})
    bad["histograms"]["conn_us"] = (b"\x80", 0)
    bad_telemetry = wire.Telemetry(run_id="", metrics=bad, active_device_number=0, errors={})
    (_, error), = scheduler.receive(b"gen-a", bad_telemetry, clock.at()).messages
    assert error.message.startswith("bad telemetry: ")
    assert scheduler.malformed(b"gen-a", "not a msgpack message", clock.at()).messages == [
        (b"gen-a", wire.Error(message="not a msgpack message"))]
    assert scheduler.state(clock.at())["ingest"] == {"messages": 0, "rejected": 3, "other_runs": 0}


def test_generator_events_and_high_cpu_are_recorded_in_the_run(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    out = scheduler.receive(b"gen-a", wire.Event(run_id="run-1", kind="worker_died", message="worker 0 died"), clock.at(0.3))
    assert [(e["kind"], e["generator"], e["elapsed_s"]) for e in out.events] == [("worker_died", "gen-a", 0.3)]
    hot = wire.Telemetry(run_id="run-1", metrics=snapshot({"cpu_percent": [97]}), active_device_number=2,
                         errors={})
    scheduler.receive(b"gen-a", hot, clock.at(0.5))
    flagged = [(elapsed, events(out)) for elapsed, out in drive(scheduler, clock, 2.0, alive=("gen-a",))
               if any(e["kind"] == "generator_cpu_high" for e in out.events)]
    assert flagged == [(1.0, [("generator_cpu_high", "gen-a CPU at 97%: its results may be limited by the "
                                               "generator, not the target")])]


def test_a_lagging_loop_is_one_event_of_the_run(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    lagging = wire.Telemetry(run_id="run-1", metrics=snapshot({"worker_loop_lag_us": [250_000] * 5}),
                             active_device_number=2, errors={})
    scheduler.receive(b"gen-a", lagging, clock.at(0.5))
    scheduler.receive(b"gen-a", lagging, clock.at(1.5))
    flagged = [(elapsed, e["kind"], e["message"]) for elapsed, out in drive(scheduler, clock, 3.0, alive=("gen-a",))
               for e in out.events if e["kind"] == "generator_loop_lag_high"]
    assert flagged == [(1.0, "generator_loop_lag_high",
                        "workers' event loops woke up 250 ms late (p99 over a second, over 100 ms): the latencies "
                        "measured then include that delay")]


def test_a_lag_that_only_the_runs_last_partial_second_holds_is_still_an_event_of_the_run(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sizes=(2,), ramp_steps=1, cooldown_ms=0)
    scheduler.submit("run-1", plan, addresses, clock.at())
    drive(scheduler, clock, 1.3)  # gen-a answers by hand, after the last tick
    lagging = wire.Telemetry(run_id="run-1", metrics=snapshot({"worker_loop_lag_us": [250_000] * 5}),
                             active_device_number=0, errors={})
    scheduler.receive(b"gen-a", lagging, clock.at(1.4))
    out = scheduler.receive(b"gen-a", wire.RunStopped(run_id="run-1"), clock.at(1.5))
    (_, _, final), = writes(out, WriteFinish)
    assert [e["kind"] for e in final.events][-2:] == ["generator_loop_lag_high", "run_done"]
    assert [e["kind"] for e in out.events] == ["generator_loop_lag_high", "run_done"]


@pytest.mark.parametrize("generators, text", [(1, "5 devices on 1 generator"),
                                              (3, "5 devices on 3 generators")])
def test_the_run_started_event_counts_generators_in_the_singular_and_plural(scheduler, clock,
                                                                             generators, text):
    register(scheduler, clock, *[f"gen-{i}" for i in range(generators)])
    plan, addresses = make_plan(sizes=(5,))
    out = scheduler.submit("run-1", plan, addresses, clock.at())
    assert events(out) == [("run_started", text)]
    (info, event), = writes(out, WriteEvent)
    assert event["message"] == text and info.id == "run-1"


def test_a_plan_beyond_the_fleets_capacity_is_rejected_naming_both_numbers(scheduler, clock):
    register(scheduler, clock, "gen-a", "gen-b")  # 100 devices each
    plan, addresses = make_plan(sizes=(150, 51))
    with pytest.raises(PlanError) as refused:
        scheduler.submit("run-1", plan, addresses, clock.at())
    assert refused.value.field == "blocks"
    assert "201 devices" in refused.value.message and "can hold 200" in refused.value.message
    assert scheduler.run is None
    plan, addresses = make_plan(sizes=(150, 50))  # exactly the capacity fits
    assert scheduler.submit("run-2", plan, addresses, clock.at()).reply["id"] == "run-2"


def test_only_the_active_runs_telemetry_is_merged_and_ghost_devices_are_told_to_stop(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    own = wire.Telemetry(run_id="run-1", metrics=snapshot(counters={"own_count": 1}), active_device_number=1,
                         errors={})
    ghost = wire.Telemetry(run_id="gone", metrics=snapshot(counters={"ghost_count": 9}), active_device_number=2,
                           errors={})
    assert scheduler.receive(b"gen-a", own, clock.at(0.1)).messages == []
    out = scheduler.receive(b"gen-a", ghost, clock.at(0.2))
    assert out.messages == [(b"gen-a", wire.Abort(run_id="gone"))]
    assert [e["kind"] for e in out.events] == ["stale_telemetry"]
    assert scheduler.receive(b"gen-a", ghost, clock.at(0.3)).events == []  # said once per 10 s
    assert scheduler.state(clock.at(0.3))["ingest"] == {"messages": 1, "rejected": 0, "other_runs": 2}


def test_a_connection_claiming_a_connected_generators_id_is_refused_once_with_an_event(scheduler, clock):
    register(scheduler, clock, "gen-a")
    claim = wire.Register(generator_id="gen-a", version="1", cores=1, workers=2, capacity=100)
    out = scheduler.receive(b"gen-a/other", claim, clock.at(0.5))
    (_, error), = out.messages
    assert "in use by a connected generator" in error.message
    assert [e["kind"] for e in out.events] == ["generator_id_refused"]
    assert scheduler.receive(b"gen-a/other", claim, clock.at(1.0)).events == []
    assert [g["id"] for g in scheduler.state(clock.at(1.0))["generators"]] == ["gen-a"]
    # Silent past the restart silence: the new connection is the generator restarted.
    out = scheduler.receive(b"gen-a/other", claim, clock.at(3.1))
    assert out.messages == [(b"gen-a/other", wire.Registered(coordinator_version="test"))]
    assert "generator_restarted" in [e["kind"] for e in out.events]


def test_devices_that_fit_nowhere_are_counted_and_a_returning_generator_stops_its_old_ones(clock):
    scheduler = RunScheduler(generator_timeout_s=1.5, heartbeat_interval_s=1.0, coordinator_version="test",
                             at=clock.at())
    for name, capacity in (("small", 12), ("flaky", 100)):
        scheduler.receive(name.encode(), wire.Register(generator_id=name, version="1", cores=1, workers=1,
                                                       capacity=capacity), clock.at())
    plan, addresses = make_plan(sizes=(20,), ramp_steps=2, rampup_step_ms=500, sustain_ms=5000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    happened = drive(scheduler, clock, 2.0, alive=("small",))
    # small holds 10 of the 20 and has room for 2 more: 2 of flaky's 10 move, 8 fit nowhere.
    assert [m for _, out in happened for m in sent(out) if m[2].endswith(".1")] == [
        ("start", "small", "0.1", [2], 5)]
    kinds = [(e["kind"], e["message"]) for _, out in happened for e in out.events if e["kind"].startswith("devices")]
    assert kinds == [("devices_replaced", "2 devices of flaky started again on the other generators"),
                     ("devices_unplaced", "8 devices of flaky fit on no other generator")]
    assert scheduler.aggregator.current_totals()["device_unplaced_error_count"] == 8
    assert scheduler.state(clock.at())["run"]["devices_started"] == 12
    # flaky comes back (it was only silent): whatever it still runs of the run is stopped.
    out = scheduler.receive(b"flaky", wire.Register(generator_id="flaky", version="1", cores=1, workers=1,
                                                    capacity=100), clock.at(2.2))
    assert (b"flaky", wire.Abort(run_id="run-1")) in out.messages


def test_every_five_seconds_the_report_so_far_is_checkpointed_as_an_aborted_run(scheduler, clock):
    register(scheduler, clock, "gen-a")
    plan, addresses = make_plan(sizes=(2,), ramp_steps=1, sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    counted = wire.Telemetry(run_id="run-1", metrics=snapshot({"conn_us": [250]}, {"response_count": 4}),
                             active_device_number=2, errors={})
    checkpoints = []
    for second in range(1, 12):
        scheduler.receive(b"gen-a", counted, clock.at(second - 0.5))
        checkpoints += [(second, json.loads(text)) for elapsed, out in drive(scheduler, clock, second,
                                                                             alive=("gen-a",))
                        for info, text in writes(out, WriteCheckpoint) if info.id == "run-1"]
    assert [second for second, _ in checkpoints] == [5, 10]
    second, report = checkpoints[1]
    # What the run added up to when it was taken, and, if the coordinator dies, how the run ends.
    assert report["totals"] == {"response_count": 40} and report["histograms"]["conn_us"]["count"] == 10
    assert report["state"] == report["result"] == "aborted"
    assert report["note"] == "the coordinator stopped during the run"
    assert report["finished_at"] == WALL_OFFSET + T0 + 10 and report["duration_s"] == 10
    assert report["devices_started"] == 2 and report["summary"] is not None
    # The run itself goes on.
    assert scheduler.run.state is RunState.SUSTAIN


def test_a_connection_registering_again_is_known_and_still_owes_its_answer_to_an_abort(scheduler, clock):
    first = wire.Register(generator_id="gen-a", version="1", cores=1, workers=2, capacity=100, instance="i1")
    out = scheduler.receive(b"gen-a", first, clock.at())
    assert out.messages == [(b"gen-a", wire.Registered(coordinator_version="test", known=False))]
    register(scheduler, clock, "gen-b")
    plan, addresses = make_plan(sustain_ms=60000)
    scheduler.submit("run-1", plan, addresses, clock.at())
    drive(scheduler, clock, 1.2, alive=("gen-a", "gen-b"))
    scheduler.abort("run-1", clock.at(1.25))
    # gen-a's link heard nothing for a while and registers again, the same agent on the same
    # connection: the coordinator kept its place, says so, and still waits for its answer.
    out = scheduler.receive(b"gen-a", first, clock.at(1.3))
    assert out.messages == [(b"gen-a", wire.Registered(coordinator_version="test", known=True))]
    assert [e["kind"] for e in out.events] == ["generator_reregistered"]
    assert scheduler.state(clock.at())["run"]["abort_unconfirmed"] == 2
    scheduler.receive(b"gen-a", wire.RunStopped(run_id="run-1"), clock.at(1.4))
    assert scheduler.state(clock.at())["run"]["abort_unconfirmed"] == 1
    # gen-b restarted (another instance on the same identity): it runs nothing, owes nothing.
    restarted = wire.Register(generator_id="gen-b", version="1", cores=1, workers=2, capacity=100, instance="i2")
    out = scheduler.receive(b"gen-b", restarted, clock.at(1.5))
    assert (b"gen-b", wire.Registered(coordinator_version="test", known=False)) in out.messages
