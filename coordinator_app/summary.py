"""A run's whole-run summary: the one function every view of a finished run shows.

``summarize`` turns the exactly merged whole-run histograms and counter
totals (``aggregate.TelemetryAggregator`` keeps both) into the numbers the
CLI's end-of-run table, the website, the HTML report, ``summary.json``, the
API and ``/metrics`` show; thresholds are checked against the same numbers.
``RateWindow`` measures the sustain phase, over which counter rates are taken.
Nothing here does I/O; time is a parameter.
"""
import dataclasses

from stressgrid.metrics import COUNTER_SUFFIX
from stressgrid.plan.constants import (CHECK_FAIL_SUFFIX, CHECK_PASS_SUFFIX, CHECK_PREFIX, REQUEST_GROUP_PREFIX,
                                       REQUEST_GROUP_RESPONSES, WARNING_STATUS_COUNTERS)
from stressgrid.plan.thresholds import error_rate_percent

# Histogram figures in the summary: (key, the Histogram.summary() key).
HISTOGRAM_FIGURES = (("count", "count"), ("mean", "mean"), ("min", "min"), ("p50", "median"),
                     ("p90", "pc90"), ("p99", "pc99"), ("p99_9", "pc99_9"), ("max", "max"),
                     ("stddev", "stddev"))
SUSTAIN_WINDOW = "sustain"
RUN_WINDOW = "run"


def base_name(counter):
    """``response_count`` -> ``response``."""
    return counter[:-len(COUNTER_SUFFIX)] if counter.endswith(COUNTER_SUFFIX) else counter


@dataclasses.dataclass
class RateWindow:
    """Where counter rates are measured: the sustain phase, else the whole run.

    ``enter``/``leave`` mark the sustain phase's bounds with the counter totals
    at that moment (monotonic ``now``); ``span(now, totals)`` gives the
    ``(window name, seconds, counts within it)`` for a summary at ``now``.

    Totals arrive a second or two after what they count (a worker reports every
    second, its generator every second). In the closed model the lag is the
    same at both bounds and cancels out. An arrival-rate run (``open_model``)
    has no ramp-up: its first bound has nothing in flight, and its last would
    miss the phase's final second or two. It starts no iteration after the
    phase either, so all its counters gain after ``leave`` is the phase's own
    work, arriving late or ending late: its counts run on to the run's end,
    over the phase's seconds.
    """

    started: float
    open_model: bool = False
    entered: float = None
    entered_totals: dict = None
    left: float = None
    left_totals: dict = None

    def enter(self, now, totals):
        """The sustain phase begins."""
        self.entered, self.entered_totals = now, dict(totals)

    def leave(self, now, totals):
        """The sustain phase ends (a second call changes nothing)."""
        if self.entered is not None and self.left is None:
            self.left, self.left_totals = now, None if self.open_model else dict(totals)

    def span(self, now, totals):
        """``(window, seconds, {counter: count within the window})``."""
        if self.entered is None:
            return RUN_WINDOW, max(now - self.started, 1e-3), dict(totals)
        end = self.left if self.left is not None else now
        end_totals = self.left_totals if self.left_totals is not None else totals
        counts = {name: value - self.entered_totals.get(name, 0) for name, value in end_totals.items()}
        return SUSTAIN_WINDOW, max(end - self.entered, 1e-3), counts


def summarize(histograms, totals, maxima, window):
    """The whole-run summary.

    ``histograms``: name -> ``Histogram`` (whole run); ``totals``: counter name
    -> whole-run total; ``maxima``: ``<name>_per_second`` -> the busiest
    second's rate; ``window``: ``RateWindow.span(...)``. Returns
    ``{"histograms": {name: {count, mean, min, p50, p90, p99, p99_9, max,
    stddev}}, "counters": {base name: {total, rate, peak}}, "rate_window":
    {"phase", "seconds"}, "error_rate_percent": x}``, values in µs for ``_us``
    histograms, rates per second, rounded to 3 decimals.
    """
    phase, seconds, counts = window
    result_histograms = {}
    for name, histogram in sorted(histograms.items()):
        if histogram.total_count:
            figures = histogram.summary()
            result_histograms[name] = {key: _round(figures[source]) for key, source in HISTOGRAM_FIGURES}
    counters = {}
    for name, total in sorted(totals.items()):
        base = base_name(name)
        counters[base] = {"total": total, "rate": round(counts.get(name, 0) / seconds, 3),
                          "peak": maxima.get(f"{base}_per_second", 0)}
    return {"histograms": result_histograms, "counters": counters,
            "checks": check_results({name: c["total"] for name, c in counters.items()}),
            "requests": request_groups(result_histograms, counters),
            "rate_window": {"phase": phase, "seconds": round(seconds, 3)},
            "error_rate_percent": round(error_rate_percent(
                {name: c["total"] for name, c in counters.items()}), 4)}


def request_groups(histograms, counters):
    """``{request name: {count, rate, peak, headers, body, response_4xx, response_5xx}}`` for the
    requests scripts named: their response counter's figures, the summaries of their
    ``headers_us`` and ``body_us`` histograms (``None`` without values) and their error statuses."""
    groups = {}
    for base, counter in counters.items():
        if not (base.startswith(REQUEST_GROUP_PREFIX) and base.endswith(REQUEST_GROUP_RESPONSES)):
            continue
        name = base[len(REQUEST_GROUP_PREFIX):-len(REQUEST_GROUP_RESPONSES)]
        if not name:
            continue
        prefix = f"{REQUEST_GROUP_PREFIX}{name}_"
        groups[name] = {"count": counter["total"], "rate": counter["rate"], "peak": counter["peak"],
                        "headers": histograms.get(prefix + "headers_us"),
                        "body": histograms.get(prefix + "body_us"),
                        **{status: (counters.get(prefix + status) or {}).get("total", 0)
                           for status in sorted(WARNING_STATUS_COUNTERS)}}
    return dict(sorted(groups.items()))


def check_results(counters):
    """``{check: {passed, failed, pass_percent}}`` from counter totals keyed by base name
    (``check_<name>_pass`` and ``check_<name>_fail``, as ``check(name, condition)`` counts)."""
    results = {}
    for name, total in counters.items():
        if not name.startswith(CHECK_PREFIX):
            continue
        for suffix, key in ((CHECK_PASS_SUFFIX, "passed"), (CHECK_FAIL_SUFFIX, "failed")):
            if name.endswith(suffix) and len(name) > len(CHECK_PREFIX) + len(suffix):
                check = results.setdefault(name[len(CHECK_PREFIX):-len(suffix)], {"passed": 0, "failed": 0})
                check[key] += total
    for check in results.values():
        calls = check["passed"] + check["failed"]
        check["pass_percent"] = round(100.0 * check["passed"] / calls, 4) if calls else 0.0
    return dict(sorted(results.items()))


def _round(value):
    return round(value, 3) if isinstance(value, float) else value
