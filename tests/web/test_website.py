"""The management website in Chromium against a real coordinator, generator and redis."""
import json
import re
import tarfile
import urllib.parse
import urllib.request

import pytest

from stressgrid.plan import api as script_api, constants, model
from tests.web.support import FAILING_SCRIPT, expect, fill_plan, serve_state, short_run, stat


@pytest.fixture(autouse=True)
def idle_coordinator(browser, stack):
    """Every test starts and leaves the coordinator without an active run."""
    stack.idle()
    yield
    stack.idle()


def test_the_page_is_served_whole_by_the_coordinator(stack, open_page):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_have_text("live · 1 generator")
    expect(page.locator("#idle-text")).to_have_text("No run in progress. 1 generator ready.")
    expect(page.locator('#generator-table tr[data-generator="web-gen"]')).to_be_visible()
    # Every script, style and icon came from the coordinator itself (the watch blocks the rest).
    paths = {re.sub(r"\?.*", "", url[len(stack.url):]) for _, url in page.watch.requests}
    assert {"/", "/assets/app.css", "/assets/js/app.js", "/assets/js/chart.js", "/assets/js/dom.js",
            "/assets/js/editor.js", "/assets/js/plan.js", "/assets/js/rules.js", "/api/meta"} <= paths
    with urllib.request.urlopen(stack.url + "/") as response:
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    fonts = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert fonts.startswith("system-ui")


def test_the_form_takes_protocols_defaults_and_script_help_from_the_coordinator(stack, open_page):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    options = page.locator("#protocol option")
    expect(options).to_have_count(len(script_api.PROTOCOLS))
    assert options.evaluate_all("(nodes) => nodes.map((o) => [o.value, o.textContent])") == \
        [[name, constants.PROTOCOL_LABELS[name]] for name in script_api.PROTOCOLS]
    expect(page.locator("#protocol")).to_have_value(constants.DEFAULT_PROTOCOL)
    expect(page.locator("#port")).to_have_value(str(constants.DEFAULT_PORTS[constants.DEFAULT_PROTOCOL]))
    defaults = model.DEFAULT_OPTS
    expect(page.locator("#cooldown")).to_have_value(f"{defaults['cooldown_ms'] / 1000:g}")
    expect(page.locator("#report-interval")).to_have_value(f"{defaults['report_interval_ms'] / 1000:g}")
    expect(page.locator("#timeout")).to_have_value(str(defaults["timeout_ms"]))
    assert page.eval_on_selector("#plan-name", "(input) => input.maxLength") == model.MAX_NAME_LENGTH
    # A protocol's help lists the functions the coordinator gives it: no WebSocket over HTTP/2.
    help_terms = page.locator(".block .script-help dt")
    expect(help_terms.filter(has_text="ws_upgrade")).to_have_count(1)
    page.select_option("#protocol", "http2")
    expect(help_terms.filter(has_text="ws_upgrade")).to_have_count(0)
    expect(help_terms.filter(has_text="await get/head/options/delete")).to_have_count(1)
    page.select_option("#protocol", "tcp")
    expect(page.locator("#port")).to_have_value(str(constants.DEFAULT_PORTS["tcp"]))
    expect(help_terms.filter(has_text="await send(data)")).to_have_count(1)
    expect(help_terms.filter(has_text="await get/")).to_have_count(0)
    assert [url for _, url in page.watch.requests if url.endswith("/api/meta")] == [stack.url + "/api/meta"]


def test_the_page_waits_for_the_coordinators_rules_when_it_is_unreachable_and_takes_no_input_meanwhile(
        stack, open_page):
    page = open_page(stack, path="/#live")
    page.unroute("**/*")
    refused = []

    def meta_once_refused(route):
        if not refused:
            refused.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/api/meta", meta_once_refused)
    page.reload()
    expect(page.locator("#status-text")).to_have_text("coordinator unreachable")
    # The form is built from the rules: what was typed before then would be reset.
    expect(page.locator("#plan-name")).to_be_disabled()
    expect(page.locator("#check-button")).to_be_disabled()
    expect(page.locator("#status-text")).to_have_text("live · 1 generator")
    expect(page.locator("#protocol option")).to_have_count(len(script_api.PROTOCOLS))
    page.fill("#plan-name", "typed at once")
    expect(page.locator("#plan-name")).to_have_value("typed at once")
    assert len(refused) == 1


