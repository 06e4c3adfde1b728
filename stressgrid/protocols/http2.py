"""HTTP/2 devices: protocols ``http2`` (h2c, prior knowledge) and ``http2s`` (TLS, ALPN ``h2``).

Each device has one connection, opened on its first request. Requests a
script issues concurrently (``asyncio.gather``) share it as parallel streams,
within the server's ``SETTINGS_MAX_CONCURRENT_STREAMS``. The protocol work is
done by the Cython core (``stressgrid._core.http2``, over libnghttp2) and the
per-request path (a request submitted, its response handed to the script inside
``data_received``) is compiled in ``stressgrid._core.http2_client``; this module
connects, keeps the deadlines and turns failures into counted exceptions:

- a GOAWAY from the server lets streams in flight finish; the next request
  opens a new connection, and a request the server refused unprocessed
  (``REFUSED_STREAM`` before any response) is sent again there once;
- a stream reset by the server raises ``Http2StreamError``
  (``http2_stream_error_count``);
- a connection lost with requests in flight raises ``ConnectionClosedError``.

A request that waits for a connection or a response longer than its timeout
raises ``TimeoutError``. One ``DeadlineTimer`` per connection keeps the
deadlines: it is set for the earliest, and re-armed when it fires, not per
request.
"""
import asyncio

from stressgrid._core.deadline import passed
from stressgrid._core.device import now_us
from stressgrid._core.http2 import Http2Connection
from stressgrid._core.http2_client import ClientBase, ProtocolBase
from stressgrid._core.http_functions import BUILTINS as HTTP_BUILTINS
from stressgrid._core.request import authority
from stressgrid.errors import ConnectionClosedError, RemoteProtocolError, count_error, lost_connection_error

from .connect import connect
from .waiting import HoldsTimer
from .tls import context_for

ALPN_PROTOCOLS = ["h2"]


# -- the connection -----------------------------------------------------------

