# cython: freethreading_compatible = False
"""TLS over a connection's TCP transport, for every protocol a device speaks over TLS.

``TlsLayer`` is the protocol of the loop's TCP transport and the transport of the device's
protocol (HTTP/1, HTTP/2, WebSocket, TCP, MQTT): it runs the ``ssl`` module's TLS over two
memory BIOs between them, so the context's verification, SNI and ALPN are the ``ssl``
module's own. ``stressgrid.protocols.source.open_connection`` connects through it and
returns once the handshake is done (the device's protocol then has its
``connection_made``), or raises the handshake's ``ssl.SSLError``.

Why not the loop's own TLS: per response, it reads records until OpenSSL says "want
more" (an ``SSLWantReadError`` raised and caught each time), through ``ssl.SSLObject``'s
Python methods and its own buffering and flow-control layers. This layer calls the
object's C methods, reads only while the BIO or OpenSSL hold bytes, and hands each
record's bytes straight to the protocol: about 1 CPU-us less a response over TLS
(``benchmarks/http1.py --tls``).

What the device's protocol may call: ``write``, ``writelines``, ``close`` (sends
close_notify), ``abort``, ``is_closing``, ``get_extra_info`` (``ssl_object``,
``peercert``, ``cipher``, ``sslcontext``; anything else the TCP transport's),
``pause_reading``, ``resume_reading``, ``get_write_buffer_size``, ``set_protocol``,
``get_protocol``. A TLS error after the handshake (a bad record, an alert) aborts the
connection and the protocol's ``connection_lost`` gets the ``ssl.SSLError``; a
close_notify from the server is its ``eof_received``; a connection that ends during the
handshake fails it with a ``ConnectionResetError`` (``conn_reset``).
"""
import errno
import ssl

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_FromStringAndSize

# OpenSSL hands over at most one record's plaintext a read: 16 KiB, read into one buffer
# that every connection shares (reading into a new bytes object of that size, then
# shrinking it, costs a large allocation a read).
DEF READ_SIZE = 16384
cdef bytearray _read_buffer = bytearray(READ_SIZE)

cdef object _WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