def test_effective_devices_round_down_to_ramp_steps_of_the_generators(stack, open_page):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    block = page.locator(".block").first
    block.locator(".block-size").fill("95")
    page.fill("#rampup", "9")
    page.fill("#sustain", "60")
    page.fill("#rampdown", "4.5")
    expect(block.locator(".effective")).to_have_text("→ 90 effective")
    summary = page.locator("#devices-summary")
    expect(summary).to_contain_text("Effective devices 90")
    expect(summary).to_contain_text("ramp step 10 devices (10 × 1 generator)")
    expect(summary).to_contain_text("9 ramp steps of 1s up, 500 ms down")
    expect(page.locator("#total-duration")).to_have_text("1m 19s")  # 9 + 60 + 4.5 + 5 cooldown
    # The JSON view holds the plan the form builds: steps and milliseconds.
    page.click("#mode-json")
    plan = page.evaluate("JSON.parse(document.querySelector('#json-editor textarea').value)")
    assert plan["blocks"][0]["size"] == 90
    assert plan["opts"]["ramp_steps"] == 9
    assert plan["opts"]["rampup_step_ms"] == 1000 and plan["opts"]["rampdown_step_ms"] == 500
    assert plan["opts"]["sustain_ms"] == 60000


def test_a_run_started_from_the_form_shows_live_telemetry_aborts_and_leaves_its_archive(
        stack, open_page, tmp_path):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    fill_plan(page, "web redis", stack.redis_port, devices="20")
    page.click("#add-block")
    second = page.locator(".block").nth(1)
    second.locator(".script textarea").fill(FAILING_SCRIPT)
    second.locator(".params textarea").fill("{}")
    second.locator(".block-size").fill("10")
    expect(page.locator("#devices-summary")).to_contain_text("Effective devices 30")
    page.click("#start-button")

    run_id = page.locator("#run-id")
    expect(run_id).to_have_text(re.compile(r"^web-redis-\d{14}$"))
    expect(page.locator("#start-button")).to_be_disabled()
    expect(page.locator('[data-tile="devices"] .tile-value')).to_have_text("30", timeout=30000)
    expect(page.locator('[data-tile="generators"] .tile-value')).to_have_text("1")
    expect(page.locator("#run-phase")).to_have_text("Sustain")
    expect(page.locator("#run-remaining")).to_have_text(re.compile(r"^(\d+m )?\d+s$"))

    # Numbers move: the running total of sends grows from one second to the next.
    sends = stat(page, "rate:send_count", "total")
    expect(sends).to_have_text(re.compile(r"\d"))
    first = sends.text_content()
    expect(sends).not_to_have_text(first)
    # Histograms show percentiles and the maximum, with a chart of them.
    for key in ("p50", "p90", "p99", "max"):
        expect(stat(page, "hist:set_us", key)).to_have_text(re.compile(r"^\d+(\.\d+)? (µs|ms|s)$"))
    page.wait_for_function("""() => {
        const line = document.querySelector('[data-metric="hist:get_us"] path[data-series="p99"]');
        return line && (line.getAttribute('d').match(/L/g) || []).length >= 2;
    }""")
    # The failing block's errors are flagged red, with the first traceback line.
    error = page.locator('#error-list [data-error="assertion_error_count"]')
    expect(error).to_be_visible()
    expect(error.locator(".error-line")).to_contain_text("line 2: assert False, 'boom'")
    expect(page.locator('[data-tile="errors"]')).to_have_class(re.compile(r"\balarm\b"))
    expect(page.locator('[data-metric="rate:assertion_error_count"]')).to_have_class(re.compile(r"\balarm\b"))
    # The history lists the run while it is going.
    the_run = run_id.text_content()
    expect(page.locator(f'#history-table tr[data-run="{the_run}"] .badge')).to_contain_text("running")

    abort = page.locator("#abort-button")
    abort.click()
    expect(abort).to_have_text("Click again to abort")
    abort.click()
    expect(page.locator("#run-phase")).to_have_text("Aborted", timeout=30000)
    results = page.locator("#run-results")
    expect(results).to_be_visible()
    assert stack.api.get(f"/api/runs/{the_run}")[1]["state"] == "aborted"

    with page.expect_download() as download_info:
        results.click()
    download = download_info.value
    assert download.suggested_filename == f"{the_run}.tar.gz"
    saved = tmp_path / "archive.tar.gz"
    download.save_as(saved)
    with tarfile.open(saved, "r:gz") as archive:
        text = archive.extractfile(f"{the_run}/results.csv").read().decode()
    assert text.startswith("clock,") and "set_us_pc99" in text.splitlines()[0]

    row = page.locator(f'#history-table tr[data-run="{the_run}"]')
    expect(row.locator(".badge")).to_have_text("aborted")
    expect(row.locator(".flag-error")).to_contain_text("errors")
    expect(row.locator('[data-col="cpu"]')).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    expect(page.locator("#start-button")).to_be_enabled()
    expect(page.locator("#start-button")).to_have_text("Start run")


