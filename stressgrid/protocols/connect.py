"""Opening a device's TCP connection, one way for every protocol that has one (HTTP/1,
WebSocket, HTTP/2, TCP): from the process's source-address pool, with TLS when asked, and
counted the same way whatever the protocol.

- A connection that opens records ``conn_us`` (from the connect's start to an open
  connection, TLS handshake included, on the device clock ``now_us``) and ``conn_count``.
- One that does not counts one error and raises it: ``conn_timedout`` for a connect or TLS
  handshake that outlasted its time (``connect_timed_out``), ``tls`` for a failed handshake
  (``TlsError``), and the socket error's own reason otherwise (``conn_refused``,
  ``conn_reset``, ``host_unreach``, ...).

``connect`` does all of it within a time limit. HTTP/1 bounds its connect with the device's
one deadline timer instead (see ``stressgrid.protocols.http1``); it uses the parts:
``connect_timed_out``, ``connect_error`` and ``record_connected``.
"""
import errno
import ssl

from stressgrid._core.device import now_us
from stressgrid.errors import TlsError, count_error

from .source import open_connection
from .waiting import time_limit


def connect_timed_out(host, port, seconds):
    """The error of a connect to ``host:port`` (TLS handshake included) that took over
    ``seconds``: counted as ``conn_timedout``."""
    return TimeoutError(errno.ETIMEDOUT, f"connecting to {host}:{port} took over {seconds * 1000:.0f} ms")


def connect_error(exc, host, port):
    """The error a connect to ``host:port`` that raised ``exc`` counts and raises: a TLS
    failure as ``TlsError`` (caused by ``exc``), a socket error as itself."""
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        error = TlsError(f"TLS handshake with {host}:{port} failed: {exc}")
        error.__cause__ = exc
        return error
    return exc


def record_connected(recorder, started_us):
    """A connection opened: ``conn_us`` since ``started_us`` (``now_us``) and ``conn_count``."""
    recorder.histogram("conn_us").record(now_us() - started_us)
    recorder.counter("conn_count").value += 1


async def connect(recorder, loop, protocol_factory, host, port, seconds, *, tls=None, server_hostname=None,
                  require_alpn=None):
    """``(transport, protocol)`` of a connection to ``host:port`` opened within ``seconds``
    (TLS with the context ``tls``, for ``server_hostname``; a server that does not select
    ``require_alpn`` by ALPN fails it), counted in ``recorder``; or the counted error, raised."""
    started = now_us()
    try:
        async with time_limit(seconds):
            connection = await open_connection(loop, protocol_factory, host, port, tls, server_hostname)
    except TimeoutError:
        raise count_error(recorder, connect_timed_out(server_hostname or host, port, seconds)) from None
    except (OSError, ssl.CertificateError) as exc:  # ssl.SSLError is an OSError
        raise count_error(recorder, connect_error(exc, server_hostname or host, port))
    if require_alpn is not None:
        ssl_object = connection[0].get_extra_info("ssl_object")
        selected = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if selected != require_alpn:
            connection[0].abort()
            raise count_error(recorder, TlsError(f"{server_hostname or host}:{port} did not select "
                                                 f"{require_alpn} by ALPN (got {selected!r})"))
    record_connected(recorder, started)
    return connection
