"""Exceptions raised to device scripts and the metric name each one counts as.

Every failure is counted exactly once as the counter ``<reason>_error_count``:
either where a protocol raises it (``count_error``) or, when nothing counted it
yet, by the device runtime when the script lets it escape.
"""
import asyncio
import errno
import re
import socket
import ssl


class ConnectionClosedError(ConnectionError):
    """The peer closed the connection while the device still needed it."""

    reason = "closed"


class TlsError(ConnectionError):
    """The TLS handshake or the TLS layer failed."""

    reason = "tls"


class RemoteProtocolError(Exception):
    """The target broke the protocol (a malformed response, frame or datagram).

    Counted against the target (``protocol_error_count``); the connection is not
    used again.
    """

    reason = "protocol"


class LocalProtocolError(RuntimeError):
    """A protocol used out of turn on this side: a second request while one is in
    flight, a WebSocket function before ``ws_upgrade``, a failure inside the protocol
    library that no peer caused.

    Raised at the script's line and counted as ``local_protocol_error_count``: the
    script's mistake (or ours), never the target's. A ``RuntimeError``, so an
    ``except RuntimeError`` catches it.
    """

    reason = "local_protocol"


class RequestArgumentError(LocalProtocolError, ValueError, TypeError):
    """A script called an HTTP function wrongly (a bad path, header, body or timeout).

    Raised before anything is sent: the script's own mistake, counted as
    ``request_argument_error_count`` with its line, never against the target. It is
    also a ``ValueError`` and a ``TypeError``, so either ``except`` catches it.
    """

    reason = "request_argument"


class Http2StreamError(RemoteProtocolError):
    """The server reset the HTTP/2 stream of a request."""

    reason = "http2_stream"


class WebSocketProtocolError(RemoteProtocolError):
    """The server broke RFC 6455; ``close_code`` is the code of the close frame this
    side answered with (1002 protocol error, 1007 invalid UTF-8, 1009 too big)."""

    def __init__(self, message, close_code):
        super().__init__(message)
        self.close_code = close_code


class WebSocketClosedError(ConnectionClosedError):
    """The WebSocket ended while the script still used it: ``close_code`` and
    ``close_reason`` are the server's close frame's (``None`` and ``""`` without one)."""

    def __init__(self, message, close_code=None, close_reason=""):
        super().__init__(message)
        self.close_code = close_code
        self.close_reason = close_reason


class MqttReasonError(RemoteProtocolError):
    """The MQTT broker refused: a CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK or UNSUBACK with a
    failure reason code (0x80 and above; MQTT 3.1.1's refusals as the MQTT 5 code of the same
    meaning). Counted by the reason's name: ``not_authorized_error_count``,
    ``quota_exceeded_error_count``, ... ``packet`` is the packet that carried it."""

    def __init__(self, message, reason_code, reason, packet):
        super().__init__(message)
        self.reason_code = reason_code
        self.reason = reason
        self.packet = packet


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "conn_refused",
    errno.ECONNRESET: "conn_reset",
    errno.ECONNABORTED: "conn_aborted",
    errno.ETIMEDOUT: "conn_timedout",
    errno.EHOSTUNREACH: "host_unreach",
    errno.ENETUNREACH: "net_unreach",
    errno.EADDRNOTAVAIL: "addr_not_avail",
    errno.EADDRINUSE: "addr_in_use",
    errno.EMFILE: "too_many_open_files",
    errno.ENFILE: "too_many_open_files",
    errno.EPIPE: "closed",
    errno.ENOTCONN: "closed",
}

# The counter of a connection that found no free (source address, port) for its
# target, and what to do about it.
ADDR_NOT_AVAIL_COUNTER = "addr_not_avail_error_count"
ADDR_NOT_AVAIL_ADVICE = ("no source address and port left for the target (ephemeral ports exhausted, or a "
                         "source address not on this machine): add source addresses (--source-addresses) "
                         "or targets")

_GAI_REASONS = {
    socket.EAI_NONAME: "nx_domain",
    getattr(socket, "EAI_NODATA", socket.EAI_NONAME): "nx_domain",
    socket.EAI_AGAIN: "dns_timeout",
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name):
    """``KeyError`` -> ``key_error``, ``HTTPStatusError`` -> ``http_status_error``."""
    return _CAMEL.sub("_", name).lower()


def error_reason(exc):
    """The reason part of the error counter for ``exc`` (without ``_error``)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and isinstance(exc, (ConnectionClosedError, TlsError, RemoteProtocolError,
                                                    LocalProtocolError)):
        return reason
    if isinstance(exc, socket.gaierror):
        return _GAI_REASONS.get(exc.errno, "dns")
    if isinstance(exc, ssl.SSLError) or isinstance(exc, ssl.CertificateError):
        return "tls"
    if isinstance(exc, OSError) and exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError):  # raised by the script itself, not a stop
        return "device_cancelled"
    name = snake_case(type(exc).__name__)
    return name[: -len("_error")] if name.endswith("_error") else name


def lost_connection_error(exc, closed):
    """What a script waiting on a connection that ended raises, from ``connection_lost``'s ``exc``.

    The same on every protocol: the OS's error when the kernel gave one (a reset is
    ``conn_reset``), a ``TlsError`` when TLS failed, else ``ConnectionClosedError`` saying
    ``closed``. A fresh exception on every call, so that each waiter counts its own.
    """
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        error = TlsError(f"TLS failed: {exc}")
        error.__cause__ = exc
        return error
    if isinstance(exc, OSError) and exc.errno in _ERRNO_REASONS:
        return type(exc)(exc.errno, exc.strerror)
    return ConnectionClosedError(closed if exc is None else f"{closed}: {exc}")


def error_counter_name(exc):
    """``ConnectionRefusedError()`` -> ``conn_refused_error_count``."""
    return error_reason(exc) + "_error_count"


def count_error(recorder, exc):
    """Count ``exc`` once in ``recorder`` and mark it as counted; returns ``exc``."""
    if not getattr(exc, "_stressgrid_counted", False):
        recorder.counter(error_counter_name(exc)).value += 1
        try:
            exc._stressgrid_counted = True
        except AttributeError:
            pass
    return exc