def test_a_script_error_is_marked_at_its_line_and_nothing_starts(stack, open_page):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    fill_plan(page, "bad script", 80, protocol="http", script="x = 1\nget('/')\n", params="{}")
    page.click("#check-button")
    block = page.locator(".block").first
    expect(block.locator('.editor-numbers [data-line="2"]')).to_have_class("error")
    expect(block.locator(".editor-numbers .error")).to_have_count(1)
    message = block.locator(".script + .editor-error")
    expect(message).to_have_text(re.compile(r"^Line 2, column 1: get\(\) must be awaited"))
    expect(block.locator(".script .editor-mark")).to_be_visible()
    expect(page.locator("#check-result")).to_have_text("The plan has a problem (marked).")

    page.click("#start-button")
    expect(message).to_be_visible()
    assert len(page.watch.posts("/api/runs")) == 1  # tried, and refused by the coordinator
    assert stack.api.state()["run"] is None

    # Typing a fix clears the mark; a new mistake is found as you type, without a click.
    block.locator(".script textarea").fill("await get('/')\nfor x in\n")
    expect(block.locator('.editor-numbers [data-line="2"]')).to_have_class("error")
    expect(message).to_contain_text("Line 2, column 9: syntax error")
    block.locator(".script textarea").fill("await get('/')\n")
    expect(message).to_be_hidden()
    # Clicking the message puts the cursor on the line.
    block.locator(".script textarea").fill("a = 1\nb = 2\nsend(b'x')\n")
    expect(message).to_contain_text("Line 3, column 1: send() is not available for protocol 'http'")
    message.click()
    caret = page.evaluate("document.querySelector('.block .script textarea').selectionStart")
    assert caret == len("a = 1\nb = 2\n")


def test_obvious_mistakes_are_caught_in_the_browser(stack, open_page):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    fill_plan(page, "  ", stack.redis_port, hosts=" , ", params="{not json", devices="5")
    page.fill("#port", "70000")
    page.click("#start-button")
    expect(page.locator('[data-field="name"] .field-error')).to_have_text("Give the plan a name.")
    expect(page.locator('[data-field="hosts"] .field-error')).to_have_text("Name at least one target host.")
    expect(page.locator('[data-field="port"] .field-error')).to_have_text("A port from 1 to 65535.")
    expect(page.locator('.block [data-field="size"] .field-error')).to_contain_text("At least 10 devices")
    params_error = page.locator(".block .params + .editor-error")
    expect(params_error).to_have_text("Line 1, column 2: Not JSON: Expected property name or '}'")
    expect(page.locator('.block .params .editor-numbers [data-line="1"]')).to_have_class("error")
    assert page.watch.posts("/api/runs") == []
    # Fixing a field clears its message.
    page.fill("#hosts", "127.0.0.1")
    expect(page.locator('[data-field="hosts"] .field-error')).to_be_hidden()


