"""The host agent: one process per machine between the coordinator and the workers.

This is the IO shell around ``agent_core.AgentCore``, which holds the logic
(the cohorts, the workers' stops and their deadlines, the telemetry) and
answers every input with an ``AgentOutbox`` that the shell carries out. The
shell runs one single-threaded loop over ZeroMQ sockets (``zmq.Poller``):

- the coordinator DEALER (``CoordinatorLink``): registration, heartbeats and
  the coordinator's commands;
- a ROUTER on ``ipc://`` in a private temporary directory, where every worker
  connects a DEALER (``socket_dir``: removed on exit, or by the next agent when
  this one was killed);
- a self-pipe woken by signals: SIGTERM/SIGINT stop the agent, SIGCHLD means
  a worker may have died (``WorkerPool`` reaps and restarts it).

Every second the core merges the workers' metric deltas exactly, with the
host's utilization (``HostSampler``) and the sum of the workers' active
devices, into one ``Telemetry`` per run.
"""
import contextlib
import logging
import os
import signal
import socket
import time

import zmq

from stressgrid import wire
from stressgrid.protocols.source import parse_pool

from .agent_core import AgentCore
from .coordinator_link import CoordinatorLink
from .host_metrics import HostSampler
from .limits import device_capacity, raise_open_file_limit, report_capacity, worker_capacities
from .socket_dir import agent_socket_dir
from .supervisor import WorkerPool
from .worker import watchdog_identity, worker_identity

# Messages read from one socket before the others get a turn.
RECEIVE_BATCH = 1000
# A turn of the loop this long is logged with where its time went: the coordinator waits
# for the agent's heartbeats, and the agent registers again after hearing nothing for a while.
SLOW_TURN_S = 1.0

log = logging.getLogger(__name__)


class HostAgent:
    """Registers with the coordinator, runs the workers and reports for the host."""

    def __init__(self, config, clock=time.monotonic):
        self.config = config
        self._clock = clock
        self._stop_requested = False
        self._identities = {identity(i): i for i in range(config.workers)
                            for identity in (worker_identity, watchdog_identity)}
        self._link_handlers = {
            wire.Registered: self._on_registered,
            wire.Heartbeat: lambda message: None,  # hearing it is all that matters
            wire.Error: lambda message: self.link.on_error(message),
        }
        self.core = None
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
            self.core = AgentCore(worker_capacities(capacity, self.config.workers),
                                  self.config.worker_stop_timeout_s, self.config.coordinator_grace_s,
                                  sample_host=HostSampler().sample_into)
            self.pool = WorkerPool(self.config.workers, self.router.getsockopt_string(zmq.LAST_ENDPOINT),
                                   self.config.log_level, source_addresses=self.config.source_addresses)
            stack.callback(self._stop_workers)
            # Every log line already starts with "generator <id>:" (configure_logging).
            log.info("%d worker%s, coordinator %s", self.config.workers,
                     "" if self.config.workers == 1 else "s", self.config.coordinator_url)
            for slot in self.pool.start_all():
                self._carry_out(self.core.worker_started(slot.index, slot.pid, self._clock()))
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
        next_report = self._clock() + self.config.telemetry_interval_s
        while not self._stop_requested:
            deadlines = [next_report, self.link.next_due()]
            deadlines.extend(due for due in (self.pool.next_restart_at(), self.core.next_deadline())
                             if due is not None)
            timeout_ms = max(0.0, min(deadlines) - self._clock()) * 1000
            ready = dict(poller.poll(timeout_ms))
            if wake_reader in ready:
                _drain(wake_reader)
            if self._stop_requested:
                break
            turn_started = self._clock()
            worker_messages = self._read_workers() if self.router in ready else 0
            workers_read = self._clock()
            self._supervise()
            # The coordinator's socket is read last, right before the silence check: what it sent
            # while the workers' messages were handled counts as heard, so a silence is the
            # coordinator's, never the length of this turn.
            self._read_coordinator()
            coordinator_read = self._clock()
            self.link.tick()
            now = self._clock()
            if now >= next_report:
                self._carry_out(self.core.coordinator_silent(self.link.silent_for(), now))
                self._carry_out(self.core.report(now))
                next_report += self.config.telemetry_interval_s
                if next_report < now:  # fell behind (suspended): do not burst
                    next_report = now + self.config.telemetry_interval_s
            turn_ended = self._clock()
            if turn_ended - turn_started >= SLOW_TURN_S:
                log.warning("one turn of the agent's loop took %.1f s: %.1f s on %d worker messages, "
                            "%.1f s supervising and on the coordinator's messages, %.1f s reporting",
                            turn_ended - turn_started, workers_read - turn_started, worker_messages,
                            coordinator_read - workers_read, turn_ended - coordinator_read)

    def _supervise(self):
        self._carry_out(self.core.tick(self._clock()))
        for exit_ in self.pool.reap():
            self._carry_out(self.core.worker_exited(exit_, self._clock()))
        for slot in self.pool.restart_due():
            self._carry_out(self.core.worker_started(slot.index, slot.pid, self._clock()))

    # -- carrying out the core's effects --------------------------------------------------

    def _carry_out(self, outbox):
        for message in outbox.to_coordinator:
            # Reports go only over a registered link; an Error answers whatever came.
            if self.link.registered or isinstance(message, wire.Error):
                self.link.send(message)
        for index, message in outbox.to_workers:
            try:
                self.router.send_multipart([worker_identity(index), wire.encode(message)], zmq.NOBLOCK)
            except zmq.ZMQError:  # gone (EHOSTUNREACH) or full (EAGAIN)
                self._carry_out(self.core.undelivered(index, message, self._clock()))
        for index in outbox.kills:
            self.pool.kill(index)

    # -- reading -----------------------------------------------------------------------

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
            handler = self._link_handlers.get(type(message))
            if handler is not None:
                handler(message)
            else:
                self._carry_out(self.core.from_coordinator(message, self._clock()))

    def _on_registered(self, message):
        if self.link.on_registered(message):
            self._carry_out(self.core.registered_anew(self._clock()))

    def _read_workers(self):
        """Read and handle up to ``RECEIVE_BATCH`` worker messages; returns how many came."""
        for count in range(RECEIVE_BATCH):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return count
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
            if index is None:
                log.warning("unexpected %s message from %r", message.type.value, identity)
                self._reply_to_worker(identity, wire.Error(
                    message=f"the agent does not accept {message.type.value!r} messages from {identity!r}"))
                continue
            self._carry_out(self.core.from_worker(index, message, self._clock()))
        return RECEIVE_BATCH

    def _reply_to_worker(self, identity, message):
        try:
            self.router.send_multipart([identity, wire.encode(message)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass


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
