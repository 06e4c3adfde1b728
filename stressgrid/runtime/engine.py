"""The device engine of one worker: cohorts of devices on one event loop.

A device runs its block's script over and over: a normal return starts it
again at once as a new device; an uncaught exception is counted as
``<reason>_error_count`` (its first traceback line per kind is kept) and the
device starts again after one second. So is a ``CancelledError`` the script
raises itself (``device_cancelled_error_count``): only a stop ends a device. Stopping a cohort cancels its devices
and closes their connections. Each device is stepped by a ``DeviceRunner``
(``stressgrid._core.runner``), which plays its task's part.

An arrival-rate cohort (``opts.executor == "arrival_rate"``) runs its share of
the fleet's schedule instead, on a pool of devices
(``stressgrid._core.executor``): each block's size is then its weight.
"""
import asyncio
import builtins
import dataclasses
import gc
import traceback

from stressgrid._core.arrivals import Schedule
from stressgrid._core.device import COMMON_BUILTINS, Device
from stressgrid._core.executor import ArrivalExecutor
from stressgrid._core.metrics import Recorder
from stressgrid._core.runner import DeviceRunner, RunnerGroup, install_task_factory
from stressgrid.errors import count_error, error_counter_name
from stressgrid.plan.arrivals import POISSON, segments
from stressgrid.plan.script import SCRIPT_FILENAME, compile_script, script_function
from stressgrid.protocols import protocol_module

# A device still running this long after it was cancelled (its script caught the
# cancellation) is cancelled again, until it ends.
RECANCEL_AFTER_S = 1.0
# Devices created between two yields to the loop, so telemetry keeps flowing.
START_BATCH = 2000
# Devices cancelled between two yields to the loop: each ends (its script unwinds, its
# connection closes) on the loop's next turn, and 19,000 of them in one turn held a worker's
# loop for over 3 s on a busy machine, past the agent's stop timeout. In batches, the loop
# turns and the worker's telemetry tells the agent its devices are going.
STOP_BATCH = 1000


class CompiledBlock:
    """A block's script compiled once, with the namespace its devices share."""

    __slots__ = ("function", "params", "module", "source_lines")

    def __init__(self, script, params, protocol):
        module = protocol_module(protocol)
        namespace = {"__builtins__": builtins, "__name__": "__stressgrid_script__"}
        namespace.update(COMMON_BUILTINS)
        namespace.update(module.BUILTINS)
        self.function = script_function(compile_script(script, protocol), namespace)
        self.params = params
        self.module = module
        self.source_lines = script.splitlines()


class StopFlag:
    # Set when a cohort stops; its devices look at it. It holds nothing of them: a
    # stopped device's traceback keeps its frame, and a reference from there to the
    # cohort's task list would be a cycle that only the (frozen-out) collector could free.
    __slots__ = ("is_set",)

    def __init__(self):
        self.is_set = False


class Cohort:
    __slots__ = ("cohort_id", "tasks", "stop", "executor")

    def __init__(self, cohort_id):
        self.cohort_id = cohort_id
        self.tasks = []
        self.stop = StopFlag()
        self.executor = None  # an arrival-rate cohort's


@dataclasses.dataclass(frozen=True)
class ArrivalShare:
    """The part of the fleet's arrival schedule one worker runs (``stressgrid.plan.arrivals``):
    the iterations ``offset, offset + stride, ...`` from ``from_ms`` into the schedule, on
    at most ``max_devices`` devices, ``pre_allocated_devices`` of them created at the start;
    the schedule's clock starts ``behind_ms`` in the past (what fell due since starts at once)."""

    offset: int = 0
    stride: int = 1
    from_ms: int = 0
    behind_ms: int = 0
    max_devices: int = 1
    pre_allocated_devices: int = 0

    @classmethod
    def from_dict(cls, value):
        return cls(**{field.name: value[field.name] for field in dataclasses.fields(cls)})

    def to_dict(self):
        return dataclasses.asdict(self)


