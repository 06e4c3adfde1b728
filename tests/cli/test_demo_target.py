"""The bundled demo target answers correctly, in order, and stops cleanly."""
import http.client
import json
import signal
import socket
import subprocess
import sys
import time

import psutil

from tests.cli.support import wait_gone
from tests.coordinator.support import wait_until
from tests.support.servers import free_port, running, wait_for_port


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_exchange(port, data):
    """Send ``data`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_endpoints(demo_target):
    status, headers, body = request(demo_target, "GET", "/")
    assert status == 200 and body.startswith(b"Hello") and headers["Content-Type"].startswith("text/plain")
    status, headers, body = request(demo_target, "GET", "/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["ok"] is True
    assert request(demo_target, "GET", "/bytes?n=100000")[2] == bytes(range(256)) * 390 + bytes(range(160))
    assert len(request(demo_target, "GET", "/bytes?n=3000000")[2]) == 3000000
    status, headers, body = request(demo_target, "GET", "/status/503")
    assert (status, body, headers["Content-Length"]) == (503, b"", "0")
    status, headers, body = request(demo_target, "HEAD", "/json")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    payload = json.dumps({"a": [1, 2, 3]}).encode()
    status, headers, body = request(demo_target, "POST", "/echo", payload,
                                    {"Content-Type": "application/json"})
    assert (status, body, headers["Content-Type"]) == (200, payload, "application/json")
    assert request(demo_target, "GET", "/echo")[0] == 405
    assert request(demo_target, "DELETE", "/json")[0] == 405
    assert request(demo_target, "GET", "/nowhere")[0] == 404
    assert request(demo_target, "GET", "/slow?ms=x")[0] == 400
    assert request(demo_target, "GET", "/status/42")[0] == 400


def test_slow_waits_and_pipelined_answers_keep_their_order(demo_target):
    started = time.monotonic()
    assert request(demo_target, "GET", "/slow?ms=300")[0] == 200
    assert time.monotonic() - started >= 0.25  # the server's timer may round a hair early
    # The slow answer comes first although the second one was ready long before it.
    data = raw_exchange(demo_target, b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n"
                                     b"GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    first, second = data.split(b"HTTP/1.1 200 OK")[1:]
    assert b"Hello" in first and b'"ok":true' in second and b"Connection: close" in second


def test_http10_closes_unless_asked_to_keep_alive(demo_target):
    data = raw_exchange(demo_target, b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.0 200 OK") and b"Connection: close" in data
    with socket.create_connection(("127.0.0.1", demo_target), timeout=10) as sock:
        for _ in range(2):  # the same connection answers twice
            sock.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.0 200 OK") and reply.endswith(b"ok\n")


def test_a_malformed_request_gets_400_and_a_close(demo_target):
    assert raw_exchange(demo_target, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")


def test_workers_share_the_port_and_stop_together(tmp_path):
    port = free_port()
    with running([sys.executable, "-m", "stressgrid.targets.demo", "--port", str(port),
                  "--workers", "2"], port) as process:
        # The port listens before the workers are forked: wait for both.
        workers = wait_until(lambda: len(found := psutil.Process(process.pid).children()) == 2 and found,
                             timeout=10, message="two workers")
        assert all(request(port, "GET", "/")[0] == 200 for _ in range(20))
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    assert wait_gone(workers, timeout=10) == []


def test_a_taken_port_is_a_clear_error(demo_target):
    result = subprocess.run([sys.executable, "-m", "stressgrid.targets.demo", "--port",
                             str(demo_target)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{demo_target}" in result.stderr


def test_it_says_where_it_listens(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "stressgrid.targets.demo", "--port", "0"],
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        wait_for_port(port, process=process)
        assert request(port, "GET", "/health")[2] == b"ok\n"
    finally:
        process.terminate()
        process.wait(10)
