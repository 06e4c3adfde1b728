"""The tables of a run's summary, which the terminal, the HTML report and the website draw."""
import ast
import pathlib

import pytest

from coordinator_app.summary import summarize
from stressgrid._core.metrics import Histogram
from stressgrid.summary_tables import format_metric, summary_tables
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def histogram(name, *values):
    result = Histogram(name)
    for value in values:
        result.record(value)
    return result


def tables_of(histograms, totals, seconds=2.0):
    summary = summarize({h.name: h for h in histograms}, totals, {}, ("sustain", seconds, totals))
    return {table.kind: table for table in summary_tables(summary)}


def names(table):
    return [row[0] for row in table.rows]


def test_each_metric_is_in_one_table_and_the_generators_own_in_none():
    tables = tables_of(
        [histogram("headers_us", 100, 200), histogram("cpu_percent", 40), histogram("worker_loop_lag_us", 5),
         histogram("request_login_headers_us", 300), histogram("request_login_body_us", 10)],
        {"response_count": 2, "request_login_response_count": 1, "check_ok_pass_count": 1,
         "network_rx_bytes_count": 999, "conn_refused_error_count": 3, "iteration_count": 7})
    assert sorted(tables) == ["checks", "counters", "histograms", "requests"]
    assert names(tables["histograms"]) == ["headers_us"]
    assert names(tables["requests"]) == ["login"]
    assert names(tables["counters"]) == ["iteration", "response"]  # not bytes, checks, requests, errors
    assert names(tables["checks"]) == ["ok"]


def test_cells_are_in_their_metrics_units_and_rates_over_the_window():
    tables = tables_of([histogram("headers_us", *range(1, 1001)), histogram("size_bytes", 2_500_000)],
                       {"response_count": 12_345}, seconds=10.0)
    assert tables["histograms"].rows[0] == ("headers_us", "1,000", "500us", "500us", "900us", "990us", "999us",
                                           "1.0ms")
    assert tables["histograms"].rows[1][2] == "2.5MB"
    assert tables["counters"].rows == (("response", "12,345", "1,234", "0"),)
    assert tables["counters"].note == "rate/s: the mean over the sustain phase, 10.0 s; peak/s: the busiest second"
    assert [format_metric("cpu_percent", 41.6), format_metric("x", 2.5), format_metric("x", None)] == \
        ["42%", "2.5", "-"]


def test_a_named_requests_intended_twin_adds_its_p99_column_only_when_measured():
    plain = tables_of([histogram("request_a_headers_us", 1000)], {"request_a_response_count": 1})
    assert plain["requests"].columns == ("request", "count", "rate/s", "p50", "p90", "p99", "max", "4xx", "5xx")
    twinned = tables_of([histogram("request_a_headers_us", 1000), histogram("request_a_intended_headers_us", 250_000),
                         histogram("request_b_headers_us", 1000)],
                        {"request_a_response_count": 1, "request_b_response_count": 1})
    requests = twinned["requests"]
    assert requests.columns[7] == "intended p99"
    assert [row[7] for row in requests.rows] == ["250ms", "-"]
    assert "intended p99" in requests.note


def test_error_statuses_and_failed_checks_are_the_highlighted_rows():
    tables = tables_of([histogram("request_a_headers_us", 1000)],
                       {"request_a_response_count": 2, "request_a_response_5xx_count": 1, "response_count": 2,
                        "response_5xx_count": 1, "response_2xx_count": 1, "check_up_pass_count": 1,
                        "check_up_fail_count": 1, "check_fine_pass_count": 1})
    assert tables["requests"].warnings == {"a"}
    assert tables["counters"].warnings == {"response_5xx"}
    assert "warnings, not errors" in tables["counters"].note
    assert tables["checks"].warnings == {"up"}
    assert tables["checks"].rows == (("fine", "100.00%", "1", "1"), ("up", "50.00%", "1", "2"))


def test_an_empty_summary_has_no_tables():
    assert summary_tables({}) == []


def test_the_coordinator_imports_nothing_from_the_command_line_client():
    for path in sorted((ROOT / "coordinator_app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [m for m in modules if m == "stressgrid.cli" or m.startswith("stressgrid.cli.")], \
                pathlib.Path(path).relative_to(ROOT)