class _Http2Protocol(HoldsTimer, ProtocolBase, asyncio.Protocol):
    """Moves one connection's bytes between its transport and its core. The per-request path
    is compiled (``ProtocolBase``); here is the rest."""

    __slots__ = ()

    def __init__(self, client, core):
        self.client = client
        self.core = core

    # asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        self.flush()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.lost = True
        self.lost_exc = exc
        self.drop_timer()
        pending = self.core.connection_lost()
        if self.client.protocol is self:
            self.client.protocol = None
        recorder = self.client.recorder
        for stream in pending:
            future = stream.user.future
            if not future.done():
                error = lost_connection_error(exc, "HTTP/2 connection closed with the request in flight")
                future.set_exception(count_error(recorder, error))

    def on_deadline(self):
        """The deadline timer: fail the requests past their deadline, re-arm for the rest."""
        now = now_us()
        earliest = None
        expired = []
        for stream in self.core.streams.values():
            if stream.cancelled:
                continue
            deadline = stream.deadline_us
            if passed(deadline, now):
                expired.append(stream)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        recorder = self.client.recorder
        for stream in expired:
            self.core.reset_stream(stream.stream_id)
            future = stream.user.future
            if not future.done():
                future.set_exception(count_error(recorder, TimeoutError(
                    f"no HTTP/2 response within {stream.user.timeout_s * 1000:.0f} ms")))
        if expired:
            self.flush()
        if earliest is not None and not self.lost and self.timer is not None:
            self.timer.arm(earliest)

    def fail(self, exc):
        """The connection is broken: fail every request on it, count it once, close."""
        recorder = self.client.recorder
        self.failure = count_error(recorder, exc)
        try:
            out = self.core.data_to_send()  # the GOAWAY the library queued
            if out and not self.lost:
                self.transport.write(out)
        except Exception:  # noqa: BLE001 - the connection is going away anyway
            pass
        pending = self.core.connection_lost()
        self.lost = True
        self.drop_timer()
        if self.client.protocol is self:
            self.client.protocol = None
        for stream in pending:
            future = stream.user.future
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class Http2Client(ClientBase):
    """A device's HTTP/2 connection, opened on the first request. The per-request path is
    compiled (``ClientBase``); here is the rest."""

    def __init__(self, device):
        self.device = device
        self.loop = device.loop
        self.address = device.address
        self.tls = self.address.protocol == "http2s"
        recorder = self.recorder = device.recorder
        self.headers_histogram = recorder.histogram("headers_us")
        self.body_histogram = recorder.histogram("body_us")
        self.responses = recorder.response_counters()
        self.protocol = None
        self.connecting = None
        self.closed = False
        self.authority = authority(self.address.host, self.address.port, self.tls)
        self.scheme = "https" if self.tls else "http"

    async def open(self):
        """Nothing to do: the connection opens on the first request."""

    def close(self):
        self.closed = True
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None and not protocol.lost:
            try:
                protocol.core.terminate()
                protocol.flush()
                protocol.transport.close()
            except Exception:  # noqa: BLE001 - close never raises
                pass
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None

    # requests

    async def request_on_new_connection(self, method, path, headers, body, content_type, seconds, group):
        deadline = self.loop.time() + seconds
        protocol = await self.connected(seconds)
        future = protocol.submit(method, path, headers, body, content_type,
                                 max(0.0, deadline - self.loop.time()), group=group)
        if future is None:
            raise self._not_taken(protocol, "a new HTTP/2 connection refused a request")
        return await future

    def _not_taken(self, protocol, refusal):
        """The counted error of a request ``protocol`` did not take: its failure, reset or close
        when it ended before the request went (counted once), else the server's ``refusal``."""
        if protocol.lost:
            return count_error(self.recorder, protocol.failure or lost_connection_error(
                protocol.lost_exc, "HTTP/2 connection closed before the request was sent"))
        return count_error(self.recorder, RemoteProtocolError(refusal))

    def resend(self, request):
        """Send a request the server refused unprocessed again, on a new connection."""
        future = request.future
        seconds = request.timeout_s

        async def again():
            try:
                protocol = self.protocol
                if protocol is None or not protocol.core.request_allowed:
                    protocol = await self.connected(seconds)
                retry = protocol.submit(request.method, request.path, request.headers, request.body,
                                        request.content_type, seconds, True, request.group)
                if retry is None:
                    raise self._not_taken(protocol, "HTTP/2 request refused by the server twice")
                result = await retry
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to the waiting script
                if not future.done():
                    future.set_exception(exc)
                return
            if not future.done():
                future.set_result(result)

        self.loop.create_task(again())

    # connecting

    async def connected(self, seconds):
        """The open protocol, connecting first if needed (requests share one attempt)."""
        if self.closed:
            raise count_error(self.recorder, ConnectionClosedError("the device's client is closed"))
        protocol = self.protocol
        if protocol is not None and protocol.core.request_allowed:
            return protocol
        if self.connecting is None:
            self.connecting = self.loop.create_task(self._connect(seconds))
        task = self.connecting
        try:
            return await asyncio.shield(task)
        finally:
            if self.connecting is task and task.done():
                self.connecting = None

    async def _connect(self, seconds):
        address = self.address
        core = Http2Connection(self.authority, self.scheme, self.headers_histogram,
                               self.body_histogram, self.responses)
        protocol = _Http2Protocol(self, core)
        tls = context_for(self.device.opts, ALPN_PROTOCOLS) if self.tls else None
        transport, _ = await connect(self.recorder, self.loop, lambda: protocol, address.connect_host, address.port,
                                     seconds, tls=tls, server_hostname=address.host,
                                     require_alpn="h2" if self.tls else None)
        if self.closed:
            transport.abort()
            raise count_error(self.recorder, ConnectionClosedError("the device's client is closed"))
        self.protocol = protocol
        return protocol


def create_client(device):
    return Http2Client(device)


# -- script functions: compiled, in stressgrid._core.http_functions ----------

BUILTINS = dict(HTTP_BUILTINS)
