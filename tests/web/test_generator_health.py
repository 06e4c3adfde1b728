"""The website shows the workers' event-loop lag beside generator CPU, flagged when a
script holds the loop, and the run's history keeps its worst second."""
import re

from tests.web.support import expect, open_following_page, start_redis_run

BLOCKING = "import time\ntime.sleep(0.3)  # holds the worker's loop\nawait send('PING\\r\\n')\nawait recv()\n"


def test_a_script_holding_the_loop_raises_the_loop_lag_tile_and_an_event(stack, open_page):
    page = open_following_page(stack, open_page)
    run_id = start_redis_run(stack, "lagging-web", BLOCKING, 1, 4000)
    tile = page.locator('[data-tile="loop-lag"]')
    expect(tile).to_have_class(re.compile(r"\balarm\b"), timeout=30000)
    expect(tile.locator(".tile-label")).to_have_text("Loop lag p99")
    expect(tile.locator(".tile-value")).to_have_text(re.compile(r"^\d+(\.\d+)? ms$"))
    expect(tile.locator(".tile-note")).to_have_text("over 100 ms: results suspect")
    # The newest such event: the stack's earlier runs may have had one too.
    expect(page.locator("#event-list li.event-generator_loop_lag_high").first).to_contain_text(
        "workers' event loops woke up")
    detail = stack.api.wait_run_finished(run_id, timeout=60)
    lag = detail["summary"]["maxima"]["max_loop_lag_p99_us"]
    assert lag >= 150_000
    row = page.locator(f'#history-table tr[data-run="{run_id}"]')
    row.locator("td.run-name code").click()
    fact = page.locator(f'tr[data-detail="{run_id}"] .facts div', has_text="Peak loop lag p99")
    expect(fact.locator("dd")).to_have_text(re.compile(r"^\d+(\.\d+)? ms$"))
    stack.idle()
