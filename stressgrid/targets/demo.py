"""A small, fast HTTP/1.x server to point a first load test at.

``python -m stressgrid.targets.demo [--host 127.0.0.1] [--port 5000] [--workers 1]``

It listens on loopback by default and answers:

``GET /``              a short plain-text greeting
``GET /json``          a small JSON document
``GET /slow?ms=N``     the greeting after N milliseconds (default 100, at most 60000)
``GET /bytes?n=N``     N bytes of ``application/octet-stream`` (at most 16 MiB)
``GET /status/NNN``    an empty response with status NNN (100 < NNN < 600)
``POST|PUT /echo``     the request body back, with the request's content type
``GET /health``        ``ok``

``HEAD`` works wherever ``GET`` does. Connections are kept alive (HTTP/1.1,
or HTTP/1.0 with ``Connection: keep-alive``) and pipelined requests are
answered in order. Anything else is a 404 (unknown path) or 405 (wrong
method). Once it listens, it prints ``listening on http://HOST:PORT`` to
stderr. With ``--workers N`` it forks N processes that share the listening
socket.

It runs on uvloop with the httptools parser when they are installed (they
are dependencies of the generator) and on the standard asyncio loop otherwise.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

import httptools

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a package dependency
    uvloop = None

from stressgrid.argtypes import listen_port, positive_int
from stressgrid.orphans import die_with_parent

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
MAX_SLOW_MS = 60000
MAX_BYTES = 16 * 1024 * 1024
MAX_REQUEST_BODY = 16 * 1024 * 1024
MAX_PENDING_PER_CONNECTION = 128

GREETING = b"Hello from the Stressgrid demo target!\n"
JSON_BODY = json.dumps({"service": "stressgrid-demo-target", "ok": True,
                        "items": [{"id": i, "name": f"item-{i}"} for i in range(5)]},
                       separators=(",", ":")).encode()
_FILLER = bytes(range(256)) * 4096  # 1 MiB pattern for /bytes

REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
           304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           409: "Conflict", 413: "Content Too Large", 418: "I'm a teapot",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class _Clock:
    """The ``Date`` header value, refreshed once a second rather than per response."""

    value = formatdate(usegmt=True).encode()

    @classmethod
    def tick(cls, loop):
        cls.value = formatdate(usegmt=True).encode()
        loop.call_at(loop.time() + 1.0, cls.tick, loop)


def response(status, body=b"", content_type=b"text/plain; charset=utf-8", keep_alive=True,
             head=False, version=b"1.1"):
    """One complete response as bytes."""
    reason = REASONS.get(status, "Unknown").encode()
    lines = [b"HTTP/", version, b" %d " % status, reason, b"\r\nServer: stressgrid-demo\r\nDate: ",
             _Clock.value, b"\r\n"]
    if status >= 200 and status not in (204, 304):
        lines += [b"Content-Type: ", content_type, b"\r\nContent-Length: %d\r\n" % len(body)]
    else:
        body = b""
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    elif version == b"1.0":
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    if not head:
        lines.append(body)
    return b"".join(lines)


def _query_int(query, name, default, low, high):
    """An integer query parameter clamped to ``[low, high]``; ``None`` when not a number."""
    values = parse_qs(query).get(name)
    if not values:
        return default
    try:
        return min(max(int(values[0]), low), high)
    except ValueError:
        return None


class Request:
    __slots__ = ("method", "url", "content_type", "body", "keep_alive", "version")

    def __init__(self):
        self.method = b""
        self.url = b""
        self.content_type = b"application/octet-stream"
        self.body = []
        self.keep_alive = True
        self.version = b"1.1"


def handle(request):
    """``(status, body, content type, delay in seconds)`` for a parsed request."""
    method = request.method
    head = method == b"HEAD"
    if head:
        method = b"GET"
    parts = urlsplit(request.url.decode("latin-1"))
    path, query = parts.path, parts.query
    if path == "/echo":
        if method not in (b"POST", b"PUT"):
            return 405, b"use POST or PUT\n", b"text/plain; charset=utf-8", 0
        return 200, b"".join(request.body), request.content_type, 0
    if method != b"GET":
        known = path in ("/", "/json", "/slow", "/bytes", "/health") or path.startswith("/status/")
        return (405 if known else 404), b"", b"text/plain; charset=utf-8", 0
    if path == "/":
        return 200, GREETING, b"text/plain; charset=utf-8", 0
    if path == "/json":
        return 200, JSON_BODY, b"application/json", 0
    if path == "/health":
        return 200, b"ok\n", b"text/plain; charset=utf-8", 0
    if path == "/slow":
        ms = _query_int(query, "ms", 100, 0, MAX_SLOW_MS)
        if ms is None:
            return 400, b"ms must be an integer\n", b"text/plain; charset=utf-8", 0
        return 200, GREETING, b"text/plain; charset=utf-8", ms / 1000.0
    if path == "/bytes":
        n = _query_int(query, "n", 1024, 0, MAX_BYTES)
        if n is None:
            return 400, b"n must be an integer\n", b"text/plain; charset=utf-8", 0
        body = (_FILLER * (n // len(_FILLER) + 1))[:n] if n > len(_FILLER) else _FILLER[:n]
        return 200, body, b"application/octet-stream", 0
    if path.startswith("/status/"):
        try:
            status = int(path[len("/status/"):])
        except ValueError:
            status = 0
        if not 100 < status < 600:
            return 400, b"status must be from 101 to 599\n", b"text/plain; charset=utf-8", 0
        return status, b"", b"text/plain; charset=utf-8", 0
    return 404, b"not found\n", b"text/plain; charset=utf-8", 0


class DemoProtocol(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self):
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.request = None
        self.request_bytes = 0
        # Responses not yet written, in request order: bytes, or a future of bytes.
        self.pending = []
        self.closing = False
        self.paused = False

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data):
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"upgrades are not supported\n")
        except httptools.HttpParserError:
            self._fail(400, b"bad request\n")

    def connection_lost(self, exc):
        self.closing = True
        for item in self.pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.pending.clear()

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self):
        self.request = Request()
        self.request_bytes = 0

    def on_url(self, url):
        self.request.url += url

    def on_header(self, name, value):
        if name.lower() == b"content-type":
            self.request.content_type = value

    def on_body(self, body):
        self.request_bytes += len(body)
        if self.request_bytes > MAX_REQUEST_BODY:
            self._fail(413, b"request body too large\n")
            return
        self.request.body.append(body)

    def on_message_complete(self):
        if self.closing:
            return
        request = self.request
        request.method = self.parser.get_method()
        request.keep_alive = self.parser.should_keep_alive()
        request.version = b"1.0" if self.parser.get_http_version() == "1.0" else b"1.1"
        status, body, content_type, delay = handle(request)
        head = request.method == b"HEAD"
        if delay:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            loop.call_later(delay, self._ready, future, status, body, content_type, request, head)
            self.pending.append(future)
        else:
            self.pending.append(response(status, body, content_type, request.keep_alive, head,
                                         request.version))
        if not request.keep_alive:
            self.closing = True
        self._flush()
        if len(self.pending) > MAX_PENDING_PER_CONNECTION and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # -- output ---------------------------------------------------------------

    def _ready(self, future, status, body, content_type, request, head):
        if not future.done():
            future.set_result(response(status, body, content_type, request.keep_alive, head,
                                       request.version))
            self._flush()

    def _flush(self):
        pending = self.pending
        out = []
        while pending:
            item = pending[0]
            if isinstance(item, asyncio.Future):
                if not item.done() or item.cancelled():
                    break
                item = item.result()
            out.append(item)
            pending.pop(0)
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self.paused and len(pending) <= MAX_PENDING_PER_CONNECTION // 2:
            self.paused = False
            self.transport.resume_reading()
        if self.closing and not pending:
            self.transport.close()

    def _fail(self, status, body):
        if self.transport.is_closing():
            return
        self.pending.append(response(status, body, keep_alive=False))
        self.closing = True
        self._flush()


async def serve(sock):
    loop = asyncio.get_running_loop()
    _Clock.tick(loop)
    server = await loop.create_server(DemoProtocol, sock=sock, backlog=4096)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def listening_socket(host, port):
    """A bound, listening TCP socket for ``host:port`` (IPv6 when ``host`` has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def run_worker(sock):
    if uvloop is not None:
        uvloop.install()
    try:
        asyncio.run(serve(sock))
    except KeyboardInterrupt:
        pass


def run_workers(sock, count):
    """Fork ``count`` workers on one shared socket; stop them all on SIGTERM/SIGINT."""
    children = []

    def stop(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # A stop that comes while the workers are being forked is held until every one
    # exists, then reaches them all.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                die_with_parent()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
                run_worker(sock)
                os._exit(0)
            children.append(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    status = 0
    for pid in children:
        while True:
            try:
                _, code = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                code = 0
                break
            except InterruptedError:
                continue
        status = status or os.waitstatus_to_exitcode(code)
    return 0 if status in (0, -signal.SIGTERM) else 1


def argument_parser():
    parser = argparse.ArgumentParser(
        prog="python -m stressgrid.targets.demo",
        description="A small, fast HTTP/1.x server to load test: GET / (text), /json, "
                    "/slow?ms=N, /bytes?n=N, /status/NNN, /health; POST or PUT /echo.")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for every "
                             f"interface)")
    parser.add_argument("--port", type=listen_port, default=DEFAULT_PORT,
                        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="processes sharing the port (default 1)")
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as exc:
        print(f"demo target: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{port} ({args.workers} worker"
          f"{'s' if args.workers > 1 else ''}, started {time.strftime('%H:%M:%S')})",
          file=sys.stderr, flush=True)
    if args.workers == 1:
        run_worker(sock)
        return 0
    return run_workers(sock, args.workers)


if __name__ == "__main__":
    sys.exit(main())
