"""The host agent: one process per machine between the coordinator and the workers.

It runs one single-threaded loop over ZeroMQ sockets (``zmq.Poller``):

- the coordinator DEALER (``CoordinatorLink``): registration, heartbeats and
  the coordinator's commands;
- a ROUTER on ``ipc://`` in a private temporary directory, where every worker
  connects a DEALER (``socket_dir``: removed on exit, or by the next agent when
  this one was killed);
- a self-pipe woken by signals: SIGTERM/SIGINT stop the agent, SIGCHLD means
  a worker may have died.

Every second it merges the workers' metric deltas exactly
(``MetricsAggregate``), adds the host's utilization (``HostSampler``) and the
sum of the workers' active devices, and sends one ``Telemetry``.

An ``Abort`` or an ``EndRun`` (the run's normal end) from the coordinator is
answered once every worker has answered it: a last ``Telemetry`` with what the
workers flushed, then ``RunStopped``. A
worker that has not confirmed a stop or an abort within the stop timeout
(``StopDeadlines``) is killed, counted as ``worker_killed_error_count`` and
reported as an event with what it was doing; it is started again empty.
"""
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time

import zmq

from stressgrid import wire
from stressgrid.errors import ADDR_NOT_AVAIL_ADVICE, ADDR_NOT_AVAIL_COUNTER
from stressgrid.metrics import COUNTER_SUFFIX, MetricsAggregate
from stressgrid.plan import constants
from stressgrid.protocols.source import parse_pool

from .cohorts import CohortBook, CohortError, check_start_cohort, fit_shares, split_cohort
from .coordinator_link import CoordinatorLink
from .host_metrics import HostSampler
from .limits import device_capacity, raise_open_file_limit, report_capacity, worker_capacities
from .socket_dir import agent_socket_dir
from .stop_deadlines import StopDeadlines, describe_stop, stop_key
from .supervisor import WorkerPool
from .worker import watchdog_identity, worker_identity

ACTIVE_DEVICES_GAUGE = "active_device_number"
WORKER_KILLED_COUNTER = constants.WORKER_KILLED_ERROR + COUNTER_SUFFIX
WORKER_CRASHED_COUNTER = constants.WORKER_CRASHED_ERROR + COUNTER_SUFFIX
DEVICE_CANCELLED_COUNTER = constants.DEVICE_CANCELLED_ERROR + COUNTER_SUFFIX
DEVICE_UNPLACED_COUNTER = constants.DEVICE_UNPLACED_ERROR + COUNTER_SUFFIX
# Messages read from one socket before the others get a turn.
RECEIVE_BATCH = 1000

log = logging.getLogger(__name__)


