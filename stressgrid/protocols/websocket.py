"""WebSocket script functions, on the connection of an HTTP/1.x device.

``await ws_upgrade(path, headers=())`` sends the opening handshake (a GET with
``Upgrade: websocket`` and a fresh ``Sec-WebSocket-Key``) over the device's
HTTP/1 connection. On ``101`` it checks ``Sec-WebSocket-Accept`` (and that no
extension or unoffered subprotocol was forced on us), records
``ws_upgrade_us``, takes the connection over and returns ``(101, headers,
b"")``; any other status is returned as the response it is. From then on the
connection speaks WebSocket and HTTP functions refuse to run.

The frames are handled by the Cython core ``stressgrid._core.websocket``:
fragmented messages arrive whole, pings are answered, a close from the server
is answered and ends the connection. Received messages wait in a bounded queue
(1024 messages); when it is full the oldest is dropped and counted as
``ws_dropped_frame_count``.

- ``ws_send_text(s)``, ``ws_send_binary(b)``, ``ws_send_json(obj)``: send one
  message (awaited: they wait while the socket's send buffer is full).
- ``ws_receive_text/binary/json(timeout=5000)``: the next message, waiting up to
  ``timeout`` ms (``TimeoutError``). A text message asked for as binary comes
  as its UTF-8 bytes, a binary one asked for as text is decoded as UTF-8;
  ``json`` parses either.
- ``ws_fetch_text/binary/json()``: the next message if one is queued, else
  ``None``; never waits.

Once the server closed the connection and the queue is empty, receiving and
fetching raise ``WebSocketClosedError`` (a ``ConnectionClosedError``:
``closed_error_count``) carrying ``close_code`` and ``close_reason``; a server that
breaks the protocol raises ``WebSocketProtocolError`` (a ``RemoteProtocolError``:
``protocol_error_count``) carrying the ``close_code`` it was sent. A WebSocket
function used out of turn (before ``ws_upgrade``, two receives at once) raises
``LocalProtocolError`` (``local_protocol_error_count``).
"""
import asyncio

from stressgrid._core.device import current_device, now_us
from stressgrid._core.request import check_headers
from stressgrid._core.http_functions import group_for
from stressgrid._core.pending import new_pending
from stressgrid._core.websocket import WebSocketCore, accept_key, new_key
from stressgrid._core.ws_client import (ConnectionBase, ws_fetch_binary, ws_fetch_json, ws_fetch_text,
                                        ws_receive_binary, ws_receive_json, ws_receive_text, ws_send_binary,
                                        ws_send_json, ws_send_text)
from stressgrid.errors import (LocalProtocolError, RemoteProtocolError, WebSocketClosedError,
                               count_error, lost_connection_error)

from .waiting import HoldsTimer, WriteFlow

MAX_QUEUED_MESSAGES = 1024
CLOSE_GOING_AWAY = 1001

# Headers of the opening handshake the client writes itself (a script's own
# value for one of them replaces ours).
_HANDSHAKE_NAMES = ("upgrade", "connection", "sec-websocket-key", "sec-websocket-version")


class WebSocketConnection(HoldsTimer, WriteFlow, ConnectionBase, asyncio.Protocol):
    """A device's connection after the upgrade: bytes to the core, messages to the script.
    The per-message path is compiled (``ConnectionBase``); here is the rest."""

    __slots__ = ()

    def __init__(self, device):
        self.loop = device.loop
        self.recorder = device.recorder
        self.core = WebSocketCore(MAX_QUEUED_MESSAGES,
                                  dropped_counter=device.recorder.counter("ws_dropped_frame_count"))
        self.sent = new_pending(self.loop)
        self.sent.set_result(None)

    # -- asyncio callbacks ----------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.lost = True
        self.lost_exc = exc
        self.drop_timer()
        self._wake()
        self._release_drain_waiters()

    # -- internals ------------------------------------------------------------

    def _shut(self):
        if self.transport is not None and not self.lost:
            self.transport.close()

    def _closed_error(self):
        """The exception for a use of the connection after it ended."""
        failure = self.failure
        if failure is not None:
            self.failure = None
            return failure   # raised once: counted where the frame was read
        core = self.core
        if core.close_received:
            message = f"WebSocket closed by the server with code {core.close_code}"
            if core.close_reason:
                message += f" ({core.close_reason})"
        elif core.failed:
            message = "WebSocket connection failed earlier"
        elif core.close_sent:
            message = "WebSocket closed by this device"
        elif self.lost_exc is not None:  # a reset counts as one, as on every protocol
            return count_error(self.recorder, lost_connection_error(self.lost_exc, "WebSocket connection lost"))
        else:
            message = "WebSocket connection closed by the server without a close frame"
        return count_error(self.recorder, WebSocketClosedError(message, core.close_code or None, core.close_reason))

    def on_deadline(self):
        """The deadline of the receive in progress passed."""
        waiter = self.waiter
        if waiter is None:
            return
        self.waiter = None
        if not waiter.done():
            waiter.set_exception(count_error(self.recorder, TimeoutError(
                f"no WebSocket message within {self.budget_s * 1000:.0f} ms")))

    def close(self):
        """Say goodbye (close frame 1001) and close; never raises."""
        try:
            self.drop_timer()
            if not self.lost and self.transport is not None:
                core = self.core
                if not core.close_sent and not core.failed:
                    core.send_close(CLOSE_GOING_AWAY)
                    self.transport.write(core.data_to_send())
                self.transport.close()
        except Exception:  # noqa: BLE001 - close must not raise
            pass