def test_a_host_that_does_not_resolve_is_named_by_the_coordinator(stack, open_page):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    fill_plan(page, "nowhere", stack.redis_port, hosts="127.0.0.1, no-such-host.invalid")
    page.click("#check-button")
    expect(page.locator('[data-field="hosts"] .field-error')).to_contain_text("'no-such-host.invalid' does not resolve")
    page.fill("#hosts", "127.0.0.1")
    page.click("#check-button")
    expect(page.locator("#check-result")).to_have_text("Plan OK: 20 devices on 1 address, 1m 07s.")


def test_the_json_mode_runs_the_plan_as_written(stack, open_page):
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    fill_plan(page, "json plan", stack.redis_port, devices="10")
    page.click("#mode-json")
    editor = page.locator("#json-editor textarea")
    expect(editor).to_have_value(re.compile(r'"ramp_steps": 1,'))
    # A JSON mistake is marked at its line, and keeps the JSON view.
    text = editor.input_value()
    editor.fill(text.replace('"name": "json plan",', '"name": "json plan",,'))
    page.click("#mode-form")
    expect(page.locator("#json-editor .editor-numbers .error")).to_have_attribute("data-line", "2")
    expect(page.locator("#json-fields")).to_be_visible()
    # The plan runs as written: 7 devices, no rounding to ramp steps.
    plan = page.evaluate("JSON.parse(" + repr(text) + ")")
    plan["blocks"][0]["size"] = 7
    plan["opts"]["sustain_ms"] = 60000
    editor.fill(json.dumps(plan, indent=2))
    page.click("#start-button")
    expect(page.locator("#run-id")).to_have_text(re.compile(r"^json-plan-"))
    expect(page.locator('[data-tile="devices"] .tile-note')).to_have_text("of 7 planned")
    expect(page.locator('[data-tile="devices"] .tile-value')).to_have_text("7")
    expect(stat(page, "rate:send_count", "total")).to_be_visible()
    # Nothing of the run before (its errors, in the last second before this one) shows here.
    expect(page.locator('[data-metric="rate:assertion_error_count"]')).to_have_count(0)
    expect(page.locator("#run-errors")).to_be_hidden()
    # Back to the form: the fields show the JSON's plan.
    page.click("#mode-form")
    expect(page.locator("#plan-name")).to_have_value("json plan")
    expect(page.locator(".block-size")).to_have_value("7")
    expect(page.locator(".block .effective")).to_have_text("→ 0 effective")


def test_history_loads_a_past_plan_into_the_form_and_deletes_runs(stack, open_page):
    detail = short_run(stack, name="history-run")
    page = open_page(stack)
    row = page.locator(f'#history-table tr[data-run="{detail["id"]}"]')
    expect(row.locator(".badge")).to_have_text("done")
    expect(row.locator(".flag-error")).to_contain_text("errors")
    archive = row.locator("a.download")
    expect(archive).to_have_attribute("href", f"/results/{detail['id']}.tar.gz")
    # Details: the summary's errors with their line, and the histograms' percentiles.
    row.locator("button.expand").click()
    details = page.locator(f'tr[data-detail="{detail["id"]}"]')
    expect(details).to_contain_text("assertion error")
    expect(details).to_contain_text("line 2: assert False, 'boom'")
    expect(details.locator("table.summary-histograms")).to_contain_text("set_us")

    row.locator(".load-plan").click()
    expect(page.locator("#plan-name")).to_have_value("history-run")
    expect(page.locator("#protocol")).to_have_value("tcp")
    expect(page.locator("#hosts")).to_have_value("127.0.0.1")
    expect(page.locator("#port")).to_have_value(str(stack.redis_port))
    expect(page.locator(".block")).to_have_count(2)
    expect(page.locator(".block").nth(1).locator(".script textarea")).to_have_value(FAILING_SCRIPT)

    delete = row.locator(".delete-run")
    delete.click()
    expect(delete).to_have_text("Delete for good?")
    delete.click()
    expect(row).to_have_count(0)
    assert stack.api.get(f"/api/runs/{detail['id']}")[0] == 404