class Engine:
    """Starts and stops cohorts of devices and records their metrics.

    ``snapshot()`` returns the metric deltas since the last call in wire form,
    with the gauge ``active_device_number`` and any newly seen error kinds.
    """

    def __init__(self, loop=None):
        self.loop = loop or asyncio.get_running_loop()
        install_task_factory(self.loop)  # a script's own tasks find its device
        self.recorder = Recorder()
        self.cohorts = {}
        self.active_devices = 0
        self.error_lines = {}
        self._unsent_error_lines = {}
        self._compiled = {}
        self._address_cursor = 0
        self._cohorts_changing = 0
        self._collector_was_enabled = False

    def compiled_block(self, script, params, protocol):
        key = (script, protocol)
        code = self._compiled.get(key)
        if code is None:
            code = self._compiled[key] = CompiledBlock(script, {}, protocol)
        block = CompiledBlock.__new__(CompiledBlock)
        block.function, block.module, block.source_lines = code.function, code.module, code.source_lines
        block.params = params
        return block

    async def start_cohort(self, cohort_id, blocks, addresses, opts, address_offset=None, share=None):
        """Start ``sum(size)`` devices; returns how many were started.

        ``blocks``: maps with ``script``, ``params``, ``size`` and feeder rows
        ``data`` and ``data_offset`` (see ``stressgrid.plan.split``), objects
        with those attributes, or ``(script, params, size)`` triples.
        ``addresses``: resolved ``Address`` objects, assigned round-robin
        starting at ``address_offset`` (default: where the previous cohort on
        this engine stopped).

        An arrival-rate ``opts`` runs ``share`` (an ``ArrivalShare``, default the
        whole schedule on ``opts.max_devices``) and returns its pre-allocated devices.
        """
        if cohort_id in self.cohorts:
            raise ValueError(f"cohort {cohort_id!r} is already running")
        if not addresses:
            raise ValueError("a cohort needs at least one address")
        cursor = self._address_cursor if address_offset is None else address_offset
        compiled = [(self.compiled_block(script, params, addresses[0].protocol), size, rows, data_offset)
                    for script, params, size, rows, data_offset in map(_block_fields, blocks)]
        cohort = self.cohorts[cohort_id] = Cohort(cohort_id)
        if opts.open_model:
            share = share or ArrivalShare(max_devices=opts.max_devices,
                                          pre_allocated_devices=opts.pre_allocated_devices)
            self._start_arrivals(cohort, compiled, addresses, cursor, opts, share)
            self._address_cursor = cursor + share.max_devices
            return share.pre_allocated_devices
        loop = self.loop
        number = 0
        group = RunnerGroup(loop, cohort.stop, self._record_failure, self._device_ended)
        self._hold_collector()
        try:
            for block, size, rows, data_offset in compiled:
                for k in range(size):
                    if number and number % START_BATCH == 0:
                        await asyncio.sleep(0)
                        if cohort.stop.is_set:
                            return number  # stopped while starting: start no more
                    # The device's number is its place in the run (the address cursor): unique
                    # among the run's devices on every worker and generator (an MQTT client id).
                    device = Device(f"{cohort_id}-{cursor}", addresses[cursor % len(addresses)], opts,
                                    self.recorder, loop)
                    cursor += 1
                    number += 1
                    row = rows[(data_offset + k) % len(rows)] if rows else None
                    runner = DeviceRunner(group, device, block, row)
                    self.active_devices += 1
                    runner.start()
                    cohort.tasks.append(runner)
        finally:
            self._address_cursor = cursor
            self._release_collector()
        return number

    # Every device holds a few long-lived objects (task, coroutine, device, client). The
    # cyclic collector would traverse all of them again at each full collection: while a
    # cohort starts (half the start time at 200,000 devices) and later in the middle of the
    # run, where the pause would show in every latency the worker measures. So collection
    # is held off while cohorts start or stop, and what they created is then frozen out of
    # it.
    # Frozen objects are still freed by reference counting when a device stops (the
    # engine tests check that nothing of a stopped cohort stays behind).

    def _hold_collector(self):
        if self._cohorts_changing == 0:
            self._collector_was_enabled = gc.isenabled()
            gc.disable()
        self._cohorts_changing += 1

    def _release_collector(self):
        self._cohorts_changing -= 1
        if self._cohorts_changing == 0:
            gc.freeze()
            if self._collector_was_enabled:
                gc.enable()

    def _start_arrivals(self, cohort, compiled, addresses, cursor, opts, share):
        schedule = Schedule(segments(opts), [size for _, size, _, _ in compiled], share.offset, share.stride,
                            opts.arrivals == POISSON, share.from_ms * 1000)
        executor = cohort.executor = ArrivalExecutor(
            schedule, [block for block, _, _, _ in compiled], [rows for _, _, rows, _ in compiled], addresses,
            cursor, opts, cohort.cohort_id, self.recorder, self.loop, self._record_failure, share.max_devices,
            share.pre_allocated_devices)
        self._hold_collector()
        try:
            executor.start(share.behind_ms * 1000)
        finally:
            self._release_collector()

    def start_no_more(self, cohort_id):
        """Let a cohort that is still starting start no more devices (``stop_cohort`` stops it)."""
        cohort = self.cohorts.get(cohort_id)
        if cohort is not None:
            cohort.stop.is_set = True

    async def stop_cohort(self, cohort_id, on_refused=None):
        """Stop a cohort's devices and wait until their connections are closed.

        A device whose script lets the cancellation pass is not restarted, and is
        cancelled again every ``RECANCEL_AFTER_S`` until it ends. A script that
        catches the cancellation keeps its device running: ``on_refused(tasks)``
        is called once with those devices' runners (or tasks, in an arrival-rate
        pool) when the first wait ends.
        """
        cohort = self.cohorts.pop(cohort_id, None)
        if cohort is None:
            return 0
        cohort.stop.is_set = True
        self._hold_collector()
        try:
            # A device already woken by something that happened (a timeout counted by its
            # timer, a closed connection) takes that step before it is cancelled, so the
            # error it is about to see gets its line, not just its count.
            await asyncio.sleep(0)
            running = cohort.tasks if cohort.executor is None else cohort.executor.stop()
            stopped = len(running)
            while running:
                for count, task in enumerate(list(running), 1):
                    task.cancel()
                    if count % STOP_BATCH == 0:
                        await asyncio.sleep(0)
                _, running = await asyncio.wait(running, timeout=RECANCEL_AFTER_S)
                if running and on_refused is not None:
                    on_refused(running)
                    on_refused = None
        finally:
            self._release_collector()
        return stopped

    async def stop_all(self):
        for cohort_id in list(self.cohorts):
            await self.stop_cohort(cohort_id)

    def _device_ended(self, runner):
        self.active_devices -= 1

    def script_source_lines(self, namespace):
        """The source lines of the running script whose globals are ``namespace``, or ``None``."""
        for block in self._compiled.values():
            if block.function.__globals__ is namespace:
                return block.source_lines
        return None

    def _record_failure(self, exc, block):
        count_error(self.recorder, exc)
        name = error_counter_name(exc)
        if name not in self.error_lines:
            line = _first_line(exc, block.source_lines)
            self.error_lines[name] = line
            self._unsent_error_lines[name] = line

    @property
    def device_count(self):
        """Devices running: those of the device model, and the arrival-rate pools."""
        return self.active_devices + sum(cohort.executor.pool_size for cohort in self.cohorts.values()
                                         if cohort.executor is not None)

    def snapshot(self):
        """Metric deltas since the last snapshot, in wire form."""
        self.recorder.set_gauge("active_device_number", self.device_count)
        snapshot = self.recorder.snapshot()
        if self._unsent_error_lines:
            snapshot["errors"] = self._unsent_error_lines
            self._unsent_error_lines = {}
        return snapshot


def _block_fields(block):
    """``(script, params, size, rows, data_offset)`` of a block given as a map, an object or a
    ``(script, params, size)`` triple."""
    if isinstance(block, (tuple, list)):
        script, params, size = block
        return script, params, size, None, 0
    if isinstance(block, dict):
        return (block["script"], block.get("params") or {}, block["size"], block.get("data"),
                block.get("data_offset", 0))
    return block.script, block.params, block.size, getattr(block, "data", None), getattr(block, "data_offset", 0)


def _first_line(exc, source_lines):
    """``line 7: <source> -> KeyError: 'x'`` for the script frame nearest the failure."""
    description = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    line_number = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SCRIPT_FILENAME:
            line_number = tb.tb_lineno
        tb = tb.tb_next
    if line_number is None:
        return description
    source = source_lines[line_number - 1].strip() if 0 < line_number <= len(source_lines) else ""
    return f"line {line_number}: {source} -> {description}"


