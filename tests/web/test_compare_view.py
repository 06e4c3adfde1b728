"""Comparing runs on the website: a finished run planned with a baseline opens compared with
it, and "Compare with..." in History compares any two runs. The slowed run's target is the
same redis made slower by a Lua busy loop it runs for every call."""
import json

from tests.web.support import expect

# One EVAL per call, its loop as long as params["spin"]; the call's round trip is timed.
SPIN_SCRIPT = """
command = 'EVAL "local i = 0 while i < %d do i = i + 1 end return i" 0\\r\\n' % params["spin"]
while True:
    start_timing("spin")
    await send(command)
    reply = await recv()
    assert reply.startswith(b":"), reply
    stop_timing("spin")
    await delay(20)
"""
SPIN_HISTOGRAM = "spin_us"


def spin_run(stack, name, spin, **fields):
    plan = {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": stack.redis_port, "protocol": "tcp"}],
            "blocks": [{"script": SPIN_SCRIPT, "params": {"spin": spin}, "size": 5}],
            "opts": {"ramp_steps": 1, "rampup_step_ms": 200, "sustain_ms": 1500,
                     "rampdown_step_ms": 200, "cooldown_ms": 0, "report_interval_ms": 1000}, **fields}
    status, run, _ = stack.api.post("/api/runs", plan)
    assert status == 201, run
    detail = stack.api.wait_run_finished(run["id"], timeout=60)
    stack.idle()
    return detail


def test_a_run_with_a_baseline_opens_compared_and_history_compares_any_two(stack, open_page):
    stack.idle()
    fast = spin_run(stack, "spin-fast", 1)
    assert fast["result"] == "passed", fast["summary"]["errors"]
    page = open_page(stack)
    expect(page.locator("#idle-text")).to_contain_text("No run in progress")
    slow = spin_run(stack, "spin-slow", 2_000_000, baseline="last-passed",
                    thresholds=[f"{SPIN_HISTOGRAM} p50 < baseline * 2"])
    assert slow["plan"]["baseline"] == fast["id"]
    fast_p50 = fast["summary"]["summary"]["histograms"][SPIN_HISTOGRAM]["p50"]
    slow_p50 = slow["summary"]["summary"]["histograms"][SPIN_HISTOGRAM]["p50"]
    assert slow_p50 > 2 * fast_p50, (fast_p50, slow_p50)  # the busy loop did slow the target

    # The finished view: the verdict with the baseline's limit, then the comparison.
    panel = page.locator("#run-summary")
    expect(page.locator("#run-verdict")).to_have_text("FAILED", timeout=30000)
    expect(panel.locator(".threshold-limit")).to_contain_text("the baseline's")
    compared = panel.locator(".compare-panel")
    head = compared.locator(".compare-head")
    expect(head).to_contain_text(f"worse than run {fast['id']}")
    row = compared.locator(f'table.summary-comparison_histograms tr[data-name="{SPIN_HISTOGRAM}"]')
    expect(row).to_have_class("warning-row")
    expect(compared.locator("table.summary-comparison_counters")).to_contain_text("error rate")
    status, answer, _ = stack.api.get(f"/api/runs/{slow['id']}/compare/{fast['id']}")
    assert status == 200 and f"{SPIN_HISTOGRAM} p50" in answer["comparison"]["worse"]
    # Overlaid from each run's start: the main rate and the main latency's p99, a line for each run.
    overlay = compared.locator(".compare-overlay")
    expect(overlay.locator('[data-chart="p99"] .overview-title')).to_have_text(
        f"{SPIN_HISTOGRAM} p99: this run and the baseline")
    for chart in ("rate", "p99"):
        expect(overlay.locator(f'[data-chart="{chart}"] path.line')).to_have_count(2)
    # The HTML report of the slowed run holds the same comparison and overlay.
    status, report, _ = stack.api.get(slow["report_url"])
    text = report.decode()
    assert status == 200 and f"Compared with run {fast['id']}" in text
    assert f'aria-label="{SPIN_HISTOGRAM} p99: this run and the baseline"' in text

    # History: the fast run against the slow one; its latency is no worse.
    page.locator(f'#history-table tr[data-run="{fast["id"]}"] td.run-name code').click()
    details = page.locator(f'tr[data-detail="{fast["id"]}"]')
    details.locator(".compare-open").click()
    choice = details.locator("select.compare-baseline")
    expect(choice.locator(f'option[value="{slow["id"]}"]')).to_have_count(1)
    choice.select_option(slow["id"])
    details.locator(".compare-go").click()
    head = details.locator(".compare-head")
    expect(head).to_contain_text(slow["id"])
    expect(head).not_to_contain_text(f"{SPIN_HISTOGRAM} p50")
    fast_row = details.locator(f'table.summary-comparison_histograms tr[data-name="{SPIN_HISTOGRAM}"]')
    expect(fast_row).not_to_have_class("warning-row")
    # A refresh of History (as at each run's end) keeps what was opened.
    page.click("#history-refresh")
    expect(page.locator(f'tr[data-detail="{fast["id"]}"] .compare-head')).to_contain_text(slow["id"])
    # What the page drew is what the API says.
    status, answer, _ = stack.api.get(f"/api/runs/{fast['id']}/compare/{slow['id']}")
    assert status == 200
    cells = fast_row.locator("td").all_text_contents()
    assert cells == [row for row in answer["tables"][0]["rows"] if row[0] == SPIN_HISTOGRAM][0], \
        json.dumps(answer["tables"][0])
    # No run passed before the fast one: the page says it cannot compare.
    choice.select_option("last-passed")
    details.locator(".compare-go").click()
    expect(details.locator(".compare-error")).to_contain_text("Cannot compare")
    assert not page.watch.errors, page.watch.errors
