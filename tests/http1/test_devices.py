"""HTTP/1 devices end to end through the local runner: nginx and a misbehaving server."""
import pytest

from stressgrid.runtime.local import run_local
from tests.http1.conftest import BIG, INDEX
from tests.support.servers import free_port


def plan(script, port, protocol="http", size=1, params=None, host="127.0.0.1", **opts):
    address = {"host": host, "port": port, "protocol": protocol}
    if host != "127.0.0.1":
        address["ip"] = "127.0.0.1"
    return {"name": "http1-test", "addresses": [address],
            "blocks": [{"script": script, "params": params or {}, "size": size}], "opts": opts}


def errors(result):
    return {name: value for name, value in result.counters.items() if name.endswith("_error_count")}


def responses_at_least(n):
    return lambda agg: agg.counter("response_count") >= n


LOOP_GET = """
expected = params["length"]
while True:
    status, headers, body = await get(params["path"])
    assert status == 200, status
    assert len(body) == expected, len(body)
"""


# ---- nginx --------------------------------------------------------------------------

def test_keep_alive_gets_against_nginx(nginx_servers):
    result = run_local(plan(LOOP_GET, nginx_servers.plain, size=20,
                            params={"path": "/index.html", "length": len(INDEX)}), 20,
                       until=responses_at_least(2000))
    assert errors(result) == {}
    responses = result.counters["response_count"]
    assert responses >= 2000
    assert result.counters["conn_count"] == 20          # one kept-alive connection per device
    assert result.histograms["conn_us"].total_count == 20
    # Every response was timed; at most one per device was cut off mid-flight by the stop.
    assert result.histograms["headers_us"].total_count >= responses
    assert result.histograms["headers_us"].total_count <= responses + 20
    assert result.histograms["body_us"].total_count == responses


def test_methods_bodies_and_decoding_against_nginx(nginx_servers):
    script = """
status, headers, body = await get("/json")
assert (status, body) == (200, {"ok": True}), (status, body)
status, headers, body = await head("/index.html")
assert status == 200 and body == b""
assert ("Content-Length", str(params["index"])) in headers, headers
assert headers.get("content-length") == headers.get("CONTENT-LENGTH") == str(params["index"]), headers
assert headers.get("x-absent") is None and headers.get("x-absent", "") == ""
assert dict(headers)["Content-Length"] == str(params["index"]) and len(headers) == len(list(headers))
status, _, body = await get("/big.bin")
assert status == 200 and len(body) == params["big"]
assert body[:4] == bytes([0, 1, 2, 3]) and body[-1] == 255
status, _, _ = await post("/index.html", body=b"x")
assert status == 405, status
status, _, _ = await get("/missing")
assert status == 404, status
inc_counter("round")
"""
    result = run_local(plan(script, nginx_servers.plain, size=4,
                            params={"index": len(INDEX), "big": len(BIG)}), 20,
                       until=lambda agg: agg.counter("round_count") >= 20)
    assert errors(result) == {}
    assert result.counters["round_count"] >= 20
    assert result.counters["response_count"] >= 5 * 20


def test_http10_opens_a_connection_per_request(nginx_servers):
    result = run_local(plan(LOOP_GET, nginx_servers.plain, protocol="http10", size=5,
                            params={"path": "/index.html", "length": len(INDEX)}), 20,
                       until=responses_at_least(300))
    assert errors(result) == {}
    responses, conns = result.counters["response_count"], result.counters["conn_count"]
    assert responses >= 300
    assert responses <= conns <= responses + 5


def test_connection_close_header_reconnects_transparently(nginx_servers):
    script = """
while True:
    status, headers, body = await get("/index.html", [("Connection", "close")])
    assert status == 200 and len(body) == params["length"]
    assert ("Connection", "close") in headers, headers
    inc_counter("ok")
"""
    result = run_local(plan(script, nginx_servers.plain, size=3, params={"length": len(INDEX)}), 20,
                       until=lambda agg: agg.counter("ok_count") >= 150)
    assert errors(result) == {}
    responses, conns = result.counters["response_count"], result.counters["conn_count"]
    assert responses >= 150
    assert responses <= conns <= responses + 3            # one connection per request, no error


