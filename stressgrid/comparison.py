"""A run compared with a baseline run: every figure side by side, and which got worse.

``compare`` takes two whole-run summaries (``summarize``'s dicts, as
``summary.json`` holds them) and returns every histogram percentile and every
counter's rate of both runs with the change in percent, each marked ``worse``
when it moved the bad way by more than the tolerance:

- a histogram figure (latency, CPU, loop lag) is worse when it grew;
- a counter that counts trouble (errors, failed checks, 4xx and 5xx
  responses, dropped iterations) is worse when its rate grew, and its total is
  worse when the baseline had none of it;
- any other counter (responses, receives, bytes) is worse when its rate fell;
- the error rate is worse when it grew.

``comparison_tables`` lays the result out as ``SummaryTable`` rows, which the
CLI, the website and the HTML report draw as they draw the summary's tables.
Nothing here does I/O.
"""
from stressgrid.formatting import format_rate
from stressgrid.metrics import is_error
from stressgrid.plan.arrivals import DROPPED_ITERATION_COUNTER
from stressgrid.plan.constants import CHECK_FAIL_SUFFIX, CHECK_PREFIX, WARNING_STATUS_COUNTERS
from stressgrid.summary_tables import SummaryTable, format_metric

DEFAULT_TOLERANCE_PERCENT = 10.0
# (title, the summary's key) of the histogram figures compared, in the tables' order.
COMPARED_STATS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"), ("mean", "mean"),
                  ("max", "max"))
ERROR_RATE = "error rate"
_DROPPED = DROPPED_ITERATION_COUNTER[:-len("_count")]
_TROUBLE_STATUSES = tuple(f"_{status.split('_')[-1]}" for status in WARNING_STATUS_COUNTERS)


def counts_trouble(counter):
    """True for a counter whose growth is bad news (by its base name)."""
    return (is_error(counter) or counter == _DROPPED or counter in WARNING_STATUS_COUNTERS
            or (counter.startswith(CHECK_PREFIX) and counter.endswith(CHECK_FAIL_SUFFIX))
            or counter.endswith(_TROUBLE_STATUSES))


def change_percent(run, baseline):
    """``100 * (run - baseline) / baseline`` rounded to 2 decimals; ``None`` when the
    baseline is 0 and the run is not (no finite change), 0 when both are."""
    if not baseline:
        return 0.0 if not run else None
    return round(100.0 * (run - baseline) / baseline, 2)


def figure(run, baseline, higher_is_worse, tolerance_percent):
    """One compared figure: ``{"run", "baseline", "change_percent", "worse"}``."""
    run = run or 0
    baseline = baseline or 0
    change = change_percent(run, baseline)
    if change is None:
        worse = higher_is_worse
    elif higher_is_worse:
        worse = change > tolerance_percent
    else:
        worse = change < -tolerance_percent
    return {"run": run, "baseline": baseline, "change_percent": change, "worse": worse}


