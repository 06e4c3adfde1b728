"""Status classes and checks, on HTTP/1.1 and HTTP/2 against real nginx.

Every response counts in ``response_count`` and in its status class
(``response_1xx_count`` .. ``response_5xx_count``); ``check(name, condition)``
counts a pass or a fail and never stops the script. Each device makes exactly
three requests, so every count is known; the recorder behind nginx sees the
one proxied request of each device.
"""
import functools

import pytest

from tests.support import plans
from tests.support.plans import error_counters

run_until = functools.partial(plans.run_until, duration=30)
PROTOCOLS = {"http": "http", "http2": "h2c"}
DEVICES = 2

SCRIPT = """\
status, _, _ = await get("/index.html")
check("index_ok", status == 200)
status, _, _ = await get("/echo/status", [("X-Case", "status-" + params["protocol"])])
status, _, _ = await get("/missing.html")
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
