"""The whole-run summary and its rate window, with time as a parameter."""
import pytest

from stressgrid._core.metrics import Histogram
from coordinator_app.summary import RateWindow, summarize
from coordinator_app.verdict import RunJudge
from stressgrid.plan.thresholds import parse

pytestmark = pytest.mark.unit


def test_rates_are_over_the_sustain_phase_once_it_began():
    window = RateWindow(started=100.0)
    assert window.span(104.0, {"response_count": 40}) == ("run", 4.0, {"response_count": 40})
    window.enter(110.0, {"response_count": 100})
    assert window.span(115.0, {"response_count": 600}) == ("sustain", 5.0, {"response_count": 500})
    window.leave(120.0, {"response_count": 1100})
    window.leave(125.0, {"response_count": 9999})  # a second end changes nothing
    assert window.span(130.0, {"response_count": 1200}) == ("sustain", 10.0, {"response_count": 1000})


def test_an_arrival_rate_runs_rates_count_what_arrives_after_its_sustain_phase():
    # 200 iterations a second for 20 s: when the phase ends, the last 1.3 s are still on
    # their way; they arrive in the ramp-down step and count for the phase, over its 20 s.
    window = RateWindow(started=0.0, open_model=True)
    window.enter(0.0, {})
    window.leave(20.0, {"iteration_count": 3740})
    assert window.span(21.0, {"iteration_count": 3990}) == ("sustain", 20.0, {"iteration_count": 3990})
    window.leave(22.0, {"iteration_count": 4000})  # a second end changes nothing
    assert window.span(27.0, {"iteration_count": 4000}) == ("sustain", 20.0, {"iteration_count": 4000})


def test_the_summary_holds_exact_histogram_figures_totals_rates_and_peaks():
    histogram = Histogram("headers_us")
    histogram.record_many(range(1, 10001))
    window = RateWindow(started=0.0)
    window.enter(10.0, {"response_count": 0})
    window.leave(30.0, {"response_count": 2000, "timeout_error_count": 10})
    summary = summarize({"headers_us": histogram, "empty_us": Histogram("empty_us")},
                        {"response_count": 2500, "timeout_error_count": 10},
                        {"response_per_second": 180.0}, window.span(40.0, {}))
    figures = histogram.summary()
    assert summary["histograms"] == {"headers_us": {
        "count": 10000, "mean": round(figures["mean"], 3), "min": 1, "p50": figures["median"],
        "p90": figures["pc90"], "p99": figures["pc99"], "p99_9": figures["pc99_9"],
        "max": figures["max"], "stddev": round(figures["stddev"], 3)}}
    assert summary["counters"] == {"response": {"total": 2500, "rate": 100.0, "peak": 180.0},
                                   "timeout_error": {"total": 10, "rate": 0.5, "peak": 0}}
    assert summary["rate_window"] == {"phase": "sustain", "seconds": 20.0}
    assert summary["error_rate_percent"] == round(100 * 10 / 2510, 4)


def test_abort_on_fail_counts_from_the_sustain_phase_on():
    judge = RunJudge([parse("headers_us max < 1ms", abort_on_fail=True), parse("response count > 0")], 0.0)
    histogram = Histogram("headers_us")
    histogram.record(5000)
    judge.judge(1.0, {"headers_us": histogram}, {}, {})
    assert [r["state"] for r in judge.verdict.results] == ["failing", "failing"]
    assert judge.abort_reason("rampup") is None
    assert judge.abort_reason("sustain") == "threshold failed: headers_us max < 1ms"
    judge.judge(2.0, {"headers_us": histogram}, {"response_count": 3}, {}, final=True)
    assert judge.verdict.to_dict() == {"outcome": "failed", "final": True, "thresholds": [
        {"expr": "headers_us max < 1ms", "abort_on_fail": True, "state": "failed", "actual": 5003},
        {"expr": "response count > 0", "abort_on_fail": False, "state": "passed", "actual": 3}]}


def test_checks_are_summed_with_their_pass_percent_and_status_classes_gate_thresholds():
    totals = {"check_login_pass_count": 197, "check_login_fail_count": 3, "check_cart_fail_count": 2,
              "check_pass_count": 5, "response_count": 10, "response_5xx_count": 1}
    summary = summarize({}, totals, {}, ("sustain", 1.0, totals))
    assert summary["checks"] == {"cart": {"passed": 0, "failed": 2, "pass_percent": 0.0},
                                 "login": {"passed": 197, "failed": 3, "pass_percent": 98.5}}
    judge = RunJudge([parse("response_5xx count == 0"), parse("check_login_fail count < 5"),
                      parse("response_4xx count == 0")], 0.0)
    judge.judge(1.0, {}, totals, {}, final=True)
    states = [r["state"] for r in judge.verdict.results]
    assert states == ["failed", "passed", "passed"]   # an absent status class counts 0
