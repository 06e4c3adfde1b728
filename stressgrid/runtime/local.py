"""Running a plan's blocks in this process for a bounded time.

``run_local(plan, duration_s)`` starts every block's devices on one uvloop
loop, runs them for ``duration_s`` seconds, stops them and returns the merged
metrics. Tests and benchmarks use it; the worker process uses the same engine.
"""
import asyncio
import dataclasses
import time

import uvloop

from stressgrid.metrics import MetricsAggregate
from stressgrid.plan import Plan
from stressgrid.plan.resolve import resolve_addresses

from .allocator import keep_large_buffers_on_heap
from .engine import Engine


@dataclasses.dataclass
class LocalResult:
    """Merged metrics of a local run."""

    counters: dict
    histograms: dict
    gauges: dict
    errors: dict
    started_devices: int
    peak_active_devices: int
    duration_s: float

    def summary(self):
        return {"counters": dict(sorted(self.counters.items())),
                "histograms": {n: h.summary() for n, h in sorted(self.histograms.items())},
                "errors": self.errors}


async def run_engine(plan, duration_s, until=None, on_snapshot=None):
    """Run ``plan`` on the current loop; see ``run_local``."""
    if isinstance(plan, dict):
        plan = Plan.from_dict(plan)
    addresses = resolve_addresses(plan.addresses)
    engine = Engine()
    aggregate = MetricsAggregate()
    peak = 0
    started_at = time.monotonic()
    started = await engine.start_cohort("0", plan.blocks, addresses, plan.opts)
    deadline = started_at + duration_s
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (until is not None and until(aggregate)):
                break
            await asyncio.sleep(min(remaining, 0.05 if until is not None else 1.0))
            peak = max(peak, engine.device_count)
            snapshot = engine.snapshot()
            aggregate.add_snapshot(snapshot)
            if on_snapshot is not None:
                on_snapshot(snapshot)
    finally:
        peak = max(peak, engine.device_count)
        await engine.stop_all()
        aggregate.add_snapshot(engine.snapshot())
    return LocalResult(counters=aggregate.counters, histograms=aggregate.histograms,
                       gauges=aggregate.gauges, errors=dict(engine.error_lines),
                       started_devices=started, peak_active_devices=peak,
                       duration_s=time.monotonic() - started_at)


def run_local(plan, duration_s, until=None):
    """Run ``plan`` (a dict in the plan's JSON shape or a ``Plan``) for ``duration_s``.

    ``until(aggregate)`` may end the run early once it returns true (tests use
    it to wait for an event rather than a fixed time); it is checked every 50 ms.
    """
    keep_large_buffers_on_heap()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_engine(plan, duration_s, until))
