"""A run compared with a baseline: which way each figure is worse, changes from zero, and
the tables every view draws."""
import pytest

from coordinator_app.summary import RateWindow, summarize
from stressgrid._core.metrics import Histogram
from stressgrid.comparison import change_percent, compare, comparison_tables, counts_trouble

pytestmark = pytest.mark.unit


def summary_of(latencies, totals, seconds=10.0):
    """A real whole-run summary: ``headers_us`` of ``latencies``, counter ``totals`` over
    ``seconds`` of a whole run."""
    histogram = Histogram("headers_us")
    histogram.record_many(latencies)
    window = RateWindow(started=0.0)
    return summarize({"headers_us": histogram}, totals, {}, window.span(seconds, totals))


def test_changes_are_percent_of_the_baseline_and_none_from_zero():
    assert change_percent(110, 100) == 10.0
    assert change_percent(50, 200) == -75.0
    assert change_percent(0, 0) == 0.0
    assert change_percent(3, 0) is None


@pytest.mark.parametrize("name, trouble", [
    ("timeout_error", True), ("closed_error_count", True), ("check_json_ok_fail", True),
    ("response_5xx", True), ("request_index_response_4xx", True), ("dropped_iteration", True),
    ("response", False), ("response_2xx", False), ("check_json_ok_pass", False), ("network_rx_bytes", False),
])
def test_which_counters_count_trouble(name, trouble):
    assert counts_trouble(name) is trouble


def test_slower_latency_fewer_responses_and_new_errors_are_worse():
    baseline = summary_of([1000] * 100, {"response_count": 1000})
    run = summary_of([1000] * 90 + [5000] * 10, {"response_count": 800, "timeout_error_count": 5})
    comparison = compare(run, baseline)
    p99 = comparison["histograms"]["headers_us"]["p99"]
    assert p99["baseline"] < p99["run"] and p99["worse"]
    assert p99["change_percent"] == change_percent(p99["run"], p99["baseline"]) > 10
    assert not comparison["histograms"]["headers_us"]["p50"]["worse"]  # unchanged
    response = comparison["counters"]["response"]
    assert response["rate"] == {"run": 80.0, "baseline": 100.0, "change_percent": -20.0, "worse": True}
    assert response["total"]["run"] == 800
    # An error counter the baseline lacks counts 0 there: a change from nothing, worse.
    errors = comparison["counters"]["timeout_error"]["rate"]
    assert errors["baseline"] == 0 and errors["change_percent"] is None and errors["worse"]
    assert comparison["error_rate"]["worse"]
    # p50 and p90 stay at 1 ms: 90 of the 100 values are. What is new comes first, then the
    # largest changes (p99, p99.9 and max +400%, the mean +40%, the responses -20%).
    assert comparison["worse"] == ["timeout_error rate", "timeout_error total", "error rate", "headers_us p99",
                                   "headers_us p99.9", "headers_us max", "headers_us mean", "response rate"]


def test_the_reverse_is_better_and_a_tolerance_hides_small_moves():
    slow = summary_of([1000] * 90 + [5000] * 10, {"response_count": 800, "timeout_error_count": 5})
    fast = summary_of([1000] * 100, {"response_count": 1000})
    assert compare(fast, slow)["worse"] == []
    near = summary_of([1000] * 100, {"response_count": 850})
    assert compare(near, fast)["worse"] == ["response rate"]
    assert compare(near, fast, tolerance_percent=20.0)["worse"] == []


def test_histograms_in_one_run_only_are_listed_not_compared():
    baseline = summary_of([1000], {"response_count": 1})
    run = summary_of([1000], {"response_count": 1})
    histogram = Histogram("conn_us")
    histogram.record(10)
    run["histograms"]["conn_us"] = summarize({"conn_us": histogram}, {}, {}, ("run", 1.0, {}))["histograms"]["conn_us"]
    comparison = compare(run, baseline)
    assert list(comparison["histograms"]) == ["headers_us"]
    assert comparison["only_in_run"] == ["conn_us"] and comparison["only_in_baseline"] == []


def test_the_tables_mark_the_rows_that_got_worse():
    baseline = summary_of([1000] * 100, {"response_count": 1000})
    run = summary_of([2000] * 100, {"response_count": 1000, "timeout_error_count": 5})
    histograms, counters = comparison_tables(compare(run, baseline), "base-20261207000000", micro="us")
    assert histograms.columns == ("histogram", "p50", "p90", "p99", "p99.9", "mean", "max")
    (row,) = histograms.rows
    assert row[0] == "headers_us" and row[3].endswith("%") and row[3].split()[-1].startswith("+")
    assert histograms.warnings == {"headers_us"} and "base-20261207000000" in histograms.note
    rows = {row[0]: row for row in counters.rows}
    assert rows["timeout_error"][3] == "new" and rows["response"][3] == "+0.0%"
    assert counters.warnings == {"timeout_error", "error rate"}
    assert rows["error rate"][1:4] == ("0.00%", f"{run['error_rate_percent']:.2f}%", "new")
