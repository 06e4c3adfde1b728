"""Status classes, checks and request names, on HTTP/1.1 and HTTP/2 against real nginx.

Every response counts in ``response_count`` and in its status class
(``response_1xx_count`` .. ``response_5xx_count``); ``check(name, condition)``
counts a pass or a fail and never stops the script. Each device makes exactly
three requests, so every count is known; the recorder behind nginx sees the
one proxied request of each device. A request given ``name=`` also counts in
its group (``request_<name>_headers_us``, ``_body_us``, ``_response_count`` and
status classes) and in the totals as before.
"""
import functools

import pytest

from tests.support import plans
from tests.support.plans import error_counters

run_until = functools.partial(plans.run_until, duration=30)
PROTOCOLS = {"http": "http", "http2": "h2c"}
DEVICES = 2

SCRIPT = """\
status, _, _ = await get("/index.html", name="home")
check("index_ok", status == 200)
status, _, _ = await post("/echo/status", [("X-Case", "status-" + params["protocol"])], json={"a": 1}, name="echo")
status, _, _ = await get("/missing.html", name="home")
missed = check("missing_ok", status == 200)
check("missing_is_404", status == 404 and not missed)
await delay(60000)
"""


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_response_counts_in_its_status_class_and_checks_count_without_raising(parity_servers, protocol):
    plan = plans.plan(getattr(parity_servers, PROTOCOLS[protocol]), SCRIPT, size=DEVICES, protocol=protocol,
                      params={"protocol": protocol})
    result = run_until(plan, "check_missing_is_404_pass_count", DEVICES)
    counters = result.counters
    assert error_counters(result) == {}, (counters, result.errors)
    assert counters["response_count"] == 3 * DEVICES
    assert counters["response_2xx_count"] == 2 * DEVICES
    assert counters["response_4xx_count"] == DEVICES
    assert not {"response_1xx_count", "response_3xx_count", "response_5xx_count"} & set(counters)
    assert counters["check_index_ok_pass_count"] == DEVICES
    assert counters["check_missing_ok_fail_count"] == DEVICES   # a failed check raised nothing
    assert "check_missing_ok_pass_count" not in counters and "check_index_ok_fail_count" not in counters
    assert f"status-{protocol}" in parity_servers.recorder.take()

    # The named groups: "home" got the index (200) and the missing page (404), "echo" the POST.
    assert counters["request_home_response_count"] == 2 * DEVICES
    assert counters["request_home_response_2xx_count"] == DEVICES
    assert counters["request_home_response_4xx_count"] == DEVICES
    assert counters["request_echo_response_count"] == counters["request_echo_response_2xx_count"] == DEVICES
    for group, requests in (("home", 2 * DEVICES), ("echo", DEVICES)):
        for part in ("headers", "body"):
            assert result.histograms[f"request_{group}_{part}_us"].total_count == requests
    assert result.histograms["headers_us"].total_count == 3 * DEVICES   # the totals are as before
