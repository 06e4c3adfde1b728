"""The same connect fault counts the same way on every protocol that connects over TCP:
HTTP/1, HTTP/2, WebSocket (its upgrade rides HTTP/1) and raw TCP; over TLS, the first three.

Real sockets on loopback: a port nothing listens on (refused), a listener whose accept queue
is full so that the kernel drops every new SYN (a connect that outlasts the plan's 200 ms),
a TLS client meeting nginx's plain HTTP port (the handshake fails), and a server that reads
the first bytes and resets the connection (an RST: ``SO_LINGER`` 0)."""
import contextlib
import socket
import struct
import threading

import pytest

from tests.support.plans import error_counters, plan, run_until
from tests.support.servers import free_port, logging_nginx

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
def resetting_port():
    """A port whose server reads what a connection sends first, then resets it."""
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
                    connection.recv(65536)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        server.join()
        listener.close()


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
