"""The self-contained HTML report in the real browser: served by the coordinator and opened
from disk, it renders, its charts hold data, and it makes no request at all."""
import urllib.parse

import pytest

from stressgrid.plan.constants import GENERATOR_HISTOGRAMS
from tests.web.support import expect, short_run


@pytest.fixture(scope="module")
def finished(stack):
    """A finished run with a failing and a passing threshold; returns its detail. Its three
    seconds of sustain give the charts several points even on a busy machine."""
    stack.idle()
    return short_run(stack, "report-run", sustain_ms=3000,
                     thresholds=["receive count > 0", "set_us p99 < 1us"])


def _watched_page(browser, allowed):
    """A page whose every request is recorded; any but ``allowed`` (the report) is blocked."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.requests, page.errors = [], []

    def route(route):
        page.requests.append(route.request.url)
        if route.request.url == allowed:
            route.continue_()
        else:
            route.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return context, page


def _check_report(page, detail):
    summary = detail["summary"]["summary"]
    expect(page.locator("#verdict")).to_have_text("FAILED")
    rows = page.locator("table.thresholds tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("passed")
    expect(rows.nth(1)).to_contain_text("failed")
    # The summary table holds the API's numbers.
    response = page.locator("table.counters tbody tr", has_text="receive").first
    expect(response.locator("td").nth(1)).to_have_text(f"{summary['counters']['receive']['total']:,}")
    expect(page.locator("#error-rate")).to_have_text(f"{summary['error_rate_percent']:.2f}%")
    # It opens on the run at a glance: four charts over the whole run, the phases shaded.
    overview = page.locator("div.overview svg.chart")
    expect(overview).to_have_count(4)
    assert overview.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))") == [
        # (the busier of the script's two timings; get_us on a tie)
        "receive per second", "set_us" if summary["histograms"]["set_us"]["count"]
        > summary["histograms"]["get_us"]["count"] else "get_us", "active devices", "errors per second"]
    expect(overview.nth(0).locator("rect.band-sustain")).to_have_count(1)
    # The errors-per-second line shows the failing block's errors.
    errors = overview.nth(3).locator("circle title").all_text_contents()
    assert any(not text.startswith("errors: 0/s") for text in errors), errors
    # Then every metric over time, folded by group: the main one open, the others closed.
    groups = page.locator("details.group")
    assert groups.evaluate_all("els => els.map(e => [e.dataset.group, e.open])")[0] == ["main", True]
    assert all(not is_open for _, is_open in groups.evaluate_all("els => els.map(e => [e.dataset.group, e.open])")[1:])
    expect(page.locator("details.group[data-group='errors']")).to_contain_text("errors")
    # Every chart drew lines with points: rates, three quantiles per histogram, devices,
    # errors, CPU, and the percentile plot with a line per histogram.
    charts = page.locator("svg.chart")
    assert charts.count() >= 6
    polylines = page.eval_on_selector_all(
        "svg.chart polyline", "els => els.map(e => e.getAttribute('points').trim().split(' ').length)")
    assert len(polylines) >= 8 and sum(1 for n in polylines if n >= 2) >= 6, polylines
    plot = page.locator("svg.chart[aria-label^='value at percentile']")
    labels = plot.locator("g.line").evaluate_all("els => els.map(e => e.dataset.label)")
    assert set(labels) == {n for n in summary["histograms"] if n not in GENERATOR_HISTOGRAMS}
    # Generator health: the workers' event-loop lag has its own chart beside the CPU, and
    # its worst second is told with the generators.
    expect(page.locator("svg.chart[aria-label^='generator loop health']")).to_have_count(1)
    expect(page.locator("p", has_text="worst worker event-loop lag")).to_have_count(1)
    # Errors with their script lines; events; generators; the plan.
    expect(page.locator("table.errors")).to_contain_text("assertion_error")
    expect(page.locator("table.errors")).to_contain_text("boom")
    expect(page.locator("table.events")).to_contain_text("run_done")
    expect(page.locator("table.generators")).to_contain_text("web-gen")
    expect(page.locator("pre")).to_contain_text('"report-run"')


def _open_and_check(browser, url, detail):
    context, page = _watched_page(browser, url)
    try:
        page.goto(url)
        _check_report(page, detail)
        assert page.requests == [url] and page.errors == []
    finally:
        context.close()


def test_the_served_report_renders_with_data_and_no_other_request(browser, stack, finished):
    url = stack.url + finished["report_url"]
    assert urllib.parse.urlsplit(url).path == f"/results/{finished['id']}.html"
    _open_and_check(browser, url, finished)


def test_the_report_opens_from_disk_as_the_same_file(browser, stack, finished, tmp_path):
    status, text, _ = stack.api.get(finished["report_url"])
    assert status == 200
    path = tmp_path / "report.html"
    path.write_bytes(text)
    _open_and_check(browser, path.as_uri(), finished)
