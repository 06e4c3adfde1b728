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
HTML report draws the same points, and a finished run keeps them. ``metric_group`` folds
every metric's chart in a group. Nothing here does I/O.
"""
from stressgrid.metrics import is_error
from stressgrid.plan.constants import (CHECK_PREFIX, GENERATOR_HISTOGRAMS, REQUEST_GROUP_PREFIX,
                                       STATUS_CLASS_COUNTERS)

from .summary import base_name

MAIN_RATES = ("response", "receive", "message")
MAIN_LATENCIES = ("headers_us",)
NETWORK_PREFIX = "network_"
_NOT_RATES = (NETWORK_PREFIX, CHECK_PREFIX, REQUEST_GROUP_PREFIX)
POINT_FIELDS = ("t", "phase", "devices", "rate", "p50", "p90", "p99", "errors")


def main_names(counter_totals, histogram_counts):
    """``(main rate counter, main latency histogram)`` (base names; ``None`` when the run has
    none) from ``{counter: total}`` and ``{histogram: count}`` of the run so far."""
    totals = {base_name(name): total for name, total in counter_totals.items()}
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
    return sum(rate for name, rate in rates.items() if is_error(name) and not name.startswith(NETWORK_PREFIX))


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
    rates = {base_name(name): c.get("per_second", 0) for name, c in counters.items()}
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


def phase_bands(points):
    """``[(from s, to s, phase)]``: the spans of consecutive overview points in one phase, each
    up to the next one's first point."""
    bands = []
    for elapsed_s, phase, *_ in points:
        if not phase:
            continue
        if bands:
            bands[-1][1] = elapsed_s
        if not bands or bands[-1][2] != phase:
            bands.append([elapsed_s, elapsed_s, phase])
    return [tuple(band) for band in bands]


MAIN_GROUP = "main"
# The groups after the main one and the named requests', in the order they are shown.
LATER_GROUPS = ("checks", "status classes", "network", "errors", "generators")
# What follows a named request's name in its metrics: request_<name>_headers_us, ..._response_4xx.
NAMED_REQUEST_SUFFIXES = ("intended_headers_us", "headers_us", "body_us", "response", *STATUS_CLASS_COUNTERS)


def group_rules():
    """What the website needs to group metrics as ``metric_group`` does (GET /api/meta)."""
    return {"main": MAIN_GROUP, "later": list(LATER_GROUPS), "request_prefix": REQUEST_GROUP_PREFIX,
            "request_suffixes": list(NAMED_REQUEST_SUFFIXES), "check_prefix": CHECK_PREFIX,
            "status_counters": list(STATUS_CLASS_COUNTERS), "network_prefix": NETWORK_PREFIX,
            "generator_histograms": sorted(GENERATOR_HISTOGRAMS)}


def metric_group(name):
    """The group a metric's chart is folded in: ``request <name>`` for a named request's,
    ``checks``, ``status classes``, ``network``, ``errors``, ``generators`` or ``main``."""
    metric = base_name(name)
    if metric.startswith(REQUEST_GROUP_PREFIX):
        endings = [suffix for suffix in NAMED_REQUEST_SUFFIXES if metric.endswith(f"_{suffix}")]
        if endings:
            named = metric[len(REQUEST_GROUP_PREFIX):-len(max(endings, key=len)) - 1]
            if named:
                return f"request {named}"
    if metric.startswith(CHECK_PREFIX):
        return "checks"
    if metric in STATUS_CLASS_COUNTERS:
        return "status classes"
    if metric.startswith(NETWORK_PREFIX):
        return "network"
    if is_error(metric):
        return "errors"
    if metric in GENERATOR_HISTOGRAMS:
        return "generators"
    return MAIN_GROUP


def group_order(group):
    """A sort key of groups: main, the named requests by name, then ``LATER_GROUPS``."""
    if group == MAIN_GROUP:
        return (0, "")
    if group in LATER_GROUPS:
        return (2, str(LATER_GROUPS.index(group)))
    return (1, group)
