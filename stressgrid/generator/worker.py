"""A worker process: one uvloop loop running one ``Engine``, driven by the host agent.

    python -m stressgrid.generator.worker --index N --endpoint ipc://...

The worker connects a ZeroMQ DEALER (identity ``worker_identity(N)``) to the
agent's ROUTER and speaks the wire codec: it announces itself with
``WorkerReady``, carries out ``StartCohort`` / ``StopCohort`` / ``Abort`` in
the order they arrive, and sends its engine's metric deltas as ``Telemetry``
every second. A ``StopCohort`` is confirmed, once the cohort's devices have
stopped, by sending the same ``StopCohort`` back; an ``Abort`` is answered, once
the run's devices have stopped, with a last ``Telemetry`` and then
``RunStopped``. Devices that keep running after they were cancelled (their
script catches the cancellation) are reported as an ``Event``
``devices_refuse_stop`` with their script line; the agent kills a worker that
does not confirm in time.

The loop's health is measured (``loop_health``): its lag goes into the
histogram ``worker_loop_lag_us``, and a stall of a second or more is reported
at once as an ``Event`` ``worker_loop_stalled`` with the script line that holds
the loop, by a watchdog thread over its own DEALER
(``watchdog_identity(N)``), since the loop cannot send anything then. Anything it cannot
understand or carry out is answered with ``Error``. SIGTERM or SIGINT stop every
device, flush a last ``Telemetry`` and exit with status 0; so does the agent
going away (the worker's parent changes), when the loop is free to notice. When
it is not (a device holding the loop), the kernel kills the worker with its
parent: the worker asks for SIGKILL on its parent's death first thing.
"""
import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys

import uvloop
import zmq
import zmq.asyncio

from stressgrid import wire
from stressgrid.orphans import die_with_parent
from stressgrid.plan import Address, Opts
from stressgrid.plan.arrivals import ARRIVAL_SHARE
from stressgrid.plan.constants import LOOP_LAG_HISTOGRAM
from stressgrid.protocols import source
from stressgrid.runtime.allocator import keep_large_buffers_on_heap
from stressgrid.runtime.engine import ArrivalShare, Engine

from .config import configure_logging
from .loop_health import LoopWatchdog, measure_loop_lag, task_line

TELEMETRY_INTERVAL_S = 1.0
# How long a last message may wait to be delivered when the worker exits.
EXIT_LINGER_MS = 2000
_OPTS_FIELDS = {field.name for field in dataclasses.fields(Opts)}

log = logging.getLogger(__name__)


def worker_identity(index):
    """The ZeroMQ identity of worker ``index`` (the agent routes by it)."""
    return f"worker-{index}".encode()


def watchdog_identity(index):
    """The ZeroMQ identity of worker ``index``'s loop watchdog."""
    return f"worker-{index}-watchdog".encode()


def opts_from_wire(opts):
    """``Opts`` from the wire's map, ignoring fields this version does not know."""
    return Opts(**{name: value for name, value in opts.items() if name in _OPTS_FIELDS})


