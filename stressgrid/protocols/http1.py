"""HTTP/1.0 and 1.1 devices, plain and over TLS (protocols http10, http, http10s, https).

Each device has one ``Http1Client`` and at most one connection at a time. The
connection opens lazily on the first request and stays open between requests
on HTTP/1.1; HTTP/1.0, ``Connection: close`` and a server that closes an idle
connection just make the next request open a new one. The byte-level work
(request bytes, response parsing, response metrics) is the Cython core
``stressgrid._core.http1``; this module adds sockets, TLS, timeouts and retries.

Timeouts: each call has a deadline (``timeout=`` in ms, default the plan's
``timeout_ms``). Instead of a timer per request, a device keeps one timer that
is moved only when it fires early or a shorter deadline comes: back-to-back
requests cost no timer work.

WebSocket hook: ``await client.upgrade(path, headers)`` sends a GET with the
caller's upgrade headers and returns ``(status, headers, leftover)``. After a
``101`` the connection is no longer HTTP: ``leftover`` holds the bytes that came
after the response head, and ``client.detach(protocol)`` hands the transport to
``protocol`` (feeding it anything that arrived in between). An object stored in
``client.ws`` is closed with the client.
"""
import asyncio
import ssl
import sys
from json import dumps as _json_dumps

from msgpack import packb as _msgpack_packb

from stressgrid._core.device import current_device, now_us
from stressgrid._core.http1 import ClientBase, ConnectionBase, Http1Core, RequestWriter
from stressgrid.errors import ConnectionClosedError, ProtocolError, TlsError, count_error

TLS_PROTOCOLS = frozenset({"https", "http10s"})
HTTP10_PROTOCOLS = frozenset({"http10", "http10s"})

_JSON = b"application/json"
_MSGPACK = b"application/msgpack"
_TIMER_SLACK_S = 0.0005  # the loop clock has millisecond steps

_tls_contexts = {}


def tls_context(verify=False, ca_file="", alpn="http/1.1"):
    """The process-wide client SSLContext for these settings (one per combination)."""
    key = (bool(verify), ca_file or "", alpn)
    context = _tls_contexts.get(key)
    if context is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            if ca_file:
                context.load_verify_locations(cafile=ca_file)
            else:
                context.load_default_certs()
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if alpn:
            context.set_alpn_protocols([alpn])
        _tls_contexts[key] = context
    return context


if sys.version_info >= (3, 11):
    async def _within(awaitable, seconds):
        async with asyncio.timeout(seconds):
            return await awaitable
else:  # pragma: no cover - 3.10
    def _within(awaitable, seconds):
        return asyncio.wait_for(awaitable, seconds)


def _connection_error(exc):
    """A transport's loss reason as the exception a script sees."""
    if exc is None:
        return ConnectionClosedError("server closed the connection")
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        error = TlsError(f"TLS failed: {exc}")
        error.__cause__ = exc
        return error
    return exc


class _Connection(ConnectionBase, asyncio.Protocol):
    """One TCP (or TLS) connection of a device, driving an ``Http1Core``.

    ``data_received`` and the completion of a response are compiled
    (``ConnectionBase``); the rest of the protocol is here.
    """

    __slots__ = ("buffered", "lost_exc")

    def __init__(self, client):
        self.client = client
        self.core = Http1Core(client.recorder)
        self.buffered = None     # bytes after a 101 that nobody took yet
        self.lost_exc = None

    def connection_made(self, transport):
        self.transport = transport

    def idle_data(self, data):
        if self.upgraded:
            self.buffered = data if self.buffered is None else self.buffered + data
        else:
            # The server speaks while no request is due (often a 408 before an
            # idle close): the connection is no use; the next request opens another.
            self.discard(False)

    def fail(self, exc):
        waiter = self.waiter
        self.waiter = None
        self.request = None
        client = self.client
        if client is not None:
            client.inflight = None
            count_error(client.recorder, exc)
        self.discard(True)
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def discard(self, abort):
        """Stop using this connection; it is closed and no longer the device's."""
        client = self.client
        if client is not None and client.conn is self:
            client.conn = None
        transport = self.transport
        if transport is not None and not self.lost:
            if abort:
                transport.abort()
            else:
                transport.close()

    def eof_received(self):
        return False  # close our side too; connection_lost decides what the EOF meant

    def connection_lost(self, exc):
        self.lost = True
        self.lost_exc = exc
        client = self.client
        core = self.core
        if client is None:
            core.release()
            return
        if client.conn is self:
            client.conn = None
        waiter = self.waiter
        if waiter is None:
            # Idle (or upgraded and not yet detached): a quiet close.
            if not self.upgraded:
                core.release()
            return
        try:
            if exc is not None:
                # A reset or TLS failure: even a close-delimited body is cut short.
                raise ConnectionClosedError("connection lost")
            event = core.eof()
        except ConnectionClosedError as closed:
            request = self.request
            self.waiter = None
            self.request = None
            client.inflight = None
            received = core.received
            core.release()
            if request is not None and self.reused and received == 0 and not waiter.done():
                # The server closed a kept-alive connection as we reused it and
                # never answered: the request is sent again on a new connection.
                client.resend(waiter, request, self.head)
                return
            error = closed if exc is None else _connection_error(exc)
            if not waiter.done():
                waiter.set_exception(count_error(client.recorder, error))
            return
        if event:
            self.complete(event)   # a body that ends with the connection
        core.release()


