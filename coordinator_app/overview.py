"""The run at a glance: what a user watches, one point a second, on one time axis.

An overview point is ``[elapsed s, phase, active devices, main rate, p50, p90,
p99 of the main latency, errors per second]``. The main rate is the
``response`` counter's (``receive``'s or ``message``'s for protocols without
responses, else the busiest other counter's); the main latency is
``headers_us`` (else the histogram with the most values, leaving out the
generators' own and the named requests' copies). Both are chosen from the
run's totals, so they settle as soon as its traffic flows. The live view gets
each second's point in the telemetry (``live_point``, with the names) and the
run's points so far from ``GET /api/runs/<id>/overview`` (``overview``); the
HTML report draws the same points, and a finished run keeps them. Nothing here does I/O.
"""
from stressgrid.metrics import is_error
from stressgrid.plan.constants import CHECK_PREFIX, GENERATOR_HISTOGRAMS, REQUEST_GROUP_PREFIX

MAIN_RATES = ("response", "receive", "message")
MAIN_LATENCIES = ("headers_us",)
_NOT_RATES = ("network_", CHECK_PREFIX, REQUEST_GROUP_PREFIX)
POINT_FIELDS = ("t", "phase", "devices", "rate", "p50", "p90", "p99", "errors")


def base(counter):
    """``response_count`` -> ``response``."""
    return counter[:-len("_count")] if counter.endswith("_count") else counter


def main_names(counter_totals, histogram_counts):
    """``(main rate counter, main latency histogram)`` (base names; ``None`` when the run has
    none) from ``{counter: total}`` and ``{histogram: count}`` of the run so far."""
    totals = {base(name): total for name, total in counter_totals.items()}
    rate = next((name for name in MAIN_RATES if totals.get(name)), None)
    if rate is None:
        candidates = {name: total for name, total in totals.items()
                      if total and not is_error(name) and not name.startswith(_NOT_RATES)}
        rate = max(sorted(candidates), key=candidates.get, default=None)
    latency = next((name for name in MAIN_LATENCIES if histogram_counts.get(name)), None)
    if latency is None:
        candidates = {name: count for name, count in histogram_counts.items()
                      if count and name not in GENERATOR_HISTOGRAMS and not name.startswith(REQUEST_GROUP_PREFIX)}
        latency = max(sorted(candidates), key=candidates.get, default=None)
    return rate, latency


def errors_per_second(rates):
    """The second's errors: every ``*_error`` counter's rate but the network's (``{base: rate}``)."""
    return sum(rate for name, rate in rates.items() if is_error(name) and not name.startswith("network_"))


def point(elapsed_s, phase, devices, rates, quantiles, names):
    """One overview point from a second's ``rates`` (``{counter base: per second}``) and
    ``quantiles`` (``{histogram: (p50, p90, p99)}``) for the main ``names``."""
    rate_name, latency_name = names
    p50, p90, p99 = quantiles.get(latency_name) or (None, None, None)
    return [elapsed_s, phase, devices, rates.get(rate_name, 0) if rate_name else None, p50, p90, p99,
            errors_per_second(rates)]


def names_of(summary):
    """The main names of a run from its whole-run summary so far (``summarize``'s dict)."""
    summary = summary or {}
    return main_names({name: c.get("total", 0) for name, c in (summary.get("counters") or {}).items()},
                      {name: h.get("count", 0) for name, h in (summary.get("histograms") or {}).items()})


def live_point(telemetry, elapsed_s, phase, names):
    """The overview point of one second's telemetry (``TelemetryAggregator.tick``'s dict)."""
    counters = telemetry.get("counters") or {}
    rates = {base(name): c.get("per_second", 0) for name, c in counters.items()}
    quantiles = {name: (h.get("p50"), h.get("p90"), h.get("p99"))
                 for name, h in (telemetry.get("histograms") or {}).items()}
    return point(round(elapsed_s, 3), phase, telemetry.get("active_device_number", 0), rates, quantiles, names)


def series_points(points, names):
    """The overview points of a run's ``RunSeries`` points for the main ``names``."""
    return [point(p.elapsed_s, p.phase, p.active_devices, p.rates, p.quantiles, names) for p in points]


def overview(points, summary):
    """``{"names": {"rate", "latency"}, "fields": POINT_FIELDS, "points": [...]}`` of a run's
    ``RunSeries`` points, its main names from its whole-run ``summary``."""
    names = names_of(summary)
    return {"names": {"rate": names[0], "latency": names[1]}, "fields": list(POINT_FIELDS),
            "points": series_points(points, names)}
