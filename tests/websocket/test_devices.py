"""WebSocket devices end to end: scripts run by the local runner against real servers.

The servers are the ``websockets`` library (see ``servers.py``) on loopback,
plus a raw socket server for handshakes ``websockets`` would never send.
"""
import functools
import socket
import ssl
import threading

import pytest

from stressgrid._core.websocket import accept_key
from stressgrid.protocols import websocket as ws_protocol
from stressgrid.runtime.local import run_local
from tests.support import plans
from tests.support.plans import LINGER, error_counters
from tests.support.servers import self_signed_certificate
from tests.websocket.servers import ScriptServer, running

plan = functools.partial(plans.plan, name="ws-test", protocol="http")
run_until = functools.partial(plans.run_until, duration=20)


@pytest.fixture(scope="module")
def server():
    with running(ScriptServer()) as server:
        yield server


def test_echo_text_binary_json_and_fetch(server):
    script = """
status, headers, body = await ws_upgrade("/echo", name="echo_socket")
assert (status, body) == (101, b""), (status, body)
assert ws_fetch_text() is None
await ws_send_text("héllo")
assert await ws_receive_text() == "héllo"
await ws_send_binary(b"\\x00\\xff")
assert await ws_receive_binary() == b"\\x00\\xff"
await ws_send_json({"n": [1, 2]})
assert await ws_receive_json() == {"n": [1, 2]}
# Cross-type reads: text as bytes, binary as text.
await ws_send_text("abc")
assert await ws_receive_binary() == b"abc"
await ws_send_binary(b"xyz")
assert await ws_receive_text() == "xyz"
# Fetch never waits; once the echo arrived it is there.
await ws_send_json([3])
assert await ws_receive_json() == [3]
for _ in range(100):
    await ws_send_text("again")
assert [await ws_receive_text() for _ in range(100)] == ["again"] * 100
assert ws_fetch_json() is None
inc_counter("done")
""" + LINGER
    result = run_until(plan(server.port, script, size=5), "done_count", 5)
    assert error_counters(result) == {}
    assert result.errors == {}
    assert result.counters["conn_count"] == 5
    assert result.histograms["ws_upgrade_us"].total_count == 5
    # The named handshake: its 101 in the group's 1xx class, its time to the 101 in headers_us.
    assert result.counters["request_echo_socket_response_1xx_count"] == 5
    assert result.histograms["request_echo_socket_headers_us"].total_count == 5
    # Stopping the devices closes their connections with 1001 (going away).
    assert server.wait_for_close("/echo") == 1001


def test_fragmented_messages_and_pings(server):
    script = """
await ws_upgrade("/fragments")
assert await ws_receive_text() == "fragmented ☃"
assert await ws_receive_binary() == b"\\x00\\x01\\x02"
inc_counter("fragments")
""" + LINGER
    result = run_until(plan(server.port, script), "fragments_count", 1)
    assert error_counters(result) == {}
    script = """
await ws_upgrade("/ping")
# The server pings and only speaks again once our pong came back.
assert await ws_receive_text() == "pong seen"
inc_counter("pinged")
""" + LINGER
    result = run_until(plan(server.port, script), "pinged_count", 1)
    assert error_counters(result) == {}


def test_large_messages_both_ways(server):
    script = """
size = params["size"]
await ws_upgrade(f"/large/{size}")
data = await ws_receive_binary()
assert len(data) == size and data[:3] == b"\\x00\\x01\\x02" and data[-1:] == b"\\x07", len(data)
payload = random_bytes(3_000_000)
await ws_send_binary(payload)
assert await ws_receive_binary() == payload
text = "ü" * 1_000_000
await ws_send_text(text)
assert await ws_receive_text() == text
inc_counter("large")
""" + LINGER
    result = run_until(plan(server.port, script, params={"size": 5_000_001}), "large_count", 1)
    assert error_counters(result) == {}


@pytest.mark.parametrize("code", [1000, 1011, 4000])
def test_server_close_codes_reach_the_script(server, code):
    script = """
await ws_upgrade(f"/close/{params['code']}")
try:
    await ws_receive_text()
except ConnectionError as exc:
    assert exc.close_code == params["code"] and exc.close_reason == "bye", (exc.close_code, exc)
    assert str(params["code"]) in str(exc)
    inc_counter("closed_seen")
# After the close, fetching raises too: the connection is gone for good.
try:
    ws_fetch_text()
except ConnectionError:
    inc_counter("fetch_raised")
""" + LINGER
    result = run_until(plan(server.port, script, params={"code": code}), "fetch_raised_count", 1)
    assert result.counters["closed_seen_count"] >= 1
    # Each raise is counted where it happened, even though the script caught it.
    assert result.counters["closed_error_count"] == 2 * result.counters["closed_seen_count"]
    assert server.wait_for_close(f"/close/{code}") == code  # our reply echoed the server's code


def test_uncaught_close_is_counted_once(server):
    script = """
await ws_upgrade("/close/1000")
await ws_receive_text()
"""
    result = run_local(plan(server.port, script), 3,
                       until=lambda agg: agg.counters.get("closed_error_count", 0) >= 1)
    assert result.counters["closed_error_count"] >= 1
    assert set(error_counters(result)) == {"closed_error_count"}
    assert "closed by the server with code 1000" in result.errors["closed_error_count"]


def test_invalid_utf8_fails_the_connection_with_1007(server):
    script = """
await ws_upgrade("/bad-utf8")
try:
    await ws_receive_text()
except Exception as exc:
    assert type(exc).__name__ == "WebSocketProtocolError" and exc.close_code == 1007, exc
    inc_counter("rejected")
""" + LINGER
    result = run_until(plan(server.port, script), "rejected_count", 1)
    assert result.counters["protocol_error_count"] == result.counters["rejected_count"]
    assert server.wait_for_close("/bad-utf8") == 1007


