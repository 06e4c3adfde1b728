"""The host agent's logic as a sans-IO state machine: messages and time in, effects out.

``AgentCore`` owns what the agent knows about its runs and its workers: the
book of live cohorts and each worker's share of them (``CohortBook``), the
stops each worker owes and their deadlines (``StopDeadlines``), each worker's
state (``WorkerState``), the runs waiting for their workers to answer an
``Abort`` or an ``EndRun``, and what the workers reported since the last
report. It never touches a socket, a process or a clock: every input passes
``now`` (monotonic seconds) and returns an ``AgentOutbox``, which the agent
(``agent.HostAgent``, the IO shell) carries out.

Inputs (each returns an ``AgentOutbox``):

* ``from_coordinator(message, now)``: a ``StartCohort``, ``StopCohort``,
  ``Abort`` or ``EndRun`` (anything else is answered with an ``Error``);
* ``from_worker(index, message, now)``: a ``WorkerReady``, ``Telemetry``,
  ``RunStopped``, ``StopCohort`` (a stop confirmed), ``Event`` or ``Error``
  of worker ``index``;
* ``undelivered(index, message, now)``: a message of ``to_workers`` that
  could not be sent (the worker is gone): a stop it cannot get is one it
  need not confirm;
* ``worker_started(index, pid, now)`` and ``worker_exited(exit, now)`` (a
  ``supervisor.WorkerExit``): the worker processes as the pool sees them;
* ``registered_anew(now)``: the coordinator lost track of this generator and
  knows none of its cohorts; ``coordinator_silent(silent_s, now)``: how long
  the coordinator has said nothing;
* ``tick(now)``: time passed; call it at ``next_deadline()`` at the latest;
* ``report(now)``: the second is over: the telemetry of every run.

Outputs (``AgentOutbox`` fields, each in order): ``to_coordinator``, wire
messages for the coordinator; ``to_workers``, ``(worker index, wire
message)``; ``kills``, worker indexes to SIGKILL (their exit comes back
through ``worker_exited``, which restarts nothing by itself: the pool does).

What the workers flushed for a stopped run goes out before its
``RunStopped``: the answer means "that was all". A worker that has not
confirmed a stop within the stop timeout is killed, counted as
``worker_killed_error_count`` and reported as an event with what it last said
it was doing; a worker that died unasked is counted as
``worker_crashed_error_count``. A restarted worker gets its shares of the
live cohorts back when it is ready, an arrival-rate share where its schedule
has got to.
"""
import dataclasses
import logging

from stressgrid import wire
from stressgrid.errors import ADDR_NOT_AVAIL_ADVICE, ADDR_NOT_AVAIL_COUNTER
from stressgrid.metrics import COUNTER_SUFFIX, MetricsAggregate
from stressgrid.plan import constants

from .cohorts import CohortBook, CohortError, check_start_cohort, fit_shares, split_cohort
from .stop_deadlines import StopDeadlines, describe_stop, stop_key

ACTIVE_DEVICES_GAUGE = "active_device_number"
WORKER_KILLED_COUNTER = constants.WORKER_KILLED_ERROR + COUNTER_SUFFIX
WORKER_CRASHED_COUNTER = constants.WORKER_CRASHED_ERROR + COUNTER_SUFFIX
DEVICE_CANCELLED_COUNTER = constants.DEVICE_CANCELLED_ERROR + COUNTER_SUFFIX
DEVICE_UNPLACED_COUNTER = constants.DEVICE_UNPLACED_ERROR + COUNTER_SUFFIX

log = logging.getLogger(__name__)


class AgentOutbox:
    """What one input of the core asks the agent to do (see the module docstring)."""

    __slots__ = ("to_coordinator", "to_workers", "kills")

    def __init__(self):
        self.to_coordinator = []
        self.to_workers = []
        self.kills = []

    def __bool__(self):
        return bool(self.to_coordinator or self.to_workers or self.kills)


@dataclasses.dataclass
class WorkerState:
    """What the core knows of one worker index and the process filling it."""

    index: int
    pid: int = None
    ready: bool = False  # its process said ``WorkerReady``: it takes commands
    active_devices: int = 0
    last_event: str = None  # what it last reported about itself (a stall, a refused stop)
    restart_reason: str = None  # why its process was started again, until it is ready


@dataclasses.dataclass
class _Pending:
    """What the workers reported for one run since the last report."""

    metrics: MetricsAggregate
    errors: dict


