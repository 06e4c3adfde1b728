"""A run's verdict: its thresholds checked live each second and once more at the end.

``Verdict`` is sans-IO: the coordinator hands it the whole-run histograms and
summary (``summary.summarize``) each second and at the end of the run. Live
states are ``passing`` or ``failing`` (``no_data`` while a histogram has no
value yet); final states ``passed`` or ``failed`` (a histogram without any
value fails). A threshold with ``abort_on_fail`` that is failing once the
sustain phase has begun makes ``abort_reason`` say why the run should end.
"""
import enum

from stressgrid.plan.constants import RAMPUP, SUSTAIN
from stressgrid.plan.thresholds import observe

from .summary import RateWindow, summarize


class ThresholdState(str, enum.Enum):
    PASSING = "passing"
    FAILING = "failing"
    NO_DATA = "no_data"
    PASSED = "passed"
    FAILED = "failed"


class Outcome(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"


class Verdict:
    """The states of one run's thresholds."""

    def __init__(self, thresholds):
        self.thresholds = tuple(thresholds)
        unresolved = [t.expr for t in self.thresholds if t.needs_baseline]
        if unresolved:
            raise ValueError(f"thresholds without their baseline's value: {', '.join(unresolved)}")
        self.results = [self._result(t, None, ThresholdState.NO_DATA) for t in self.thresholds]
        self.final = False

    @staticmethod
    def _result(threshold, actual, state):
        result = {"expr": threshold.expr, "abort_on_fail": threshold.abort_on_fail,
                  "state": state.value, "actual": _round(actual)}
        if threshold.baseline_factor is not None:  # what the baseline measured, and the limit it gave
            result.update(baseline=_round(threshold.baseline_value), limit=_round(threshold.value))
        return result

    def _evaluate(self, histograms, summary, final):
        counters = summary["counters"]
        error_rate = summary["error_rate_percent"]
        results = []
        for threshold in self.thresholds:
            actual = observe(threshold, histograms, counters, error_rate)
            if actual is None and not final:
                state = ThresholdState.NO_DATA
            elif threshold.passes(actual):
                state = ThresholdState.PASSED if final else ThresholdState.PASSING
            else:
                state = ThresholdState.FAILED if final else ThresholdState.FAILING
            results.append(self._result(threshold, actual, state))
        self.results = results
        return results

    def update(self, histograms, summary):
        """Check every threshold on the data so far; returns the live results."""
        return self._evaluate(histograms, summary, final=False)

    def finish(self, histograms, summary):
        """Check every threshold on the whole run's data; returns the final results."""
        self.final = True
        return self._evaluate(histograms, summary, final=True)

    def abort_reason(self):
        """Why the run should end now (an ``abort_on_fail`` threshold failing), or ``None``."""
        failing = [r["expr"] for r in self.results
                   if r["abort_on_fail"] and r["state"] == ThresholdState.FAILING.value]
        return f"threshold failed: {', '.join(failing)}" if failing else None

    @property
    def outcome(self):
        """``passed``/``failed`` once any threshold is set, else ``None``."""
        if not self.thresholds:
            return None
        failed = (ThresholdState.FAILED.value, ThresholdState.FAILING.value)
        return (Outcome.FAILED if any(r["state"] in failed for r in self.results)
                else Outcome.PASSED).value

    def to_dict(self):
        """``{"outcome": ..., "final": bool, "thresholds": [results]}``."""
        return {"outcome": self.outcome, "final": self.final, "thresholds": list(self.results)}


def _round(value):
    return round(value, 3) if isinstance(value, float) else value


class RunJudge:
    """Everything a run's verdict needs, fed by the coordinator: the sustain window, the
    whole-run summary and the thresholds' states (``judge`` each second and at the end)."""

    def __init__(self, thresholds, started, open_model=False):
        self.rates = RateWindow(started, open_model)
        self.verdict = Verdict(thresholds)
        self.summary = None

    def phase_changed(self, now, old, new, totals):
        """The run went from phase ``old`` to ``new`` at ``now`` with counter ``totals``."""
        if old == SUSTAIN:
            self.rates.leave(now, totals)
        if new == SUSTAIN:
            self.rates.enter(now, totals)

    def judge(self, now, histograms, totals, maxima, final=False):
        """Summarize the run so far (``final``: the whole run) and check its thresholds."""
        if final:
            self.rates.leave(now, totals)
        self.summary = summarize(histograms, totals, maxima, self.rates.span(now, totals))
        if final:
            self.verdict.finish(histograms, self.summary)
        else:
            self.verdict.update(histograms, self.summary)
        return self.summary

    def abort_reason(self, phase):
        """Why the run should end now; ``abort_on_fail`` counts from the sustain phase on."""
        return None if phase == RAMPUP else self.verdict.abort_reason()
