"""An MQTT run from the website: the form offers the MQTT version for MQTT protocols only,
and the devices speak the version chosen (the broker's log says which)."""
import re

from tests.mqtt.broker import mosquitto
from tests.web.support import expect, fill_plan

SCRIPT = """await mqtt_connect(keepalive=60)
inc_counter("connected")
await delay(60000)
"""


def test_an_mqtt_3_1_1_run_from_the_form(stack, open_page, tmp_path):
    stack.idle()
    log = tmp_path / "broker.log"
    with mosquitto(tmp_path, log=log) as broker:
        page = open_page(stack)
        expect(page.locator("#status-text")).to_contain_text("1 generator")
        fill_plan(page, "mqtt web", broker.port, protocol="http", devices="10", script=SCRIPT, params="{}",
                  sustain="2")
        expect(page.locator("#mqtt-version")).to_be_hidden()
        page.select_option("#protocol", "mqtt")
        expect(page.locator("#mqtt-version")).to_be_visible()
        expect(page.locator("#mqtt-version")).to_have_value("5.0")
        page.fill("#port", str(broker.port))
        page.select_option("#mqtt-version", "3.1.1")
        page.click("#mode-json")
        expect(page.locator("#json-editor textarea")).to_have_value(re.compile(r'"mqtt_version": "3\.1\.1"'))
        page.click("#mode-form")
        expect(page.locator("#mqtt-version")).to_have_value("3.1.1")
        page.click("#start-button")
        run_id = page.locator("#run-id")
        expect(run_id).to_have_text(re.compile(r"^mqtt-web-\d{14}$"))
        detail = stack.api.wait_run_finished(run_id.text_content(), timeout=60)
        logins = re.findall(r"New client connected from \S+ as \S+ \(p(\d)", log.read_text())
    assert detail["state"] == "done", detail["state"]
    assert detail["summary"]["summary"]["counters"]["connected"]["total"] == 10
    # mosquitto logs a client's protocol as p2 for MQTT 3.1.1 (p5 for MQTT 5).
    assert logins == ["2"] * 10, logins
