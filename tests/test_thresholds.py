"""Threshold expressions: parsing with the column of each mistake, and evaluation on real
histograms."""
import pytest

from stressgrid._core.metrics import Histogram
from stressgrid.plan import Plan, PlanError
from stressgrid.plan.thresholds import ThresholdError, error_rate_percent, observe, parse

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("expr, kind, key, stat, percentile, op, value", [
    ("headers_us p99 < 200ms", "histogram", "headers_us", "percentile", 99.0, "<", 200_000),
    ("get_us p99.9 <= 1s", "histogram", "get_us", "percentile", 99.9, "<=", 1_000_000),
    ("conn_us mean>=850us", "histogram", "conn_us", "mean", 0.0, ">=", 850),
    ("body_us max != 5", "histogram", "body_us", "max", 0.0, "!=", 5),
    ("cpu_percent max < 80%", "histogram", "cpu_percent", "max", 0.0, "<", 80),
    ("error_rate < 1%", "error_rate", "error_rate", "value", 0.0, "<", 1),
    ("error_rate == 0", "error_rate", "error_rate", "value", 0.0, "==", 0),
    ("response_per_second mean > 900", "counter", "response", "rate", 0.0, ">", 900),
    ("response_per_second max > 900", "counter", "response", "peak", 0.0, ">", 900),
    ("response count >= 10", "counter", "response", "count", 0.0, ">=", 10),
    ("response_count rate > 1.5", "counter", "response", "rate", 0.0, ">", 1.5),
    ("timeout_error count == 0", "counter", "timeout_error", "count", 0.0, "==", 0),
    # A script's key may start with a digit (inc_counter("2fa"), start_timing("2fa")).
    ("2fa count > 0", "counter", "2fa", "count", 0.0, ">", 0),
    ("404_count rate < 1", "counter", "404", "rate", 0.0, "<", 1),
    ("404 peak < 1", "counter", "404", "peak", 0.0, "<", 1),
    ("2fa_us p99 < 200ms", "histogram", "2fa_us", "percentile", 99.0, "<", 200_000),
])
def test_expressions_parse_to_their_parts(expr, kind, key, stat, percentile, op, value):
    threshold = parse(expr)
    assert (threshold.kind, threshold.key, threshold.stat, threshold.percentile, threshold.op) \
        == (kind, key, stat, percentile, op)
    assert threshold.value == pytest.approx(value)


@pytest.mark.parametrize("expr, column, words", [
    ("headers_us p99 200ms", 16, "operator"),
    ("headers_us p99 < fast", 18, "number"),
    ("headers_us p99 < 200kg", 21, "us, ms or s"),
    ("headers_us median < 1ms", 12, "histogram statistic"),
    ("headers_us < 1ms", 12, "statistic"),
    ("response p99 < 5", 10, "counter takes count, rate or peak (histograms"),
    ("response count < 5ms", 19, "no unit"),
    ("error_rate mean < 1%", 12, "no statistic"),
    ("error_rate < 1% and more", 17, "after the value"),
    ("Headers_us p99 < 1ms", 1, "metric name"),
    ("9.5lives count < 1", 1, "metric name"),
    ("headers_us p99 < 1ms $", 22, "unexpected '$'"),
    ("headers_us p99 <", 17, "number"),
    ("response_per_second count > 1", 21, "mean"),
    ("headers_us p99 < baseline 1.1", 27, "'* <factor>' after baseline"),
    ("headers_us p99 < baseline *", 28, "a factor after '*'"),
    ("headers_us p99 < baseline * x", 29, "a factor after '*'"),
    ("headers_us p99 < baseline * 0", 29, "above 0"),
    ("headers_us p99 < baseline * 1.1ms", 32, "after the factor"),
    ("headers_us p99 < 2 * baseline", 20, "after the value"),
])
def test_a_bad_expression_names_its_column(expr, column, words):
    with pytest.raises(ThresholdError) as caught:
        parse(expr)
    assert caught.value.column == column, caught.value
    assert words in caught.value.message