def test_the_page_polls_when_the_event_stream_is_unavailable(stack, open_page, browser):
    page = open_page(stack, path="/#live")
    page.unroute("**/*")
    page.route("**/api/stream", lambda route: route.abort())
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-feed", "polling")
    expect(page.locator("#status-text")).to_have_text("live (polling) · 1 generator")
    expect(page.locator('#generator-table tr[data-generator="web-gen"]')).to_be_visible()


def test_history_links_to_cloudwatch_when_the_coordinator_writes_there(stack, open_page):
    detail = short_run(stack, name="cloudwatch-run")
    page = open_page(stack)

    def with_region(state):
        state["coordinator"]["cloudwatch_region"] = "eu-west-1"
        return state

    serve_state(page, with_region)
    link = page.locator(f'#history-table tr[data-run="{detail["id"]}"] a.cloudwatch')
    expect(link).to_have_attribute("href", re.compile(
        r"^https://eu-west-1\.console\.aws\.amazon\.com/cloudwatch/home\?region=eu-west-1#metricsV2:"))
    assert detail["id"] in urllib.parse.unquote(link.get_attribute("href"))
    assert link.get_attribute("target") == "_blank"


def test_a_generator_over_80_percent_cpu_is_flagged(stack, open_page):
    page = open_page(stack)

    def busy(state):
        for generator in state["generators"]:
            generator.update(cpu_percent=93, cpu_warning=True)
        return state

    serve_state(page, busy)
    cell = page.locator('#generator-table tr[data-generator="web-gen"] .cpu-cell')
    expect(cell).to_contain_text("93%")
    expect(cell.locator(".cpu-fill")).to_have_class(re.compile(r"\bhot\b"))
    expect(page.locator("#live-generators-summary")).to_have_text("1 generator · 1 over 80% CPU")


def test_a_big_fleet_lists_its_busiest_generators_first(stack, open_page):
    page = open_page(stack)

    def fleet(state):
        template = state["generators"][0]
        state["generators"] = [dict(template, id=f"gen-{n:03d}", cpu_percent=n % 90, cpu_warning=n % 90 > 80)
                               for n in range(120)]
        return state

    serve_state(page, fleet)
    rows = page.locator("#generator-table tbody tr[data-generator]")
    expect(rows).to_have_count(20)
    expect(rows.first).to_have_attribute("data-generator", "gen-089")
    expect(page.locator("#live-generators-summary")).to_have_text("120 generators · 9 over 80% CPU")
    page.get_by_role("button", name="Show all 120 generators").click()
    expect(rows).to_have_count(120)
    expect(page.locator("#status-text")).to_have_text("live (polling) · 120 generators")


def test_the_script_editor_indents_like_a_python_editor(stack, open_page):
    page = open_page(stack)
    editor = page.locator(".block .script textarea").first
    editor.fill("")
    editor.focus()
    page.keyboard.type("for i in range(3):")
    page.keyboard.press("Enter")
    page.keyboard.type("x = i")
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")
    page.keyboard.type("y = 1")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.type("z = 2")
    assert editor.input_value() == "for i in range(3):\n    x = i\ny = 1\n    z = 2"
    numbers = page.locator(".block .script .editor-numbers > div")
    expect(numbers).to_have_count(4)
    # Colouring is drawn under the text: the same text, with the keyword marked.
    code = page.locator(".block .script .editor-code")
    expect(code.locator(".tok-keyword").first).to_have_text("for")
    assert code.text_content() == editor.input_value() + "\n"
    # Esc, then Tab, leaves the editor for the next field.
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('block-size')")