class Http1Client(ClientBase):
    """A device's HTTP/1 client: one connection at a time, opened on demand.

    ``request()`` and ``send()`` (compiled, in ``ClientBase``) are the path of a
    request on an open connection; here are connecting, retrying, timeouts,
    the upgrade hand-over and closing.
    """

    __slots__ = ("host", "port", "sni", "tls", "conn_count", "conn_us", "detached")

    def __init__(self, device):
        address = device.address
        protocol = address.protocol
        opts = device.opts
        self.recorder = device.recorder
        self.loop = device.loop
        self.host = address.connect_host
        self.port = address.port
        tls = protocol in TLS_PROTOCOLS
        http10 = protocol in HTTP10_PROTOCOLS
        self.writer = RequestWriter(address.host, address.port, tls, http10)
        if tls:
            self.tls = tls_context(getattr(opts, "tls_verify", False), getattr(opts, "tls_ca_file", ""),
                                   "http/1.0" if http10 else "http/1.1")
            self.sni = address.host
        else:
            self.tls = None
            self.sni = None
        self.timeout_s = device.timeout_s
        self.conn_count = self.recorder.counter("conn_count")
        self.conn_us = self.recorder.histogram("conn_us")
        self.detached = False

    async def open(self):
        """Nothing to do: HTTP connects on the first request."""

    @property
    def transport(self):
        """The current connection's transport, or None."""
        conn = self.conn
        return conn.transport if conn is not None else None

    # ---- requests -------------------------------------------------------------

    def request_slow(self, data, head, budget_s):
        """``request()`` when there is no idle open connection."""
        conn = self.conn
        if self.detached or (conn is not None and conn.upgraded):
            raise RuntimeError("the connection was upgraded (to WebSocket, by ws_upgrade); "
                               "HTTP functions cannot use it any more")
        if conn is not None:
            if not conn.waiter.done():
                raise RuntimeError("one HTTP request at a time per device: await the previous one first")
            # The previous call was cancelled mid-response: that connection is no use.
            conn.waiter = None
            conn.discard(True)
        if self.connecting:
            raise RuntimeError("one HTTP request at a time per device: await the previous one first")
        if self.closed:
            raise RuntimeError("the device's HTTP client is closed")
        self.connecting = True
        return self._connect_and_send(data, head, budget_s)

    def upgrade(self, path, headers=(), *, timeout=None):
        """GET ``path`` with the caller's upgrade headers: ``(status, headers, leftover)`` on 101.

        Any other status returns the response like ``get``. After a 101 the
        connection belongs to whoever calls ``detach``.
        """
        return self.request(b"GET", path, headers, None, None, timeout)

    def detach(self, protocol):
        """Give the upgraded connection to ``protocol``; returns its transport."""
        conn = self.conn
        if conn is None or not conn.upgraded:
            raise RuntimeError("no upgraded connection to detach")
        self.conn = None
        self.detached = True
        conn.client = None
        transport = conn.transport
        transport.set_protocol(protocol)
        buffered, conn.buffered = conn.buffered, None
        if buffered:
            protocol.data_received(buffered)
        if conn.lost:
            protocol.connection_lost(conn.lost_exc)
        return transport

    async def _connect_and_send(self, data, head, budget_s):
        deadline = self.loop.time() + budget_s
        try:
            conn = await self._connect(budget_s)
        finally:
            self.connecting = False
        if self.closed:
            conn.discard(True)
            raise RuntimeError("the device's HTTP client is closed")
        return await self.send(conn, self.loop.create_future(), data, head, deadline, budget_s)

    def resend(self, waiter, data, head):
        """Send ``data`` again on a new connection; ``waiter`` gets the outcome."""
        self.connecting = True
        self.loop.create_task(self._resend(waiter, data, head))

    async def _resend(self, waiter, data, head):
        remaining = self.deadline - self.loop.time()
        try:
            if remaining <= 0:
                raise count_error(self.recorder, TimeoutError(
                    f"no complete response within {self.budget_s * 1000:.0f} ms"))
            conn = await self._connect(remaining)
        except BaseException as exc:  # handed to the script, counted already
            if not waiter.done():
                waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self.connecting = False
        if waiter.done() or self.closed:
            conn.discard(True)
            return
        self.send(conn, waiter, data, head, self.deadline, self.budget_s)

    async def _connect(self, timeout_s):
        loop = self.loop
        started = now_us()
        try:
            _, conn = await _within(
                loop.create_connection(lambda: _Connection(self), self.host, self.port,
                                       ssl=self.tls, server_hostname=self.sni),
                timeout_s)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            error = TlsError(f"TLS handshake with {self.sni}:{self.port} failed: {exc}")
            raise count_error(self.recorder, error) from exc
        except TimeoutError:
            error = TimeoutError(f"connecting to {self.host}:{self.port} took over "
                                 f"{timeout_s * 1000:.0f} ms")
            raise count_error(self.recorder, error) from None
        except OSError as exc:
            raise count_error(self.recorder, exc)
        self.conn_us.record(now_us() - started)
        self.conn_count.value += 1
        self.conn = conn
        return conn

    def on_timer(self):
        self.timer = None
        conn = self.inflight
        if conn is None:
            return   # nothing due: the timer lapses until the next request
        if self.loop.time() + _TIMER_SLACK_S < self.deadline:
            # Armed for an earlier request: move it to the current deadline.
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self.on_timer)
            return
        waiter = conn.waiter
        self.inflight = None
        conn.waiter = None
        conn.request = None
        conn.discard(True)
        if waiter is not None and not waiter.done():
            error = TimeoutError(f"no complete response within {self.budget_s * 1000:.0f} ms")
            waiter.set_exception(count_error(self.recorder, error))

    def close(self):
        """Close the connection and forget everything; never raises."""
        self.closed = True
        try:
            timer, self.timer = self.timer, None
            if timer is not None:
                timer.cancel()
            conn, self.conn = self.conn, None
            inflight, self.inflight = self.inflight, None
            for each in (conn, inflight):
                if each is not None and each.client is self:
                    each.client = None
                    if each.transport is not None and not each.lost:
                        if each.waiter is not None:
                            each.transport.abort()
                        else:
                            each.transport.close()
                    each.waiter = None
            ws, self.ws = self.ws, None
            if ws is not None:
                ws.close()
        except Exception:  # noqa: BLE001 - close must not raise
            pass


