"""The form's load model: an arrival-rate run started from the website, counted at redis, its
rate shown live; nonsense marked at its field."""
import re
import subprocess

from tests.coordinator.support import wait_until
from tests.coordinator.test_prometheus import samples
from tests.support.servers import require
from tests.web.support import expect, fill_plan

INCREMENT = "await send('INCR arrivals\\r\\n')\nawait recv()\n"


def redis_value(port, key):
    out = subprocess.run([require("redis-cli"), "-p", str(port), "--raw", "GET", key],
                         check=True, capture_output=True, text=True).stdout.strip()
    return int(out or 0)


def open_model_scraped(stack):
    """Whether ``/metrics`` counts iterations and has ``intended_iteration_us`` quantiles."""
    status, body, _ = stack.api.get("/metrics")
    assert status == 200
    found = [(name, dict(labels), value) for (name, labels), value in samples(body.decode()).items()]
    iterations = [v for n, ls, v in found if n == "stressgrid_counter_total" and ls.get("counter") == "iteration"]
    p99 = [v for n, ls, v in found if n == "stressgrid_histogram_quantile"
           and ls.get("histogram") == "intended_iteration_us" and ls.get("quantile") == "0.99"]
    return iterations and iterations[0] > 0 and p99 and p99[0] > 0


def choose_arrival_rate(page, rate="", steps="", max_devices="", pre_allocated=""):
    page.select_option("#executor", "arrival_rate")
    page.fill("#rate", rate)
    page.fill("#rate-steps", steps)
    page.fill("#max-devices", max_devices)
    page.fill("#pre-allocated", pre_allocated)


def test_an_arrival_rate_run_from_the_form_starts_every_scheduled_iteration(stack, open_page):
    stack.idle()
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    before = redis_value(stack.redis_port, "arrivals")
    fill_plan(page, "open web", stack.redis_port, devices="1", script=INCREMENT, params="{}", sustain="3")
    expect(page.locator("#rate")).to_be_hidden()
    choose_arrival_rate(page, rate="20", max_devices="5")
    expect(page.locator('[data-field="rampup"]')).to_be_hidden()
    expect(page.locator("#devices-summary")).to_contain_text("Pool of 5 devices")
    expect(page.locator(".block .effective").first).to_contain_text("weight 1 of 1")
    # The JSON view shows the plan the coordinator gets, and the form comes back from it.
    page.click("#mode-json")
    json_view = page.locator("#json-editor textarea")
    expect(json_view).to_have_value(re.compile(r'"executor": "arrival_rate"'))
    expect(json_view).to_have_value(re.compile(r'"rate": 20,'))
    expect(json_view).not_to_have_value(re.compile(r'"ramp_steps"'))
    page.click("#mode-form")
    expect(page.locator("#executor")).to_have_value("arrival_rate")
    expect(page.locator("#max-devices")).to_have_value("5")
    page.click("#start-button")
    run_id = page.locator("#run-id")
    expect(run_id).to_have_text(re.compile(r"^open-web-\d{14}$"))
    expect(page.locator('[data-tile="iterations"] .tile-note')).to_contain_text("of 20/s planned", timeout=20000)
    # Iterations started in the last second (their exact number is counted at redis below).
    expect(page.locator('[data-tile="iterations"] .tile-value')).to_have_text(re.compile(r"^[1-9]\d*(\.\d+)?/s$"),
                                                                            timeout=20000)
    # /metrics has the open model's counters and histograms under their own names.
    wait_until(lambda: open_model_scraped(stack), 15, message="iterations and their intended twin in /metrics")
    detail = stack.api.wait_run_finished(run_id.text_content(), timeout=60)
    assert detail["state"] == "done", detail["state"]
    # Every iteration that started reached redis, counted there.
    started = detail["summary"]["summary"]["counters"]["iteration"]["total"]
    assert redis_value(stack.redis_port, "arrivals") - before == started
    # 20 a second for 3 s is 60, each started or counted as dropped (a worker that was late to
    # start runs what fell due at once, on a pool of 5: on a busy machine some may not fit).
    dropped = detail["summary"]["summary"]["counters"].get("dropped_iteration", {}).get("total", 0)
    assert started + dropped == 60


def test_nonsense_in_the_load_model_is_marked_at_its_field(stack, open_page):
    page = open_page(stack)
    # 1000 devices: enough for the closed model's ramp step (10 per generator) however many
    # generators the page counts (a generator that registered anew counts twice a while).
    fill_plan(page, "open nonsense", stack.redis_port, devices="1000", script=INCREMENT, params="{}")
    choose_arrival_rate(page, rate="-5")
    page.click("#check-button")
    expect(page.locator('[data-field="rate"] .field-error')).to_contain_text("more than 0")
    choose_arrival_rate(page, rate="10", max_devices="4", pre_allocated="9")
    page.click("#check-button")
    expect(page.locator('[data-field="pre_allocated"] .field-error')).to_contain_text("From 0 to the max devices (4)")
    choose_arrival_rate(page, steps="10:100, soon:5")
    page.click("#check-button")
    expect(page.locator('[data-field="rate_steps"] .field-error')).to_contain_text('"soon:5" is not SECONDS:RATE')
    # Back to the closed model: the open fields go, and the plan checks.
    page.select_option("#executor", "devices")
    expect(page.locator("#rate")).to_be_hidden()
    page.click("#check-button")
    expect(page.locator("#check-result")).to_contain_text("Plan OK")