# -- the opening handshake ----------------------------------------------------

def _header(headers, name):
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _handshake_headers(headers):
    """Our handshake headers with the script's own merged in; returns them and the key."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    own = {}
    extra = []
    for pair in headers:
        name = pair[0].decode("latin-1") if isinstance(pair[0], bytes) else str(pair[0])
        if name.lower() in _HANDSHAKE_NAMES:
            value = pair[1].decode("latin-1") if isinstance(pair[1], bytes) else str(pair[1])
            own[name.lower()] = value
        else:
            extra.append(pair)
    key = own.get("sec-websocket-key") or new_key()
    result = [("Upgrade", own.get("upgrade", "websocket")),
              ("Connection", own.get("connection", "Upgrade")),
              ("Sec-WebSocket-Key", key),
              ("Sec-WebSocket-Version", own.get("sec-websocket-version", "13"))]
    result.extend(extra)
    return result, key


def _check_handshake(response_headers, key, offered_protocols):
    upgrade = _header(response_headers, "upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        return f"101 response without 'Upgrade: websocket' (got {upgrade!r})"
    connection = _header(response_headers, "connection") or ""
    if "upgrade" not in [token.strip().lower() for token in connection.split(",")]:
        return f"101 response without 'Connection: Upgrade' (got {connection!r})"
    accept = _header(response_headers, "sec-websocket-accept")
    if accept is None or accept.strip() != accept_key(key):
        return f"101 response with a wrong Sec-WebSocket-Accept ({accept!r})"
    extensions = _header(response_headers, "sec-websocket-extensions")
    if extensions:
        return f"101 response with Sec-WebSocket-Extensions that were not offered: {extensions}"
    protocol = _header(response_headers, "sec-websocket-protocol")
    if protocol and protocol.strip() not in offered_protocols:
        return f"101 response with Sec-WebSocket-Protocol {protocol!r}, which was not offered"
    return None


def _http1_writer_for_upgrade(client):
    """The handshake is an HTTP/1.1 request also on http10 targets."""
    writer = getattr(client, "writer", None)
    if writer is None or not writer.http10:
        return None
    from stressgrid._core.http1 import RequestWriter
    device = current_device()
    address = device.address
    return RequestWriter(address.host, address.port, address.protocol.endswith("s"), False)


async def ws_upgrade(path, headers=(), *, timeout=None, name=None):
    """Upgrade the device's HTTP/1 connection to WebSocket; ``(101, headers, b"")`` on success.
    ``name``: the handshake's request group, as for the HTTP functions."""
    device = current_device()
    client = device.client
    if not hasattr(client, "upgrade") or not hasattr(client, "detach"):
        raise LocalProtocolError("ws_upgrade needs an HTTP/1.x target (http, https, http10, http10s)")
    if getattr(client, "ws", None) is not None:
        raise LocalProtocolError("ws_upgrade was already called on this device's connection")
    group = group_for(device, name)
    if headers:
        check_headers(headers)   # a script's bad header is its own error, before anything is sent
    request_headers, key = _handshake_headers(headers)
    offered = set()
    for name, value in request_headers:
        if str(name).lower() == "sec-websocket-protocol":
            offered.update(token.strip() for token in str(value).split(","))
    started = now_us()
    writer = _http1_writer_for_upgrade(client)
    if writer is not None:
        saved, client.writer = client.writer, writer
        try:
            status, response_headers, rest = await client.upgrade(path, request_headers, timeout=timeout,
                                                                  group=group)
        finally:
            client.writer = saved
    else:
        status, response_headers, rest = await client.upgrade(path, request_headers, timeout=timeout, group=group)
    if status != 101:
        return status, response_headers, rest
    problem = _check_handshake(response_headers, key, offered)
    if problem is not None:
        transport = client.detach(asyncio.Protocol())
        transport.abort()
        raise count_error(device.recorder, RemoteProtocolError(problem))
    connection = WebSocketConnection(device)
    connection.transport = client.transport
    client.ws = connection
    upgrade_us = now_us() - started
    device.recorder.histogram("ws_upgrade_us").record(upgrade_us)
    device.record_intended("intended_ws_upgrade_us", upgrade_us)
    if rest:
        # Frames that came with the 101 go first, then whatever arrived since.
        connection.data_received(rest)
    client.detach(connection)
    return 101, response_headers, b""


# -- script functions ---------------------------------------------------------

BUILTINS = {
    "ws_upgrade": ws_upgrade,
    "ws_send_text": ws_send_text,
    "ws_send_binary": ws_send_binary,
    "ws_send_json": ws_send_json,
    "ws_receive_text": ws_receive_text,
    "ws_receive_binary": ws_receive_binary,
    "ws_receive_json": ws_receive_json,
    "ws_fetch_text": ws_fetch_text,
    "ws_fetch_binary": ws_fetch_binary,
    "ws_fetch_json": ws_fetch_json,
}
