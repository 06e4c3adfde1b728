"""The live view's table of named requests: a row per name with this second's rate, headers_us
percentiles and error statuses (as warnings), from the telemetry the coordinator sends."""
import re

from tests.web.support import expect, serve_state


def named_state(state):
    state["run"] = state["run"] or {"id": "named-1", "name": "named", "state": "sustain", "devices": 10,
                                    "elapsed_ms": 1000, "remaining_ms": 9000,
                                    "started_at": state["telemetry"].get("time", 0)}
    telemetry = state["telemetry"]
    telemetry["counters"] = {
        "response_count": {"per_second": 30.0, "total": 300},
        "request_login_response_count": {"per_second": 10.0, "total": 100},
        "request_login_response_2xx_count": {"per_second": 8.0, "total": 98},
        "request_login_response_5xx_count": {"per_second": 2.0, "total": 2},
        "request_search_response_count": {"per_second": 20.0, "total": 1200},
        "request_search_response_2xx_count": {"per_second": 20.0, "total": 1200},
        "check_ok_pass_count": {"per_second": 1.0, "total": 1},  # not a request: no row
    }
    figures = {"count": 10, "mean": 2000, "min": 900, "p50": 1500, "p90": 2500, "p99": 4000, "max": 4100}
    telemetry["histograms"] = {"request_login_headers_us": figures,
                               "request_search_headers_us": dict(figures, p50=300, max=700)}
    return state


def test_named_requests_get_a_live_row_each_with_error_statuses_as_warnings(stack, open_page):
    stack.idle()
    page = open_page(stack)
    serve_state(page, named_state)
    rows = page.locator("#run-requests table.live-requests tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#run-requests table.live-requests thead th")).to_have_text(
        ["Request", "rate/s", "total", "p50", "p90", "p99", "max", "4xx/s", "5xx/s"])
    login = rows.nth(0).locator("td")
    expect(login.nth(0)).to_have_text("login")
    expect(login.nth(2)).to_have_text("100")
    expect(login.nth(3)).to_have_text(re.compile(r"^1\.5\s?ms$"))
    expect(login.nth(8)).to_have_class(re.compile(r"\bwarning-text\b"))
    expect(login.nth(7)).not_to_have_class(re.compile(r"\bwarning-text\b"))
    expect(rows.nth(1).locator("td").nth(0)).to_have_text("search")
    expect(rows.nth(1).locator("td").nth(8)).not_to_have_class(re.compile(r"\bwarning-text\b"))

