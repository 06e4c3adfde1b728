"""Many tabs of the website in one browser: a browser opens at most six connections to a
host, so the tabs share one event stream (one tab reads it and hands each state to the
others) and every tab loads, stays live and can abort a run."""
import re

from tests.web.support import REDIS_SCRIPT, expect, start_redis_run

TABS = 10


def test_ten_tabs_of_one_browser_all_load_share_one_stream_and_any_can_abort(stack, browser):
    stack.idle()
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.set_default_timeout(20000)
    streams = []
    context.on("request", lambda request: streams.append(request.frame.page)
               if request.url.endswith("/api/stream") else None)
    try:
        pages = []
        for _ in range(TABS):
            page = context.new_page()
            page.goto(stack.url + "/")
            pages.append(page)
        for page in pages:
            expect(page.locator("#status-text")).to_contain_text("1 generator")
        assert len(set(streams)) == 1  # one tab reads the stream for the browser
        leader = streams[0]

        run_id = start_redis_run(stack, "ten-tabs", REDIS_SCRIPT, 10, 120000, {"delay_ms": 50})
        for page in pages:
            expect(page.locator("#run-id")).to_have_text(run_id)
            expect(page.locator('[data-tile="devices"] .tile-value')).to_have_text("10")
        assert stack.api.state()["run"]["id"] == run_id  # the API still answers

        # The reading tab closes: another takes over the stream, and the others still follow.
        with context.expect_event("request", lambda request: request.url.endswith("/api/stream")) as next_stream:
            leader.close()
        pages.remove(leader)
        assert next_stream.value.frame.page in pages
        elapsed = pages[0].locator('[data-tile="elapsed"] .tile-value')
        seen = elapsed.text_content()
        expect(elapsed).not_to_have_text(seen)
        expect(pages[0].locator("#status-text")).to_have_text(re.compile(r"^live · 1 generator"))

        last = pages[-1]
        abort = last.locator("#abort-button")
        abort.click()
        expect(abort).to_have_text("Click again to abort")
        abort.click()
        for page in pages:
            expect(page.locator("#run-phase")).to_have_text("Aborted", timeout=30000)
        assert stack.api.get(f"/api/runs/{run_id}")[1]["state"] == "aborted"
    finally:
        context.close()
        stack.idle()