cdef class TlsLayer:
    cdef object protocol        # the device's protocol
    cdef object raw             # the loop's TCP transport
    cdef object context
    cdef object ssl_object      # ssl.SSLObject, for get_extra_info
    cdef object tls             # its C object: the calls per record
    cdef object incoming        # ssl.MemoryBIO: from the server
    cdef object outgoing        # ssl.MemoryBIO: to the server
    cdef object waiter          # the handshake's future; None once it is done
    cdef bint connected         # the handshake is done: the protocol has the connection
    cdef bint closing
    cdef bint lost              # the protocol had its connection_lost

    def __cinit__(self, protocol, context, str server_hostname, waiter):
        self.protocol = protocol
        self.context = context
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                           server_hostname=server_hostname)
        # ssl.SSLObject's methods are Python frames around this object's: call it directly.
        self.tls = getattr(self.ssl_object, "_sslobj", self.ssl_object)
        self.waiter = waiter

    # ---- the TCP transport's protocol ------------------------------------------------

    def connection_made(self, transport):
        self.raw = transport
        self._handshake()

    def data_received(self, data):
        if self.closing:
            return   # a failed handshake, or a closed connection: nothing more is read
        self.incoming.write(data)
        if not self.connected:
            if not self._handshake():
                return
        self._read()

    def eof_received(self):
        if not self.connected:
            self._fail(ConnectionResetError(errno.ECONNRESET, "the server closed the connection during the TLS handshake"))
            return False
        if not self.lost and not self.closing:
            self.protocol.eof_received()
        return False

    def connection_lost(self, exc):
        self.closing = True
        if not self.connected:
            self._fail(exc if exc is not None else ConnectionResetError(
                errno.ECONNRESET, "the connection closed during the TLS handshake"))
            return
        self._lose(exc)

    def pause_writing(self):
        if self.connected:
            self.protocol.pause_writing()

    def resume_writing(self):
        if self.connected:
            self.protocol.resume_writing()

    # ---- the device protocol's transport --------------------------------------------

    def write(self, data):
        cdef Py_ssize_t written, size
        if self.closing:
            return
        size = len(data)
        try:
            written = self.tls.write(data)
            if written < size:
                view = memoryview(data)
                while written < size:
                    written += self.tls.write(view[written:])
        except ssl.SSLError as exc:
            self._abort_with(exc)
            return
        self._flush()

    def writelines(self, data):
        self.write(b"".join(data))

    def close(self):
        if self.closing:
            return
        self.closing = True
        try:
            self.tls.shutdown()   # close_notify; the server's answer is not awaited
        except (ssl.SSLError, ValueError):
            pass
        self._flush()
        self.raw.close()

    def abort(self):
        self.closing = True
        if self.raw is not None:
            self.raw.abort()

    def is_closing(self):
        return self.closing or self.raw.is_closing()

    def get_extra_info(self, name, default=None):
        if name == "ssl_object":
            return self.ssl_object
        if name == "peercert":
            return self.ssl_object.getpeercert()
        if name == "cipher":
            return self.ssl_object.cipher()
        if name == "sslcontext":
            return self.context
        return self.raw.get_extra_info(name, default)

    def pause_reading(self):
        self.raw.pause_reading()

    def resume_reading(self):
        self.raw.resume_reading()

    def get_write_buffer_size(self):
        return self.raw.get_write_buffer_size()

    def set_protocol(self, protocol):
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol

    # ---- inside --------------------------------------------------------------------

    cdef bint _handshake(self) except -1:
        """Step the handshake; True once it is done (the protocol then has the connection)."""
        try:
            self.tls.do_handshake()
        except _WANT:
            self._flush()
            return False
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._flush()   # the alert, for the server's log
            self._fail(exc)
            return False
        self._flush()
        self.connected = True
        waiter, self.waiter = self.waiter, None
        self.protocol.connection_made(self)
        if not waiter.done():
            waiter.set_result(None)
        return True

    cdef int _read(self) except -1:
        """Hand the protocol every record's bytes the BIO holds, a call each."""
        cdef object tls = self.tls
        cdef object incoming = self.incoming
        cdef Py_ssize_t size
        while not self.closing:
            try:
                size = tls.read(READ_SIZE, _read_buffer)
            except _WANT:
                break
            except ssl.SSLZeroReturnError:
                size = 0
            except ssl.SSLError as exc:
                self._abort_with(exc)
                return 0
            if size == 0:
                # The server's close_notify (the ssl module reads it as no bytes, or raises
                # SSLZeroReturnError): the end of its data. Ours answers it, in close().
                if not self.lost:
                    self.protocol.eof_received()
                self.close()
                return 0
            self.protocol.data_received(PyBytes_FromStringAndSize(PyByteArray_AS_STRING(_read_buffer), size))
            if incoming.pending == 0 and tls.pending() == 0:
                break
        if self.outgoing.pending:
            self._flush()   # what reading made OpenSSL answer (a key update)
        return 0

    cdef int _flush(self) except -1:
        if self.outgoing.pending and self.raw is not None and not self.raw.is_closing():
            self.raw.write(self.outgoing.read())
        return 0

    cdef int _fail(self, exc) except -1:
        """The handshake failed: the opener raises ``exc``."""
        self.closing = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.raw is not None:
            self.raw.abort()
        return 0

    cdef int _abort_with(self, exc) except -1:
        """A TLS error on an open connection: the protocol loses it with ``exc`` (an
        ``ssl.SSLError``, which ``errors.lost_connection_error`` makes a ``TlsError``)."""
        self._lose(exc)
        self.abort()
        return 0

    cdef int _lose(self, exc) except -1:
        if not self.lost:
            self.lost = True
            self.closing = True
            self.protocol.connection_lost(exc)
        return 0


async def open_tls(connect, protocol_factory, loop, context, str server_hostname):
    """``(transport, protocol)`` once the TLS handshake is done over the TCP connection
    ``connect(factory)`` opens (an awaitable of the loop's ``create_connection``)."""
    waiter = loop.create_future()
    layer = None

    def made():
        nonlocal layer
        layer = TlsLayer(protocol_factory(), context, server_hostname, waiter)
        return layer

    await connect(made)
    try:
        await waiter
    except BaseException:
        layer.abort()
        raise
    return layer, layer.get_protocol()
