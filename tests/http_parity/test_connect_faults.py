"""The same connect fault counts the same way on every protocol that connects over TCP:
HTTP/1, HTTP/2, WebSocket (its upgrade rides HTTP/1) and raw TCP; over TLS, the first three.

Real sockets on loopback: a port nothing listens on (refused), a listener whose accept queue
is full so that the kernel drops every new SYN (a connect that outlasts the plan's 200 ms),
a TLS client meeting nginx's plain HTTP port (the handshake fails), a server that reads
the first bytes and resets the connection (an RST: ``SO_LINGER`` 0), and over TLS a server
that reads the client's hello and then says nothing (a handshake that outlasts the plan's
200 ms) or resets it, and a TLS server that answers the request with bytes that are not a
TLS record once the handshake is done."""
import contextlib
import socket
import ssl
import struct
import threading

import pytest

from tests.support.plans import error_counters, plan, run_until
from tests.support.servers import free_port, logging_nginx, self_signed_certificate

TIMEOUT_MS = 200  # the plan's timeout where the fault is a connect that outlasts it
# Elsewhere a fault comes at once: a timeout far above it keeps a slow machine from adding one.
OTHER_TIMEOUT_MS = 5000
# (protocol of the plan's address, script, the protocol over TLS)
PROTOCOLS = {
    "http1": ("http", "await get('/')", "https"),
    "http2": ("http2", "await get('/')", "http2s"),
    "websocket": ("http", "await ws_upgrade('/')", "https"),
    "tcp": ("tcp", "await send(b'x')\nawait recv()", None),
}


@contextlib.contextmanager
def unanswered_port():
    """A port whose listener never accepts and whose queue is full: SYNs to it are dropped."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port
    finally:
        for each in [*fillers, listener]:
            each.close()


@contextlib.contextmanager
def serving(handle):
    """A port whose server runs ``handle(connection)`` for each connection, one at a time."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:  # the accept timed out: look at ``stop`` again
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    handle(connection, stop)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        server.join()
        listener.close()


def read_then_reset(connection, _):
    """Read what the client sends first (a request, or a TLS hello), then reset."""
    connection.recv(65536)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def read_then_stay_silent(connection, stop):
    connection.recv(65536)
    stop.wait(1)


def resetting_port():
    """A port whose server reads what a connection sends first, then resets it."""
    return serving(read_then_reset)


def run_fault(protocol, script, port, counter, timeout_ms=OTHER_TIMEOUT_MS):
    result = run_until(plan(port, script, protocol=protocol, timeout_ms=timeout_ms), counter, 2, duration=15)
    # Nothing else is counted, and no connection was: a failed connect has no conn_us.
    assert error_counters(result) == {counter: result.counters[counter]}
    assert "conn_count" not in result.counters
    assert "conn_us" not in result.histograms or result.histograms["conn_us"].total_count == 0
    return result.errors[counter]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_a_refused_connect(name):
    protocol, script, _ = PROTOCOLS[name]
    line = run_fault(protocol, script, free_port(), "conn_refused_error_count")
    assert "ConnectionRefusedError" in line, line


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_a_connect_that_outlasts_the_timeout(name):
    protocol, script, _ = PROTOCOLS[name]
    with unanswered_port() as port:
        line = run_fault(protocol, script, port, "conn_timedout_error_count", TIMEOUT_MS)
    assert f"connecting to 127.0.0.1:{port} took over {TIMEOUT_MS} ms" in line, line


