"""The coordinator's run logic as a sans-IO state machine: time and messages in, effects out.

``RunScheduler`` owns the generator registry, the telemetry aggregator and the
run in progress. It never touches a socket, a thread, a file or a clock: every
call passes the current ``Instant`` and returns an ``Outbox`` of what the
caller (``service.Coordinator``, the socket thread's thin shell) must do.

Inputs (each returns an ``Outbox``):

* ``receive(routing_id, message, at)``: a decoded ``stressgrid.wire`` message
  from a generator: ``Register``, ``Heartbeat``, ``Telemetry``, ``Event``,
  ``RunStopped`` (anything else is answered with an ``Error``);
* ``malformed(routing_id, reason, at)``: a message that could not be decoded;
* ``undelivered(routing_id, message, at)``: a message of an outbox that could
  not be sent (the generator is gone or its queue is full);
* ``submit(run_id, plan, addresses, at)``, ``abort(run_id, at)`` and
  ``forget(run_id, at)`` (a finished run deleted): the API's commands
  (``Conflict`` when not possible now); ``stop(at)``: the
  coordinator stops (an active run is aborted);
* ``run_written(run_id, result, at)``: the writers have written the run's
  report (``result``: the pipeline's, with the final ``summary`` and the
  ``archive``): it is stored, and the run released;
* ``advance(at)``: time passed; call it at ``next_deadline()`` at the latest.

Outputs (``Outbox`` fields, each in order): ``messages`` to send as
``(routing id, wire message)``; ``events`` recorded (the run's own are also
among ``writes``); ``writes``, calls of the ``WriterPipeline``, and ``store``,
calls of the ``RunStore``, as typed effects (``coordinator_app.effects``);
``publish``, true when the state shown by ``state(at)`` changed; ``reply``,
a command's answer. Carry out the writes and store calls before sending: the
outbox of an undelivered message (which may end the run) comes after them.

A run goes through ``RunState`` (``_enter`` is the one place it changes):
the plan's phases, then ``ENDING`` (the timeline is over: ``EndRun`` sent) or
``ABORTING`` (``Abort`` sent) while the run waits for the ``RunStopped`` of
every generator it may still have metrics on (at most the generator
timeout), then ``FINISHING`` while its report is written; ``run_written``
releases it.
Telemetry enters in ``_on_telemetry`` and each second closes in ``_tick``:
the places for run-scoped filtering and live checks of the aggregates.
"""
import dataclasses
import enum
import json
import typing

from stressgrid import wire
from stressgrid.metrics import COUNTER_SUFFIX
from stressgrid.plan import constants
from stressgrid.plan.constants import (CPU_WARNING_PERCENT, DEVICE_UNPLACED_ERROR, GENERATOR_LOST_ERROR,
                                       LOOP_LAG_WARNING_US, plural)
from stressgrid.plan.arrivals import (ARRIVAL_SHARE, DROPPED_ITERATION_COUNTER, START_DELAY_HISTOGRAM, START_DELAY_WARNING_US,
                                      rate_at, segments)
from stressgrid.plan.model import PlanError

from . import run_scope, run_timeline, validate
from .effects import (DeleteRun, FinishRun, InsertRun, SetRunState, WriteCheckpoint, WriteEvent, WriteFinish, WriteInterval, WriteSecond,
                      WriteStart)
from .aggregate import TelemetryAggregator
from .overview import live_point, names_of
from .registry import GeneratorIdInUse, Registry
from .verdict import RunJudge
from .writers import INTERRUPTED_NOTE, FinalReport, RunInfo

_NONE = {}
RECENT_EVENTS = 50
# Connections refused for claiming a connected generator's id, remembered so each gets one event.
REFUSED_CLAIMS_REMEMBERED = 1000
# How often a run's report-so-far goes to disk: a coordinator that dies loses at most this much.
CHECKPOINT_INTERVAL_S = 5.0


class Instant(typing.NamedTuple):
    """A point in time as the scheduler sees it: monotonic and wall-clock (Unix) seconds."""

    monotonic: float
    wall: float


class Conflict(Exception):
    """A request that cannot be carried out in the coordinator's current state.

    ``code``: ``run_active``, ``no_generators``, ``not_active`` or ``finishing``.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class RunState(enum.Enum):
    """Where the active run is; the first four are the plan's phases, in order."""

    RAMPUP = constants.RAMPUP
    SUSTAIN = constants.SUSTAIN
    RAMPDOWN = constants.RAMPDOWN
    COOLDOWN = constants.COOLDOWN
    ENDING = "ending"  # EndRun sent: waiting for the RunStopped of every generator that ran cohorts
    ABORTING = "aborting"  # Abort sent: waiting for every generator's RunStopped
    FINISHING = "finishing"  # ended: its report is with the writers


