"""The coordinator engine: the generator socket thread around the run scheduler.

One thread (``stressgrid-coordinator``) owns the ZeroMQ ROUTER socket and the
``RunScheduler`` (registry, aggregation, the active run); nothing else touches
them, so none of them needs a lock. The thread is a thin shell: it polls the
socket, decodes each message, feeds it to the scheduler with the time, and
carries out what the scheduler returns (messages to send, events to log,
reports to write, run history to store). HTTP request threads talk to it in
two ways:

* commands (submit a run, abort it) go through a queue, with a wake-up
  message on an in-process socket, and wait for the thread's answer;
* reads (``state()``, ``wait_state()``) get the snapshot the thread
  publishes every second and on every change, never the live objects.

Reports go to the writer pipeline's own thread, so writing files or calling
CloudWatch never stalls ingest. When a run's report is written, the writer
thread queues the result and wakes the coordinator thread, whose scheduler
stores the run as it ended: run state is written only from the scheduler's
outbox (after the thread has stopped, by the thread that stopped it; before
it starts, by the recovery of runs a dead coordinator left open).
"""
import concurrent.futures
import dataclasses
import itertools
import logging
import pathlib
import queue
import threading
import time

import zmq

from stressgrid import __version__, wire
from stressgrid.plan.constants import ABORTED

from . import fleet_auth, run_timeline
from .effects import FinishRun
from .overview import overview
from .run_scheduler import Conflict, Instant, RunScheduler
from .store import RunStore
from .writers import INTERRUPTED_NOTE, RunInfo, WriterPipeline
from .writers.archive import ArchiveWriter
from .writers.html_report import HtmlReportWriter, write_report

__all__ = ["Conflict", "Coordinator", "Publisher"]

log = logging.getLogger(__name__)

# Messages handled per socket drain before timers get their turn.
DRAIN_LIMIT = 20000
# Generators report at their own offsets within each second, so under a fleet's load the
# socket turns readable for nearly every message. Draining at most this often lets one
# wake-up take many messages (a 1,000-generator fleet: about 10 instead of 1) and saves the
# per-wake-up cost; a message after a quiet spell is still taken at once.
DRAIN_INTERVAL_S = 0.005
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000


@dataclasses.dataclass
class _Command:
    kind: str
    args: tuple
    future: concurrent.futures.Future


class Publisher:
    """The latest published state, with waiting for the next one (for event streams)."""

    def __init__(self):
        self._condition = threading.Condition()
        self._seq = 0
        self._value = None
        self._closed = False

    def publish(self, value):
        """Make ``value`` the latest state and wake every waiter."""
        with self._condition:
            self._seq += 1
            self._value = value
            self._condition.notify_all()

    def latest(self):
        """``(seq, value)`` of the latest publication."""
        with self._condition:
            return self._seq, self._value

    def wait(self, after_seq, timeout):
        """``(seq, value)`` once ``seq > after_seq``; ``None`` on timeout or close."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._closed or self._seq > after_seq, timeout):
                return None
            if self._closed:
                return None
            return self._seq, self._value

    def close(self):
        """Wake every waiter for good: streams end."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self):
        """True once closed."""
        return self._closed