TLS_CHECK = """
status, headers, body = await get("/index.html")
assert status == 200 and len(body) == params["length"]
headers = dict(headers)
assert headers["X-Alpn"] == params["alpn"], headers
assert headers["X-Sni"] == "localhost", headers
inc_counter("checked")
"""


@pytest.mark.parametrize("protocol, alpn, verify", [
    ("https", "http/1.1", False),
    ("https", "http/1.1", True),
    ("http10s", "http/1.0", False),
])
def test_tls_with_sni_alpn_and_verification(nginx_servers, protocol, alpn, verify):
    opts = {"tls_verify": True, "tls_ca_file": nginx_servers.certificate} if verify else {}
    result = run_local(plan(TLS_CHECK, nginx_servers.tls, protocol=protocol, size=3, host="localhost",
                            params={"length": len(INDEX), "alpn": alpn}, **opts), 20,
                       until=lambda agg: agg.counter("checked_count") >= 30)
    assert errors(result) == {}
    assert result.counters["checked_count"] >= 30
    assert result.histograms["conn_us"].total_count == result.counters["conn_count"]


def test_tls_verification_failure_is_a_tls_error(nginx_servers):
    # The certificate is self-signed and no CA file is given: verification must fail.
    result = run_local(plan("await get('/')", nginx_servers.tls, protocol="https", size=2, host="localhost",
                            tls_verify=True), 10,
                       until=lambda agg: agg.counter("tls_error_count") >= 2)
    assert errors(result) == {"tls_error_count": result.counters["tls_error_count"]}
    assert "TlsError" in result.errors["tls_error_count"]
    assert "conn_count" not in result.counters


def test_dead_port_counts_conn_refused_and_the_run_goes_on():
    result = run_local(plan("await get('/')", free_port(), size=3), 10,
                       until=lambda agg: agg.counter("conn_refused_error_count") >= 6)
    assert result.counters["conn_refused_error_count"] >= 6     # devices restart and fail again
    assert errors(result) == {"conn_refused_error_count": result.counters["conn_refused_error_count"]}
    assert "ConnectionRefusedError" in result.errors["conn_refused_error_count"]
    assert result.started_devices == 3


# ---- the misbehaving server ---------------------------------------------------------------

def test_slow_response_times_out_and_closes_the_connection(edge):
    script = "await get('/slow', timeout=100)"
    result = run_local(plan(script, edge.port, size=2), 10,
                       until=lambda agg: agg.counter("timeout_error_count") >= 2)
    assert errors(result) == {"timeout_error_count": result.counters["timeout_error_count"]}
    assert "TimeoutError" in result.errors["timeout_error_count"]
    edge.wait_for(lambda s: s.closed_by_client >= 2)     # we hung up on it


def test_plan_timeout_is_the_default(edge):
    result = run_local(plan("await get('/slow')", edge.port, timeout_ms=150), 10,
                       until=lambda agg: agg.counter("timeout_error_count") >= 1)
    assert result.counters["timeout_error_count"] >= 1
    assert "150 ms" in result.errors["timeout_error_count"]


def test_connect_that_hangs_times_out(edge):
    # The misbehaving server speaks no TLS: the handshake hangs until our deadline.
    result = run_local(plan("await get('/hello', timeout=150)", edge.port, protocol="https", size=2), 10,
                       until=lambda agg: agg.counter("conn_timedout_error_count") >= 4)
    assert errors(result) == {"conn_timedout_error_count": result.counters["conn_timedout_error_count"]}
    assert "connecting to 127.0.0.1" in result.errors["conn_timedout_error_count"]
    assert "conn_count" not in result.counters


@pytest.mark.parametrize("path, counter", [
    ("/abort", "closed_error_count"),
    ("/partial", "closed_error_count"),
    ("/reset", "conn_reset_error_count"),
    ("/malformed", "protocol_error_count"),
])
def test_broken_responses_are_counted_by_reason(edge, path, counter):
    result = run_local(plan(f"await get('{path}')", edge.port, size=2), 10,
                       until=lambda agg: agg.counter(counter) >= 2)
    assert errors(result) == {counter: result.counters[counter]}
    assert "response_count" not in result.counters


