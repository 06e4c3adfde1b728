"""The website's verdicts: a live threshold badge, the finished run's whole-run summary in
place of its last second, and History rows that open their summary when clicked."""
import re

from tests.coordinator.support import wait_until
from tests.web.support import FAILING_SCRIPT, REDIS_SCRIPT, expect


def start_run(stack, name, thresholds):
    plan = {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": stack.redis_port, "protocol": "tcp"}],
            "blocks": [{"script": REDIS_SCRIPT, "params": {"delay_ms": 50}, "size": 10},
                       {"script": FAILING_SCRIPT, "params": {}, "size": 10}],
            "opts": {"ramp_steps": 1, "rampup_step_ms": 200, "sustain_ms": 3000,
                     "rampdown_step_ms": 200, "cooldown_ms": 500, "report_interval_ms": 1000},
            "thresholds": thresholds}
    status, run, _ = stack.api.post("/api/runs", plan)
    assert status == 201, run
    return run["id"]


def test_a_run_shows_its_verdict_live_then_its_whole_run_summary(stack, open_page):
    stack.idle()
    page = open_page(stack)
    expect(page.locator("#idle-text")).to_contain_text("No run in progress")
    run_id = start_run(stack, "verdict-run", ["receive count > 0", "error_rate < 0.01%"])
    badge = page.locator("#run-verdict")
    expect(badge).to_have_text("thresholds failing")  # the failing block's errors
    detail = stack.api.wait_run_finished(run_id, timeout=60)
    # The finished view: the whole run's numbers instead of the last second.
    expect(badge).to_have_text("FAILED", timeout=30000)
    # The run's own badge shows its result, in red.
    phase = page.locator("#run-phase")
    expect(phase).to_have_text("Failed")
    expect(phase).to_have_class(re.compile(r"\bphase-failed\b"))
    panel = page.locator("#run-summary")
    expect(panel).to_be_visible()
    expect(page.locator("#run-live-metrics")).to_be_hidden()
    summary = detail["summary"]["summary"]
    receive = panel.locator('table.summary-counters tr[data-name="receive"] td')
    expect(receive.nth(1)).to_have_text(re.compile(r"^\d"))
    counts = panel.locator('table.summary-histograms tr[data-name="set_us"] td')
    expect(counts.nth(1)).to_have_text(f"{summary['histograms']['set_us']['count']:,}")
    states = panel.locator(".threshold").evaluate_all("els => els.map(e => e.dataset.state)")
    assert states == ["passed", "failed"]
    expect(panel.locator(".error-rate strong")).to_have_text(f"{summary['error_rate_percent']:.2f}%")
    expect(page.locator("#run-report")).to_have_attribute("href", f"/results/{run_id}.html")

    # History: the row carries the verdict, and a click on it opens the summary.
    row = page.locator(f'#history-table tr[data-run="{run_id}"]')
    expect(row.locator('[data-col="verdict"]')).to_have_text("FAILED")
    expect(row.locator("a.report")).to_have_attribute("href", f"/results/{run_id}.html")
    row.locator("td.run-name code").click()
    details = page.locator(f'tr[data-detail="{run_id}"]')
    expect(details.locator("table.summary-histograms")).to_contain_text("set_us")
    expect(details.locator(".threshold")).to_have_count(2)


def test_a_run_without_thresholds_that_counted_errors_ends_with_a_red_badge(stack, open_page):
    stack.idle()
    page = open_page(stack)
    expect(page.locator("#idle-text")).to_contain_text("No run in progress")
    run_id = start_run(stack, "errors-run", [])
    detail = stack.api.wait_run_finished(run_id, timeout=60)
    assert detail["result"] == "finished_with_errors"
    phase = page.locator("#run-phase")
    expect(phase).to_have_text("Done · with errors", timeout=30000)
    expect(phase).to_have_class(re.compile(r"\bphase-finished_with_errors\b"))
    expect(page.locator("#run-verdict")).to_be_hidden()


def test_a_run_the_page_never_saw_still_shows_its_end(stack, open_page):
    """A run that starts and ends between two states the page gets (here: the page is shown
    the idle state it first got until the run is over) still ends on its summary."""
    stack.idle()
    page = open_page(stack)
    expect(page.locator("#idle-text")).to_contain_text("No run in progress")
    page.unroute("**/*")
    frozen = {}

    def idle_until_released(route):
        response = route.fetch()
        if "state" not in frozen:
            frozen["state"] = response.text()
        route.fulfill(response=response, body=frozen["state"] if not frozen.get("released") else None)

    page.route("**/api/stream", lambda route: route.abort())
    page.route("**/api/state", idle_until_released)
    page.reload()
    expect(page.locator("#status-text")).to_contain_text("polling")
    run_id = start_run(stack, "unseen-run", [])
    detail = stack.api.wait_run_finished(run_id, timeout=60)
    wait_until(lambda: stack.api.state()["run"] is None, 15, message="run released")
    expect(page.locator("#live-idle")).to_be_visible()  # the page still believes nothing ran
    frozen["released"] = True
    phase = page.locator("#run-phase")
    expect(phase).to_have_text("Done · with errors")
    expect(page.locator("#run-id")).to_have_text(run_id)
    expect(page.locator("#run-summary .error-rate strong")).to_have_text(
        f"{detail['summary']['summary']['error_rate_percent']:.2f}%")
