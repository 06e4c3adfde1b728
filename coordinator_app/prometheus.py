"""``GET /metrics``: the coordinator's live state for Prometheus (the ``prometheus-client``
text format).

Everything comes from the state the coordinator publishes each second (never
the live objects), so a scrape costs the socket thread nothing:

``stressgrid_generators``, ``stressgrid_active_devices``,
``stressgrid_generator_cpu_percent{generator}``,
``stressgrid_generator_active_devices{generator}``,
``stressgrid_generator_last_seen_seconds{generator}``;
for the active run (label ``run``): ``stressgrid_run_active``,
``stressgrid_run_elapsed_seconds``, ``stressgrid_counter_total{counter}`` (whole run),
``stressgrid_counter_per_second{counter}`` (the last second),
``stressgrid_counter_sustain_rate{counter}`` (the mean over the sustain phase so far),
``stressgrid_histogram_quantile{histogram, quantile, window}`` and
``stressgrid_histogram_count{histogram, window}`` with ``window`` ``run`` (the exact
whole-run histogram: quantiles 0.5 0.9 0.99 0.999 1) or ``second`` (the last second:
0.5 0.9 0.99 1), in the histogram's unit (µs for ``*_us``),
``stressgrid_error_rate_percent`` and ``stressgrid_threshold_passing{threshold}`` (1 passing,
0 failing; absent while its histogram has no value).

The token rules are the API's; with ``--metrics-open-on-loopback`` a request from a
loopback address needs no token (for a Prometheus on the same machine).
"""
import ipaddress

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .auth import check_token

blueprint = Blueprint("prometheus", __name__)

RUN_QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("0.999", "p99_9"), ("1", "max"))
SECOND_QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("1", "max"))
THRESHOLD_PASSING = {"passing": 1, "passed": 1, "failing": 0, "failed": 0}


def _gauge(name, documentation, labels=()):
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def families(state):
    """The metric families of one published coordinator ``state``."""
    generators = state.get("generators") or []
    telemetry = state.get("telemetry") or {}
    run = state.get("run")
    result = []
    count = _gauge("stressgrid_generators", "Registered generators")
    count.add_metric([], len(generators))
    cpu = _gauge("stressgrid_generator_cpu_percent", "A generator's CPU, its busiest second of the last",
                 ["generator"])
    devices = _gauge("stressgrid_generator_active_devices", "Devices running on a generator", ["generator"])
    seen = _gauge("stressgrid_generator_last_seen_seconds", "Seconds since a generator's last message",
                  ["generator"])
    for generator in generators:
        cpu.add_metric([generator["id"]], generator.get("cpu_percent", 0))
        devices.add_metric([generator["id"]], generator.get("active_device_number", 0))
        seen.add_metric([generator["id"]], generator.get("last_seen_s", 0))
    active = _gauge("stressgrid_active_devices", "Devices running on every generator")
    active.add_metric([], sum(g.get("active_device_number", 0) for g in generators))
    result += [count, cpu, devices, seen, active]
    if not run or run.get("outcome"):
        return result
    run_id = run["id"]
    running = _gauge("stressgrid_run_active", "1 while the run is active", ["run", "phase"])
    running.add_metric([run_id, run.get("phase", "")], 1)
    elapsed = _gauge("stressgrid_run_elapsed_seconds", "Seconds since the run started", ["run"])
    elapsed.add_metric([run_id], (run.get("elapsed_ms") or 0) / 1000.0)
    result += [running, elapsed]
    summary = run.get("summary") or {}
    totals = CounterMetricFamily("stressgrid_counter", "A counter's whole-run total", labels=["run", "counter"])
    sustain = _gauge("stressgrid_counter_sustain_rate", "A counter's mean per second over the sustain "
                                                         "phase so far (the run so far before it)",
                     ["run", "counter"])
    for name, counter in (summary.get("counters") or {}).items():
        totals.add_metric([run_id, name], counter["total"])
        sustain.add_metric([run_id, name], counter["rate"])
    second = _gauge("stressgrid_counter_per_second", "A counter's rate over the last second",
                    ["run", "counter"])
    for name, counter in (telemetry.get("counters") or {}).items():
        base = name[:-len("_count")] if name.endswith("_count") else name
        second.add_metric([run_id, base], counter.get("per_second", 0))
    quantiles = _gauge("stressgrid_histogram_quantile", "A histogram's value at a quantile, in its "
                                                        "unit (microseconds for *_us)",
                       ["run", "histogram", "quantile", "window"])
    counts = _gauge("stressgrid_histogram_count", "Values in a histogram", ["run", "histogram", "window"])
    for window, histograms, keys in (("run", summary.get("histograms") or {}, RUN_QUANTILES),
                                     ("second", telemetry.get("histograms") or {}, SECOND_QUANTILES)):
        for name, figures in histograms.items():
            counts.add_metric([run_id, name, window], figures.get("count", 0))
            for quantile, key in keys:
                quantiles.add_metric([run_id, name, quantile, window], figures.get(key, 0))
    error_rate = _gauge("stressgrid_error_rate_percent", "Errors over responses + receives + errors, "
                                                         "whole run so far", ["run"])
    error_rate.add_metric([run_id], summary.get("error_rate_percent", 0))
    thresholds = _gauge("stressgrid_threshold_passing", "1 while a threshold passes, 0 while it fails",
                        ["run", "threshold"])
    for threshold in (run.get("verdict") or {}).get("thresholds") or ():
        if threshold["state"] in THRESHOLD_PASSING:
            thresholds.add_metric([run_id, threshold["expr"]], THRESHOLD_PASSING[threshold["state"]])
    return result + [totals, sustain, second, quantiles, counts, error_rate, thresholds]


class _StateCollector:
    def __init__(self, state):
        self.state = state

    def collect(self):
        return families(self.state)


def _from_loopback():
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@blueprint.get("/metrics")
def metrics():
    """The Prometheus text exposition of the latest published state."""
    if not (current_app.config.get("STRESSGRID_METRICS_OPEN_ON_LOOPBACK") and _from_loopback()):
        refused = check_token()
        if refused is not None:
            return refused
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(current_app.extensions["stressgrid"].state() or {}))
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4; charset=utf-8")