def create_client(device):
    return Http1Client(device)


# ---- script functions ------------------------------------------------------------

def _body_bytes(body):
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"body must be bytes or str, not {type(body).__name__}")


def _with_body(method, path, headers, body, json, msgpack, timeout):
    if json is not None:
        return current_device().client.request(method, path, headers,
                                               _json_dumps(json, separators=(",", ":")).encode("utf-8"),
                                               _JSON, timeout)
    if msgpack is not None:
        return current_device().client.request(method, path, headers, _msgpack_packb(msgpack),
                                               _MSGPACK, timeout)
    return current_device().client.request(method, path, headers, _body_bytes(body), None, timeout)


def get(path, headers=(), *, timeout=None):
    """GET ``path``; await it for ``(status, headers, body)``."""
    return current_device().client.request(b"GET", path, headers, None, None, timeout)


def head(path, headers=(), *, timeout=None):
    """HEAD ``path``; the body is always ``b""``."""
    return current_device().client.request(b"HEAD", path, headers, None, None, timeout)


def options(path, headers=(), *, timeout=None):
    """OPTIONS ``path``."""
    return current_device().client.request(b"OPTIONS", path, headers, None, None, timeout)


def delete(path, headers=(), *, timeout=None):
    """DELETE ``path``."""
    return current_device().client.request(b"DELETE", path, headers, None, None, timeout)


def post(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None):
    """POST ``body`` (or ``json=``/``msgpack=`` with their content type) to ``path``."""
    return _with_body(b"POST", path, headers, body, json, msgpack, timeout)


def put(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None):
    """PUT ``body`` (or ``json=``/``msgpack=``) at ``path``."""
    return _with_body(b"PUT", path, headers, body, json, msgpack, timeout)


def patch(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None):
    """PATCH ``path`` with ``body`` (or ``json=``/``msgpack=``)."""
    return _with_body(b"PATCH", path, headers, body, json, msgpack, timeout)


BUILTINS = {
    "get": get,
    "head": head,
    "options": options,
    "delete": delete,
    "post": post,
    "put": put,
    "patch": patch,
}


# ---- WebSocket over an upgraded connection: stressgrid.protocols.websocket ----
from stressgrid.protocols.websocket import BUILTINS as _WS_BUILTINS  # noqa: E402

BUILTINS.update(_WS_BUILTINS)
