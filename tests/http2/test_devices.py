"""HTTP/2 devices end to end: scripts run by the local runner against nginx
(h2c and TLS with ALPN) and against a server that misbehaves on purpose."""
import functools

import pytest

from stressgrid.runtime.local import run_local
from tests.http2.conftest import BIG, DOC, INDEX
from tests.support import plans
from tests.support.plans import LINGER
from tests.support.plans import error_counters as errors
from tests.support.servers import free_port

plan = functools.partial(plans.plan, name="h2-test", protocol="http2")
run_until = functools.partial(plans.run_until, duration=30)


def test_requests_and_decoded_bodies(nginx_servers):
    script = f"""
status, headers, body = await get("/index.html")
assert status == 200 and body == {INDEX!r}, (status, body[:40])
assert ("content-type", "text/html") in headers, headers
assert headers.get("Content-Type") == "text/html" and dict(headers)["content-type"] == "text/html", headers
status, _, body = await get("/doc.json")
assert status == 200 and body == {DOC!r}, body
status, _, body = await get("/doc.msgpack")
assert status == 200 and body == {DOC!r}, body
status, headers, body = await head("/index.html")
assert status == 200 and body == b"", (status, body)
status, _, body = await get("/status/404", [("x-test", "1")], timeout=2000)
assert (status, body) == (404, b"missing\\n"), (status, body)
status, _, _ = await options("/index.html")
assert status in (200, 204, 405), status
inc_counter("done")
""" + LINGER
    result = run_until(plan(nginx_servers.h2c, script, size=4), "done_count", 4)
    assert errors(result) == {} and result.errors == {}
    assert result.counters["conn_count"] == 4  # one connection per device, reused
    assert result.counters["response_count"] == 4 * 6
    assert result.histograms["headers_us"].total_count == 4 * 6
    assert result.histograms["body_us"].total_count == 4 * 6
    assert result.histograms["conn_us"].total_count == 4


def test_uploads_and_large_bodies_through_flow_control(nginx_servers):
    script = """
import hashlib
name = f"/dav/{device_id}"
status, _, _ = await put(name + ".json", json={"device": device_id, "n": [1, 2, 3]})
assert status in (201, 204), status
status, _, body = await get(name + ".json")
assert body == {"device": device_id, "n": [1, 2, 3]}, body
payload = random_bytes(3_000_000)
status, _, _ = await put(name + ".bin", body=payload)
assert status in (201, 204), status
status, _, body = await get(name + ".bin")
assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
status, _, body = await get("/big.bin")
assert status == 200 and len(body) == params["big"] and body[:4] == b"\\x00\\x01\\x02\\x03"
status, _, _ = await delete(name + ".bin")
assert status == 204, status
inc_counter("done")
""" + LINGER
    result = run_until(plan(nginx_servers.h2c, script, size=3, params={"big": len(BIG)}), "done_count", 3)
    assert errors(result) == {}
    assert result.counters["conn_count"] == 3


def test_concurrent_requests_share_one_connection(nginx_servers):
    script = """
import asyncio
async def fetch():
    return await get("/index.html")
results = await asyncio.gather(*(fetch() for _ in range(50)))
assert [status for status, _, _ in results] == [200] * 50
inc_counter("done")
""" + LINGER
    result = run_until(plan(nginx_servers.h2c, script, size=2), "done_count", 2)
    assert errors(result) == {}
    assert result.counters["conn_count"] == 2
    assert result.counters["response_count"] == 100


def test_goaway_makes_the_next_request_reconnect(nginx_servers):
    script = """
for _ in range(35):
    status, _, _ = await get("/index.html")
    assert status == 200
inc_counter("done")
""" + LINGER
    result = run_until(plan(nginx_servers.goaway, script, size=2), "done_count", 2)
    assert errors(result) == {}
    # nginx ends each connection with GOAWAY after 10 requests.
    assert result.counters["conn_count"] == 2 * 4
    assert result.counters["response_count"] == 70


def test_tls_with_alpn_and_sni(nginx_servers):
    script = """
status, headers, _ = await get("/index.html")
assert status == 200
fields = dict(headers)
assert fields["x-alpn"] == "h2", fields
assert fields.get("x-sni", "") == params["sni"], fields
inc_counter("done")
""" + LINGER
    # Verification off by default: the self-signed certificate is accepted.
    result = run_until(plan(nginx_servers.tls, script, protocol="http2s", params={"sni": ""}),
                       "done_count", 1)
    assert errors(result) == {}
    # Verified against the test's CA, by name: SNI carries the host.
    verified = plan(nginx_servers.tls, script, protocol="http2s", host="localhost",
                    params={"sni": "localhost"}, tls_verify=True,
                    tls_ca_file=nginx_servers.certificate)
    verified["addresses"][0]["ip"] = "127.0.0.1"
    result = run_until(verified, "done_count", 1)
    assert errors(result) == {}


def test_tls_failures_are_tls_errors(nginx_servers):
    script = """
await get("/index.html")
inc_counter("unexpected")
"""
    # Verification on without the CA: the self-signed certificate is refused.
    strict = plan(nginx_servers.tls, script, protocol="http2s", host="localhost", tls_verify=True)
    strict["addresses"][0]["ip"] = "127.0.0.1"
    result = run_local(strict, 5, until=lambda agg: agg.counters.get("tls_error_count", 0) >= 1)
    assert result.counters["tls_error_count"] >= 1 and "unexpected_count" not in result.counters
    # A TLS server that does not offer h2 by ALPN.
    result = run_local(plan(nginx_servers.tls_http1, script, protocol="http2s"), 5,
                       until=lambda agg: agg.counters.get("tls_error_count", 0) >= 1)
    assert result.counters["tls_error_count"] >= 1 and "unexpected_count" not in result.counters
    line = result.errors["tls_error_count"]
    assert "no application protocol" in line or "did not select h2" in line, line