PHASES = (RunState.RAMPUP, RunState.SUSTAIN, RunState.RAMPDOWN, RunState.COOLDOWN)
# The states waiting for the generators' RunStopped, and the final state each leads to.
CONFIRMING = {RunState.ENDING: constants.DONE, RunState.ABORTING: constants.ABORTED}
# The event of a generator that did not confirm in time, and what it did not confirm.
UNANSWERED = {RunState.ENDING: ("end_unanswered", "end of the run"),
              RunState.ABORTING: ("abort_unanswered", "abort")}
# Every phase may end the run: it ends, is aborted, or the coordinator stops (FINISHING).
_LEAVING = {RunState.ENDING, RunState.ABORTING, RunState.FINISHING}
# The states each state may be followed by (a phase may be skipped when it has no length).
TRANSITIONS = {
    RunState.RAMPUP: {RunState.SUSTAIN, RunState.RAMPDOWN} | _LEAVING,
    RunState.SUSTAIN: {RunState.RAMPDOWN} | _LEAVING,
    RunState.RAMPDOWN: {RunState.COOLDOWN} | _LEAVING,
    RunState.COOLDOWN: _LEAVING,
    RunState.ENDING: {RunState.FINISHING},
    RunState.ABORTING: {RunState.FINISHING},
    RunState.FINISHING: set(),
}


class Outbox:
    """What one call of the scheduler asks its caller to do (see the module docstring)."""

    __slots__ = ("messages", "events", "writes", "store", "publish", "reply")

    def __init__(self):
        self.messages = []
        self.events = []
        self.writes = []
        self.store = []
        self.publish = False
        self.reply = None

    def __bool__(self):
        """True when there is anything to do (a command's ``reply`` aside)."""
        return bool(self.messages or self.events or self.writes or self.store or self.publish)

    def send(self, routing_id, message):
        self.messages.append((routing_id, message))


class Run:
    """The run in progress: its plan, timeline, state and what it has started where."""

    def __init__(self, run_id, plan, addresses, at):
        self.id = run_id
        self.plan = plan
        self.plan_dict = plan.to_dict()
        self.addresses = [address.to_dict() for address in addresses]
        self.opts = plan.opts.to_dict()
        self.blocks = [block.to_dict() for block in plan.blocks]
        self.timeline = run_timeline.build_timeline(plan.opts)
        self.started = at.monotonic
        self.started_wall = at.wall
        self.state = RunState.RAMPUP
        self.phase = RunState.RAMPUP  # the last of the plan's phases entered
        self.outcome = None  # constants.DONE or constants.ABORTED once FINISHING
        self.step_index = 0
        self.cursor = 0  # the run-wide round-robin position over the addresses
        self.cohorts = {}  # cohort id -> {routing id: schedule.Assignment}: what each was sent
        # cohort index -> its cohort ids: the planned one ("2"), then any replacements ("2.1")
        self.cohort_ids = {}
        self.stopped = set()  # indexes of the cohorts stopped
        self.replaced = set()  # ids of the generators dropped whose devices were started elsewhere
        self.devices_started = 0
        self.generator_devices = {}  # generator id -> devices started there
        self.cpu_flagged = set()  # generators already reported over the CPU warning level
        self.loop_lag_flagged = False  # the fleet's loop lag already reported over its warning level
        # An arrival-rate run's schedule, and its live warnings already given.
        self.rate_lines = segments(plan.opts) if plan.opts.open_model else None
        self.drops_flagged = False
        self.start_delay_flagged = False
        self.events = []
        self.interval_s = plan.opts.report_interval_ms / 1000.0
        self.next_cut = self.started + self.interval_s
        self.next_checkpoint = self.started + CHECKPOINT_INTERVAL_S
        self.answer_deadline = None  # ENDING, ABORTING: the latest the report waits for answers
        self.waiting = set()  # ENDING, ABORTING: routing ids yet to answer RunStopped
        self.note = ""
        self.judge = RunJudge(plan.thresholds, at.monotonic, plan.opts.open_model)
        self.info = RunInfo(id=run_id, name=plan.name, plan=self.plan_dict, started_at=at.wall,
                            report_interval_ms=plan.opts.report_interval_ms)

    def devices_on(self, routing_id):
        """The devices of the run's cohorts not yet stopped that ``routing_id`` was sent."""
        return sum(self.cohorts[cohort_id][routing_id].size
                   for index, ids in self.cohort_ids.items() if index not in self.stopped
                   for cohort_id in ids if routing_id in self.cohorts[cohort_id])

    @property
    def ended(self):
        """True once the run has ended and its report is being written."""
        return self.state is RunState.FINISHING

    def step_due(self, step):
        """The monotonic time ``step`` of the timeline is due."""
        return self.started + step.at_ms / 1000.0

    def next_deadline(self):
        """When the run next has something to do (monotonic), or ``None``."""
        if self.state is RunState.FINISHING:
            return None
        if self.state in CONFIRMING:
            return self.answer_deadline
        if self.step_index < len(self.timeline.steps):
            return min(self.step_due(self.timeline.steps[self.step_index]), self.next_cut)
        return self.next_cut

    def to_dict(self, now):
        """The run's live state, elapsed and remaining time, devices.

        ``state`` is where the run is (a ``RunState`` value: a phase of the plan, then
        ``ending`` or ``aborting``, then ``finishing``), ``phase`` the last of the plan's
        phases it entered, ``outcome`` ``done`` or ``aborted`` once it is finishing.
        """
        elapsed_ms = round((now - self.started) * 1000)
        phase, phase_left = self.timeline.phase_at(elapsed_ms)
        ending = self.state in CONFIRMING or self.state is RunState.FINISHING
        return {"id": self.id, "name": self.plan.name,
                "state": self.state.value, "phase": self.phase.value, "outcome": self.outcome,
                "abort_unconfirmed": len(self.waiting) if self.state is RunState.ABORTING else 0,
                "elapsed_ms": elapsed_ms,
                "remaining_ms": 0 if ending else max(self.timeline.total_ms - elapsed_ms, 0),
                "phase_remaining_ms": phase_left if phase == self.phase.value and not self.ended else 0,
                "devices": self.plan.size, "devices_started": self.devices_started,
                "started_at": self.started_wall,
                "executor": self.plan.opts.executor,
                "target_rate": (round(rate_at(self.rate_lines, elapsed_ms), 3)
                                if self.rate_lines is not None and not ending else None),
                "summary": self.judge.summary, "verdict": self.judge.verdict.to_dict()}


