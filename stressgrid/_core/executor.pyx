# cython: freethreading_compatible = False
"""The arrival-rate executor of one worker: iterations started on schedule on a pool of devices.

One ``Schedule`` (``stressgrid._core.arrivals``) says when each of this
worker's iterations is due. A ``WakeTimer`` (``stressgrid._core.waketimer``)
wakes the loop at the next due time, to within the kernel's timer slack rather
than the loop timers' millisecond, and every iteration due by then is released
in one batch. Wakes are at least ``MIN_WAKE_GAP_US`` apart: at 100,000
iterations a second a wake releases a batch of 25 or more, so the wakes cost
little per iteration and no iteration is held back longer than the gap. Each
iteration of a batch gets a free device of the pool (a new one while the pool
is under its ceiling) and runs as its own task. An iteration that finds no free
device and no room for one is dropped and counted, never queued behind the
others: a queue would hide the load the schedule asked for.

Per iteration: ``iteration_count`` when it starts, ``iteration_start_delay_us``
(scheduled -> actual start), and once it ends ``iteration_us`` (actual start ->
end) and ``intended_iteration_us`` (scheduled start -> end, the figure a
stalled target cannot hide). The device's ``step_delay_us`` is the start delay
while the iteration runs: each latency of its steps also gets an ``intended_``
twin, longer by that delay. A device keeps its connection between iterations;
a failed iteration closes it, so the device's next one opens a fresh connection.
"""
import asyncio

from libc.stdint cimport int64_t

from stressgrid._core.arrivals cimport Schedule
from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.device cimport Device
from stressgrid._core.metrics cimport Counter, Histogram, Recorder
from stressgrid._core.waketimer cimport WakeTimer

from stressgrid._core.device import set_current_device
from stressgrid.plan.arrivals import (DROPPED_ITERATION_COUNTER, INTENDED_ITERATION_HISTOGRAM,
                                      ITERATION_COUNTER, ITERATION_HISTOGRAM, START_DELAY_HISTOGRAM)

cdef int64_t MIN_WAKE_GAP_US = 250

cdef object CancelledError = asyncio.CancelledError
cdef object current_task = asyncio.current_task


