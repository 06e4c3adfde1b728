"""HTTP/1.0 and 1.1 devices, plain and over TLS (protocols http10, http, http10s, https).

Each device has one ``Http1Client`` and at most one connection at a time. The
connection opens lazily on the first request and stays open between requests
on HTTP/1.1; HTTP/1.0, ``Connection: close`` and a server that closes an idle
connection just make the next request open a new one. The byte-level work
(request bytes, response parsing, response metrics) is the sans-IO Cython core
``stressgrid._core.http1``, and the steady-state request path is compiled in
``stressgrid._core.http1_client``; this module adds sockets, TLS, timeouts and
retries, as the hooks that path calls.

Timeouts: each call has a deadline (``timeout=`` in ms, default the plan's
``timeout_ms``). Instead of a timer per request, a device keeps one
``DeadlineTimer`` (``stressgrid._core.deadline``), moved only when it fires
early or a shorter deadline comes: back-to-back requests cost no timer work.
A connect still under way at the deadline is cancelled and counted as every
protocol counts one (``stressgrid.protocols.connect``: ``conn_timedout``).

WebSocket hook: ``await client.upgrade(path, headers)`` sends a GET with the
caller's upgrade headers and returns ``(status, headers, leftover)``. After a
``101`` the connection is no longer HTTP: ``leftover`` holds the bytes that came
after the response head, and ``client.detach(protocol)`` hands the transport to
``protocol`` (feeding it anything that arrived in between). An object stored in
``client.ws`` is closed with the client.
"""
import asyncio
import ssl

from stressgrid._core.device import now_us
from stressgrid._core.http1 import Http1Core, request_writer
from stressgrid._core.http1_client import ClientBase, ConnectionBase
from stressgrid._core.http_functions import BUILTINS as _HTTP_BUILTINS
from stressgrid._core.pending import new_pending
from stressgrid.errors import ConnectionClosedError, LocalProtocolError, TlsError, count_error, lost_connection_error

from .connect import connect_error, connect_timed_out, record_connected
from .source import open_connection
from .tls import context_for

TLS_PROTOCOLS = frozenset({"https", "http10s"})
HTTP10_PROTOCOLS = frozenset({"http10", "http10s"})

_targets = {}


class _Target:
    """What the devices of one address share: where to connect, TLS, the request writer."""

    __slots__ = ("host", "port", "sni", "tls", "tls_problem", "writer")

    def __init__(self, address, opts):
        protocol = address.protocol
        tls = protocol in TLS_PROTOCOLS
        http10 = protocol in HTTP10_PROTOCOLS
        self.host = address.connect_host
        self.port = address.port
        self.writer = request_writer(address.host, address.port, tls, http10)
        self.sni = address.host if tls else None
        self.tls = None
        self.tls_problem = None
        if tls:
            try:
                self.tls = context_for(opts, ("http/1.0",) if http10 else ("http/1.1",))
            except (OSError, ssl.SSLError) as exc:
                # A missing or bad CA file: every connect fails with a counted TLS error.
                self.tls_problem = f"cannot use the TLS settings: {exc}"


def _target(address, opts):
    key = (address.host, address.connect_host, address.port, address.protocol,
           getattr(opts, "tls_verify", False), getattr(opts, "tls_ca_file", ""))
    target = _targets.get(key)
    if target is None:
        target = _targets[key] = _Target(address, opts)
    return target


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
            ready = core.eof()
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
                client.resend(waiter, request, self.flags)
                return
            error = closed if exc is None else lost_connection_error(exc, "server closed the connection")
            if not waiter.done():
                waiter.set_exception(count_error(client.recorder, error))
            return
        if ready:
            self.complete()   # a body that ends with the connection
        core.release()