@pytest.mark.parametrize("name", sorted(name for name, (_, _, tls) in PROTOCOLS.items() if tls))
def test_a_failed_tls_handshake(name, tmp_path):
    _, script, protocol = PROTOCOLS[name]
    with logging_nginx(tmp_path) as (port, _):
        line = run_fault(protocol, script, port, "tls_error_count")
    assert f"TLS handshake with 127.0.0.1:{port} failed" in line, line


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_a_reset_after_the_connect(name):
    protocol, script, _ = PROTOCOLS[name]
    with resetting_port() as port:
        result = run_until(plan(port, script, protocol=protocol, timeout_ms=2000), "conn_reset_error_count", 2,
                           duration=15)
    # The connection was made (and timed); its reset is counted as one, and as nothing else.
    assert error_counters(result) == {"conn_reset_error_count": result.counters["conn_reset_error_count"]}
    assert result.counters["conn_count"] >= 2 and result.histograms["conn_us"].total_count >= 2
    assert "ConnectionResetError" in result.errors["conn_reset_error_count"]


TLS_PROTOCOLS = sorted(name for name, (_, _, tls) in PROTOCOLS.items() if tls)


@pytest.mark.parametrize("name", TLS_PROTOCOLS)
def test_a_tls_handshake_that_outlasts_the_timeout(name):
    _, script, protocol = PROTOCOLS[name]
    with serving(read_then_stay_silent) as port:
        line = run_fault(protocol, script, port, "conn_timedout_error_count", TIMEOUT_MS)
    assert f"connecting to 127.0.0.1:{port} took over {TIMEOUT_MS} ms" in line, line


@pytest.mark.parametrize("name", TLS_PROTOCOLS)
def test_a_reset_during_the_tls_handshake(name):
    _, script, protocol = PROTOCOLS[name]
    with resetting_port() as port:
        line = run_fault(protocol, script, port, "conn_reset_error_count")
    assert "ConnectionResetError" in line, line


def tls_serving(tmp_path, answer):
    """A port whose TLS server reads a request then runs ``answer(tls_socket)``."""
    key, cert = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def handle(connection, _):
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(65536)
            answer(tls)

    return serving(handle)


def test_bytes_that_are_not_tls_after_the_handshake(tmp_path):
    answered = []

    def answer_in_plain(tls):
        with socket.fromfd(tls.fileno(), socket.AF_INET, socket.SOCK_STREAM) as plain:
            plain.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        answered.append(1)

    _, script, protocol = PROTOCOLS["http1"]
    with tls_serving(tmp_path, answer_in_plain) as port:
        result = run_until(plan(port, script, protocol=protocol, timeout_ms=OTHER_TIMEOUT_MS), "tls_error_count",
                           2, duration=15)
    # The handshakes succeeded (each connection counted and timed); what followed is a TLS error.
    assert error_counters(result) == {"tls_error_count": result.counters["tls_error_count"]}
    assert result.counters["conn_count"] >= 2
    # One error for each answer the server sent (the last may have been on its way at the stop).
    errors = result.counters["tls_error_count"]
    assert errors <= len(answered) <= errors + 1, (errors, len(answered))
    assert "TLS failed: [SSL: WRONG_VERSION_NUMBER]" in result.errors["tls_error_count"], result.errors


def test_a_body_that_ends_with_the_servers_close_notify(tmp_path):
    # A body delimited by the end of the connection, over TLS: the server's close_notify ends it.
    answered = []

    def answer_then_close_notify(tls):
        tls.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close_notify")
        tls.unwrap()   # waits for the client's close_notify (at most the server's 2 s)
        answered.append(1)

    script = "assert await get('/') == (200, [('Connection', 'close')], b'until close_notify')\ninc_counter('whole')"
    with tls_serving(tmp_path, answer_then_close_notify) as port:
        result = run_until(plan(port, script, protocol="https"), "whole_count", 3, duration=15)
    assert error_counters(result) == {}
    # A connection a response (the next may have been open at the stop).
    assert 3 <= result.counters["response_count"] <= result.counters["conn_count"] <= result.counters["response_count"] + 1
    # Every response was taken whole at the server's close_notify, which the client answered with
    # its own: the server counts only the exchanges that ended so (the last may still have been on
    # its way at the stop).
    assert result.counters["whole_count"] <= len(answered) <= result.counters["whole_count"] + 1, len(answered)
