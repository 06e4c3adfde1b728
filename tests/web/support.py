"""Helpers for the website's browser tests: filling the plan form, a finished run."""
from tests.conftest import example
from tests.coordinator.support import wait_until

REDIS_SCRIPT = example("redis_tcp.py")
FAILING_SCRIPT = "await delay(100)\nassert False, 'boom'\n"


def expect(target):
    from playwright.sync_api import expect as playwright_expect
    return playwright_expect(target)


def fill_plan(page, name, port, *, protocol="tcp", hosts="127.0.0.1", devices="20", script=REDIS_SCRIPT,
              params='{"delay_ms": 50}', rampup="1", sustain="60", rampdown="1"):
    page.fill("#plan-name", name)
    page.select_option("#protocol", protocol)
    page.fill("#hosts", hosts)
    page.fill("#port", str(port))
    page.fill("#rampup", rampup)
    page.fill("#sustain", sustain)
    page.fill("#rampdown", rampdown)
    block = page.locator(".block").first
    block.locator(".script textarea").fill(script)
    block.locator(".params textarea").fill(params)
    block.locator(".block-size").fill(devices)


def open_following_page(stack, open_page):
    """A page on the idle stack that already follows the coordinator, so it sees every run
    started after it (and so shows that run's end)."""
    stack.idle()
    page = open_page(stack)
    expect(page.locator("#idle-text")).to_contain_text("No run in progress")
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    return page


def start_redis_run(stack, name, script, size, sustain_ms, params=None):
    """Start a run of ``size`` devices running ``script`` against the stack's redis; its id."""
    plan = {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": stack.redis_port, "protocol": "tcp"}],
            "blocks": [{"script": script, "params": params or {}, "size": size}],
            "opts": {"ramp_steps": 1, "rampup_step_ms": 200, "sustain_ms": sustain_ms,
                     "rampdown_step_ms": 200, "cooldown_ms": 0, "report_interval_ms": 1000}}
    status, run, _ = stack.api.post("/api/runs", plan)
    assert status == 201, run
    return run["id"]


def short_run(stack, name="past-run", sustain_ms=1500, thresholds=()):
    """A small run started through the API and waited for; returns its detail."""
    plan = {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": stack.redis_port, "protocol": "tcp"}],
            "blocks": [{"script": REDIS_SCRIPT, "params": {"delay_ms": 50}, "size": 10},
                       {"script": FAILING_SCRIPT, "params": {}, "size": 10}],
            "opts": {"ramp_steps": 1, "rampup_step_ms": 200, "sustain_ms": sustain_ms,
                     "rampdown_step_ms": 200, "cooldown_ms": 1000, "report_interval_ms": 1000},
            "thresholds": list(thresholds)}
    status, run, _ = stack.api.post("/api/runs", plan)
    assert status == 201, run
    detail = stack.api.wait_run_finished(run["id"], timeout=30)
    wait_until(lambda: stack.api.state()["run"] is None, 15, message="run released")
    return detail


def stat(page, metric, name):
    return page.locator(f'[data-metric="{metric}"] [data-stat="{name}"] .stat-value')


def serve_state(page, change):
    """Reload ``page`` polling a state that ``change(state)`` rewrites from the coordinator's
    own (the event stream refused): the page shows what the test makes the state say."""
    import json
    page.unroute("**/*")

    def rewrite(route):
        response = route.fetch()
        route.fulfill(response=response, body=json.dumps(change(response.json())))

    page.route("**/api/stream", lambda route: route.abort())
    page.route("**/api/state", rewrite)
    page.reload()
