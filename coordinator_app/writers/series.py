"""A run's per-second time series for its report, bounded in size.

``RunSeries.add`` takes each second's telemetry (``TelemetryAggregator.tick``)
and keeps what the report charts: active devices, generator CPU, every
counter's rate, p50/p90/p99 of every histogram and the errors per second.
At most ``MAX_POINTS`` points are kept: when full, every other point is
dropped and from then on only every second one is taken (then every fourth...),
so a week-long run still fits in a report.
"""
import dataclasses

from ..overview import errors_per_second
from ..summary import base_name

MAX_POINTS = 1800
QUANTILES = ("p50", "p90", "p99")


@dataclasses.dataclass
class Point:
    elapsed_s: float
    phase: str  # the last of the plan's phases the run entered
    active_devices: int
    cpu_percent: float
    rates: dict  # counter base name -> per second
    quantiles: dict  # histogram -> (p50, p90, p99)
    errors_per_second: float


class RunSeries:
    """The points of one run, from its start (wall clock ``started_at``)."""

    def __init__(self, started_at, max_points=MAX_POINTS):
        self.started_at = started_at
        self.max_points = max_points
        self.points = []
        self.stride = 1
        self._seen = 0

    def add(self, telemetry):
        """One second's telemetry; seconds from before the run are ignored."""
        at = telemetry.get("time") or 0
        if at < self.started_at:
            return
        self._seen += 1
        if (self._seen - 1) % self.stride:
            return
        rates = {base_name(name): counter.get("per_second", 0)
                 for name, counter in (telemetry.get("counters") or {}).items()}
        quantiles = {name: tuple(h.get(q, 0) for q in QUANTILES)
                     for name, h in (telemetry.get("histograms") or {}).items()}
        self.points.append(Point(round(at - self.started_at, 3), telemetry.get("phase"),
                                 telemetry.get("active_device_number", 0),
                                 telemetry.get("max_cpu_percent", 0.0), rates, quantiles,
                                 errors_per_second(rates)))
        if len(self.points) >= self.max_points:
            del self.points[1::2]
            self.stride *= 2
