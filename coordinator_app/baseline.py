"""The baseline a run is compared with: found in the history, and its thresholds' limits.

A plan's ``baseline`` names an earlier run (its id, or ``last-passed``: the
newest run whose result is passed). ``with_baseline`` checks at submit that the
run exists, has ended with a summary and holds every figure the plan's
baseline thresholds compare (``headers_us p99 < baseline * 1.10``), and returns
the plan with those limits set and the baseline named by its id, so the run's
stored plan says which run it was measured against. Problems are
``PlanError`` naming ``baseline`` or the threshold.
"""
import dataclasses

from stressgrid.plan import PlanError
from stressgrid.plan.model import LAST_PASSED
from stressgrid.plan.thresholds import observe


class BaselineMissing(LookupError):
    """No run answers the reference (an unknown id, or no passed run yet)."""


def find(store, reference, before=None):
    """The stored run ``reference`` names (a run id or ``last-passed``: the newest passed
    run, created before run ``before`` when given), with its plan and summary."""
    if reference == LAST_PASSED:
        run = store.last_passed(before)
        if run is None:
            raise BaselineMissing("no run has passed yet" if before is None
                                  else f"no run passed before {before}")
        return run
    run = store.get(reference)
    if run is None:
        raise BaselineMissing(f"no run {reference}")
    return run


def figures(run):
    """The whole-run summary numbers of a stored run (``summarize``'s dict), or ``None``
    while it has none (in progress, or ended before its summary was written)."""
    return (run.get("summary") or {}).get("summary")


def with_baseline(plan, store):
    """``plan`` with its baseline resolved to a run id and its baseline thresholds' limits set;
    a plan without a baseline comes back as it is. Raises ``PlanError``."""
    if plan.baseline is None:
        return plan
    try:
        run = find(store, plan.baseline)
    except BaselineMissing as exc:
        raise PlanError("baseline", f"{exc}: name a finished run of the history, or {LAST_PASSED}") from None
    numbers = figures(run)
    if numbers is None:
        raise PlanError("baseline", f"run {run['id']} has no summary to compare with (it is "
                                    f"{run['state']})")
    histograms = store.histograms(run["id"]) if any(t.baseline_factor is not None for t in plan.thresholds) \
        else None
    thresholds = []
    for index, threshold in enumerate(plan.thresholds):
        if threshold.baseline_factor is not None:
            value = _measured(threshold, histograms or {}, numbers)
            if value is None:
                what = (f"counter {threshold.key}" if threshold.kind == "counter"
                        else f"values of {threshold.key}" if histograms is not None
                        else "whole-run histograms (it was recorded before they were kept)")
                raise PlanError(f"thresholds[{index}]", f"{threshold.expr}: the baseline run {run['id']} "
                                                        f"has no {what} to compare with")
            threshold = threshold.against(value)
        thresholds.append(threshold)
    return dataclasses.replace(plan, thresholds=tuple(thresholds), baseline=run["id"])


def _measured(threshold, histograms, numbers):
    """What the baseline run measured for ``threshold``, or ``None`` when it has no such
    figure (a histogram without values, a counter it never counted)."""
    counters = numbers.get("counters") or {}
    if threshold.kind == "counter" and threshold.key not in counters:
        return None
    return observe(threshold, histograms, counters, numbers.get("error_rate_percent", 0.0))

