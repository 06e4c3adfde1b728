"""The per-device HTTP/1 client used directly: upgrade hand-over, misuse, cancellation, close."""
import asyncio
import socket

import pytest
import uvloop

from stressgrid._core.device import Device
from stressgrid._core.metrics import Recorder
from stressgrid.errors import LocalProtocolError, error_reason
from stressgrid.plan.model import Address, Opts
from stressgrid.protocols.http1 import create_client
from stressgrid.protocols.tls import client_context


def run(coroutine_function, *args):
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine_function(*args))


def new_client(port, host="127.0.0.1", protocol="http", ip="127.0.0.1", **opts):
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    device = Device("0-0", Address(host, port, protocol, ip), Opts(**opts), recorder, loop)
    return create_client(device), recorder


class Collector(asyncio.Protocol):
    def __init__(self):
        self.data = b""
        self.more = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data
        if self.data.endswith(b"more") and not self.more.done():
            self.more.set_result(None)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def test_upgrade_hands_the_connection_over(edge):
    async def main():
        client, recorder = new_client(edge.port)
        status, headers, leftover = await client.upgrade(
            "/upgrade", [("Connection", "Upgrade"), ("Upgrade", "test")])
        assert status == 101
        assert ("Upgrade", "test") in headers
        assert leftover == b"leftover"
        with pytest.raises(RuntimeError, match="upgraded"):
            client.request(b"GET", "/hello")
        transport = client.transport
        assert transport is not None
        # Bytes arriving before the hand-over are kept for the new protocol.
        while client.conn.buffered is None:
            await asyncio.sleep(0.001)
        collector = Collector()
        assert client.detach(collector) is transport
        assert collector.data == b"early"
        with pytest.raises(RuntimeError, match="upgraded"):
            client.request(b"GET", "/hello")               # not even on a new connection
        transport.write(b"ping")
        await asyncio.wait_for(collector.more, 5)
        assert collector.data == b"earlymore"
        client.close()                      # the detached transport is no longer the client's
        assert not transport.is_closing()
        transport.close()
        await asyncio.wait_for(collector.lost, 5)
        assert recorder.counter("response_count").value == 0
        assert recorder.counter("conn_count").value == 1
    run(main)


def test_upgrade_refused_returns_the_response(edge):
    async def main():
        client, _ = new_client(edge.port)
        status, _, body = await client.upgrade("/hello", [("Connection", "Upgrade"), ("Upgrade", "test")])
        assert (status, body) == (200, b"hello")
        assert await client.request(b"GET", "/hello") == (200, [("Content-Length", "5")], b"hello")
        client.close()
    run(main)


def test_one_request_at_a_time(edge):
    async def main():
        client, _ = new_client(edge.port)
        first = client.request(b"GET", "/hello")          # connecting
        with pytest.raises(LocalProtocolError, match="one HTTP request at a time") as misuse:
            client.request(b"GET", "/hello")
        # The script's mistake, counted as such: never as the target's protocol error.
        assert error_reason(misuse.value) == "local_protocol"
        assert (await first)[0] == 200
        first = client.request(b"GET", "/hello")          # on the open connection
        with pytest.raises(LocalProtocolError, match="one HTTP request at a time"):
            client.request(b"GET", "/hello")
        assert (await first)[0] == 200
        client.close()
    run(main)


def test_cancelled_request_leaves_no_trace(edge):
    async def main():
        client, recorder = new_client(edge.port)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.request(b"GET", "/slow"), 0.05)
        assert await client.request(b"GET", "/hello") == (200, [("Content-Length", "5")], b"hello")
        assert recorder.counter("conn_count").value == 2     # the half-answered connection was dropped
        assert recorder.counter("timeout_error_count").value == 0
        client.close()
    run(main)
    edge.wait_for(lambda s: s.closed_by_client >= 2)


def test_connect_timeout_leaves_the_task_usable(edge):
    async def main():
        client, recorder = new_client(edge.port, protocol="https")
        with pytest.raises(TimeoutError, match="connecting"):
            await client.request(b"GET", "/hello", timeout=100)
        assert recorder.counter("conn_timedout_error_count").value == 1
        # The cancellation that timed the connect out is not left on the task.
        await asyncio.sleep(0.01)
        plain, _ = new_client(edge.port)
        assert (await plain.request(b"GET", "/hello"))[0] == 200
        client.close()
        plain.close()
    run(main)


def test_close_closes_and_never_raises(edge):
    async def main():
        client, _ = new_client(edge.port)
        assert (await client.request(b"GET", "/hello"))[0] == 200
        client.close()
        client.close()
        with pytest.raises(RuntimeError, match="closed"):
            client.request(b"GET", "/hello")
    run(main)
    edge.wait_for(lambda s: s.closed_by_client >= 1)


@pytest.mark.parametrize("timeout", [0, -5, "100", True])
def test_bad_timeouts_are_local_errors(timeout):
    async def main():
        client, _ = new_client(1)
        with pytest.raises(ValueError, match="timeout"):
            client.request(b"GET", "/", timeout=timeout)
        client.close()
    run(main)


def test_unresolvable_host_is_counted_once():
    name = "no-such-host.invalid"
    try:
        socket.getaddrinfo(name, 80)
        pytest.fail(f"{name} resolves here")
    except socket.gaierror as exc:
        expected = error_reason(exc) + "_error_count"
    assert expected in ("nx_domain_error_count", "dns_timeout_error_count")

    async def main():
        client, recorder = new_client(80, host=name, ip="")
        with pytest.raises(socket.gaierror):
            await client.request(b"GET", "/")
        assert recorder.counter(expected).value == 1
        assert recorder.counter("conn_count").value == 0
        client.close()
    run(main)


def test_tls_contexts_are_shared_per_setting(nginx_servers):
    async def main():
        first, _ = new_client(nginx_servers.tls, host="localhost", protocol="https")
        second, _ = new_client(nginx_servers.tls, host="localhost", protocol="https")
        verified, _ = new_client(nginx_servers.tls, host="localhost", protocol="https",
                                 tls_verify=True, tls_ca_file=nginx_servers.certificate)
        assert first.target.tls is second.target.tls is client_context(False, "", ("http/1.1",))
        assert verified.target.tls is not first.target.tls
        assert (await verified.request(b"GET", "/index.html"))[0] == 200
        for client in (first, second, verified):
            client.close()
    run(main)


def test_unusable_ca_file_fails_each_connect_as_tls_error(nginx_servers, tmp_path):
    async def main():
        client, recorder = new_client(nginx_servers.tls, host="localhost", protocol="https",
                                      tls_verify=True, tls_ca_file=str(tmp_path / "missing.pem"))
        for _ in range(2):
            with pytest.raises(ConnectionError, match="TLS settings"):
                await client.request(b"GET", "/index.html")
        assert recorder.counter("tls_error_count").value == 2
        client.close()
    run(main)