class Worker:
    """The engine of one worker process and its link to the host agent."""

    def __init__(self, index, endpoint, parent_pid, telemetry_interval_s=TELEMETRY_INTERVAL_S):
        self.index = index
        self.endpoint = endpoint
        self.parent_pid = parent_pid
        self.telemetry_interval_s = telemetry_interval_s
        self.engine = None
        self.socket = None
        self._context = None
        self._run_cohorts = {}  # run_id -> set of cohort ids
        # The run the metrics gathered since the last telemetry belong to ("" for none).
        self._reporting_run = ""
        self._queued_starts = {}  # (run_id, cohort_id) of a StartCohort not yet carried out -> go ahead?
        self._stopping = None
        self._handlers = {wire.StartCohort: self._start_cohort, wire.StopCohort: self._stop,
                          wire.Abort: self._abort}

    async def run(self):
        """Serve the agent until told to stop; returns the exit status."""
        loop = asyncio.get_running_loop()
        self.engine = Engine(loop)
        self._stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        context = self._context = zmq.asyncio.Context()
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, worker_identity(self.index))
        self.socket.setsockopt(zmq.LINGER, EXIT_LINGER_MS)
        self.socket.connect(self.endpoint)
        watchdog = LoopWatchdog(self._open_stall_reporter, self.engine.script_source_lines)
        watchdog.start()
        try:
            await self._send(wire.WorkerReady(worker_index=self.index, pid=os.getpid()))
            log.info("ready (pid %d)", os.getpid())
            queue = asyncio.Queue()
            receiving = loop.create_task(self._receive_commands(queue))
            commands = loop.create_task(self._carry_out_commands(queue))
            telemetry = loop.create_task(self._send_telemetry())
            stop = loop.create_task(self._stopping.wait())
            lag = loop.create_task(measure_loop_lag(self.engine.recorder.histogram(LOOP_LAG_HISTOGRAM), watchdog))
            tasks = (receiving, commands, telemetry, stop, lag)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            await self.engine.stop_all()
            await self._send(self._telemetry())
            log.info("stopped")
            return 0
        finally:
            watchdog.stop()
            self.socket.close()
            context.term()

    def _open_stall_reporter(self):
        """The watchdog thread's own socket to the agent (a socket belongs to one thread)."""
        socket = zmq.Context.shadow(self._context.underlying).socket(zmq.DEALER)
        socket.setsockopt(zmq.IDENTITY, watchdog_identity(self.index))
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.endpoint)

        def report(stalled_s, line):
            where = f"; a device holds it at {line}" if line else ""
            text = f"the event loop has not turned for {stalled_s:.1f} s{where}"
            log.warning("%s", text)
            socket.send(wire.encode(wire.Event(run_id=self._reporting_run, kind="worker_loop_stalled",
                                               message=text)))

        return report, socket.close

    async def _send(self, message):
        await self.socket.send(wire.encode(message))

    async def _receive_commands(self, queue):
        # Commands are carried out one at a time, in order; a stop is also seen as it
        # arrives, so that a cohort still starting starts no more devices.
        while True:
            data = await self.socket.recv()
            try:
                message = wire.decode(data)
            except wire.WireError as exc:
                log.warning("bad message from the agent: %s", exc)
                await self._send(wire.Error(message=f"worker {self.index}: {exc}"))
                continue
            if isinstance(message, wire.StartCohort):
                self._queued_starts[message.run_id, message.cohort_id] = True
            elif isinstance(message, (wire.StopCohort, wire.Abort)):
                self._stop_early(message)
            queue.put_nowait(message)

    async def _carry_out_commands(self, queue):
        while True:
            reply = await self.handle(await queue.get())
            if reply is not None:
                await self._send(reply)

    def _stop_early(self, stop):
        """A stop just arrived: the cohorts it stops that are starting or yet to start start no more."""
        def stops(run_id, cohort_id):
            return run_id == stop.run_id and (isinstance(stop, wire.Abort) or cohort_id == stop.cohort_id)

        for key in self._queued_starts:
            if stops(*key):
                self._queued_starts[key] = False
        for cohort_id in self._run_cohorts.get(stop.run_id, ()):
            if stops(stop.run_id, cohort_id):
                self.engine.start_no_more(cohort_id)

    async def handle(self, message):
        """Carry out one message from the agent; returns a reply or ``None``."""
        handler = self._handlers.get(type(message))
        if handler is None:
            log.warning("unexpected %s message from the agent", message.type.value)
            return wire.Error(message=f"worker {self.index}: unexpected message type {message.type.value!r}")
        return await handler(message)

    async def _abort(self, abort):
        for cohort_id in list(self._run_cohorts.get(abort.run_id, ())):
            await self._stop_cohort(abort.run_id, cohort_id)
        # The run's last metrics go out now, before the answer, so that the answer
        # means "nothing more of this run will come" (the socket keeps the order).
        await self._send(self._telemetry())
        return wire.RunStopped(run_id=abort.run_id)

    async def _stop(self, stop):
        await self._stop_cohort(stop.run_id, stop.cohort_id)
        return stop  # the confirmation: the cohort's devices have stopped

    async def _start_cohort(self, start):
        try:
            addresses = [Address.from_dict(address) for address in start.addresses]
            opts = opts_from_wire(start.opts)
            share = start.opts.get(ARRIVAL_SHARE)
            share = None if share is None else ArrivalShare.from_dict(share)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return wire.Error(message=f"worker {self.index}: cohort {start.cohort_id!r}: "
                                      f"bad addresses or opts: {exc}")
        if not self._queued_starts.pop((start.run_id, start.cohort_id), True):
            log.info("cohort %s of run %s: stopped before it started", start.cohort_id, start.run_id)
            return None
        if start.cohort_id in self.engine.cohorts:
            return wire.Error(message=f"worker {self.index}: cohort {start.cohort_id!r} is already running")
        if self._reporting_run not in ("", start.run_id):
            await self._send(self._telemetry())  # what another run left goes out under its id
        self._reporting_run = start.run_id
        self._run_cohorts.setdefault(start.run_id, set()).add(start.cohort_id)
        try:
            started = await self.engine.start_cohort(start.cohort_id, start.blocks, addresses, opts,
                                                     start.address_offset, share)
        except Exception as exc:  # noqa: BLE001 - a script that fails to compile, a bad block
            await self._stop_cohort(start.run_id, start.cohort_id)
            log.warning("cohort %s did not start: %s", start.cohort_id, exc)
            return wire.Error(message=f"worker {self.index}: cohort {start.cohort_id!r} did not start: {exc}")
        log.info("cohort %s of run %s: %d devices started", start.cohort_id, start.run_id, started)
        return None

    async def _stop_cohort(self, run_id, cohort_id):
        cohorts = self._run_cohorts.get(run_id)
        if cohorts is None or cohort_id not in cohorts:
            return
        cohorts.discard(cohort_id)
        if not cohorts:
            del self._run_cohorts[run_id]
        stopped = await self.engine.stop_cohort(cohort_id, lambda tasks: self._report_refusal(cohort_id, tasks))
        log.info("cohort %s of run %s: %d devices stopped", cohort_id, run_id, stopped)
        if not self.engine.cohorts:
            # The next run reports its own first error lines again.
            self.engine.error_lines.clear()

    def _report_refusal(self, cohort_id, tasks):
        lines = {task_line(task, self.engine.script_source_lines) for task in tasks} - {None}
        where = f" ({'; '.join(sorted(lines))})" if lines else ""
        text = f"cohort {cohort_id!r}: {len(tasks)} devices still run after they were cancelled{where}"
        log.warning("%s", text)
        self.socket.send(wire.encode(wire.Event(run_id=self._reporting_run, kind="devices_refuse_stop",
                                                message=text)), zmq.NOBLOCK)

    def _telemetry(self):
        """The metrics since the last telemetry, under the id of the run they belong to."""
        snapshot = self.engine.snapshot()
        errors = snapshot.pop("errors", {})
        message = wire.Telemetry(run_id=self._reporting_run, metrics=snapshot,
                                 active_device_number=self.engine.device_count, errors=errors)
        if not self._run_cohorts:
            self._reporting_run = ""  # that was the last of the run's metrics
        return message

    async def _send_telemetry(self):
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.telemetry_interval_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if os.getppid() != self.parent_pid:
                log.warning("the host agent (pid %d) is gone; stopping", self.parent_pid)
                return
            await self._send(self._telemetry())


def argument_parser():
    parser = argparse.ArgumentParser(prog="python -m stressgrid.generator.worker",
                                     description="A Stressgrid worker process (started by the host agent).")
    parser.add_argument("--index", type=int, required=True, help="this worker's index")
    parser.add_argument("--endpoint", required=True, help="the agent's ZeroMQ ROUTER address")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="exit when this process is no longer the parent (default: the parent)")
    parser.add_argument("--source-addresses", default="",
                        help="the source-address pool devices connect from (default the system's choice)")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    configure_logging(args.log_level, f"worker {args.index}")
    try:  # each worker starts its round-robin at its own index: together they spread evenly
        source.install(source.parse_pool(args.source_addresses, start=args.index))
    except source.SourcePoolError as exc:
        log.error("--source-addresses: %s", exc)
        return 2
    parent_pid = args.parent_pid or os.getppid()
    if not die_with_parent(signal.SIGKILL, parent_pid):
        log.warning("the host agent (pid %d) is already gone; not starting", parent_pid)
        return 1
    keep_large_buffers_on_heap()
    worker = Worker(args.index, args.endpoint, parent_pid)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(worker.run())


if __name__ == "__main__":
    sys.exit(main())
