"""Aggregation of generator telemetry (DESIGN.md sections 5 and 7).

``TelemetryAggregator`` is owned by the run scheduler (on the socket thread). Its hot
path is ``ingest``: every message's histograms are merged as sparse bucket
counts straight into one pending aggregate (Cython, no per-message histogram
allocation; ``ingest`` explains how a bad message is kept out) and its
counters added to a dict. Every second ``tick`` folds the pending aggregate once into the per-second view,
the current report interval and the run totals, and returns the telemetry
the UI and CLI show. ``cut_interval`` hands a finished interval to the
writers; ``finish_run`` the last, partial one and the run's totals.

All merges add bucket counts, so every figure is exact at every level.
"""
import dataclasses
import time

from stressgrid._core.metrics import Histogram
from stressgrid.metrics import MetricsAggregate, is_error, rate_name
from stressgrid.plan.constants import CPU_HISTOGRAM, CPU_WARNING_PERCENT, LOOP_LAG_HISTOGRAM, LOOP_LAG_WARNING_US

from .validate import MAX_HISTOGRAM_VALUES

ACTIVE_DEVICES = "active_device_number"
_EMPTY = {}


@dataclasses.dataclass
class IntervalReport:
    """One report interval of a run, handed over to the writers (which own it after).

    ``histograms`` and ``counters`` are this interval's merged values;
    ``totals`` the run's cumulative counters at its end; ``gauges`` hold
    ``active_device_number`` (sum over generators at the end of the interval).
    ``started_at``/``ended_at`` are wall-clock times; ``duration_s`` is
    measured on the monotonic clock.
    """

    clock: int
    started_at: float
    ended_at: float
    duration_s: float
    histograms: dict
    counters: dict
    totals: dict
    gauges: dict

    @property
    def empty(self):
        """True when the interval holds no histogram value and no count."""
        return not any(h.total_count for h in self.histograms.values()) and not any(self.counters.values())


@dataclasses.dataclass
class RunTotals:
    """What a run adds up to: cumulative counters, run-wide histograms, maxima, error lines."""

    totals: dict
    histograms: dict
    maxima: dict
    errors: dict

    def error_report(self):
        """``{error counter: {"count": n, "line": first traceback line or ""}}``."""
        names = {name for name in self.totals if is_error(name)} | set(self.errors)
        return {name: {"count": self.totals.get(name, 0), "line": self.errors.get(name, "")}
                for name in sorted(names)}

    def to_dict(self):
        """The JSON form that goes into the run's summary."""
        return {
            "totals": dict(sorted(self.totals.items())),
            "histograms": {name: h.summary() for name, h in sorted(self.histograms.items())
                           if h.total_count},
            "maxima": dict(sorted(self.maxima.items())),
            "errors": self.error_report(),
        }


