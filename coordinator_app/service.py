"""The coordinator engine: generator socket, registry, run scheduler, aggregation.

One thread (``stressgrid-coordinator``) owns the ZeroMQ ROUTER socket, the
registry, the active run and the aggregator; nothing else touches them, so
none of them needs a lock. HTTP request threads talk to it in two ways:

* commands (submit a run, abort it) go through a queue, with a wake-up
  message on an in-process socket, and wait for the thread's answer;
* reads (``state()``, ``wait_state()``) get the snapshot the thread
  publishes every second and on every change, never the live objects.

Reports go to the writer pipeline's own thread, so writing files or calling
CloudWatch never stalls ingest.
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

from . import fleet_auth, run_scope, schedule, validate
from .aggregate import CPU_WARNING_PERCENT, TelemetryAggregator
from .registry import GeneratorIdInUse, Registry
from .store import RunStore
from .writers import FinalReport, RunInfo, WriterPipeline
from .writers.archive import ArchiveWriter

log = logging.getLogger(__name__)

# Messages handled per socket drain before timers get their turn.
DRAIN_LIMIT = 20000
# Generators report at their own offsets within each second, so under a fleet's load the
# socket turns readable for nearly every message. Draining at most this often lets one
# wake-up take many messages (a 1,000-generator fleet: about 10 instead of 1) and saves the
# per-wake-up cost; a message after a quiet spell is still taken at once.
DRAIN_INTERVAL_S = 0.005
RECENT_EVENTS = 50
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
# Connections refused for claiming a connected generator's id, remembered so each gets one event.
REFUSED_CLAIMS_REMEMBERED = 1000


class Conflict(Exception):
    """A request that cannot be carried out in the coordinator's current state.

    ``code``: ``run_active``, ``no_generators``, ``not_active`` or ``finishing``.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


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


