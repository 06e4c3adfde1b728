"""Feeder rows from the website: a file chosen for a block becomes its rows, each device of the
run gets its own (counted at redis), and a bad file is marked at the field with its line."""
import re
import subprocess

from tests.coordinator.support import wait_until
from tests.support.servers import require
from tests.web.support import expect, fill_plan

COUNTING = """\
await send(f"HINCRBY webseen {row['id']} 1\\r\\n")
await recv()
await delay(600000)
"""


def rows_seen(port):
    out = subprocess.run([require("redis-cli"), "-p", str(port), "--raw", "HGETALL", "webseen"],
                         check=True, capture_output=True, text=True).stdout.split()
    return {out[i]: int(out[i + 1]) for i in range(0, len(out), 2)}


def test_a_feeder_file_gives_each_device_of_the_run_its_row(stack, open_page, tmp_path):
    stack.idle()
    subprocess.run([require("redis-cli"), "-p", str(stack.redis_port), "DEL", "webseen"], check=True,
                   capture_output=True)  # what an earlier run of the stack counted
    page = open_page(stack)
    expect(page.locator("#status-text")).to_contain_text("1 generator")
    fill_plan(page, "feeder form", stack.redis_port, devices="10", script=COUNTING, params="{}")
    block = page.locator(".block").first
    (tmp_path / "ids.csv").write_text("id,name\nr0,zero\nr1,one\nr2,two\nr3,three\n")
    with page.expect_request("**/api/plans/check") as background:
        block.locator(".block-data-file").set_input_files(tmp_path / "ids.csv")
    expect(block.locator(".data-status")).to_contain_text("4 rows from ids.csv")
    # A check while editing leaves the rows out; the explicit one sends them.
    assert '"data"' not in background.value.post_data
    with page.expect_request("**/api/plans/check") as explicit:
        page.click("#check-button")
    assert '"data":[{"id":"r0","name":"zero"}' in explicit.value.post_data
    expect(page.locator("#check-result")).to_contain_text("Plan OK")
    page.click("#mode-json")
    expect(page.locator("#json-editor textarea")).to_have_value(
        re.compile(r'"data": \[\s*\{\s*"id": "r0",\s*"name": "zero"'))
    page.click("#mode-form")
    expect(block.locator(".data-status")).to_contain_text("4 rows from the plan")
    page.click("#start-button")
    expect(page.locator("#run-id")).to_have_text(re.compile(r"^feeder-form-"))
    # 10 devices over 4 rows: r0 and r1 three times, r2 and r3 twice.
    wait_until(lambda: sum(rows_seen(stack.redis_port).values()) >= 10, timeout=30, message="10 rows counted")
    assert rows_seen(stack.redis_port) == {"r0": 3, "r1": 3, "r2": 2, "r3": 2}
    stack.idle()
    # Removing the rows takes them out of the plan.
    block.locator(".clear-data").click()
    expect(block.locator(".clear-data")).to_be_hidden()
    page.click("#mode-json")
    expect(page.locator("#json-editor textarea")).not_to_have_value(re.compile('"data"'))


def test_a_bad_feeder_file_is_marked_with_its_line_and_keeps_no_rows(stack, open_page, tmp_path):
    page = open_page(stack)
    block = page.locator(".block").first
    (tmp_path / "bad.csv").write_text("id,name\nr0,zero\nr1\n")
    block.locator(".block-data-file").set_input_files(tmp_path / "bad.csv")
    field = block.locator('[data-field="data"]')
    expect(field.locator(".field-error")).to_have_text(
        "bad.csv: line 3: has 1 values; the first line names 2 columns")
    expect(field).to_have_class(re.compile(r"\binvalid\b"))
    expect(block.locator(".clear-data")).to_be_hidden()
    (tmp_path / "rows.txt").write_text("id\n1\n")
    block.locator(".block-data-file").set_input_files(tmp_path / "rows.txt")
    expect(field.locator(".field-error")).to_contain_text("rows.txt: a feeder file must be csv, jsonl, json")