class Http1Client(ClientBase):
    """A device's HTTP/1 client: one connection at a time, opened on demand.

    ``request()`` and ``send()`` (compiled, in ``ClientBase``) are the path of a
    request on an open connection; here are connecting, retrying, timeouts,
    the upgrade hand-over and closing.
    """

    __slots__ = ("target", "detached", "connect_task", "connect_timed_out")

    def __init__(self, device):
        self.target = target = _target(device.address, device.opts)
        self.recorder = device.recorder
        self.device = device
        self.loop = device.loop
        self.writer = target.writer
        self.timeout_s = device.timeout_s
        self.detached = False
        self.connect_task = None
        self.connect_timed_out = False

    async def open(self):
        """Nothing to do: HTTP connects on the first request."""

    @property
    def transport(self):
        """The current connection's transport, or None."""
        conn = self.conn
        return conn.transport if conn is not None else None

    # ---- requests -------------------------------------------------------------

    def request_slow(self, data, flags, budget_s):
        """``request()`` when there is no idle open connection."""
        conn = self.conn
        if self.detached or (conn is not None and conn.upgraded):
            raise LocalProtocolError("the connection was upgraded (to WebSocket, by ws_upgrade); "
                               "HTTP functions cannot use it any more")
        if conn is not None:
            if not conn.waiter.done():
                raise LocalProtocolError("one HTTP request at a time per device: await the previous one first")
            # The previous call was cancelled mid-response: that connection is no use.
            conn.waiter = None
            conn.discard(True)
        if self.connecting:
            raise LocalProtocolError("one HTTP request at a time per device: await the previous one first")
        if self.closed:
            raise LocalProtocolError("the device's HTTP client is closed")
        self.connecting = True
        return self._open_then_send(None, data, flags, now_us() + int(budget_s * 1e6), budget_s)

    def upgrade(self, path, headers=(), *, timeout=None, group=None):
        """GET ``path`` with the caller's upgrade headers: ``(status, headers, leftover)`` on 101.

        Any other status returns the response like ``get``. After a 101 the
        connection belongs to whoever calls ``detach``. ``group``: a named request's
        metrics (a 101's body time is 0).
        """
        return self.request(b"GET", path, headers, None, None, timeout, group)

    def detach(self, protocol):
        """Give the upgraded connection to ``protocol``; returns its transport."""
        conn = self.conn
        if conn is None or not conn.upgraded:
            raise LocalProtocolError("no upgraded connection to detach")
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

    def resend(self, waiter, data, flags):
        """Send ``data`` again on a new connection, in a task; ``waiter`` gets the outcome."""
        self.connecting = True
        self.loop.create_task(self._open_then_send(waiter, data, flags, self.deadline_us, self.budget_s))

    async def _open_then_send(self, waiter, data, flags, deadline_us, budget_s):
        """Connect, then send ``data``.

        Awaited by the script (``waiter`` None): returns the response or
        raises. Run as a task for a retry: ``waiter`` gets the outcome.
        """
        loop = self.loop
        started = now_us()
        # The device's one timer also bounds the connect: at the deadline
        # on_deadline cancels this task, and the cancellation becomes a TimeoutError.
        task = asyncio.current_task(loop)
        self.connect_task = task
        self.budget_s = budget_s
        self.arm(deadline_us)
        target = self.target
        try:
            if started >= deadline_us:
                raise TimeoutError(f"no complete response within {budget_s * 1000:.0f} ms")
            if target.tls_problem is not None:
                raise TlsError(target.tls_problem)
            _, conn = await open_connection(loop, lambda: _Connection(self), target.host, target.port,
                                             tls=target.tls, server_hostname=target.sni)
        except asyncio.CancelledError:
            if not self.connect_timed_out:
                if waiter is not None and not waiter.done():
                    waiter.cancel()
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()    # our cancellation, not the caller's
            error = connect_timed_out(target.sni or target.host, target.port, budget_s)
        except (OSError, ssl.CertificateError, TlsError) as exc:  # ssl.SSLError is an OSError
            error = connect_error(exc, target.sni or target.host, target.port)
        else:
            error = None
        finally:
            self.connect_task = None
            self.connect_timed_out = False
            self.connecting = False
        if error is not None:
            count_error(self.recorder, error)
            if waiter is None:
                raise error
            if not waiter.done():
                waiter.set_exception(error)
            return None
        record_connected(self.recorder, started)
        self.conn = conn
        if waiter is None:
            if self.closed:
                conn.discard(True)
                raise LocalProtocolError("the device's HTTP client is closed")
            return await self.send(conn, new_pending(loop), data, flags, deadline_us, budget_s)
        if waiter.done() or self.closed:
            conn.discard(True)   # the script gave up or the device is closing
            return None
        self.send(conn, waiter, data, flags, deadline_us, budget_s)
        return None

    def on_deadline(self):
        """The deadline of the last request (or connect) passed."""
        conn = self.inflight
        if conn is None:
            task = self.connect_task
            if task is not None:
                self.connect_timed_out = True
                task.cancel()
                return
            # Nothing due: an idle device gives its timer back (made again by the
            # next request).
            self.timer = None
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
            timer, self.timer = self.timer, None   # it refers back to this client
            if timer is not None:
                timer.cancel()
            task, self.connect_task = self.connect_task, None
            if task is not None:
                task.cancel()
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


# ---- script functions: compiled, in stressgrid._core.http_functions --------------

BUILTINS = dict(_HTTP_BUILTINS)


# ---- WebSocket over an upgraded connection: stressgrid.protocols.websocket ----
from stressgrid.protocols.websocket import BUILTINS as _WS_BUILTINS  # noqa: E402

BUILTINS.update(_WS_BUILTINS)