def test_chunked_close_delimited_and_http10_bodies(edge):
    script = """
status, _, body = await get("/chunked")
assert (status, body) == (200, b"first second third"), (status, body)
status, _, body = await get("/eof-body")
assert (status, body) == (200, b"part one, part two"), (status, body)
status, _, body = await get("/hello")
assert (status, body) == (200, b"hello"), (status, body)
inc_counter("round")
"""
    result = run_local(plan(script, edge.port, size=3), 20,
                       until=lambda agg: agg.counter("round_count") >= 15)
    assert errors(result) == {}
    # /eof-body ends its connection, so /hello always needs a new one.
    assert result.counters["conn_count"] >= 2 * result.counters["round_count"]


def test_http10_device_against_python_server(edge):
    script = "status, _, body = await get('/hello')\nassert (status, body) == (200, b'hello')\ninc_counter('ok')"
    result = run_local(plan(script, edge.port, protocol="http10", size=2), 10,
                       until=lambda agg: agg.counter("ok_count") >= 20)
    assert errors(result) == {}
    assert result.counters["conn_count"] >= result.counters["ok_count"]


def test_idle_connection_closed_by_server_reopens_quietly(edge):
    script = """
for _ in range(3):
    status, _, body = await get("/idle-close")
    assert (status, body) == (200, b"ok")
    await delay(80)            # the server gives up on idle connections after 30 ms
inc_counter("round")
"""
    result = run_local(plan(script, edge.port, size=3), 20,
                       until=lambda agg: agg.counter("round_count") >= 6)
    assert errors(result) == {}
    assert result.counters["conn_count"] >= 3 * result.counters["round_count"]
    edge.wait_for(lambda s: s.idle_closes >= 12)


def test_request_on_a_connection_the_server_just_dropped_is_retried(edge):
    script = """
for _ in range(10):
    status, _, body = await get("/race")
    assert (status, body) == (200, b"raced")
inc_counter("round")
"""
    result = run_local(plan(script, edge.port, size=2), 20,
                       until=lambda agg: agg.counter("round_count") >= 4)
    assert errors(result) == {}
    # Every request after the first on a connection was dropped and went out again on a new one.
    assert result.counters["conn_count"] >= result.counters["response_count"] - 2


def test_request_bodies_and_headers_reach_the_server(edge):
    script = """
import base64
status, _, doc = await post("/echo", [("X-Test", "1")], json={"a": [1, "b"]})
assert status == 200 and doc["method"] == "POST"
assert ["X-Test", "1"] in doc["headers"] and ["Content-Type", "application/json"] in doc["headers"]
assert base64.b64decode(doc["body"]) == b'{"a":[1,"b"]}'
status, _, doc = await put("/echo-msgpack", msgpack={"k": 2})
assert doc["method"] == "PUT" and ["Content-Type", "application/msgpack"] in doc["headers"]
import msgpack as m
assert m.unpackb(base64.b64decode(doc["body"])) == {"k": 2}
status, _, doc = await patch("/echo", {"Content-Type": "text/plain"}, "text é")
assert doc["method"] == "PATCH" and ["Content-Type", "text/plain"] in doc["headers"]
assert base64.b64decode(doc["body"]) == "text é".encode()
status, _, doc = await delete("/echo")
assert doc["method"] == "DELETE" and doc["body"] == ""
assert not any(name.lower() == "content-length" for name, _ in doc["headers"])
status, _, doc = await options("/echo", [("Host", "virtual.test")])
assert doc["method"] == "OPTIONS" and ["Host", "virtual.test"] in doc["headers"]
status, _, _ = await get("/status/204")
assert status == 204
inc_counter("round")
"""
    result = run_local(plan(script, edge.port, size=2), 20,
                       until=lambda agg: agg.counter("round_count") >= 10)
    assert errors(result) == {}
    # Each run of the script (six requests) used one connection; a run cut short by the stop may add one.
    assert result.counters["round_count"] <= result.counters["conn_count"] <= result.counters["round_count"] + 2