class RunScheduler:
    """Registry, aggregation and the run's state machine, driven by time and messages.

    ``generator_timeout_s``: a generator silent this long is dropped, and an
    abort waits this long for answers. ``heartbeat_interval_s``: how often
    every generator is sent a ``Heartbeat`` and the telemetry second closes.
    ``at``: the ``Instant`` the scheduler is created.
    """

    def __init__(self, generator_timeout_s, heartbeat_interval_s, coordinator_version, at):
        self.generator_timeout_s = generator_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.coordinator_version = coordinator_version
        self._at = at
        # The registry and the aggregator read the time of the call being handled.
        self.registry = Registry(generator_timeout_s, lambda: self._at.wall)
        self.aggregator = TelemetryAggregator(lambda: self._at.monotonic, lambda: self._at.wall)
        self.run = None
        self.last_run_id = None  # the newest run whose report is written
        self.events = []  # the most recent events, run or not
        self.rejected = 0  # messages refused as malformed or unexpected
        self.telemetry_check = validate.TelemetryCheck()
        self.stale = run_scope.StaleMessages()
        self._refused_claims = set()
        self.next_tick = at.monotonic + heartbeat_interval_s
        self._handlers = {wire.Register: self._on_register, wire.Heartbeat: self._on_heartbeat,
                          wire.Telemetry: self._on_telemetry, wire.Event: self._on_event,
                          wire.RunStopped: self._on_run_stopped}

    def _begin(self, at):
        """Start handling an input at ``at``: its (empty) outbox."""
        self._at = at
        return Outbox()

    # -- queries ---------------------------------------------------------------

    def next_deadline(self):
        """The monotonic time ``advance`` must be called at, at the latest."""
        run_due = self.run.next_deadline() if self.run is not None else None
        return self.next_tick if run_due is None or run_due > self.next_tick else run_due

    def state(self, at):
        """The state the API shows: generators, the run, the latest telemetry, recent events."""
        now = at.monotonic
        return {"generators": self.registry.to_list(now),
                "run": self.run.to_dict(now) if self.run is not None else None,
                "last_run_id": self.last_run_id,
                "telemetry": self.aggregator.latest,
                "events": list(self.events),
                "ingest": {"messages": self.aggregator.messages, "rejected": self.rejected,
                           "other_runs": self.stale.total}}

    # -- messages from generators ------------------------------------------------

    def receive(self, routing_id, message, at):
        """A decoded message from the generator ``routing_id``."""
        out = self._begin(at)
        handler = self._handlers.get(type(message))
        if handler is None:
            self.rejected += 1
            out.send(routing_id, wire.Error(
                message=f"unexpected message {message.type.value!r} from a generator"))
        else:
            handler(out, routing_id, message)
        return out

    def malformed(self, routing_id, reason, at):
        """A message from ``routing_id`` that could not be decoded: ``reason`` says why."""
        out = self._begin(at)
        self.rejected += 1
        out.send(routing_id, wire.Error(message=reason))
        return out

    def undelivered(self, routing_id, message, at):
        """``message``, of an earlier outbox, could not be sent to ``routing_id``."""
        out = self._begin(at)
        run = self.run
        if run is None or run.ended or getattr(message, "run_id", None) != run.id:
            return out
        if isinstance(message, wire.StartCohort):
            self._cohort_not_started(out, run, routing_id, message)
        elif isinstance(message, (wire.Abort, wire.EndRun)):
            self._stop_answered(out, run, routing_id)
        return out

    def _on_register(self, out, routing_id, message):
        if not self._valid(out, routing_id, validate.check_register, message):
            return
        known = self.registry.holds_instance(routing_id, message.instance)
        try:
            generator, new, replaced = self.registry.register(routing_id, message, self._at.monotonic)
        except GeneratorIdInUse as exc:
            self._refuse_claim(out, routing_id, exc)
            return
        # The same agent registering again (its link heard nothing for a while) keeps its place
        # and goes on running its share.
        out.send(routing_id, wire.Registered(coordinator_version=self.coordinator_version, known=known))
        if replaced is not None:
            self._event(out, "generator_restarted", f"{generator.generator_id} came back on a new "
                                                    f"connection; the old one was silent", generator)
            if self.run is not None and self.run.state in CONFIRMING:
                self._stop_answered(out, self.run, replaced.routing_id)
        kind = "generator_registered" if new else "generator_reregistered"
        self._event(out, kind, f"{generator.generator_id} ({plural(message.workers, 'worker')}, "
                               f"{plural(message.cores, 'core')}, version {message.version})", generator)
        if not known and self.run is not None and self.run.state in CONFIRMING:
            # A generator registering anew has stopped everything it ran.
            self._stop_answered(out, self.run, routing_id)
        elif self.run is not None and not self.run.ended and generator.generator_id in self.run.replaced:
            # Back after it was dropped: what it may still run of the run was started elsewhere.
            out.send(routing_id, wire.Abort(run_id=self.run.id))

    def _valid(self, out, routing_id, check, message):
        """Run ``check`` on ``message``; a message that fails it is answered with ``Error``."""
        try:
            check(message)
        except validate.InvalidMessage as exc:
            self.rejected += 1
            out.send(routing_id, wire.Error(message=str(exc)))
            return False
        return True

    def _refuse_claim(self, out, routing_id, exc):
        """Answer a registration that claims a connected generator's id; one event per connection."""
        out.send(routing_id, wire.Error(message=str(exc)))
        if routing_id in self._refused_claims:
            return
        if len(self._refused_claims) >= REFUSED_CLAIMS_REMEMBERED:
            self._refused_claims.clear()
        self._refused_claims.add(routing_id)
        self._event(out, "generator_id_refused",
                    f"a connection claiming {exc.holder.generator_id} was refused: {exc}", exc.holder)

    def _in_scope(self, out, routing_id, generator, message, devices, fleet_events=False):
        """True when ``message`` is to be merged: of the active run (or of none, while none is
        active, or an event of a host at rest: ``fleet_events``). One of another run is counted
        and, when its generator still runs ``devices`` of it, answered with ``Abort``."""
        active = self.run.id if self.run is not None else None
        scope = run_scope.scope_of(message.run_id, active)
        if scope is run_scope.Scope.STALE:
            text = self.stale.note(generator.generator_id, message.run_id, self._at.monotonic)
            if text is not None:
                self._event(out, "stale_telemetry", text, generator)
            if devices > 0:
                out.send(routing_id, wire.Abort(run_id=message.run_id))
            return False
        return fleet_events or run_scope.merges(scope, active is not None)

    def _known(self, out, routing_id):
        """The registered generator ``routing_id`` (now seen), or ``None`` after telling it to register."""
        generator = self.registry.seen(routing_id, self._at.monotonic)
        if generator is None:
            out.send(routing_id, wire.Error(message=wire.NOT_REGISTERED))
        return generator

    def _on_heartbeat(self, out, routing_id, message):
        self._known(out, routing_id)

    def _on_telemetry(self, out, routing_id, message):
        generator = self._known(out, routing_id)
        if generator is None or not self._in_scope(out, routing_id, generator, message,
                                                   message.active_device_number):
            return
        try:
            message = self.telemetry_check.check(message, generator.capacity)
            self.aggregator.ingest(generator, message)
        except ValueError as exc:
            self.rejected += 1
            out.send(routing_id, wire.Error(message=f"bad telemetry: {exc}"))

    def _on_event(self, out, routing_id, message):
        generator = self._known(out, routing_id)
        if generator is not None and self._valid(out, routing_id, validate.check_event, message) and \
                self._in_scope(out, routing_id, generator, message, 0, fleet_events=True):
            self._event(out, message.kind, message.message, generator)

    def _on_run_stopped(self, out, routing_id, message):
        # Its last Telemetry came before this answer; once every generator has
        # answered, the run's report holds everything its devices did. (An
        # answer to a stop the coordinator no longer waits on is ignored.)
        run = self.run
        if self.registry.seen(routing_id, self._at.monotonic) is not None and run is not None \
                and run.id == message.run_id and run.state in CONFIRMING:
            self._stop_answered(out, run, routing_id)

    # -- commands --------------------------------------------------------------------

    def submit(self, run_id, plan, addresses, at):
        """Start ``plan`` as run ``run_id``; ``reply`` is the run's state dict.

        Raises ``Conflict`` when a run is active or no generator is registered, and
        ``PlanError`` (field ``blocks``) when the plan asks for more devices than the
        registered fleet can hold.
        """
        if self.run is not None:
            raise Conflict("run_active", f"run {self.run.id} is in progress; abort it or wait")
        if not len(self.registry):
            raise Conflict("no_generators", "no generator is registered; start one "
                                            "(python -m stressgrid.generator) and try again")
        capacity = sum(generator.capacity for generator in self.registry)
        if plan.size > capacity:
            raise PlanError("blocks", f"the plan asks for {plan.size:,} devices and the "
                                      f"{plural(len(self.registry), 'registered generator')} can hold "
                                      f"{capacity:,}: add generators or lower the blocks' sizes")
        out = self._begin(at)
        run = Run(run_id, plan, addresses, at)
        out.store.append(InsertRun(run_id, plan.name, run.state.value, at.wall, plan.size, run.plan_dict))
        self.aggregator.start_run()
        self.telemetry_check.start_run()
        self.stale.start_run()
        self.run = run
        out.writes.append(WriteStart(run.info))
        self._event(out, "run_started",
                    f"{plural(plan.size, 'device')} on {plural(len(self.registry), 'generator')}")
        self._advance_run(out, run)
        out.publish = True
        out.reply = run.to_dict(at.monotonic)
        return out

    def forget(self, run_id, at):
        """Delete finished run ``run_id`` from the store; ``Conflict`` while it is the run in
        progress (its report not written yet)."""
        if self.run is not None and self.run.id == run_id:
            raise Conflict("run_active", f"run {run_id} is in progress; abort it first")
        out = self._begin(at)
        out.store.append(DeleteRun(run_id))
        return out

    def abort(self, run_id, at):
        """Abort the active run ``run_id``; ``reply`` is its state dict.

        Every generator is sent ``Abort``; the run's report is written once
        each has answered ``RunStopped`` or after the generator timeout.
        Raises ``Conflict`` if ``run_id`` is not the active run.
        """
        run = self.run
        if run is None or run.id != run_id:
            raise Conflict("not_active", f"run {run_id} is not in progress")
        out = self._begin(at)
        if run.state in PHASES:
            self._abort(out, run, "aborted on request")
        out.publish = True
        out.reply = run.to_dict(at.monotonic)
        return out

    def stop(self, at):
        """The coordinator stops: an active run is aborted at once (its report is still written)."""
        out = self._begin(at)
        run = self.run
        if run is not None and not run.ended:
            self._finish(out, run, constants.ABORTED, "the coordinator stopped")
        return out

    def run_written(self, run_id, result, at):
        """Every writer has finished run ``run_id``: it is stored as it ended, and a new run may start."""
        out = self._begin(at)
        summary = result.get("summary") or {}
        out.store.append(FinishRun(run_id, summary.get("state", constants.ABORTED), summary.get("finished_at"),
                                   result.get("archive"), summary, summary.get("note", ""),
                                   result.get("histograms"), result.get("overview")))
        if self.run is not None and self.run.id == run_id and self.run.ended:
            self.run = None
            self.last_run_id = run_id
            out.publish = True
        return out

    # -- time ----------------------------------------------------------------------

    def advance(self, at):
        """Do what is due by ``at``: the run's steps, report intervals, the one-second tick."""
        out = self._begin(at)
        run = self.run
        if run is not None and not run.ended:
            self._advance_run(out, run)
        now = at.monotonic
        if now >= self.next_tick:
            self._tick(out)
            self.next_tick += self.heartbeat_interval_s
            if self.next_tick < now:
                self.next_tick = now + self.heartbeat_interval_s
        return out

    def _tick(self, out):
        now = self._at.monotonic
        run = self.run
        for generator in self.registry.expire(now):
            lost = (f"{generator.generator_id} went silent for more than "
                    f"{self.generator_timeout_s:g} s and was dropped")
            self._event(out, "generator_lost", lost, generator)
            if run is not None and not run.ended:
                # Its devices' load left the run: an error of the run, never a warning.
                held = run.devices_on(generator.routing_id)
                self.aggregator.count_error(GENERATOR_LOST_ERROR + COUNTER_SUFFIX,
                                            f"{lost}, with {plural(held, 'device')} of the run")
                if run.state in PHASES:
                    self._replace(out, run, generator)
            if run is not None and run.state in CONFIRMING:
                self._stop_answered(out, run, generator.routing_id)
        heartbeat = wire.Heartbeat(sent_at=self._at.wall)
        for generator in self.registry:
            out.send(generator.routing_id, heartbeat)
        generators = list(self.registry)
        telemetry = self.aggregator.tick(generators)
        if run is not None and not run.ended:
            out.writes.append(WriteSecond(run.info, self._run_second(run, telemetry)))
            self._judge(out, run)
            if self._at.monotonic >= run.next_checkpoint:
                self._checkpoint(out, run)
            self._warn(out, run, generators, telemetry)
        out.publish = True

    def _warn(self, out, run, generators, telemetry):
        """The run's live warnings from a second of telemetry, once each."""
        for generator in generators:
            if generator.cpu_percent > CPU_WARNING_PERCENT and generator.routing_id not in run.cpu_flagged:
                run.cpu_flagged.add(generator.routing_id)
                self._event(out, "generator_cpu_high",
                            f"{generator.generator_id} CPU at {generator.cpu_percent:g}%: its results "
                            f"may be limited by the generator, not the target", generator)
        if telemetry["loop_lag_warning"] and not run.loop_lag_flagged:
            run.loop_lag_flagged = True
            self._event(out, "generator_loop_lag_high",
                        f"workers' event loops woke up {telemetry['loop_lag_p99_us'] / 1000:.0f} ms late "
                        f"(p99 over a second, over {LOOP_LAG_WARNING_US // 1000} ms): the latencies "
                        f"measured then include that delay")
        if run.rate_lines is not None:
            self._check_arrivals(out, run, telemetry)

    def _check_arrivals(self, out, run, telemetry):
        """An arrival-rate run's live warnings, once each: iterations dropped for want of a
        free device, and iterations starting late."""
        dropped = telemetry["counters"].get(DROPPED_ITERATION_COUNTER, _NONE)
        if dropped.get("per_second") and not run.drops_flagged:
            run.drops_flagged = True
            self._event(out, "iterations_dropped",
                        f"{dropped['per_second']:g} iterations a second dropped: every device of the pool "
                        f"was busy (raise max_devices, or the target is slower than the rate needs)")
        delay = telemetry["histograms"].get(START_DELAY_HISTOGRAM, _NONE).get("p99", 0)
        if delay > START_DELAY_WARNING_US and not run.start_delay_flagged:
            run.start_delay_flagged = True
            self._event(out, "iteration_start_late",
                        f"iterations started {delay / 1000:.0f} ms after their scheduled time (p99 over a "
                        f"second, over {START_DELAY_WARNING_US // 1000} ms): the generators cannot keep "
                        f"up with the rate; intended_iteration_us still measures from the schedule")

    def _advance_run(self, out, run):
        now = self._at.monotonic
        if run.state in CONFIRMING:
            if now >= run.answer_deadline:
                names = sorted(g.generator_id for g in self.registry if g.routing_id in run.waiting)
                kind, what = UNANSWERED[run.state]
                self._event(out, kind, f"{', '.join(names) or 'a generator'} did not confirm the {what} within "
                            f"{self.generator_timeout_s:g} s; its last metrics may be missing")
                self._finish(out, run, CONFIRMING[run.state], run.note)
            return
        steps = run.timeline.steps
        while run.step_index < len(steps) and run.step_due(steps[run.step_index]) <= now:
            step = steps[run.step_index]
            run.step_index += 1
            if step.action == "start":
                self._start_cohort(out, run, step.cohort)
            elif step.action == "stop":
                self._stop_cohort(out, run, step.cohort)
            elif step.action == "phase":
                phase = RunState(step.phase)
                if phase is not run.phase:
                    self._enter(out, run, phase)
            elif step.action == "end":
                self._end(out, run)
                return
        if now >= run.next_cut:
            report = self.aggregator.cut_interval(list(self.registry))
            out.writes.append(WriteInterval(run.info, report))
            run.next_cut += run.interval_s
            if run.next_cut <= now:
                run.next_cut = now + run.interval_s

    # -- the run -------------------------------------------------------------------

    def _enter(self, out, run, state):
        """The one place a run's state changes."""
        if state not in TRANSITIONS[run.state]:
            raise RuntimeError(f"run {run.id}: no transition from {run.state.name} to {state.name}")
        previous = run.state
        run.state = state
        out.publish = True
        if RunState.SUSTAIN in (previous, state):  # counter rates are the sustain phase's
            run.judge.phase_changed(self._at.monotonic, previous.value, state.value,
                                    self.aggregator.current_totals())
        if state in PHASES:
            run.phase = state
            out.store.append(SetRunState(run.id, state.value))
            self._event(out, "phase", state.value)

    def _start_cohort(self, out, run, index):
        opts = run.plan.opts
        blocks = run.blocks if opts.open_model else run_timeline.cohort_blocks(run.blocks, opts.ramp_steps, index)
        if not blocks:
            return
        generators = list(self.registry)
        if not generators:
            size = run.plan.size if opts.open_model else sum(block["size"] for block in blocks)
            self._event(out, "cohort_skipped",
                        f"cohort {index} ({plural(size, 'device')}): no generator registered")
            return
        routing_ids = [g.routing_id for g in generators]
        if opts.open_model:
            assignments, run.cursor = run_timeline.assign_arrivals(blocks, routing_ids, opts, run.cursor)
        else:
            assignments, run.cursor = run_timeline.assign_cohort(blocks, routing_ids, index, run.cursor)
        self._send_cohort(out, run, index, assignments)

    def _send_cohort(self, out, run, index, assignments):
        """Start ``assignments`` as a new cohort of cohort ``index`` (stopped with it)."""
        ids = run.cohort_ids.setdefault(index, [])
        cohort_id = str(index) if not ids else f"{index}.{len(ids)}"
        ids.append(cohort_id)
        started = run.cohorts[cohort_id] = {}
        for assignment in assignments:
            opts = run.opts if assignment.share is None else {**run.opts, ARRIVAL_SHARE: assignment.share}
            out.send(assignment.generator, wire.StartCohort(
                run_id=run.id, cohort_id=cohort_id, blocks=assignment.blocks, addresses=run.addresses,
                opts=opts, address_offset=assignment.address_offset))
            started[assignment.generator] = assignment
            self._count_devices(run, self.registry.get(assignment.generator).generator_id, assignment.size)

    def _replace(self, out, run, lost):
        """Start the devices that dropped generator ``lost`` held in cohorts not yet stopped
        on the generators with room: exactly, with the same blocks and targets; what fits
        nowhere is counted as ``device_unplaced_error``."""
        generators = list(self.registry)
        rooms = [g.capacity - run.devices_on(g.routing_id) for g in generators]
        moved = unplaced = 0
        for index, ids in list(run.cohort_ids.items()):
            if index in run.stopped:
                continue
            for cohort_id in list(ids):
                assignment = run.cohorts[cohort_id].pop(lost.routing_id, None)
                if assignment is None:
                    continue
                self._count_devices(run, lost.generator_id, -assignment.size)
                if assignment.share is None:
                    counts = run_timeline.fill_rooms(assignment.size, rooms)
                    parts = run_timeline.carve(assignment, [g.routing_id for g in generators], counts)
                else:
                    counts, parts = self._move_share(run, assignment, generators, rooms)
                rooms = [room - count for room, count in zip(rooms, counts)]
                if parts:
                    self._send_cohort(out, run, index, parts)
                moved += sum(counts)
                unplaced += assignment.size - sum(counts)
        if not moved and not unplaced:
            return
        run.replaced.add(lost.generator_id)
        if moved:
            self._event(out, "devices_replaced", f"{plural(moved, 'device')} of {lost.generator_id} "
                                                 f"started again on the other generators", lost)
        if unplaced:
            self.aggregator.count_error(DEVICE_UNPLACED_ERROR + COUNTER_SUFFIX,
                                        f"{plural(unplaced, 'device')} of {lost.generator_id} fit on no "
                                        f"other generator", unplaced)
            self._event(out, "devices_unplaced", f"{plural(unplaced, 'device')} of {lost.generator_id} fit "
                                                 f"on no other generator", lost)

    def _move_share(self, run, assignment, generators, rooms):
        """An arrival-rate share of a lost generator, given whole to the generator with the most
        room, from where the schedule has got to: ``(counts, parts)`` as ``_replace`` uses."""
        counts = [0] * len(generators)
        best = max(range(len(generators)), key=rooms.__getitem__, default=None)
        if best is None or rooms[best] < assignment.size:
            return counts, []
        counts[best] = assignment.size
        elapsed_ms = round((self._at.monotonic - run.started) * 1000)
        share = {**assignment.share, "from_ms": elapsed_ms}
        return counts, [dataclasses.replace(assignment, generator=generators[best].routing_id, share=share)]

    def _cohort_not_started(self, out, run, routing_id, message):
        started = run.cohorts.get(message.cohort_id, {})
        assignment = started.pop(routing_id, None)
        if assignment is None:
            return
        generator = self.registry.get(routing_id)
        generator_id = generator.generator_id if generator is not None else routing_id.decode(errors="replace")
        self._count_devices(run, generator_id, -assignment.size)
        self._event(out, "cohort_not_sent", f"cohort {message.cohort_id}: could not reach generator",
                    generator)

    @staticmethod
    def _count_devices(run, generator_id, devices):
        run.devices_started += devices
        total = run.generator_devices.get(generator_id, 0) + devices
        if total:
            run.generator_devices[generator_id] = total
        else:
            run.generator_devices.pop(generator_id, None)

    def _stop_cohort(self, out, run, index):
        run.stopped.add(index)
        for cohort_id in run.cohort_ids.get(index, ()):
            for routing_id in run.cohorts[cohort_id]:
                if self.registry.get(routing_id) is not None:
                    out.send(routing_id, wire.StopCohort(run_id=run.id, cohort_id=cohort_id))

    def _end(self, out, run):
        """The timeline is over: the report waits for the last metrics of every generator
        the run sent cohorts to (their ``RunStopped``), at most the generator timeout."""
        end = wire.EndRun(run_id=run.id)
        holders = dict.fromkeys(routing_id for cohort in run.cohorts.values() for routing_id in cohort)
        for routing_id in holders:
            if self.registry.get(routing_id) is not None:
                out.send(routing_id, end)
                run.waiting.add(routing_id)
        self._confirm(out, run, RunState.ENDING)

    def _abort(self, out, run, note):
        """Abort the run: the report waits for every generator's answer, at most the timeout."""
        self._abort_generators(out, run, note)
        self._confirm(out, run, RunState.ABORTING)

    def _confirm(self, out, run, state):
        """Wait in ``state`` (of ``CONFIRMING``) for the answers of ``run.waiting``."""
        run.answer_deadline = self._at.monotonic + self.generator_timeout_s
        self._enter(out, run, state)
        self._finish_if_answered(out, run)

    def _run_second(self, run, telemetry):
        """A second's telemetry of the active run, with the run's phase and its overview point
        (main names from the run's summary as of the second before)."""
        names = names_of(run.judge.summary)
        telemetry["phase"] = run.phase.value
        telemetry["overview"] = {"names": {"rate": names[0], "latency": names[1]},
                                 "point": live_point(telemetry, telemetry["time"] - run.started_wall,
                                                     run.phase.value, names)}
        return telemetry

    def _judge(self, out, run):
        """The run's live summary and thresholds; an ``abort_on_fail`` one failing ends it."""
        aggregator = self.aggregator
        run.judge.judge(self._at.monotonic, aggregator.run_histograms.histograms, aggregator.totals,
                        aggregator.maxima)
        reason = run.judge.abort_reason(run.phase.value)
        if reason and run.state in PHASES:
            self._abort(out, run, reason)

    def _abort_generators(self, out, run, note):
        abort = wire.Abort(run_id=run.id)
        for generator in self.registry:
            out.send(generator.routing_id, abort)
            run.waiting.add(generator.routing_id)
        run.note = note
        self._event(out, "run_aborted", note)

    def _stop_answered(self, out, run, routing_id):
        """``routing_id`` owes the ending or aborting run no answer any more; the last one
        ends the run."""
        run.waiting.discard(routing_id)
        self._finish_if_answered(out, run)

    def _finish_if_answered(self, out, run):
        if run.state in CONFIRMING and not run.waiting:
            self._finish(out, run, CONFIRMING[run.state], run.note)

    def _finish(self, out, run, final_state, note):
        """End the run now and hand its last interval and report to the writers."""
        generators = list(self.registry)
        telemetry = self.aggregator.last_second(generators)
        if telemetry is not None:  # what arrived since the last tick goes into the charts and warnings too
            out.writes.append(WriteSecond(run.info, self._run_second(run, telemetry)))
            self._warn(out, run, generators, telemetry)
        if final_state == constants.ABORTED and run.state is not RunState.ABORTING:
            self._abort_generators(out, run, note)
        elif final_state == constants.DONE:
            self._event(out, "run_done", "")
        run.note = note
        self._say_ignored(out)
        last, totals = self.aggregator.finish_run(generators)
        summary = run.judge.judge(self._at.monotonic, totals.histograms, totals.totals, totals.maxima,
                                  final=True)
        final = self._report(run, final_state, totals, note, summary)
        run.outcome = final_state
        self._enter(out, run, RunState.FINISHING)
        out.writes.append(WriteFinish(run.info, last, final))

    def _report(self, run, state, totals, note, summary):
        return FinalReport(state=state, started_at=run.started_wall, finished_at=self._at.wall,
                           devices_requested=run.plan.size, devices_started=run.devices_started,
                           generators=dict(run.generator_devices), events=list(run.events),
                           totals=totals, note=note, summary=summary, verdict=run.judge.verdict.to_dict())

    def _checkpoint(self, out, run):
        """Hand the writers the report the run would get if the coordinator died now: the
        whole run so far, aborted, as JSON text made here so no writer reads live state."""
        run.next_checkpoint = self._at.monotonic + CHECKPOINT_INTERVAL_S
        report = self._report(run, constants.ABORTED, self.aggregator.run_totals(), INTERRUPTED_NOTE,
                              run.judge.summary)
        out.writes.append(WriteCheckpoint(run.info, json.dumps(report.to_dict(), sort_keys=True)))

    def _say_ignored(self, out):
        """The run's last word on what it did not merge: other runs' messages, capped metric keys."""
        stale = self.stale.flush(self._at.monotonic)
        if stale is not None:
            self._event(out, "stale_telemetry", stale)
        if self.telemetry_check.dropped:
            self._event(out, "metric_keys_dropped",
                        f"{self.telemetry_check.dropped} values of metrics beyond the run's first "
                        f"{self.telemetry_check.max_keys} distinct names were dropped")

    def _event(self, out, kind, message, generator=None):
        event = {"time": self._at.wall, "kind": kind, "message": message}
        if generator is not None:
            event["generator"] = generator.generator_id
        run = self.run
        if run is not None and not run.ended:
            event["elapsed_s"] = round(self._at.monotonic - run.started, 3)
            run.events.append(event)
            out.writes.append(WriteEvent(run.info, event))
        self.events.append(event)
        del self.events[:-RECENT_EVENTS]
        out.events.append(event)