class AgentCore:
    """The runs and workers of one host (see the module docstring).

    ``capacities``: the devices each worker may hold; ``sample_host``, called
    with the current run's ``MetricsAggregate`` at every report, adds the
    host's own figures (``HostSampler.sample_into``).
    """

    def __init__(self, capacities, stop_timeout_s, coordinator_grace_s, sample_host=None):
        self.capacities = list(capacities)
        self.workers = [WorkerState(index) for index in range(len(self.capacities))]
        self.book = CohortBook()
        self.stops = StopDeadlines(stop_timeout_s)
        self.coordinator_grace_s = coordinator_grace_s
        self._sample_host = sample_host
        self._remainder_cursor = 0
        self._stopping = {}  # run id -> indexes of the workers yet to answer its Abort or EndRun
        self._pending = {}  # run id -> _Pending
        self._reported_error_kinds = set()  # each kind goes out with its first line once, until idle
        self._outbox = None
        self._coordinator_handlers = {
            wire.StartCohort: self._on_start_cohort,
            wire.StopCohort: self._on_stop_cohort,
            wire.Abort: lambda abort, now: self._stop_run(abort.run_id, "aborted", now),
            wire.EndRun: lambda end, now: self._stop_run(end.run_id, "ended", now),
        }
        self._worker_handlers = {
            wire.WorkerReady: self._on_worker_ready,
            wire.Telemetry: self._on_worker_telemetry,
            wire.RunStopped: self._on_worker_run_stopped,
            wire.StopCohort: lambda worker, stop, now: self.stops.confirmed(worker.index, stop_key(stop)),
            wire.Event: self._on_worker_event,
            wire.Error: lambda worker, error, now: self._send_event("worker_error", error.message),
        }

    # -- inputs -----------------------------------------------------------------------------

    def from_coordinator(self, message, now):
        outbox = self._begin()
        handler = self._coordinator_handlers.get(type(message))
        if handler is None:
            log.warning("unexpected %s message from the coordinator", message.type.value)
            outbox.to_coordinator.append(wire.Error(
                message=f"a generator does not accept {message.type.value!r} messages"))
        else:
            handler(message, now)
        return self._end()

    def from_worker(self, index, message, now):
        outbox = self._begin()
        handler = self._worker_handlers.get(type(message))
        if handler is None:
            log.warning("unexpected %s message from worker %d", message.type.value, index)
            outbox.to_workers.append((index, wire.Error(
                message=f"the agent does not accept {message.type.value!r} messages from workers")))
        else:
            handler(self.workers[index], message, now)
        return self._end()

    def undelivered(self, index, message, now):
        self._begin()
        log.warning("could not send %s to worker %d", message.type.value, index)
        if isinstance(message, (wire.Abort, wire.StopCohort)):
            self.stops.confirmed(index, stop_key(message))
            if isinstance(message, wire.Abort):
                self._worker_answered(message.run_id, index, now)
        return self._end()

    def worker_started(self, index, pid, now):
        self._begin()
        worker = self.workers[index]
        worker.pid = pid
        worker.ready = False
        worker.active_devices = 0
        worker.last_event = None
        log.debug("worker %d started as pid %d", index, pid)
        return self._end()

    def worker_exited(self, exit_, now):
        self._begin()
        worker = self.workers[exit_.index]
        worker.ready = False
        worker.active_devices = 0
        description = exit_.describe()
        worker.restart_reason = description
        devices = self.book.devices(exit_.index)
        log.warning("%s with %d devices; restarting it", description, devices)
        if not exit_.killed:  # a kill was counted when it was decided
            self._send_event("worker_crashed", f"{description} with {devices} devices")
            self._count_error(WORKER_CRASHED_COUNTER, description)
        self.stops.forget(exit_.index)
        for run_id in list(self._stopping):  # a dead worker answers no Abort: stop waiting for it
            self._worker_answered(run_id, exit_.index, now)
        return self._end()

    def registered_anew(self, now):
        self._begin()
        if self.book:
            self._stop_everything("the coordinator registered this generator anew", now)
        return self._end()

    def coordinator_silent(self, silent_s, now):
        self._begin()
        if self.book and silent_s >= self.coordinator_grace_s:
            self._stop_everything(f"no word from the coordinator for {silent_s:.1f} s", now)
        return self._end()

    def tick(self, now):
        outbox = self._begin()
        for index, key in self.stops.overdue(now):
            worker = self.workers[index]
            what = describe_stop(key)
            self.stops.forget(index)
            doing = f"; its last report: {worker.last_event}" if worker.last_event else ""
            run_id = key[0]  # the run whose stop it did not confirm
            self._send_event("worker_killed", f"worker {index} (pid {worker.pid}) did not confirm {what} "
                                              f"within {self.stops.timeout_s:g} s; killed it{doing}", run_id)
            self._count_error(WORKER_KILLED_COUNTER, f"worker {index} did not confirm {what}{doing}", run_id=run_id)
            outbox.kills.append(index)
        return self._end()

    def report(self, now):
        self._begin()
        self._report()
        return self._end()

    def next_deadline(self):
        """When ``tick`` next has something to do, or ``None``."""
        return self.stops.next_due()

    # -- coordinator commands -----------------------------------------------------------------

    def _on_start_cohort(self, start, now):
        try:
            check_start_cohort(start)
            shares, cursor = split_cohort(start, len(self.workers), self._remainder_cursor)
            room = [capacity - self.book.devices(index) for index, capacity in enumerate(self.capacities)]
            shares, unplaced = fit_shares(start, shares, room)
            self.book.add(start, shares, now)
        except CohortError as exc:
            log.warning("cannot start cohort %s: %s", start.cohort_id, exc)
            self._outbox.to_coordinator.append(wire.Error(message=f"start_cohort {start.cohort_id!r}: {exc}"))
            return
        self._remainder_cursor = cursor
        if unplaced:
            text = (f"cohort {start.cohort_id!r} of run {start.run_id!r} cut short: {unplaced} of "
                    f"{unplaced + sum(share.devices for share in shares)} devices found no room "
                    f"(this generator holds at most {sum(self.capacities)})")
            self._send_event("cohort_cut_short", text)
            self._count_error(DEVICE_UNPLACED_COUNTER, text, unplaced)
        for share in shares:
            self._command(share.worker_index, share.start)
        log.info("cohort %s of run %s: %s devices over workers %s", start.cohort_id, start.run_id,
                 sum(share.devices for share in shares),
                 ", ".join(f"{share.worker_index}:{share.devices}" for share in shares))

    def _on_stop_cohort(self, stop, now):
        shares = self.book.remove(stop.run_id, stop.cohort_id)
        for share in shares:
            self._send_stop(share.worker_index, stop, now)
        if shares:
            log.info("cohort %s of run %s stopping", stop.cohort_id, stop.run_id)
        self._forget_errors_when_idle()

    def _stop_run(self, run_id, how, now):
        """Stop what is left of ``run_id`` on every worker; answered once they all confirmed."""
        self.book.remove_run(run_id)
        abort = wire.Abort(run_id=run_id)  # for a worker, both mean: stop every device of the run
        self._stopping[run_id] = {worker.index for worker in self.workers if self._send_stop(worker.index, abort, now)}
        log.info("run %s %s", run_id, how)
        self._forget_errors_when_idle()
        self._answer_stop_when_done(run_id)

    def _stop_everything(self, reason, now):
        runs = self.book.runs()
        devices = self.book.devices()
        for run_id in runs:
            self.book.remove_run(run_id)
            for worker in self.workers:
                self._send_stop(worker.index, wire.Abort(run_id=run_id), now)
        log.warning("%s: stopped %d devices of run(s) %s", reason, devices, ", ".join(runs))
        self._forget_errors_when_idle()

    def _answer_stop_when_done(self, run_id):
        if self._stopping.get(run_id):
            return
        del self._stopping[run_id]
        self._report()  # whatever the workers flushed goes out first
        self._outbox.to_coordinator.append(wire.RunStopped(run_id=run_id))

    def _worker_answered(self, run_id, index, now):
        waiting = self._stopping.get(run_id)
        if waiting is not None and index in waiting:
            waiting.discard(index)
            self._answer_stop_when_done(run_id)

    # -- worker reports ---------------------------------------------------------------------

    def _on_worker_ready(self, worker, ready, now):
        if ready.pid != worker.pid or ready.worker_index != worker.index:
            log.warning("ignoring WorkerReady from pid %d for worker %d (its process is pid %s)",
                        ready.pid, ready.worker_index, worker.pid)
            return
        worker.ready = True
        reason, worker.restart_reason = worker.restart_reason, None
        shares = self.book.shares_of(worker.index, now, resume=reason is not None)
        for start in shares:
            self._command(worker.index, start)
        if reason is not None:
            self._send_event("worker_restarted",
                             f"{reason}; restarted as pid {worker.pid}, re-creating "
                             f"{self.book.devices(worker.index)} devices in {len(shares)} cohorts")
        else:
            log.info("worker %d ready (pid %d)", worker.index, worker.pid)

    def _on_worker_telemetry(self, worker, telemetry, now):
        pending = self._pending_of(telemetry.run_id)
        try:
            pending.metrics.add_snapshot(telemetry.metrics)
        except ValueError as exc:
            log.warning("bad telemetry from worker %d: %s", worker.index, exc)
            self._outbox.to_workers.append((worker.index, wire.Error(message=f"bad telemetry: {exc}")))
            return
        if worker.ready:
            if telemetry.active_device_number < worker.active_devices:
                self.stops.progressed(worker.index, now)
            worker.active_devices = telemetry.active_device_number
        for kind, line in telemetry.errors.items():
            if kind in self._reported_error_kinds:
                continue
            self._reported_error_kinds.add(kind)
            pending.errors[kind] = line
            if kind == DEVICE_CANCELLED_COUNTER:
                self._send_event("device_cancelled", f"worker {worker.index}: a script cancelled its own "
                                                     f"device (restarted like any failing one): {line}")
            elif kind == ADDR_NOT_AVAIL_COUNTER:
                self._send_event("addr_not_avail", f"worker {worker.index}: {ADDR_NOT_AVAIL_ADVICE}: {line}")

    def _on_worker_run_stopped(self, worker, stopped, now):
        self.stops.confirmed(worker.index, stop_key(stopped))
        self._worker_answered(stopped.run_id, worker.index, now)

    def _on_worker_event(self, worker, event, now):
        worker.last_event = event.message
        self._send_event(event.kind, f"worker {worker.index} (pid {worker.pid}): {event.message}")

    # -- effects ------------------------------------------------------------------------------

    def _begin(self):
        self._outbox = AgentOutbox()
        return self._outbox

    def _end(self):
        outbox, self._outbox = self._outbox, None
        return outbox

    def _command(self, index, message):
        """Send a command to worker ``index`` if it takes commands now; ``True`` when sent.

        A worker that is not ready gets its shares from the book once it is.
        """
        if not self.workers[index].ready:
            return False
        self._outbox.to_workers.append((index, message))
        return True

    def _send_stop(self, index, message, now):
        """Send a ``StopCohort`` or an ``Abort`` and expect its confirmation in time."""
        sent = self._command(index, message)
        if sent:
            self.stops.expect(index, stop_key(message), now)
        return sent

    def _current_run(self):
        """The run this host works for: the latest with a live cohort, else the latest still
        stopping (what goes wrong while it stops is its), else ``""``."""
        runs = self.book.runs() or list(self._stopping)
        return runs[-1] if runs else ""

    def _send_event(self, kind, text, run_id=None):
        log.info("event %s: %s", kind, text)
        run_id = self._current_run() if run_id is None else run_id
        self._outbox.to_coordinator.append(wire.Event(run_id=run_id, kind=kind, message=text))

    def _pending_of(self, run_id):
        pending = self._pending.get(run_id)
        if pending is None:
            pending = self._pending[run_id] = _Pending(MetricsAggregate(), {})
        return pending

    def _count_error(self, name, line, count=1, run_id=None):
        """Count a generator-side failure of ``run_id`` (default: the current run), with its first line."""
        pending = self._pending_of(self._current_run() if run_id is None else run_id)
        pending.metrics.counters[name] = pending.metrics.counters.get(name, 0) + count
        if name not in self._reported_error_kinds:
            self._reported_error_kinds.add(name)
            pending.errors[name] = line

    def _forget_errors_when_idle(self):
        if not self.book:
            self._reported_error_kinds.clear()

    def _report(self):
        """One ``Telemetry`` per run the workers reported for; the host's own figures and its
        active devices go with the current run's."""
        current = self._current_run()
        host = self._pending_of(current)  # the current run's goes out every second, if only with the host's
        if self._sample_host is not None:
            self._sample_host(host.metrics)
        active = sum(worker.active_devices for worker in self.workers)
        for run_id, pending in self._pending.items():
            devices = active if run_id == current else 0
            snapshot = pending.metrics.to_snapshot()
            snapshot["gauges"][ACTIVE_DEVICES_GAUGE] = devices
            self._outbox.to_coordinator.append(wire.Telemetry(run_id=run_id, metrics=snapshot,
                                                              active_device_number=devices, errors=pending.errors))
        self._pending = {}
