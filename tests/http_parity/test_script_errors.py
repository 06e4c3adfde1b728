"""A script's own misuse of an HTTP function is a script error, never the target's.

Each misuse runs in a real device against nginx, on HTTP/1.1 and on HTTP/2:
it must be counted as ``request_argument_error_count`` with the script line
that made it, with no other error counted, and nothing of it may reach the
server.
"""
import functools

import pytest

from tests.support import plans
from tests.support.plans import error_counters

run_until = functools.partial(plans.run_until, duration=30)

MISUSES = {
    "crlf_in_header_value": 'await get("/echo/x", [("X-Case", "misuse"), ("X-A", "a\\r\\nInjected: 1")])',
    "nul_in_header_value": 'await get("/echo/x", [("X-Case", "misuse"), ("X-A", "a\\0b")])',
    "header_name_not_a_token": 'await get("/echo/x", [("X-Case", "misuse"), ("Bad Name", "v")])',
    "header_not_a_pair": 'await get("/echo/x", [("X-Case", "misuse"), ("X-Only",)])',
    "header_name_not_text": 'await get("/echo/x", [("X-Case", "misuse"), (7, "v")])',
    "transfer_encoding": 'await post("/echo/x", [("X-Case", "misuse"), ("Transfer-Encoding", "chunked")], b"x")',
    "body_with_json": 'await post("/echo/x", [("X-Case", "misuse")], body=b"x", json={"a": 1})',
    "json_with_msgpack": 'await put("/echo/x", [("X-Case", "misuse")], json=1, msgpack=2)',
    "body_not_bytes": 'await post("/echo/x", [("X-Case", "misuse")], body=42)',
    "timeout_zero": 'await get("/echo/x", [("X-Case", "misuse")], timeout=0)',
    "timeout_negative": 'await delete("/echo/x", [("X-Case", "misuse")], timeout=-5)',
    "timeout_not_a_number": 'await get("/echo/x", [("X-Case", "misuse")], timeout="5")',
    "path_not_text": 'await get(42, [("X-Case", "misuse")])',
    "name_not_a_metric_key": 'await get("/echo/x", [("X-Case", "misuse")], name="Log In")',
    "name_not_text": 'await post("/echo/x", [("X-Case", "misuse")], b"x", name=7)',
    "name_too_long": 'await get("/echo/x", [("X-Case", "misuse")], name="n" * 65)',
}
PROTOCOLS = {"http": "http", "http2": "h2c"}


def run_misuse(servers, protocol, misuse, warm):
    # Warm: a request first, so the misuse meets an open connection (the steady
    # path); cold: the misuse is the device's first request.
    lines = (['await get("/index.html")'] if warm else []) + [MISUSES[misuse], "await delay(60000)"]
    script = "\n".join(lines)
    plan = plans.plan(getattr(servers, PROTOCOLS[protocol]), script, protocol=protocol)
    result = run_until(plan, "request_argument_error_count", 1)
    return result, len(lines) - 1


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("misuse", sorted(MISUSES))
def test_misuse_is_a_script_error_with_its_line(parity_servers, protocol, misuse):
    result, line = run_misuse(parity_servers, protocol, misuse, warm=True)
    assert set(error_counters(result)) == {"request_argument_error_count"}, result.counters
    reported = result.errors["request_argument_error_count"]
    assert reported.startswith(f"line {line}: {MISUSES[misuse]} -> stressgrid.errors.RequestArgumentError: "), reported
    assert "misuse" not in parity_servers.recorder.take(), "the misused request reached the server"
    assert result.counters.get("response_count", 0) >= 1     # the warm request was answered


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("misuse", ["crlf_in_header_value", "timeout_zero", "body_with_json"])
def test_misuse_as_the_first_request_sends_nothing(parity_servers, protocol, misuse):
    result, line = run_misuse(parity_servers, protocol, misuse, warm=False)
    assert set(error_counters(result)) == {"request_argument_error_count"}, result.counters
    assert result.errors["request_argument_error_count"].startswith(f"line {line}: "), result.errors
    assert result.counters.get("conn_count", 0) == 0, "a connection was opened for a request never sent"
    assert "misuse" not in parity_servers.recorder.take()


def test_ws_upgrade_misuse_is_a_script_error(parity_servers):
    script = 'await ws_upgrade("/echo/ws", [("X-Case", "misuse"), ("X-A", "a\\nb")])\nawait delay(60000)'
    result = run_until(plans.plan(parity_servers.http, script), "request_argument_error_count", 1)
    assert set(error_counters(result)) == {"request_argument_error_count"}, result.counters
    assert result.errors["request_argument_error_count"].startswith("line 1: await ws_upgrade("), result.errors
    assert "misuse" not in parity_servers.recorder.take()


def test_ws_upgrade_with_a_header_that_is_not_a_pair(parity_servers):
    script = 'await ws_upgrade("/echo/ws", [("X-Case", "misuse"), ("X-Only",)])\nawait delay(60000)'
    result = run_until(plans.plan(parity_servers.http, script), "request_argument_error_count", 1)
    assert set(error_counters(result)) == {"request_argument_error_count"}, result.counters
    assert "misuse" not in parity_servers.recorder.take()