class ActiveRun:
    """The run in progress, as the scheduler sees it."""

    def __init__(self, run_id, plan, addresses, started, started_wall):
        self.id = run_id
        self.plan = plan
        self.plan_dict = plan.to_dict()
        self.addresses = [address.to_dict() for address in addresses]
        self.opts = plan.opts.to_dict()
        self.blocks = [block.to_dict() for block in plan.blocks]
        self.timeline = schedule.build_timeline(plan.opts)
        self.started = started
        self.started_wall = started_wall
        self.step_index = 0
        self.phase = schedule.RAMPUP
        self.cursor = 0
        self.cohorts = {}  # cohort index -> {routing id: devices}
        self.devices_started = 0
        self.generator_devices = {}  # generator id -> devices started there
        self.cpu_flagged = set()  # generators already reported over the CPU warning level
        self.events = []
        self.interval_s = plan.opts.report_interval_ms / 1000.0
        self.next_cut = started + self.interval_s
        self.finishing = None  # final state once the run has ended and is being written
        self.abort_deadline = None  # set when aborted: the latest the report waits for answers
        self.abort_waiting = set()  # routing ids of the generators yet to answer the Abort
        self.note = ""
        self.info = RunInfo(id=run_id, name=plan.name, plan=self.plan_dict, started_at=started_wall,
                            report_interval_ms=plan.opts.report_interval_ms)

    def next_deadline(self):
        """When the scheduler next has something to do (monotonic), or ``None``."""
        if self.finishing:
            return None
        if self.abort_deadline is not None:
            return self.abort_deadline
        if self.step_index < len(self.timeline.steps):
            step_at = self.started + self.timeline.steps[self.step_index].at_ms / 1000.0
            return min(step_at, self.next_cut)
        return self.next_cut

    def to_dict(self, now):
        """The run's live state: phase, elapsed and remaining time, devices."""
        elapsed_ms = int((now - self.started) * 1000)
        phase, phase_left = self.timeline.phase_at(elapsed_ms)
        if self.finishing:
            phase_left = 0
        ending = self.finishing or self.abort_deadline is not None
        return {"id": self.id, "name": self.plan.name,
                "state": self.phase, "finishing": self.finishing,
                "aborting": self.abort_deadline is not None,
                "abort_unconfirmed": len(self.abort_waiting) if self.abort_deadline is not None else 0,
                "elapsed_ms": elapsed_ms,
                "remaining_ms": 0 if ending else max(self.timeline.total_ms - elapsed_ms, 0),
                "phase_remaining_ms": phase_left if phase == self.phase else 0,
                "devices": self.plan.size, "devices_started": self.devices_started,
                "started_at": self.started_wall}


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
        self.pipeline = WriterPipeline(list(writers or ()) + [self.archive], self._run_written)
        self.registry = Registry(config.generator_timeout_s, wall_clock)
        self.aggregator = TelemetryAggregator(clock, wall_clock)
        self.telemetry_check = validate.TelemetryCheck()
        self.stale = run_scope.StaleMessages()
        self.publisher = Publisher()
        self.run = None
        self.events = []
        self.bad_messages = 0
        self._refused_claims = set()
        self._commands = queue.SimpleQueue()
        self._context = zmq.Context()
        self._wake_address = f"inproc://stressgrid-wake-{id(self)}"
        self._wake_lock = threading.Lock()
        self._wake = None
        self._router = None
        self._zap = None
        self._thread = None
        self._stopping = False
        self.generator_endpoint = None

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
        self.publisher.close()
        if self._zap is not None:
            self._zap.stop()
        with self._wake_lock:
            if self._wake is not None:
                self._wake.close(0)
        self._context.term()

    def _recover(self):
        for row in self.store.interrupted():
            note = "the coordinator stopped during the run"
            try:
                archive = self.archive.recover(row["id"], note)
            except OSError:
                log.exception("could not archive interrupted run %s", row["id"])
                archive = None
            self.store.mark_aborted(row["id"], self._wall(), archive, note)
            log.warning("run %s was in progress when the coordinator stopped: marked aborted", row["id"])

    # -- thread-safe API -------------------------------------------------------

    def _post(self, kind, *args):
        """Queue a command for the coordinator thread; returns its future."""
        future = concurrent.futures.Future()
        with self._wake_lock:
            if self._wake is None or self._wake.closed or not self._thread.is_alive():
                raise RuntimeError("coordinator is not running")
            self._commands.put(_Command(kind, args, future))
            try:
                self._wake.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # wake-ups are already queued; the thread will see this command too
        return future

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
        interval = self.config.heartbeat_interval_s
        next_tick = self._clock() + interval
        last_drain = -DRAIN_INTERVAL_S
        try:
            while not self._stopping:
                deadline = next_tick
                if self.run is not None:
                    at = self.run.next_deadline()
                    if at is not None and at < deadline:
                        deadline = at
                timeout_ms = max(0.0, (deadline - self._clock()) * 1000.0)
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
                now = self._clock()
                if self.run is not None and not self.run.finishing:
                    self._advance(now)
                if now >= next_tick:
                    self._tick(now)
                    next_tick += interval
                    if next_tick < now:
                        next_tick = now + interval
        except Exception:  # noqa: BLE001 - log what killed the thread, then fail loudly
            log.exception("coordinator thread failed")
            raise
        finally:
            if self.run is not None and not self.run.finishing:
                self._finish(schedule.ABORTED, "the coordinator stopped")
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

    # -- wire ------------------------------------------------------------------

    def _send(self, routing_id, message):
        return self._send_raw(routing_id, wire.encode(message))

    def _send_raw(self, routing_id, payload):
        try:
            self._router.send_multipart((routing_id, payload), zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone) or EAGAIN (queue full)
            log.debug("cannot send to %r: %s", routing_id, exc)
            return False

    def _drain(self, router):
        handlers = self._handlers()
        for _ in range(DRAIN_LIMIT):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            if len(frames) != 2:
                self.bad_messages += 1
                self._send(frames[0], wire.Error(message="expected exactly one message frame"))
                continue
            routing_id, payload = frames
            try:
                message = wire.decode(payload)
            except wire.WireError as exc:
                self.bad_messages += 1
                self._send(routing_id, wire.Error(message=str(exc)))
                continue
            handler = handlers.get(type(message))
            if handler is None:
                self.bad_messages += 1
                self._send(routing_id, wire.Error(
                    message=f"unexpected message {message.type.value!r} from a generator"))
                continue
            try:
                handler(routing_id, message)
            except Exception:  # noqa: BLE001 - one message must never stop the coordinator
                log.exception("handling %s from %r failed", message.type.value, routing_id)
                self._send(routing_id, wire.Error(message=f"coordinator failed on {message.type.value}"))

    def _handlers(self):
        return {wire.Telemetry: self._on_telemetry, wire.Heartbeat: self._on_heartbeat,
                wire.Register: self._on_register, wire.Event: self._on_event,
                wire.RunStopped: self._on_run_stopped}

    def _on_register(self, routing_id, message):
        if not self._valid(routing_id, validate.check_register, message):
            return
        now = self._clock()
        try:
            generator, new, replaced = self.registry.register(routing_id, message, now)
        except GeneratorIdInUse as exc:
            self._refuse_claim(routing_id, exc)
            return
        if self.run is not None:
            # A generator registering anew has stopped everything it ran.
            self.run.abort_waiting.discard(routing_id)
            if replaced is not None:
                self.run.abort_waiting.discard(replaced.routing_id)
        if replaced is not None:
            self._event("generator_restarted", f"{generator.generator_id} came back on a new connection; "
                                               f"the old one was silent", generator)
        self._send(routing_id, wire.Registered(coordinator_version=__version__))
        kind = "generator_registered" if new else "generator_reregistered"
        self._event(kind, f"{generator.generator_id} ({message.workers} workers, "
                          f"{message.cores} cores, version {message.version})", generator)

    def _refuse_claim(self, routing_id, exc):
        """Answer a registration that claims a connected generator's id; one event per connection."""
        self._send(routing_id, wire.Error(message=str(exc)))
        if routing_id in self._refused_claims:
            return
        if len(self._refused_claims) >= REFUSED_CLAIMS_REMEMBERED:
            self._refused_claims.clear()
        self._refused_claims.add(routing_id)
        log.warning("refused a registration from %r: %s", routing_id[:80], exc)
        self._event("generator_id_refused", f"a connection claiming {exc.holder.generator_id} was refused: {exc}",
                    exc.holder)

    def _on_heartbeat(self, routing_id, message):
        if self.registry.seen(routing_id, self._clock()) is None:
            self._send(routing_id, wire.Error(message=wire.NOT_REGISTERED))

    def _on_telemetry(self, routing_id, message):
        generator = self.registry.seen(routing_id, self._clock())
        if generator is None:
            self._send(routing_id, wire.Error(message=wire.NOT_REGISTERED))
            return
        if not self._in_scope(routing_id, generator, message, message.active_device_number):
            return
        try:
            message = self.telemetry_check.check(message, generator.capacity)
            self.aggregator.ingest(generator, message)
        except ValueError as exc:
            self.bad_messages += 1
            self._send(routing_id, wire.Error(message=f"bad telemetry: {exc}"))

    def _on_run_stopped(self, routing_id, message):
        # Its last Telemetry came before this answer; once every generator has
        # answered, the aborted run's report holds everything its devices did.
        # (An answer to an abort the coordinator no longer waits on is ignored.)
        if self.registry.seen(routing_id, self._clock()) is not None and self.run is not None \
                and self.run.id == message.run_id:
            self.run.abort_waiting.discard(routing_id)

    def _on_event(self, routing_id, message):
        generator = self.registry.seen(routing_id, self._clock())
        if generator is None:
            self._send(routing_id, wire.Error(message=wire.NOT_REGISTERED))
            return
        if self._valid(routing_id, validate.check_event, message) and \
                self._in_scope(routing_id, generator, message, 0, fleet_events=True):
            self._event(message.kind, message.message, generator)

    def _in_scope(self, routing_id, generator, message, devices, fleet_events=False):
        """True when ``message`` is to be merged: of the active run (or of none, while none is
        active, or an event of a host at rest: ``fleet_events``). One of another run is counted
        and, when its generator still runs ``devices`` of it, answered with ``Abort``."""
        active = self.run.id if self.run is not None else None
        scope = run_scope.scope_of(message.run_id, active)
        if scope is run_scope.Scope.STALE:
            text = self.stale.note(generator.generator_id, message.run_id, self._clock())
            if text is not None:
                self._event("stale_telemetry", text, generator)
            if devices > 0:
                self._send(routing_id, wire.Abort(run_id=message.run_id))
            return False
        return fleet_events or run_scope.merges(scope, active is not None)

    def _valid(self, routing_id, check, message):
        """Run ``check`` on ``message``; a message that fails it is answered with ``Error``."""
        try:
            check(message)
        except validate.InvalidMessage as exc:
            self.bad_messages += 1
            self._send(routing_id, wire.Error(message=str(exc)))
            return False
        return True

    # -- timers ------------------------------------------------------------------

    def _tick(self, now):
        for generator in self.registry.expire(now):
            if self.run is not None:
                self.run.abort_waiting.discard(generator.routing_id)
            log.warning("generator %s silent for %.1f s: dropped", generator.generator_id,
                        now - generator.last_seen)
            self._event("generator_lost", f"{generator.generator_id} went silent for more than "
                                          f"{self.registry.timeout_s:g} s and was dropped", generator)
        heartbeat = wire.encode(wire.Heartbeat(sent_at=self._wall()))
        for generator in self.registry:
            self._send_raw(generator.routing_id, heartbeat)
        self.aggregator.tick(list(self.registry))
        run = self.run
        if run is not None and not run.finishing:
            for generator in self.registry:
                if generator.cpu_percent > CPU_WARNING_PERCENT and generator.routing_id not in run.cpu_flagged:
                    run.cpu_flagged.add(generator.routing_id)
                    self._event("generator_cpu_high",
                                f"{generator.generator_id} CPU at {generator.cpu_percent:g}%: its results "
                                f"may be limited by the generator, not the target", generator)
        self._publish()

    def _publish(self):
        now = self._clock()
        aggregator = self.aggregator
        self.publisher.publish({
            "time": self._wall(),
            "coordinator": {"version": __version__, "generator_endpoint": self.generator_endpoint,
                            "cloudwatch_region": self.config.cloudwatch_region},
            "generators": self.registry.to_list(now),
            "run": self.run.to_dict(now) if self.run is not None else None,
            "telemetry": aggregator.latest,
            "events": list(self.events[-RECENT_EVENTS:]),
            "ingest": {"messages": aggregator.messages, "rejected": self.bad_messages,
                       "other_runs": self.stale.total,
                       "refused_connections": self._zap.refused if self._zap else 0},
        })

    def _event(self, kind, message, generator=None):
        event = {"time": self._wall(), "kind": kind, "message": message}
        if generator is not None:
            event["generator"] = generator.generator_id
        run = self.run
        if run is not None and not run.finishing:
            event["elapsed_s"] = round(self._clock() - run.started, 3)
            run.events.append(event)
            self.pipeline.event(run.info, event)
        self.events.append(event)
        del self.events[:-RECENT_EVENTS]
        log.info("%s: %s", kind, message)

    # -- commands ------------------------------------------------------------------

    def _command_stop(self):
        self._stopping = True
        if self.run is not None and not self.run.finishing:
            self._finish(schedule.ABORTED, "the coordinator stopped")

    def _command_submit(self, plan, addresses):
        if self.run is not None:
            raise Conflict("run_active", f"run {self.run.id} is in progress; abort it or wait")
        generators = list(self.registry)
        if not generators:
            raise Conflict("no_generators", "no generator is registered; start one "
                                            "(python -m stressgrid.generator) and try again")
        base = schedule.run_id(plan.name)
        run_id = base
        for n in itertools.count(2):
            if not self.store.exists(run_id):
                break
            run_id = f"{base}-{n}"
        now = self._clock()
        run = ActiveRun(run_id, plan, addresses, now, self._wall())
        self.store.insert(run_id, plan.name, schedule.RAMPUP, run.started_wall, plan.size, run.plan_dict)
        self.aggregator.start_run()
        self.telemetry_check.start_run()
        self.stale.start_run()
        self.run = run
        self.pipeline.start(run.info)
        self._event("run_started", f"{plan.size} devices on {len(generators)} generators")
        self._advance(now)
        self._publish()
        return run.to_dict(now)

    def _command_abort(self, run_id):
        run = self.run
        if run is None or run.id != run_id:
            raise Conflict("not_active", f"run {run_id} is not in progress")
        if run.finishing or run.abort_deadline is not None:
            return run.to_dict(self._clock())
        self._abort_generators(run, "aborted on request")
        # A generator that does not answer within the generator timeout is
        # treated as lost; the report does not wait for it any longer.
        run.abort_deadline = self._clock() + self.config.generator_timeout_s
        self._publish()
        return run.to_dict(self._clock())

    def _command_finished(self, run_id):
        if self.run is not None and self.run.id == run_id:
            self.run = None
            self._publish()

    # -- the scheduler ---------------------------------------------------------------

    def _advance(self, now):
        run = self.run
        if run.abort_deadline is not None:
            if not run.abort_waiting:
                self._finish(schedule.ABORTED, run.note)
            elif now >= run.abort_deadline:
                names = sorted(g.generator_id for g in self.registry if g.routing_id in run.abort_waiting)
                self._event("abort_unanswered",
                            f"{', '.join(names) or 'a generator'} did not confirm the abort within "
                            f"{self.config.generator_timeout_s:g} s; its last metrics may be missing")
                self._finish(schedule.ABORTED, run.note)
            return
        steps = run.timeline.steps
        elapsed_ms = (now - run.started) * 1000.0
        while run.step_index < len(steps) and steps[run.step_index].at_ms <= elapsed_ms:
            step = steps[run.step_index]
            run.step_index += 1
            if step.action == "start":
                self._start_cohort(run, step.cohort)
            elif step.action == "stop":
                self._stop_cohort(run, step.cohort)
            elif step.action == "phase":
                if step.phase != run.phase:
                    run.phase = step.phase
                    self.store.set_state(run.id, step.phase)
                    self._event("phase", step.phase)
                    self._publish()
            elif step.action == "end":
                self._finish(schedule.DONE, "")
                return
        if now >= run.next_cut:
            report = self.aggregator.cut_interval(list(self.registry))
            self.pipeline.interval(run.info, report)
            run.next_cut += run.interval_s
            if run.next_cut <= now:
                run.next_cut = now + run.interval_s

    def _start_cohort(self, run, index):
        blocks = schedule.cohort_blocks(run.blocks, run.plan.opts.ramp_steps, index)
        if not blocks:
            return
        generators = list(self.registry)
        size = sum(block["size"] for block in blocks)
        if not generators:
            self._event("cohort_skipped", f"cohort {index} ({size} devices): no generator registered")
            return
        by_id = {g.routing_id: g for g in generators}
        assignments, run.cursor = schedule.assign_cohort(
            blocks, [g.routing_id for g in generators], index, run.cursor)
        started = run.cohorts.setdefault(index, {})
        for assignment in assignments:
            message = wire.StartCohort(run_id=run.id, cohort_id=str(index), blocks=assignment.blocks,
                                       addresses=run.addresses, opts=run.opts,
                                       address_offset=assignment.address_offset)
            if not self._send(assignment.generator, message):
                self._event("cohort_not_sent", f"cohort {index}: could not reach generator",
                            by_id[assignment.generator])
                continue
            started[assignment.generator] = assignment.size
            run.devices_started += assignment.size
            generator_id = by_id[assignment.generator].generator_id
            run.generator_devices[generator_id] = run.generator_devices.get(generator_id, 0) + assignment.size

    def _stop_cohort(self, run, index):
        for routing_id in run.cohorts.get(index, {}):
            if self.registry.get(routing_id) is not None:
                self._send(routing_id, wire.StopCohort(run_id=run.id, cohort_id=str(index)))

    def _abort_generators(self, run, note):
        abort = wire.Abort(run_id=run.id)
        for generator in self.registry:
            if self._send(generator.routing_id, abort):
                run.abort_waiting.add(generator.routing_id)
        run.note = note
        self._event("run_aborted", note)

    def _finish(self, state, note):
        """End the active run now and hand its last interval and report to the writers."""
        run = self.run
        if state == schedule.ABORTED and run.abort_deadline is None:
            self._abort_generators(run, note)
        elif state == schedule.DONE:
            self._event("run_done", "")
        run.note = note
        stale = self.stale.flush(self._clock())
        if stale is not None:
            self._event("stale_telemetry", stale)
        if self.telemetry_check.dropped:
            self._event("metric_keys_dropped",
                        f"{self.telemetry_check.dropped} values of metrics beyond the run's first "
                        f"{self.telemetry_check.max_keys} distinct names were dropped")
        last, totals = self.aggregator.finish_run(list(self.registry))
        final = FinalReport(state=state, started_at=run.started_wall, finished_at=self._wall(),
                            devices_requested=run.plan.size, devices_started=run.devices_started,
                            generators=dict(run.generator_devices), events=list(run.events),
                            totals=totals, note=note)
        run.finishing = state
        self.pipeline.finish(run.info, last, final)
        self._publish()

    def _run_written(self, info, result):
        """Writer thread: the run's reports and archive are written; record and release it."""
        summary = result.get("summary") or {}
        self.store.finish(info.id, summary.get("state", schedule.ABORTED), summary.get("finished_at"),
                          result.get("archive"), summary, summary.get("note", ""))
        if not self._stopping:
            try:
                self._post("finished", info.id)
            except (RuntimeError, zmq.ZMQError):
                pass
