"""Checks and error statuses on the website: a finished run's summary lists each check with
its pass percentage, and the 4xx/5xx status classes are shown as warnings, not errors."""
import re

from tests.web.support import expect, open_following_page, serve_state, start_redis_run

CHECKING = """\
await send("PING\\r\\n")
reply = await recv()
check("pong", reply == b"+PONG\\r\\n")
check("never", reply == b"nothing")
await delay(100)
"""


def test_a_finished_run_lists_its_checks_with_their_pass_percent(stack, open_page):
    page = open_following_page(stack, open_page)
    run_id = start_redis_run(stack, "checks-web", CHECKING, 2, 3000)
    detail = stack.api.wait_run_finished(run_id, timeout=60)
    checks = detail["summary"]["summary"]["checks"]
    assert checks["pong"]["failed"] == 0 and checks["pong"]["passed"] > 0
    assert checks["never"]["passed"] == 0 and checks["never"]["failed"] == checks["pong"]["passed"]
    assert detail["result"] == "passed"   # a failed check is not an error
    # The History's detail of the run (loaded afresh) holds the checks table.
    page.reload()
    page.locator(f'#history-table tr[data-run="{run_id}"] td.run-name code').click()
    rows = page.locator(f'tr[data-detail="{run_id}"] table.summary-checks tbody tr')
    expect(rows).to_have_count(2, timeout=30000)
    expect(rows.nth(0).locator("td")).to_have_text(["never", "0.00%", "0", f"{checks['never']['failed']:,}"])
    expect(rows.nth(1).locator("td")).to_have_text(["pong", "100.00%", f"{checks['pong']['passed']:,}",
                                                    f"{checks['pong']['passed']:,}"])
    stack.idle()


def test_error_status_classes_are_warnings_not_errors(stack, open_page):
    stack.idle()
    page = open_page(stack)
    def with_statuses(state):
        state["run"] = state["run"] or {"id": "statuses-1", "name": "statuses", "state": "sustain",
                                        "devices": 10, "elapsed_ms": 1000, "remaining_ms": 9000,
                                        "started_at": state["telemetry"].get("time", 0)}
        state["telemetry"]["counters"] = {
            "response_count": {"per_second": 10.0, "total": 10},
            "response_2xx_count": {"per_second": 7.0, "total": 7},
            "response_5xx_count": {"per_second": 3.0, "total": 3}}
        return state

    serve_state(page, with_statuses)
    card = page.locator('[data-metric="rate:response_5xx_count"]')
    expect(card).to_have_class(re.compile(r"\bwarn\b"))
    expect(card).not_to_have_class(re.compile(r"\balarm\b"))
    assert "not counted as errors" in card.get_attribute("title")
    expect(page.locator('[data-metric="rate:response_2xx_count"]')).not_to_have_class(re.compile(r"\bwarn\b"))
    expect(page.locator('[data-tile="errors"]')).not_to_have_class(re.compile(r"\balarm\b"))