def compare(run, baseline, tolerance_percent=DEFAULT_TOLERANCE_PERCENT):
    """Every figure of summary ``run`` against summary ``baseline``.

    Returns ``{"tolerance_percent", "histograms": {name: {stat: figure}},
    "counters": {name: {"rate": figure, "total": figure}}, "error_rate": figure,
    "worse": ["timeout_error total", "headers_us p99", "response rate", ...], "only_in_run": [...],
    "only_in_baseline": [...]}``, ``worse`` naming what is new first, then the largest
    changes first. Histograms are compared where both runs have
    values; a counter one run lacks counts 0 there (as thresholds count it).
    """
    run_histograms = run.get("histograms") or {}
    base_histograms = baseline.get("histograms") or {}
    histograms, worse = {}, []
    for name in sorted(set(run_histograms) & set(base_histograms)):
        stats = {title: figure(run_histograms[name].get(key), base_histograms[name].get(key), True,
                               tolerance_percent)
                 for title, key in COMPARED_STATS}
        histograms[name] = stats
        worse += [(f"{name} {title}", compared) for title, compared in stats.items() if compared["worse"]]
    run_counters = run.get("counters") or {}
    base_counters = baseline.get("counters") or {}
    counters = {}
    for name in sorted(set(run_counters) | set(base_counters)):
        ours, theirs = run_counters.get(name) or {}, base_counters.get(name) or {}
        trouble = counts_trouble(name)
        rate = figure(ours.get("rate"), theirs.get("rate"), trouble, tolerance_percent)
        total = figure(ours.get("total"), theirs.get("total"), trouble, tolerance_percent)
        # Rates are over the sustain phase; trouble the baseline never had is news wherever it came.
        total["worse"] = trouble and total["change_percent"] is None
        counters[name] = {"rate": rate, "total": total}
        worse += [(f"{name} {key}", compared) for key, compared in (("rate", rate), ("total", total))
                  if compared["worse"]]
    error_rate = figure(run.get("error_rate_percent"), baseline.get("error_rate_percent"), True,
                        tolerance_percent)
    if error_rate["worse"]:
        worse.append((ERROR_RATE, error_rate))
    return {"tolerance_percent": tolerance_percent, "histograms": histograms, "counters": counters,
            "error_rate": error_rate, "worse": [name for name, _ in sorted(worse, key=_severity)],
            "only_in_run": sorted(set(run_histograms) - set(base_histograms)),
            "only_in_baseline": sorted(set(base_histograms) - set(run_histograms))}


def _severity(item):
    """The order of the worse figures: what is new first, then the largest changes (a stable
    sort keeps the tables' order among equals)."""
    change = item[1]["change_percent"]
    return (0, 0.0) if change is None else (1, -abs(change))


def _change(compared):
    change = compared["change_percent"]
    return "new" if change is None else f"{change:+.1f}%"


def comparison_tables(comparison, baseline_id, micro="us"):
    """The comparison as two tables: each histogram's figures (this run's value and the
    change), and each counter's rate and total of both runs with the change."""
    tolerance = comparison["tolerance_percent"]
    rows, warnings = [], set()
    for name, stats in comparison["histograms"].items():
        rows.append((name, *(f"{format_metric(name, stats[title]['run'], micro)} {_change(stats[title])}"
                             for title, _ in COMPARED_STATS)))
        if any(compared["worse"] for compared in stats.values()):
            warnings.add(name)
    note = f"this run's value and its change from run {baseline_id}; marked: worse by more than {tolerance:g}%"
    skipped = comparison["only_in_run"] + comparison["only_in_baseline"]
    if skipped:
        note += f"; in one run only: {', '.join(skipped)}"
    histograms = SummaryTable("comparison_histograms", ("histogram", *(title for title, _ in COMPARED_STATS)),
                              tuple(rows), frozenset(warnings), note)
    rows, warnings = [], set()
    for name, counter in comparison["counters"].items():
        rate, total = counter["rate"], counter["total"]
        rows.append((name, format_rate(rate["baseline"]), format_rate(rate["run"]), _change(rate),
                     format_metric(name, total["baseline"]), format_metric(name, total["run"])))
        if rate["worse"] or total["worse"]:
            warnings.add(name)
    error_rate = comparison["error_rate"]
    rows.append((ERROR_RATE, f"{error_rate['baseline']:.2f}%", f"{error_rate['run']:.2f}%", _change(error_rate),
                 "", ""))
    if error_rate["worse"]:
        warnings.add(ERROR_RATE)
    counters = SummaryTable("comparison_counters",
                            ("counter", "baseline/s", "this run/s", "change", "baseline total", "this run total"),
                            tuple(rows), frozenset(warnings),
                            "errors, failed checks, 4xx/5xx and dropped iterations are worse when they grow; "
                            "other counters when they fall")
    return [histograms, counters]