class TelemetryAggregator:
    """Per-second, per-interval and per-run aggregates of generator telemetry.

    Generators are passed in as objects with writable ``active_devices``,
    ``cpu_percent``, ``cpu_pending`` and ``suspect`` attributes (the registry's records), so ingest needs no
    lookups of its own.
    """

    def __init__(self, clock=time.monotonic, wall_clock=time.time):
        self._clock = clock
        self._wall = wall_clock
        self._scratch = Histogram("validation")
        self.pending = MetricsAggregate()
        self._accepted = []  # histogram maps merged into ``pending`` since the last flush
        self.second = MetricsAggregate()
        self.interval = None
        self.run_histograms = None
        self.totals = {}
        self.errors = {}
        self.maxima = {}
        self.clock_index = 0
        self.interval_started = 0.0
        self.interval_started_wall = 0.0
        self.last_tick = clock()
        self.messages = 0
        self.rejected = 0
        self.latest = {}

    # -- hot path ----------------------------------------------------------

    def ingest(self, generator, telemetry):
        """Merge one ``wire.Telemetry`` from ``generator``, checked by ``validate.TelemetryCheck``.

        Raises ``ValueError`` for a bad histogram encoding; then nothing of the
        message is merged. Histograms are merged optimistically, straight
        from their wire form; a bad encoding part-way through a message is
        undone by rebuilding this second's pending histograms from the
        messages accepted since the last flush. A generator that sent one bad
        message has every later message validated first, so that rebuild
        happens at most once per generator.
        """
        metrics = telemetry.metrics
        histograms = metrics.get("histograms", _EMPTY)
        counters = metrics.get("counters", _EMPTY)
        try:
            if generator.suspect:
                self._validate(histograms)
            self._merge(histograms)
        except ValueError:
            self.rejected += 1
            generator.suspect = True
            raise
        self._accepted.append(histograms)
        merged = self.pending.counters
        for name, value in counters.items():
            merged[name] = merged.get(name, 0) + value
        generator.active_devices = telemetry.active_device_number
        cpu = histograms.get(CPU_HISTOGRAM)
        if cpu is not None:
            scratch = self._scratch
            scratch.add_encoded(*cpu)
            peak = scratch.max
            scratch.reset()
            if generator.cpu_pending is None or peak > generator.cpu_pending:
                generator.cpu_pending = peak
        if telemetry.errors:
            for name, line in telemetry.errors.items():
                if name not in self.errors:
                    self.errors[name] = line
        self.messages += 1

    def _validate(self, histograms):
        scratch = self._scratch
        try:
            for data, clamped in histograms.values():
                scratch.add_encoded(data, clamped, MAX_HISTOGRAM_VALUES)
        finally:
            scratch.reset()

    def _merge(self, histograms):
        pending = self.pending
        try:
            for name, (data, clamped) in histograms.items():
                pending.histogram(name).add_encoded(data, clamped, MAX_HISTOGRAM_VALUES)
        except ValueError:
            # Undo the part of this message that was merged: rebuild from the accepted ones.
            pending.histograms.clear()
            for accepted in self._accepted:
                for name, (data, clamped) in accepted.items():
                    pending.histogram(name).add_encoded(data, clamped, MAX_HISTOGRAM_VALUES)
            raise

    def count_error(self, name, line, count=1):
        """Count ``count`` errors the coordinator itself saw (``name`` ends in ``_error_count``),
        with ``line`` as their description; they go into the current second like a generator's."""
        counters = self.pending.counters
        counters[name] = counters.get(name, 0) + count
        self.errors.setdefault(name, line)

    # -- once a second -----------------------------------------------------

    def _flush(self):
        pending = self.pending
        self._accepted = []
        if not pending.histograms and not pending.counters:
            return
        self.second.add(pending)
        if self.interval is not None:
            self.interval.add(pending)
            self.run_histograms.add(pending)
        totals = self.totals
        for name, value in pending.counters.items():
            totals[name] = totals.get(name, 0) + value
        pending.clear()

    def tick(self, generators, shortest_s=1e-3):
        """Close the current second; returns the telemetry dict for the UI and CLI.

        ``generators``: the registered generator records; rates are over the time since the
        last tick, or ``shortest_s`` when that was shorter.
        """
        now = self._clock()
        elapsed = max(now - self.last_tick, shortest_s)
        self.last_tick = now
        self._flush()
        second = self.second
        for g in generators:  # a generator's CPU is its peak over the second just closed
            if g.cpu_pending is not None:
                g.cpu_percent, g.cpu_pending = g.cpu_pending, None
        active = sum(g.active_devices for g in generators)
        cpu = max((g.cpu_percent for g in generators), default=0.0)
        counters = {}
        for name in sorted(set(self.totals) | set(second.counters)):
            counters[name] = {"per_second": round(second.counters.get(name, 0) / elapsed, 3),
                              "total": self.totals.get(name, 0)}
        histograms = {}
        for name, histogram in sorted(second.histograms.items()):
            if histogram.total_count:
                summary = histogram.summary()
                histograms[name] = {"count": summary["count"], "p50": summary["median"],
                                    "p90": summary["pc90"], "p99": summary["pc99"],
                                    "max": summary["max"]}
        loop_lag = histograms.get(LOOP_LAG_HISTOGRAM, _EMPTY).get("p99", 0)
        telemetry = {
            "time": self._wall(),
            "generator_count": len(generators),
            ACTIVE_DEVICES: active,
            "max_cpu_percent": cpu,
            "cpu_warning": cpu > CPU_WARNING_PERCENT,
            "loop_lag_p99_us": loop_lag,
            "loop_lag_warning": loop_lag > LOOP_LAG_WARNING_US,
            "counters": counters,
            "histograms": histograms,
            "errors": RunTotals(self.totals, {}, {}, self.errors).error_report(),
        }
        if self.interval is not None:
            self._update_maxima(telemetry, second, elapsed)
        second.clear()
        self.latest = telemetry
        return telemetry

    def last_second(self, generators):
        """Close the run's last, partial second as it ends: its telemetry, or ``None`` when
        nothing arrived since the last tick. Generators report once a second, so a window
        shorter than a second may hold a whole second's report: its rates are per second of
        at least a second, never inflated by a short window."""
        if not (self.pending.counters or self.pending.histograms or self.second.counters
                or self.second.histograms):
            return None
        return self.tick(generators, shortest_s=1.0)

    def _update_maxima(self, telemetry, second, elapsed):
        maxima = self.maxima

        def bump(key, value):
            if value > maxima.get(key, 0):
                maxima[key] = value

        bump(ACTIVE_DEVICES, telemetry[ACTIVE_DEVICES])
        bump("generator_count", telemetry["generator_count"])
        bump("max_cpu_percent", telemetry["max_cpu_percent"])
        bump("max_loop_lag_p99_us", telemetry["loop_lag_p99_us"])
        for name, value in second.counters.items():
            bump(rate_name(name), round(value / elapsed, 3))

    # -- runs ----------------------------------------------------------------

    def start_run(self):
        """Begin a run: totals, errors and maxima start from zero."""
        self._flush()  # what arrived before the run is not the run's
        self.second.clear()
        self.latest = {}
        now = self._clock()
        self.interval = MetricsAggregate()
        self.run_histograms = MetricsAggregate()
        self.totals = {}
        self.errors = {}
        self.maxima = {}
        self.clock_index = 0
        self.interval_started = now
        self.interval_started_wall = self._wall()

    def current_totals(self):
        """The run's counter totals up to now, what arrived this second included."""
        self._flush()
        return self.totals

    def cut_interval(self, generators):
        """Close the current report interval and return it as an ``IntervalReport``."""
        self._flush()
        now, wall = self._clock(), self._wall()
        interval = self.interval
        report = IntervalReport(
            clock=self.clock_index, started_at=self.interval_started_wall, ended_at=wall,
            duration_s=max(now - self.interval_started, 1e-3),
            histograms=interval.histograms, counters=interval.counters, totals=dict(self.totals),
            gauges={ACTIVE_DEVICES: sum(g.active_devices for g in generators)})
        self.interval = MetricsAggregate()
        self.clock_index += 1
        self.interval_started = now
        self.interval_started_wall = wall
        return report

    def run_totals(self):
        """The active run's ``RunTotals`` so far (its histograms are the live ones)."""
        return RunTotals(totals=dict(self.totals), histograms=self.run_histograms.histograms,
                         maxima=dict(self.maxima), errors=dict(self.errors))

    def finish_run(self, generators):
        """End the run: ``(last partial IntervalReport or None, RunTotals)``.

        The last interval is returned when it holds any data, or when it is the
        run's only one, so a short run still has every value in its reports.
        """
        last = self.cut_interval(generators)
        if last.empty and last.clock > 0:
            last = None
        result = self.run_totals()
        self.interval = None
        self.run_histograms = None
        return last, result