def test_a_server_that_does_not_speak_http2_is_a_protocol_error(nginx_servers):
    script = "await get('/index.html')\n"
    result = run_local(plan(nginx_servers.plain, script), 5,
                       until=lambda agg: agg.counters.get("protocol_error_count", 0) >= 2)
    assert result.counters["protocol_error_count"] >= 2
    assert set(errors(result)) == {"protocol_error_count"}  # counted once per failure
    assert "HTTP/2" in result.errors["protocol_error_count"]


def test_connection_refused_is_counted():
    script = "await get('/')\n"
    result = run_local(plan(free_port(), script), 3,
                       until=lambda agg: agg.counters.get("conn_refused_error_count", 0) >= 1)
    assert result.counters["conn_refused_error_count"] >= 1
    assert set(errors(result)) == {"conn_refused_error_count"}


def test_stream_reset_is_an_http2_stream_error(edge):
    script = """
try:
    await get("/reset")
except Exception as exc:
    assert type(exc).__name__ == "Http2StreamError" and "INTERNAL_ERROR" in str(exc), exc
    inc_counter("reset_seen")
# The connection survives a stream reset.
status, _, body = await get("/hello")
assert (status, body) == (200, b"hello")
inc_counter("done")
""" + LINGER
    result = run_until(plan(edge.port, script), "done_count", 1)
    assert result.counters["reset_seen_count"] == 1
    assert errors(result) == {"http2_stream_error_count": 1}
    assert result.counters["conn_count"] == 1


def test_undecodable_body_is_a_protocol_error(edge):
    script = """
try:
    await get("/bad-json")
except Exception as exc:
    assert type(exc).__name__ == "RemoteProtocolError" and "application/json" in str(exc), exc
    inc_counter("rejected")
inc_counter("done")
""" + LINGER
    result = run_until(plan(edge.port, script), "done_count", 1)
    assert result.counters["rejected_count"] == 1
    assert errors(result) == {"protocol_error_count": 1}


def test_goaway_and_refused_stream_are_retried_on_a_new_connection(edge):
    script = """
status, _, _ = await get("/goaway")
assert status == 200
status, _, body = await get("/hello")
assert (status, body) == (200, b"hello")
status, _, body = await get("/refuse-once")
assert (status, body) == (200, b"hello")
inc_counter("done")
""" + LINGER
    result = run_until(plan(edge.port, script), "done_count", 1)
    assert errors(result) == {}
    assert result.counters["conn_count"] == 3 == edge.connections
    assert edge.refused == 1


def test_server_max_concurrent_streams_is_respected(edge):
    script = """
import asyncio
# One request first: the server's SETTINGS (at most 2 streams) have arrived after it.
status, _, _ = await get("/hello")
assert status == 200
async def fetch():
    return await get("/concurrent")
results = await asyncio.gather(*(fetch() for _ in range(10)))
assert [status for status, _, _ in results] == [200] * 10
inc_counter("done")
""" + LINGER
    result = run_until(plan(edge.port, script), "done_count", 1)
    assert errors(result) == {}
    assert edge.max_concurrent == edge.MAX_STREAMS


def test_timeouts_and_closed_connections(edge):
    script = """
try:
    await get("/slow", timeout=100)
except TimeoutError:
    inc_counter("timed_out")
status, _, _ = await get("/hello")
assert status == 200
try:
    await get("/close")
except ConnectionError:
    inc_counter("closed")
status, _, _ = await get("/hello")  # a new connection
assert status == 200
inc_counter("done")
""" + LINGER
    result = run_until(plan(edge.port, script), "done_count", 1)
    assert result.counters["timed_out_count"] == 1
    assert result.counters["closed_count"] == 1
    assert errors(result) == {"timeout_error_count": 1, "closed_error_count": 1}
    assert result.counters["conn_count"] == 2


def test_script_checker_rejects_websocket_functions_on_http2():
    from stressgrid.plan.model import Plan, PlanError
    with pytest.raises(PlanError):
        Plan.from_dict(plan(1, 'await ws_upgrade("/")\n'))


def test_a_late_step_gets_its_twin_from_the_intended_start(nginx_servers):
    # The device holds the loop past its tick: its next request's headers_us is short, and its
    # twin from the tick it belongs to is 150 ms longer.
    script = """
import time
await pace(100)
time.sleep(0.25)
await pace(100)
status, _, _ = await get("/index.html", name="late")
assert status == 200, status
inc_counter("done")
await delay(60000)
"""
    result = run_until(plan(nginx_servers.h2c, script), "done_count", 1)
    assert not errors(result), result.errors
    actual = result.histograms["request_late_headers_us"]
    intended = result.histograms["request_late_intended_headers_us"]
    assert actual.total_count == intended.total_count == result.histograms["intended_headers_us"].total_count == 1
    assert intended.min >= actual.min + 150_000 - 1000
    assert result.counters["missed_tick_count"] == 1