class Coordinator:
    """Owns the generator socket thread; the API's only way into the running system."""

    def __init__(self, config, writers=None, clock=time.monotonic, wall_clock=time.time):
        """``writers``: extra ``Writer`` objects (the CloudWatch one) called before the archive."""
        self.config = config
        self._clock = clock
        self._wall = wall_clock
        data_dir = pathlib.Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = RunStore(data_dir / "runs.db")
        self.archive = ArchiveWriter(data_dir)
        self.results_dir = self.archive.results_dir
        self.report_writer = HtmlReportWriter(self.archive, self.store)
        self.pipeline = WriterPipeline(list(writers or ()) + [self.report_writer, self.archive], self._run_written)
        self.scheduler = RunScheduler(config.generator_timeout_s, config.heartbeat_interval_s,
                                      __version__, self._now())
        self.publisher = Publisher()
        self._commands = queue.SimpleQueue()
        self._written = queue.SimpleQueue()  # (run id, writers' result) of runs whose report is written
        self._context = zmq.Context()
        self._wake_address = f"inproc://stressgrid-wake-{id(self)}"
        self._wake_lock = threading.Lock()
        self._wake = None
        self._router = None
        self._zap = None
        self._thread = None
        self._stopping = False
        self.generator_endpoint = None

    def _now(self):
        return Instant(self._clock(), self._wall())

    # -- lifecycle -----------------------------------------------------------

    def start(self):
        """Recover interrupted runs, bind the generator port and start the thread.

        Raises ``zmq.ZMQError`` when the port cannot be bound.
        """
        self._recover()
        router = self._context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # No ROUTER_HANDOVER: a second connection with a connected generator's identity is
        # refused, never handed its cohorts. ZMTP heartbeats close dead connections, so a
        # generator that comes back on a new connection is not kept out by a half-open one.
        router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        router.setsockopt(zmq.RCVHWM, 100000)
        router.setsockopt(zmq.SNDHWM, 1000)
        self._zap = fleet_auth.protect(self._context, router, self.config.data_dir)
        router.bind(self.config.generator_url)
        self.generator_endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        wake_in = self._context.socket(zmq.PULL)
        wake_in.bind(self._wake_address)
        self._wake = self._context.socket(zmq.PUSH)
        self._wake.connect(self._wake_address)
        self._router = router
        self._publish()
        self._thread = threading.Thread(target=self._loop, args=(router, wake_in),
                                        name="stressgrid-coordinator", daemon=True)
        self._thread.start()
        return self

    @property
    def join_token_path(self):
        """The file holding the fleet's join token."""
        return pathlib.Path(self.config.data_dir) / fleet_auth.TOKEN_FILE

    @property
    def generator_port(self):
        """The bound generator port (useful when configured as 0)."""
        return int(self.generator_endpoint.rsplit(":", 1)[1]) if self.generator_endpoint else None

    def stop(self, timeout=30.0):
        """Abort any active run (its report is still written) and stop every thread."""
        if self._thread is not None and self._thread.is_alive():
            try:
                self._call("stop", timeout=timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.warning("coordinator thread did not stop in time")
            self._thread.join(timeout)
        self.pipeline.close(timeout)
        if self._thread is None or not self._thread.is_alive():  # else it still owns the scheduler
            self._store_written()
        self.publisher.close()
        if self._zap is not None:
            self._zap.stop()
        with self._wake_lock:
            if self._wake is not None:
                self._wake.close(0)
        self._context.term()

    def _recover(self):
        """Close the runs the coordinator died during: each gets its last checkpoint (the
        whole run up to then, aborted) as its summary and report, ending at its last data."""
        for row in self.store.interrupted():
            summary = self.archive.checkpointed(row["id"])
            finished_at = summary.get("finished_at") if summary else None
            if not isinstance(finished_at, (int, float)):
                finished_at = self._wall()
            try:
                if summary is not None:
                    plan = row.get("plan") if isinstance(row.get("plan"), dict) else {}
                    info = RunInfo(id=row["id"], name=row["name"], plan=plan,
                                   started_at=summary.get("started_at") or row["created_at"],
                                   report_interval_ms=0)
                    write_report(self.archive, info, summary, {}, [])
                archive = self.archive.recover(row["id"], summary or {"state": ABORTED, "note": INTERRUPTED_NOTE})
            except (OSError, ValueError, TypeError, KeyError):
                log.exception("could not archive interrupted run %s", row["id"])
                archive = None
            FinishRun(row["id"], ABORTED, finished_at, archive, summary, INTERRUPTED_NOTE).apply(self.store)
            log.warning("run %s was in progress when the coordinator stopped: marked aborted%s", row["id"],
                        " with its report up to its last checkpoint" if summary else "")

    # -- thread-safe API -------------------------------------------------------

    def _post(self, kind, *args):
        """Queue a command for the coordinator thread; returns its future."""
        future = concurrent.futures.Future()
        with self._wake_lock:
            if self._wake is None or self._wake.closed or not self._thread.is_alive():
                raise RuntimeError("coordinator is not running")
            self._commands.put(_Command(kind, args, future))
            self._wake_thread()
        return future

    def _wake_thread(self):
        """Wake the coordinator thread (hold ``_wake_lock``)."""
        if self._wake is None or self._wake.closed:
            return
        try:
            self._wake.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # wake-ups are already queued; the thread will see what is new too

    def _call(self, kind, *args, timeout=30.0):
        return self._post(kind, *args).result(timeout)

    def submit(self, plan, addresses):
        """Start ``plan`` against resolved ``addresses``; returns the run's state dict.

        Raises ``Conflict`` when a run is active or no generator is registered.
        """
        return self._call("submit", plan, addresses)

    def abort(self, run_id):
        """Abort the active run ``run_id``; raises ``Conflict`` if it is not the active one."""
        return self._call("abort", run_id)

    def delete(self, run_id):
        """Delete finished run ``run_id`` and its archive; ``False`` if there is no such run.

        Raises ``Conflict`` while it is in progress.
        """
        row = self.store.get(run_id)
        if row is None:
            return False
        self._call("forget", run_id)
        self.archive.delete(run_id, row.get("archive"))
        return True

    def overview(self, run_id):
        """Run ``run_id`` at a glance (``overview.overview``'s dict): the active run's points so
        far, a finished run's kept ones; ``None`` when it has none."""
        points = self.report_writer.points(run_id)
        if points is None:
            return self.store.overview(run_id)
        live = (self.state() or {}).get("run") or {}
        return overview(points, live.get("summary") if live.get("id") == run_id else None)

    def state(self):
        """The latest published state: generators, active run, latest telemetry."""
        return self.publisher.latest()[1]

    def wait_state(self, after_seq, timeout):
        """Block until a state newer than ``after_seq``: ``(seq, state)``, or ``None``."""
        return self.publisher.wait(after_seq, timeout)

    # -- the thread ------------------------------------------------------------

    def _loop(self, router, wake_in):
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(wake_in, zmq.POLLIN)
        scheduler = self.scheduler
        last_drain = -DRAIN_INTERVAL_S
        try:
            while not self._stopping:
                timeout_ms = max(0.0, (scheduler.next_deadline() - self._clock()) * 1000.0)
                ready = dict(poller.poll(timeout_ms))
                if router in ready:
                    pause = last_drain + DRAIN_INTERVAL_S - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    self._drain(router)
                    last_drain = time.monotonic()
                if wake_in in ready:
                    while True:
                        try:
                            wake_in.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    self._run_commands()
                    self._store_written()
                self._carry_out(scheduler.advance(self._now()))
        except Exception:  # noqa: BLE001 - log what killed the thread, then fail loudly
            log.exception("coordinator thread failed")
            raise
        finally:
            self._carry_out(scheduler.stop(self._now()))
            router.close(0)
            wake_in.close(0)
            self._fail_pending_commands()

    def _fail_pending_commands(self):
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if not command.future.done():
                command.future.set_exception(RuntimeError("coordinator stopped"))

    def _run_commands(self):
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                handler = getattr(self, f"_command_{command.kind}")
                command.future.set_result(handler(*command.args))
            except Exception as exc:  # noqa: BLE001 - the caller gets the exception
                command.future.set_exception(exc)

    # -- carrying out the scheduler's outbox ---------------------------------------

    def _carry_out(self, out):
        """Log, store, write and send what the scheduler asked for; publish if it changed.

        Sending comes last: what the scheduler makes of a message that could not
        be sent (which may end the run) is carried out after everything before it.
        """
        for event in out.events:
            log.info("%s: %s", event["kind"], event["message"])
        for effect in out.store:
            effect.apply(self.store)
        for effect in out.writes:
            effect.apply(self.pipeline)
        payloads = {}  # one encoding of a message sent to many (the heartbeat)
        for routing_id, message in out.messages:
            payload = payloads.get(id(message))
            if payload is None:
                payload = payloads[id(message)] = wire.encode(message)
            if not self._send_raw(routing_id, payload):
                self._carry_out(self.scheduler.undelivered(routing_id, message, self._now()))
        if out.publish:
            self._publish()
        return out.reply

    def _send_raw(self, routing_id, payload):
        try:
            self._router.send_multipart((routing_id, payload), zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone) or EAGAIN (queue full)
            log.debug("cannot send to %r: %s", routing_id, exc)
            return False

    def _drain(self, router):
        scheduler = self.scheduler
        for _ in range(DRAIN_LIMIT):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._carry_out(scheduler.malformed(frames[0], "expected exactly one message frame",
                                                    self._now()))
                continue
            routing_id, payload = frames
            try:
                message = wire.decode(payload)
            except wire.WireError as exc:
                self._carry_out(scheduler.malformed(routing_id, str(exc), self._now()))
                continue
            try:
                out = scheduler.receive(routing_id, message, self._now())
            except Exception:  # noqa: BLE001 - one message must never stop the coordinator
                log.exception("handling %s from %r failed", message.type.value, routing_id)
                self._send_raw(routing_id, wire.encode(
                    wire.Error(message=f"coordinator failed on {message.type.value}")))
                continue
            if out:
                self._carry_out(out)

    def _publish(self):
        state = self.scheduler.state(self._now())
        state["ingest"]["refused_connections"] = self._zap.refused if self._zap is not None else 0
        self.publisher.publish({
            "time": self._wall(),
            "coordinator": {"version": __version__, "generator_endpoint": self.generator_endpoint,
                            "cloudwatch_region": self.config.cloudwatch_region},
            **state,
        })

    # -- commands ------------------------------------------------------------------

    def _command_stop(self):
        self._stopping = True
        self._carry_out(self.scheduler.stop(self._now()))

    def _command_submit(self, plan, addresses):
        return self._carry_out(self.scheduler.submit(self._unique_run_id(plan.name), plan, addresses,
                                                     self._now()))

    def _unique_run_id(self, name):
        base = run_timeline.run_id(name)
        run_id = base
        for n in itertools.count(2):
            if not self.store.exists(run_id):
                return run_id
            run_id = f"{base}-{n}"

    def _command_forget(self, run_id):
        self._carry_out(self.scheduler.forget(run_id, self._now()))

    def _command_abort(self, run_id):
        return self._carry_out(self.scheduler.abort(run_id, self._now()))

    def _run_written(self, info, result):
        """Writer thread: the run's reports and archive are written; the coordinator thread
        (or, once it has stopped, ``stop``) stores the run and releases it."""
        self._written.put((info.id, result))
        with self._wake_lock:
            self._wake_thread()

    def _store_written(self):
        while True:
            try:
                run_id, result = self._written.get_nowait()
            except queue.Empty:
                return
            self._carry_out(self.scheduler.run_written(run_id, result, self._now()))
