"""Event streams never starve the API: a real coordinator with 200 stream clients at once."""
import contextlib
import json
import socket

from tests.coordinator.support import coordinator_process, wait_until

STREAM_CLIENTS = 200


def open_stream(port):
    """A raw client asking for ``/api/stream``; returns the socket and the status line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head.split(b"\r\n", 1)[0].decode(), head


def test_streams_beyond_the_limit_are_told_to_poll_and_requests_still_answer(tmp_path):
    with coordinator_process(tmp_path, args=("--http-threads", "8")) as coordinator, \
            contextlib.ExitStack() as clients:
        statuses = []
        for _ in range(STREAM_CLIENTS):
            sock, status, head = open_stream(coordinator.management_port)
            clients.callback(sock.close)
            statuses.append(status)
        # Half of the 8 threads may stream; every other client is answered at once.
        assert statuses.count("HTTP/1.1 200 OK") == 4
        busy = [s for s in statuses if s != "HTTP/1.1 200 OK"]
        assert busy and all(s.startswith("HTTP/1.1 503") for s in busy)
        assert b"Retry-After: 30" in head
        body = head.split(b"\r\n\r\n", 1)[1]
        if body:  # the 503's JSON body may come with the head
            assert json.loads(body)["error"]["code"] == "streams_busy"
        # With 200 clients connected, the API answers and an abort is carried out.
        status, state, _ = coordinator.api.get("/api/state")
        assert status == 200 and state["run"] is None
        assert coordinator.api.post("/api/runs/no-such-run/abort", {})[0] in (404, 409)
        # A stream's slot comes back when its client has gone away, which the server sees at
        # its next write to it (a state each second, a keepalive every 15 s at the latest).
        clients.close()
        for _ in range(4):
            sock = wait_until(lambda: accepted_stream(coordinator.management_port), timeout=40,
                              interval=0.5, message="a stream slot given back")
            clients.callback(sock.close)


def accepted_stream(port):
    """An open stream's socket, or None (closed) when the coordinator answered 503."""
    sock, status, _ = open_stream(port)
    if status == "HTTP/1.1 200 OK":
        return sock
    sock.close()
    return None