cdef class ArrivalExecutor:
    """Runs one worker's share of an arrival-rate cohort.

    ``blocks``: compiled blocks (``function``, ``params``, ``module``) in the
    schedule's block order; ``rows``: each block's feeder rows or ``None`` (the
    fleet's iteration ``k`` of a block takes row ``k`` mod their number).
    ``on_failure(exc, block)`` counts an iteration's error. ``start()`` begins
    the schedule's clock; ``stop()`` ends it and returns the tasks still running.
    """

    cdef readonly Schedule schedule
    cdef object loop
    cdef Recorder recorder
    cdef list blocks
    cdef list rows
    cdef list addresses
    cdef Py_ssize_t address_cursor
    cdef object opts
    cdef str cohort_id
    cdef object on_failure
    cdef readonly int max_devices
    cdef int pre_allocated
    cdef readonly int created
    cdef list idle
    cdef readonly dict running  # Device -> its iteration's task
    cdef int64_t origin_us
    cdef bint started
    cdef WakeTimer timer
    cdef readonly bint stopped
    cdef Counter iterations
    cdef Counter dropped
    cdef Histogram start_delay
    cdef Histogram iteration
    cdef Histogram intended

    def __init__(self, Schedule schedule not None, blocks, rows, addresses, Py_ssize_t address_offset,
                 opts, str cohort_id, Recorder recorder not None, loop, on_failure, int max_devices,
                 int pre_allocated):
        if max_devices < 1 or not 0 <= pre_allocated <= max_devices:
            raise ValueError(f"pool of {max_devices} devices, {pre_allocated} pre-allocated")
        if not addresses:
            raise ValueError("an executor needs at least one address")
        self.schedule = schedule
        self.blocks = list(blocks)
        self.rows = list(rows)
        self.addresses = list(addresses)
        self.address_cursor = address_offset
        self.opts = opts
        self.cohort_id = cohort_id
        self.recorder = recorder
        self.loop = loop
        self.on_failure = on_failure
        self.max_devices = max_devices
        self.pre_allocated = pre_allocated
        self.created = 0
        self.idle = []
        self.running = {}
        self.timer = None
        self.started = False
        self.stopped = False
        self.iterations = recorder.counter(ITERATION_COUNTER)
        self.dropped = recorder.counter(DROPPED_ITERATION_COUNTER)
        self.start_delay = recorder.histogram(START_DELAY_HISTOGRAM)
        self.iteration = recorder.histogram(ITERATION_HISTOGRAM)
        self.intended = recorder.histogram(INTENDED_ITERATION_HISTOGRAM)

    cdef Device _new_device(self):
        # Numbered by its place in the run (its address cursor), unique on every worker and generator.
        cdef Device device = Device(f"{self.cohort_id}-{self.address_cursor}",
                                    self.addresses[self.address_cursor % len(self.addresses)],
                                    self.opts, self.recorder, self.loop)
        self.address_cursor += 1
        self.created += 1
        return device

    def start(self, int64_t behind_us=0):
        """Create the pre-allocated devices and start the schedule's clock, ``behind_us``
        in the past: the iterations due by now start at once, their delay recorded."""
        if behind_us < 0:
            raise ValueError(f"a schedule cannot start {behind_us} us in the future")
        while self.created < self.pre_allocated:
            self.idle.append(self._new_device())
        self.timer = WakeTimer(self.loop, self._release)
        self.origin_us = monotonic_us() - behind_us
        self.started = True
        self._release()

    def _release(self):
        cdef int64_t now = monotonic_us() - self.origin_us
        cdef Schedule schedule = self.schedule
        cdef Device device
        cdef int block
        cdef list rows
        if self.stopped:
            return
        while not schedule.over and schedule.next_us <= now:
            if self.idle:
                device = <Device>self.idle.pop()
            elif self.created < self.max_devices:
                device = self._new_device()
            else:
                self.dropped.value += 1
                schedule.advance_c()
                continue
            block = schedule.next_block
            rows = <list>self.rows[block]
            row = None if rows is None else rows[schedule.next_k % len(rows)]
            self.iterations.value += 1
            self.running[device] = self.loop.create_task(
                self._iterate(device, self.blocks[block], row, self.origin_us + schedule.next_us))
            schedule.advance_c()
        if schedule.over:
            self.timer.close()
        else:
            self.timer.arm(self.origin_us + max(schedule.next_us, now + MIN_WAKE_GAP_US))

    async def _iterate(self, Device device, block, row, int64_t intended_us):
        cdef int64_t started = monotonic_us()
        cdef int64_t late = started - intended_us if started > intended_us else 0
        cdef bint failed = False
        set_current_device(device)
        self.start_delay.record_c(late)
        device.intended_start_us = intended_us
        device.step_delay_us = late
        device.in_iteration = True
        try:
            if device.client is None:
                device.client = block.module.create_client(device)
                await device.client.open()
            await block.function(block.params, device.device_id, row)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - scripts may raise anything
            self.on_failure(exc, block)
            failed = True
        except CancelledError as exc:
            if self.stopped or current_task().cancelling():
                self._retire(device)
                raise  # a stop
            self.on_failure(exc, block)
            failed = True
        finally:
            device.reset()
            device.intended_start_us = 0
            device.in_iteration = False
        cdef int64_t ended = monotonic_us()
        self.iteration.record_c(ended - started)
        self.intended.record_c(ended - intended_us)
        if failed or self.stopped:
            self._retire(device)  # a failure's connection is not trusted again
        else:
            del self.running[device]
        if not self.stopped:
            self.idle.append(device)

    cdef _retire(self, Device device):
        """Close ``device``'s connection; it leaves the running set."""
        client = device.client
        device.client = None
        if client is not None:
            client.close()
        self.running.pop(device, None)

    def stop(self):
        """Start no more iterations and close the idle devices' connections; returns the
        tasks of the iterations still running (the caller cancels and awaits them).

        Iterations already due that the loop had not yet released are dropped and counted,
        so every iteration due before the stop is either started or counted as dropped."""
        cdef Device device
        cdef int64_t now = monotonic_us() - self.origin_us
        cdef Schedule schedule = self.schedule
        if self.stopped:
            return list(self.running.values())
        self.stopped = True
        while self.started and not schedule.over and schedule.next_us <= now:
            self.dropped.value += 1
            schedule.advance_c()
        if self.timer is not None:
            self.timer.close()
        for device in self.idle:
            if device.client is not None:
                device.client.close()
                device.client = None
        self.idle = []
        return list(self.running.values())

    @property
    def pool_size(self):
        """Devices in the pool: idle and running."""
        return self.created if not self.stopped else len(self.running)