class HostAgent:
    """Registers with the coordinator, runs the workers and reports for the host."""

    def __init__(self, config, clock=time.monotonic):
        self.config = config
        self._clock = clock
        self.book = CohortBook()
        self._pending = {}  # run id -> _Pending: what the workers reported since the last report
        self._reported_error_kinds = set()
        self._remainder_cursor = 0
        self._stop_requested = False
        self._identities = {identity(i): i for i in range(config.workers)
                            for identity in (worker_identity, watchdog_identity)}
        self.stops = StopDeadlines(config.worker_stop_timeout_s)
        self._restart_reasons = {}
        self._stopping = {}  # run id -> indexes of the workers yet to answer its Abort or EndRun
        self._sampler = None
        self._worker_capacities = None
        self._coordinator_handlers = {
            wire.Registered: self._on_registered,
            wire.Heartbeat: self._on_coordinator_heartbeat,
            wire.StartCohort: self._on_start_cohort,
            wire.StopCohort: self._on_stop_cohort,
            wire.Abort: self._on_abort,
            wire.EndRun: self._on_end_run,
            wire.Error: self._on_coordinator_error,
        }
        self._worker_handlers = {
            wire.WorkerReady: self._on_worker_ready,
            wire.Telemetry: self._on_worker_telemetry,
            wire.RunStopped: self._on_worker_run_stopped,
            wire.StopCohort: self._on_worker_cohort_stopped,
            wire.Event: self._on_worker_event,
            wire.Error: self._on_worker_error,
        }
        self.link = None
        self.pool = None
        self.router = None

    # -- lifecycle -----------------------------------------------------------------

    def run(self):
        """Serve until SIGTERM or SIGINT; returns the exit status (0 on a clean stop)."""
        limit = raise_open_file_limit()
        source_addresses = parse_pool(self.config.source_addresses).size
        capacity = device_capacity(limit, self.config.workers, source_addresses=source_addresses)
        report_capacity(limit, self.config.workers, capacity, source_addresses)
        self._worker_capacities = worker_capacities(capacity, self.config.workers)
        with contextlib.ExitStack() as stack:  # unwinds in reverse: workers first, context last
            context = zmq.Context()
            stack.callback(context.term)
            wake_reader, wake_writer = socket.socketpair()
            stack.callback(wake_reader.close)
            stack.callback(wake_writer.close)
            socket_dir = stack.enter_context(agent_socket_dir())
            stack.enter_context(_signals_to(wake_writer, self._request_stop))
            self.router = self._bind_worker_router(context, f"ipc://{socket_dir}/workers")
            stack.callback(self.router.close, linger=0)
            self.link = self._connect_coordinator(context, capacity, source_addresses)
            stack.callback(self.link.close)
            self.pool = WorkerPool(self.config.workers, self.router.getsockopt_string(zmq.LAST_ENDPOINT),
                                   self.config.log_level, source_addresses=self.config.source_addresses)
            stack.callback(self._stop_workers)
            # Every log line already starts with "generator <id>:" (configure_logging).
            log.info("%d worker%s, coordinator %s", self.config.workers,
                     "" if self.config.workers == 1 else "s", self.config.coordinator_url)
            self.pool.start_all()
            self._serve(wake_reader)
        log.info("stopped")
        return 0

    @staticmethod
    def _bind_worker_router(context, endpoint):
        router = context.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone worker fails, not vanishes
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted worker takes over its identity
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.SNDHWM, 0)  # commands to a live worker are never dropped
        try:
            router.bind(endpoint)
        except zmq.ZMQError as exc:  # e.g. a socket path longer than the system allows
            router.close(linger=0)
            raise SystemExit(f"cannot bind the workers' socket {endpoint!r}: {exc}") from None
        return router

    def _connect_coordinator(self, context, capacity, source_addresses):
        try:
            return CoordinatorLink(context, self.config, cores=os.cpu_count() or 1,
                                   workers=self.config.workers, capacity=capacity,
                                   source_addresses=source_addresses)
        except zmq.ZMQError as exc:
            raise SystemExit(f"cannot use coordinator address {self.config.coordinator_url!r}: {exc}") from None

    def _stop_workers(self):
        log.info("stopping %d workers", len(self.pool))
        self.pool.stop_all()

    def _request_stop(self):
        self._stop_requested = True

    def _serve(self, wake_reader):
        poller = zmq.Poller()
        poller.register(self.link.socket, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        poller.register(wake_reader, zmq.POLLIN)
        self._sampler = HostSampler()
        next_report = self._clock() + self.config.telemetry_interval_s
        while not self._stop_requested:
            deadlines = [next_report, self.link.next_due()]
            deadlines.extend(due for due in (self.pool.next_restart_at(), self.stops.next_due()) if due is not None)
            timeout_ms = max(0.0, min(deadlines) - self._clock()) * 1000
            ready = dict(poller.poll(timeout_ms))
            if wake_reader in ready:
                _drain(wake_reader)
            if self._stop_requested:
                break
            if self.link.socket in ready:
                self._read_coordinator()
            if self.router in ready:
                self._read_workers()
            self._supervise()
            self.link.tick()
            now = self._clock()
            if now >= next_report:
                self._check_coordinator_grace()
                self._report()
                next_report += self.config.telemetry_interval_s
                if next_report < now:  # fell behind (suspended): do not burst
                    next_report = now + self.config.telemetry_interval_s

    # -- coordinator side ------------------------------------------------------------

    def _read_coordinator(self):
        for _ in range(RECEIVE_BATCH):
            data = self.link.receive()
            if data is None:
                return
            self.link.heard()
            try:
                message = wire.decode(data)
            except wire.WireError as exc:
                log.warning("bad message from the coordinator: %s", exc)
                self.link.send(wire.Error(message=str(exc)))
                continue
            handler = self._coordinator_handlers.get(type(message))
            if handler is None:
                log.warning("unexpected %s message from the coordinator", message.type.value)
                self.link.send(wire.Error(
                    message=f"a generator does not accept {message.type.value!r} messages"))
                continue
            handler(message)

    def _on_registered(self, message):
        if self.link.on_registered(message) and self.book:
            self._stop_everything("the coordinator registered this generator anew")

    def _on_coordinator_heartbeat(self, message):
        pass  # hearing it is all that matters

    def _on_coordinator_error(self, message):
        self.link.on_error(message)

    def _on_start_cohort(self, start):
        try:
            check_start_cohort(start)
            shares, cursor = split_cohort(start, len(self.pool), self._remainder_cursor)
            room = [capacity - self.book.devices(index) for index, capacity in enumerate(self._worker_capacities)]
            shares, unplaced = fit_shares(start, shares, room)
            self.book.add(start, shares)
        except CohortError as exc:
            log.warning("cannot start cohort %s: %s", start.cohort_id, exc)
            self.link.send(wire.Error(message=f"start_cohort {start.cohort_id!r}: {exc}"))
            return
        self._remainder_cursor = cursor
        if unplaced:
            text = (f"cohort {start.cohort_id!r} of run {start.run_id!r} cut short: {unplaced} of "
                    f"{unplaced + sum(share.devices for share in shares)} devices found no room "
                    f"(this generator holds at most {sum(self._worker_capacities)})")
            self._send_event("cohort_cut_short", text)
            self._count_error(DEVICE_UNPLACED_COUNTER, text, unplaced)
        for share in shares:
            self._send_to_worker(share.worker_index, share.start)
        log.info("cohort %s of run %s: %s devices over workers %s", start.cohort_id, start.run_id,
                 sum(share.devices for share in shares),
                 ", ".join(f"{share.worker_index}:{share.devices}" for share in shares))

    def _on_stop_cohort(self, stop):
        shares = self.book.remove(stop.run_id, stop.cohort_id)
        for share in shares:
            self._send_stop(share.worker_index, stop)
        if shares:
            log.info("cohort %s of run %s stopping", stop.cohort_id, stop.run_id)
        self._forget_errors_when_idle()

    def _on_abort(self, abort):
        self._stop_run(abort.run_id, "aborted")

    def _on_end_run(self, end):
        self._stop_run(end.run_id, "ended")

    def _stop_run(self, run_id, how):
        """Stop what is left of ``run_id`` on every worker; answered once they all confirmed."""
        self.book.remove_run(run_id)
        abort = wire.Abort(run_id=run_id)  # for a worker, both mean: stop every device of the run
        waiting = {slot.index for slot in self.pool.slots if self._send_stop(slot.index, abort)}
        log.info("run %s %s", run_id, how)
        self._forget_errors_when_idle()
        self._stopping[run_id] = waiting
        self._answer_stop_when_done(run_id)

    def _answer_stop_when_done(self, run_id):
        if self._stopping.get(run_id):
            return
        del self._stopping[run_id]
        # Whatever the workers flushed goes out first: the answer means "that was all".
        self._report()
        if self.link.registered:
            self.link.send(wire.RunStopped(run_id=run_id))

    def _worker_answered(self, run_id, index):
        waiting = self._stopping.get(run_id)
        if waiting is not None and index in waiting:
            waiting.discard(index)
            self._answer_stop_when_done(run_id)

    def _forget_worker_answers(self, index):
        """A worker that died answers no Abort: its devices are gone, stop waiting for it."""
        for run_id in list(self._stopping):
            self._worker_answered(run_id, index)

    def _stop_everything(self, reason):
        runs = self.book.runs()
        devices = self.book.devices()
        for run_id in runs:
            self.book.remove_run(run_id)
            for slot in self.pool.slots:
                self._send_stop(slot.index, wire.Abort(run_id=run_id))
        log.warning("%s: stopped %d devices of run(s) %s", reason, devices, ", ".join(runs))
        self._forget_errors_when_idle()

    def _check_coordinator_grace(self):
        silent = self.link.silent_for()
        if self.book and silent >= self.config.coordinator_grace_s:
            self._stop_everything(f"no word from the coordinator for {silent:.1f} s")

    def _forget_errors_when_idle(self):
        if not self.book:
            self._reported_error_kinds.clear()

    def _current_run(self):
        """The run this host works for (the latest with a live cohort), or ``""``."""
        runs = self.book.runs()
        return runs[-1] if runs else ""

    def _send_event(self, kind, text):
        log.info("event %s: %s", kind, text)
        if self.link.registered:
            self.link.send(wire.Event(run_id=self._current_run(), kind=kind, message=text))

    # -- worker side -------------------------------------------------------------------

    def _send_to_worker(self, index, message):
        slot = self.pool.slot_of(index)
        if slot is None or not slot.ready:
            return False  # a worker that becomes ready gets its shares from the book
        try:
            self.router.send_multipart([worker_identity(index), wire.encode(message)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # gone (EHOSTUNREACH) or full (EAGAIN)
            log.warning("could not send %s to worker %d: %s", message.type.value, index, exc)
            return False

    def _send_stop(self, index, message):
        """Send a ``StopCohort`` or an ``Abort`` and expect its confirmation in time."""
        sent = self._send_to_worker(index, message)
        if sent:
            self.stops.expect(index, stop_key(message), self._clock())
        return sent

    def _read_workers(self):
        for _ in range(RECEIVE_BATCH):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                log.warning("a worker message with %d frames ignored", len(frames))
                continue
            identity, data = frames
            index = self._identities.get(identity)
            try:
                message = wire.decode(data)
            except wire.WireError as exc:
                log.warning("bad message from worker %s: %s", index, exc)
                self._reply_to_worker(identity, wire.Error(message=str(exc)))
                continue
            handler = self._worker_handlers.get(type(message))
            if index is None or handler is None:
                log.warning("unexpected %s message from %r", message.type.value, identity)
                self._reply_to_worker(identity, wire.Error(
                    message=f"the agent does not accept {message.type.value!r} messages from {identity!r}"))
                continue
            handler(self.pool.slot_of(index), message)

    def _reply_to_worker(self, identity, message):
        try:
            self.router.send_multipart([identity, wire.encode(message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _on_worker_ready(self, slot, ready):
        if ready.pid != slot.pid or ready.worker_index != slot.index:
            log.warning("ignoring WorkerReady from pid %d for worker %d (its process is pid %s)",
                        ready.pid, ready.worker_index, slot.pid)
            return
        slot.ready = True
        shares = self.book.shares_of(slot.index, resume=slot.index in self._restart_reasons)
        for start in shares:
            self._send_to_worker(slot.index, start)
        reason = self._restart_reasons.pop(slot.index, None)
        if reason is not None:
            self._send_event("worker_restarted",
                             f"{reason}; restarted as pid {slot.pid}, re-creating "
                             f"{self.book.devices(slot.index)} devices in {len(shares)} cohorts")
        else:
            log.info("worker %d ready (pid %d)", slot.index, slot.pid)

    def _pending_of(self, run_id):
        pending = self._pending.get(run_id)
        if pending is None:
            pending = self._pending[run_id] = _Pending(MetricsAggregate(), {})
        return pending

    def _on_worker_telemetry(self, slot, telemetry):
        pending = self._pending_of(telemetry.run_id)
        try:
            pending.metrics.add_snapshot(telemetry.metrics)
        except ValueError as exc:
            log.warning("bad telemetry from worker %d: %s", slot.index, exc)
            self._reply_to_worker(worker_identity(slot.index), wire.Error(message=f"bad telemetry: {exc}"))
            return
        if slot.ready:
            if telemetry.active_device_number < slot.active_devices:
                self.stops.progressed(slot.index, self._clock())
            slot.active_devices = telemetry.active_device_number
        for kind, line in telemetry.errors.items():
            if kind not in self._reported_error_kinds:
                self._reported_error_kinds.add(kind)
                pending.errors[kind] = line
                if kind == DEVICE_CANCELLED_COUNTER:
                    self._send_event("device_cancelled", f"worker {slot.index}: a script cancelled its own "
                                                         f"device (restarted like any failing one): {line}")
                elif kind == ADDR_NOT_AVAIL_COUNTER:
                    self._send_event("addr_not_avail", f"worker {slot.index}: {ADDR_NOT_AVAIL_ADVICE}: {line}")

    def _on_worker_run_stopped(self, slot, stopped):
        self.stops.confirmed(slot.index, stop_key(stopped))
        self._worker_answered(stopped.run_id, slot.index)

    def _on_worker_cohort_stopped(self, slot, stop):
        self.stops.confirmed(slot.index, stop_key(stop))

    def _on_worker_event(self, slot, event):
        slot.last_event = event.message
        self._send_event(event.kind, f"worker {slot.index} (pid {slot.pid}): {event.message}")

    def _on_worker_error(self, slot, error):
        self._send_event("worker_error", error.message)

    def _supervise(self):
        for index, key in self.stops.overdue(self._clock()):
            self._kill_unstoppable(self.pool.slot_of(index), describe_stop(key))
        for exit_ in self.pool.reap():
            description = exit_.describe()
            self._restart_reasons[exit_.index] = description
            devices = self.book.devices(exit_.index)
            log.warning("%s with %d devices; restarting it", description, devices)
            if not exit_.killed:  # a kill was counted when it was decided
                self._send_event("worker_crashed", f"{description} with {devices} devices")
                self._count_error(WORKER_CRASHED_COUNTER, description)
            self.stops.forget(exit_.index)
            self._forget_worker_answers(exit_.index)
        self.pool.restart_due()

    def _kill_unstoppable(self, slot, what):
        self.stops.forget(slot.index)
        doing = f"; its last report: {slot.last_event}" if slot.last_event else ""
        self._send_event("worker_killed", f"worker {slot.index} (pid {slot.pid}) did not confirm {what} "
                                          f"within {self.stops.timeout_s:g} s; killed it{doing}")
        self._count_error(WORKER_KILLED_COUNTER, f"worker {slot.index} did not confirm {what}{doing}")
        self.pool.kill(slot.index)

    def _count_error(self, name, line, count=1):
        """Count a generator-side failure of the current run, with its first line."""
        pending = self._pending_of(self._current_run())
        pending.metrics.counters[name] = pending.metrics.counters.get(name, 0) + count
        if name not in self._reported_error_kinds:
            self._reported_error_kinds.add(name)
            pending.errors[name] = line

    # -- telemetry ---------------------------------------------------------------------

    def _report(self):
        """One ``Telemetry`` per run the workers reported for; the host's own figures and its
        active devices go with the current run's."""
        current = self._current_run()
        self._sampler.sample_into(self._pending_of(current).metrics)
        active = sum(slot.active_devices for slot in self.pool.slots)
        for run_id, pending in self._pending.items():
            devices = active if run_id == current else 0
            snapshot = pending.metrics.to_snapshot()
            snapshot["gauges"][ACTIVE_DEVICES_GAUGE] = devices
            if self.link.registered:
                self.link.send(wire.Telemetry(run_id=run_id, metrics=snapshot,
                                              active_device_number=devices, errors=pending.errors))
        self._pending = {}


@dataclasses.dataclass
class _Pending:
    """What the workers reported for one run since the last report."""

    metrics: MetricsAggregate
    errors: dict


@contextlib.contextmanager
def _signals_to(wake_writer, on_stop):
    """Route SIGTERM/SIGINT to ``on_stop`` and wake the loop on them and on SIGCHLD."""
    wake_writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(wake_writer.fileno(), warn_on_full_buffer=False)
    handlers = {signal.SIGTERM: lambda *_: on_stop(), signal.SIGINT: lambda *_: on_stop(),
                signal.SIGCHLD: lambda *_: None}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)


def _drain(sock):
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while sock.recv(4096):
            pass