def test_overflowing_queue_drops_the_oldest_and_counts_every_drop(server, monkeypatch):
    monkeypatch.setattr(ws_protocol, "MAX_QUEUED_MESSAGES", 16)
    script = """
await ws_upgrade("/flood/3000")
received = []
while (message := await ws_receive_text()) != "done":
    received.append(int(message))
# What arrived is in order, without gaps after the first drop...
assert received == list(range(received[0], received[-1] + 1)) or received == sorted(received)
inc_counter("received", len(received) + 1)
""" + LINGER
    result = run_until(plan(server.port, script), "received_count", 1)
    dropped = result.counters.get("ws_dropped_frame_count", 0)
    assert dropped > 0
    # ...and nothing vanished unnoticed: kept + dropped = sent.
    assert result.counters["received_count"] + dropped == 3001
    assert error_counters(result) == {}


def test_receive_timeout(server):
    script = """
await ws_upgrade("/echo")
try:
    await ws_receive_text(timeout=100)
except TimeoutError:
    inc_counter("timed_out")
await ws_send_text("still alive")
assert await ws_receive_text() == "still alive"
inc_counter("alive")
""" + LINGER
    result = run_until(plan(server.port, script), "alive_count", 1)
    assert result.counters["timed_out_count"] == 1
    assert result.counters["timeout_error_count"] == 1


def test_misuse_gets_clear_errors(server):
    script = """
try:
    await ws_send_text("too early")
except RuntimeError as exc:
    assert "ws_upgrade" in str(exc), exc
    inc_counter("early")
try:
    ws_fetch_text()
except RuntimeError:
    inc_counter("early")
await ws_upgrade("/echo")
try:
    await get("/")
except RuntimeError as exc:
    assert "WebSocket" in str(exc), exc
    inc_counter("http_refused")
try:
    await ws_upgrade("/echo")
except RuntimeError:
    inc_counter("twice")
""" + LINGER
    result = run_until(plan(server.port, script), "twice_count", 1)
    assert result.counters["early_count"] == 2
    assert result.counters["http_refused_count"] == 1


def test_refused_upgrade_returns_the_response(server):
    script = """
status, headers, body = await ws_upgrade("/forbidden")
assert status == 403 and b"no websockets here" in body, (status, body)
inc_counter("refused")
""" + LINGER
    result = run_until(plan(server.port, script), "refused_count", 1)
    assert error_counters(result) == {}
    assert "ws_upgrade_us" not in result.histograms or result.histograms["ws_upgrade_us"].total_count == 0


@pytest.mark.parametrize("protocol", ["http10", "http"])
def test_subprotocol_offer_and_http10_targets(server, protocol):
    script = """
status, headers, _ = await ws_upgrade("/echo", [("Sec-WebSocket-Protocol", "chat, superchat")])
assert status == 101
chosen = [v for k, v in headers if k.lower() == "sec-websocket-protocol"]
assert chosen == ["chat"], headers
await ws_send_text("ok")
assert await ws_receive_text() == "ok"
inc_counter("ok")
""" + LINGER
    result = run_until(plan(server.port, script, protocol=protocol), "ok_count", 1)
    assert error_counters(result) == {}


def test_websocket_over_tls(tmp_path):
    key, cert = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    script = """
await ws_upgrade("/echo")
await ws_send_text("secret")
assert await ws_receive_text() == "secret"
inc_counter("ok")
""" + LINGER
    with running(ScriptServer(ssl=context)) as tls_server:
        result = run_until(plan(tls_server.port, script, protocol="https", size=3), "ok_count", 3)
        assert error_counters(result) == {}
        verified = plan(tls_server.port, script, protocol="https", tls_verify=True,
                        tls_ca_file=str(cert))
        verified["addresses"][0]["host"] = "localhost"
        result = run_until(verified, "ok_count", 1)
        assert error_counters(result) == {}


class RawUpgradeServer:
    """Answers every request with fixed bytes: handshakes a library would not send."""

    def __init__(self, response):
        self.response = response
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.connections = []

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            key = next((line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                        if line.lower().startswith(b"sec-websocket-key:")), b"")
            conn.sendall(self.response(key.decode()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.listener.close()
        for conn in self.connections:
            conn.close()


def _switching(accept, extra=""):
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n").encode()


def test_frames_in_the_same_packet_as_the_101():
    def respond(key):
        frames = bytes([0x81, 5]) + b"first" + bytes([0x82, 6]) + b"second"
        return _switching(accept_key(key)) + frames

    script = """
await ws_upgrade("/")
assert await ws_receive_text() == "first"
assert ws_fetch_binary() == b"second"
inc_counter("ok")
""" + LINGER
    with RawUpgradeServer(respond) as raw:
        result = run_until(plan(raw.port, script), "ok_count", 1)
    assert error_counters(result) == {}


@pytest.mark.parametrize("response", [
    lambda key: _switching("d3JvbmcgYWNjZXB0IGtleSE="),
    lambda key: _switching(accept_key(key), "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
    lambda key: _switching(accept_key(key), "Sec-WebSocket-Protocol: unasked\r\n"),
], ids=["wrong-accept", "unoffered-extension", "unoffered-subprotocol"])
def test_bad_handshakes_are_protocol_errors(response):
    script = """
await ws_upgrade("/")
inc_counter("upgraded")
"""
    with RawUpgradeServer(response) as raw:
        result = run_local(plan(raw.port, script), 3,
                           until=lambda agg: agg.counters.get("protocol_error_count", 0) >= 1)
    assert result.counters["protocol_error_count"] >= 1
    assert "upgraded_count" not in result.counters
    assert "Sec-WebSocket" in result.errors["protocol_error_count"]