def test_histogram_statistics_come_from_the_merged_histogram():
    histogram = Histogram("headers_us")
    histogram.record_many(range(1, 1001))
    histograms = {"headers_us": histogram}
    assert observe(parse("headers_us p50 < 1ms"), histograms, {}, 0) == \
        histogram.value_at_percentile(50)
    assert observe(parse("headers_us max < 1ms"), histograms, {}, 0) == histogram.max
    assert parse("headers_us p99 < 1ms").passes(observe(parse("headers_us p99 < 1ms"), histograms, {}, 0))
    assert not parse("headers_us p99 < 900us").passes(
        observe(parse("headers_us p99 < 900us"), histograms, {}, 0))
    # A histogram without values has no data, which never passes.
    assert observe(parse("conn_us p99 < 1s"), histograms, {}, 0) is None
    assert not parse("conn_us p99 < 1s").passes(None)


def test_counters_absent_count_zero_and_rates_come_from_the_summary():
    counters = {"response": {"total": 50, "rate": 10.0, "peak": 14.0}}
    assert observe(parse("response count == 50"), {}, counters, 0) == 50
    assert observe(parse("response rate > 9"), {}, counters, 0) == 10.0
    assert observe(parse("response_per_second max > 9"), {}, counters, 0) == 14.0
    assert observe(parse("closed_error count == 0"), {}, counters, 0) == 0


def test_error_rate_is_errors_over_responses_receives_and_errors():
    assert error_rate_percent({"response": 90, "receive": 5, "timeout_error": 3, "closed_error": 2,
                               "network_tcp_retransmit_error": 500, "conn": 99}) == 5.0
    assert error_rate_percent({}) == 0.0


def _plan(thresholds):
    return {"name": "t", "addresses": [{"host": "127.0.0.1", "port": 1, "protocol": "tcp"}],
            "blocks": [{"script": "pass", "size": 1}], "thresholds": thresholds}


def test_the_plan_takes_strings_and_objects_and_names_a_bad_one():
    plan = Plan.from_dict(_plan(["error_rate < 1%",
                                 {"expr": "headers_us p99 < 200ms", "abort_on_fail": True}]))
    assert [t.abort_on_fail for t in plan.thresholds] == [False, True]
    assert plan.to_dict()["thresholds"] == ["error_rate < 1%",
                                            {"expr": "headers_us p99 < 200ms", "abort_on_fail": True}]
    with pytest.raises(PlanError) as caught:
        Plan.from_dict(_plan(["error_rate < 1%", {"expr": "headers_us p99 <"}]))
    assert caught.value.to_dict() == {"field": "thresholds[1].expr", "column": 17,
                                      "message": "column 17: expected a number or 'baseline'"}
    for bad, field in (("nope", "thresholds"), ([{"expr": "error_rate < 1", "x": 1}], "thresholds[0].x"),
                       ([{"expr": "error_rate < 1", "abort_on_fail": 1}], "thresholds[0].abort_on_fail"),
                       ([5], "thresholds[0]")):
        with pytest.raises(PlanError) as caught:
            Plan.from_dict(_plan(bad))
        assert caught.value.field == field


@pytest.mark.parametrize("expr, op, factor", [
    ("headers_us p99 < baseline * 1.10", "<", 1.10),
    ("response rate>baseline*0.95", ">", 0.95),
    ("error_rate <= baseline", "<=", 1.0),
])
def test_a_baseline_threshold_has_its_factor_and_no_limit_until_given_the_baselines_value(expr, op, factor):
    threshold = parse(expr)
    assert (threshold.op, threshold.baseline_factor, threshold.value) == (op, pytest.approx(factor), None)
    assert threshold.needs_baseline
    limited = threshold.against(200.0)
    assert not limited.needs_baseline
    assert (limited.baseline_value, limited.value) == (200.0, pytest.approx(200.0 * factor))
    assert limited.expr == threshold.expr and limited.to_dict() == threshold.to_dict()


def test_a_plan_with_baseline_thresholds_needs_a_baseline_which_it_keeps():
    with pytest.raises(PlanError) as caught:
        Plan.from_dict(_plan(["error_rate < 1%", "headers_us p99 < baseline * 1.1"]))
    assert caught.value.field == "baseline" and "thresholds[1]" in caught.value.message
    plan = Plan.from_dict({**_plan(["headers_us p99 < baseline * 1.1"]), "baseline": " last-passed "})
    assert plan.baseline == "last-passed" and plan.to_dict()["baseline"] == "last-passed"
    assert "baseline" not in Plan.from_dict(_plan([])).to_dict()
    for bad in ("", 5, "x" * 300):
        with pytest.raises(PlanError) as caught:
            Plan.from_dict({**_plan([]), "baseline": bad})
        assert caught.value.field == "baseline"
