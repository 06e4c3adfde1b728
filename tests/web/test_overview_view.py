"""The run at a glance on the website: four charts over the whole run on one time axis, their
lines the coordinator's overview points, the plan's phases shaded, before and after the end."""
import re

from tests.coordinator.support import wait_until
from tests.web.support import REDIS_SCRIPT, expect, start_redis_run

CHARTS = ("rate", "latency", "devices", "errors")


def test_the_overview_shows_the_whole_run_so_far_and_stays_after_it(stack, open_page):
    stack.idle()
    page = open_page(stack)
    expect(page.locator("#idle-text")).to_contain_text("No run in progress")
    # Sustained long enough for the live checks on a busy machine: once the run ends, the live
    # cards make way for the whole run's tables.
    run_id = start_redis_run(stack, "overview-run", REDIS_SCRIPT, 10, 20000, {"delay_ms": 50})
    overview = page.locator("#run-overview")
    expect(overview).to_be_visible()
    expect(overview.locator(".overview-chart")).to_have_count(4)
    assert overview.locator(".overview-chart").evaluate_all("els => els.map(e => e.dataset.chart)") == list(CHARTS)
    # Raw TCP: receives are the main rate, the script's busiest timing the main latency.
    expect(overview.locator('[data-chart="rate"] .overview-title')).to_have_text("receive per second")
    expect(overview.locator('[data-chart="latency"] .overview-title')).to_have_text(re.compile(r"^(get|set) \((get|set)_us\)$"))
    for chart in ("rate", "devices"):
        expect(overview.locator(f'[data-chart="{chart}"] path.line')).to_have_count(1)
    expect(overview.locator('[data-chart="latency"] path.line')).to_have_count(3)
    # Every metric's card, folded by group: the main ones open, the network's closed until asked.
    groups = page.locator("#metric-groups > details.metric-group")
    expect(groups.first).to_have_attribute("data-group", "main")
    expect(groups.first.locator('[data-metric="rate:receive_count"]')).to_be_visible()
    network = page.locator('#metric-groups > details[data-group="network"]')
    expect(network.locator('[data-metric="rate:network_rx_bytes"]')).to_be_hidden()
    assert groups.evaluate_all("els => els.map(e => e.open)")[1:] == [False] * (groups.count() - 1)
    network.locator("summary").click()
    card = network.locator('[data-metric="rate:network_rx_bytes"]')
    expect(card).to_be_visible()
    # Opened, its chart takes the card's width (drawn while folded, it is redrawn on opening).
    wait_until(lambda: card.locator("svg.chart").evaluate("e => e.getBoundingClientRect().width") > 200,
               message="the unfolded chart's width")
    # Sustain is shaded once the run reached it, behind each chart's lines.
    expect(overview.locator('[data-chart="rate"] rect.band[data-phase="sustain"]')).to_have_count(1, timeout=20000)
    stack.api.wait_run_finished(run_id, timeout=60)
    wait_until(lambda: stack.api.state()["run"] is None, 15, message="run released")
    expect(page.locator("#run-phase")).to_have_text(re.compile("Passed|Done"), timeout=30000)
    # After the end, the whole run as the coordinator kept it: every phase it went through.
    status, kept, _ = stack.api.get(f"/api/runs/{run_id}/overview")
    assert status == 200
    phases = [p[1] for p in kept["points"]]
    order = ("rampup", "sustain", "rampdown", "cooldown")
    assert "sustain" in phases and [order.index(p) for p in phases] == sorted(order.index(p) for p in phases)
    expect(overview.locator('[data-chart="devices"] rect.band')).to_have_count(len(dict.fromkeys(phases)))
    # The x axis spans the whole run from its start.
    labels = overview.locator('[data-chart="rate"] .chart-axis text').all_text_contents()
    assert "0s" in labels, labels
    assert not page.watch.errors, page.watch.errors
