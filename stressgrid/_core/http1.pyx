# cython: freethreading_compatible = False
"""HTTP/1.0 and 1.1 client protocol core, without I/O.

``RequestWriter`` turns a script's request into bytes; ``Http1Core`` follows one
connection's responses through llhttp and records the built-in metrics. The
parser lives inside the core and calls C functions, never Python: a response
costs no Python call per header, and a connection no parser object. The header
fields are packed raw as they are parsed and decoded only when the script reads
them (``stressgrid._core.headers``); the core looks only at those that frame the
body (Content-Length, Transfer-Encoding) or decide its decoding (Content-Type). Neither
touches a socket or an event loop: the asyncio glue
(``stressgrid._core.http1_client`` and ``stressgrid.protocols.http1``) writes
what ``RequestWriter`` builds, feeds what it reads to ``Http1Core.feed`` and
reports ``Http1Core.eof`` when the peer closes. The unit tests drive both
directly with bytes.

What a request means (path, headers, body, timeout, the decoded response
body) is decided in ``stressgrid._core.request``, shared with HTTP/2.

Errors: a malformed response raises ``RemoteProtocolError`` (the server's fault); a
request the script built wrong raises ``RequestArgumentError`` and a request out of
turn ``LocalProtocolError`` (the script's fault); a connection that closes before the response is complete
raises ``ConnectionClosedError``.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.llhttp cimport (HPE_OK, HPE_PAUSED_UPGRADE, HTTP_RESPONSE, llhttp_errno_name,
                                      llhttp_errno_t, llhttp_execute, llhttp_get_error_pos,
                                      llhttp_get_error_reason, llhttp_init, llhttp_settings_init,
                                      llhttp_settings_t, llhttp_should_keep_alive, llhttp_t)
from stressgrid._core.header_cache cimport latin1
from stressgrid._core.headers cimport (HeaderBlock, ResponseHeaders, block_clear, block_error, block_field_done, block_keep,
                                       block_piece, block_restore, take_block)
from stressgrid._core.metrics cimport Recorder
from stressgrid._core.request cimport (BODY_BYTES, CONNECTION_CLOSE, HAS_CONTENT_TYPE, HAS_HOST,
                                       content_kind, decode_body, named_at, normalise_headers,
                                       request_path, same_caseless)

from stressgrid._core.request import authority
from stressgrid.errors import ConnectionClosedError, LocalProtocolError, RemoteProtocolError

# Exported so the asyncio layer and tests can name the states.
STATE_IDLE = IDLE
STATE_WAITING = WAITING
STATE_BODY = BODY
STATE_DONE = DONE
STATE_UPGRADED = UPGRADED
STATE_FAILED = FAILED


cdef inline bint mentions_chunked(const char *value, Py_ssize_t size) noexcept:
    """``chunked`` appears in the value, whatever its case."""
    cdef Py_ssize_t i
    for i in range(size - 6):
        if same_caseless(value + i, b"chunked", 7):
            return True
    return False


# The header fields of the response being parsed, packed as llhttp hands them over
# (headers.pxd). One block serves every connection: feed() runs to its end before another
# connection's, and a connection whose read ends inside its header fields keeps what the
# block holds (``Http1Core.head_kept``) and puts it back at its next feed().
cdef HeaderBlock _block
_block.data = NULL
block_clear(&_block)


cdef class Http1Core:
    """One connection's response parser and built-in response metrics.

    The contract of every protocol core: ``data_to_send()`` hands over what to
    write, ``feed(data)`` takes what was read and returns how many results are
    ready. Per request: ``start(request, ...)`` with the request's bytes (from a
    ``RequestWriter``), write ``data_to_send()``, then ``feed()`` every chunk
    read until it returns 1: the response is complete (or, ``upgraded``, a 101
    switched the connection to another protocol); ``result()`` hands it over.
    ``eof()`` when the peer closes: it completes a close-delimited body (1) or
    raises.
    """

    def __cinit__(self, Recorder recorder not None):
        self.state = IDLE
        self.headers_us = recorder.histogram("headers_us")
        self.body_us = recorder.histogram("body_us")
        self.responses = recorder.response_counters()
        self.reusable = True
        llhttp_init(&self.parser, HTTP_RESPONSE, &_SETTINGS)
        self.parser.data = <void *>self

    cpdef start(self, bytes request, bint head, bint close_after, bint measured=True):
        """Send ``request`` (``data_to_send`` has it) and expect its response."""
        if self.state != IDLE:
            raise LocalProtocolError(f"connection is not idle (state {self.state}); "
                               "one request at a time per connection")
        self.head = head
        self.close_after = close_after
        self.measured = measured
        self.received = 0
        self._reset_response()
        self.state = WAITING
        self.out = request
        self.sent_at = monotonic_us()

    cpdef bytes data_to_send(self):
        """The request given to ``start``, once (``b""`` when there is none)."""
        cdef bytes out = self.out
        if out is None:
            return b""
        self.out = None
        return out

    @property
    def upgraded(self):
        """A 101 switched the connection to another protocol: ``result()`` has its
        leftover bytes, and this core reads no more."""
        return self.state == UPGRADED

    cdef inline void _reset_response(self):
        self.has_length = False
        self.chunked = False
        self.status = 0
        self.headers = None
        self.head_kept = None
        self.body = None
        self.body_kind = BODY_BYTES
        self.content_type = None

    cpdef int feed(self, data) except -1:
        """Parse ``data``; returns 1 when the response (or a 101) is complete, else 0."""
        cdef int state = self.state
        if state != WAITING and state != BODY:
            if state == UPGRADED:
                self.leftover += data
                return COMPLETE
            if state == FAILED:
                raise LocalProtocolError("connection already failed")
            # IDLE or DONE: the server talks although nothing was asked.
            self.reusable = False
            raise RemoteProtocolError("unexpected data from the server while no request was in flight")
        if type(data) is not bytes:
            data = bytes(data)
        cdef const char *start = PyBytes_AS_STRING(data)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        self.received += size
        if self.head_kept is not None:
            block_restore(&_block, self.head_kept, self.head_count, self.head_entry)
            self.head_kept = None
        cdef llhttp_errno_t status = llhttp_execute(&self.parser, start, size)
        if _block.size:
            # The read ended inside the response's header fields: they wait for the next.
            self.head_kept = block_keep(&_block, &self.head_count, &self.head_entry)
        if status == HPE_PAUSED_UPGRADE:
            # llhttp stops at the end of the 101 head: the rest is the new protocol's.
            if self.state == UPGRADED:
                self.leftover = data[llhttp_get_error_pos(&self.parser) - start:]
        elif status != HPE_OK and self.error is None:
            if self.state == DONE:
                # Junk after a complete response: keep the response, drop the connection.
                self.reusable = False
            elif self.state == UPGRADED:
                # A 101 without Upgrade/Connection headers; where its head ends is unknown.
                self.leftover = b""
            else:
                self.state = FAILED
                self.reusable = False
                raise RemoteProtocolError(
                    f"malformed HTTP response: {(<bytes>llhttp_errno_name(status)).decode()}: "
                    f"{(<bytes>llhttp_get_error_reason(&self.parser)).decode(errors='replace')}")
        if self.error is not None:
            error = self.error
            self.error = None
            self.state = FAILED
            self.reusable = False
            raise error
        state = self.state
        if state == DONE or state == UPGRADED:
            return COMPLETE
        return NEED_MORE

    cpdef int eof(self) except -1:
        """The peer closed: finish a close-delimited body, else raise ``ConnectionClosedError``."""
        cdef int state = self.state
        self.reusable = False
        if state == BODY and not self.has_length and not self.chunked and self.status != 101:
            self._finish()
            return COMPLETE
        if state == WAITING or state == BODY:
            self.state = FAILED
            if self.received == 0:
                raise ConnectionClosedError("server closed the connection before responding")
            raise ConnectionClosedError(
                f"server closed the connection after {self.received} bytes of an incomplete response")
        if state == DONE:
            return COMPLETE
        return NEED_MORE

    cpdef tuple result(self):
        """``(status, headers, body)`` of the completed response; the core is idle again.

        ``body`` is decoded when the content type says JSON or msgpack; after
        a 101 it is the bytes that followed the response head.
        """
        cdef object body
        cdef int kind = self.body_kind
        if self.state == UPGRADED:
            return (self.status, self.headers, self.leftover)
        if self.state != DONE:
            raise LocalProtocolError(f"no complete response (state {self.state})")
        body = self.body
        if body is None:
            body = b""
        elif type(body) is list:
            body = b"".join(body)   # joined once: large bodies cost one copy
        result_status = self.status
        result_headers = self.headers
        content_type = self.content_type
        self._reset_response()
        self.state = IDLE
        if kind != BODY_BYTES:
            body = decode_body(kind, body, content_type)
        return (result_status, result_headers, body)

    cpdef void release(self):
        """Forget any response: the connection is done with."""
        self._reset_response()
        self.state = FAILED

    cdef inline void _finish(self):
        self.state = DONE
        self.completed += 1
        self.responses.count(self.status)
        if self.measured:
            self.body_us.record_c(monotonic_us() - self.headers_at)

    cdef inline void _store(self, exc):
        # Never let an exception cross llhttp: the callback stops the parser and feed()
        # re-raises it.
        if self.error is None:
            self.error = exc

    # ---- what llhttp's callbacks (the C functions below) call ------------------

    cdef void message_begin(self):
        if self.state != WAITING:
            self.reusable = False   # the server starts another message nobody asked for

    cdef void header(self, const char *name, Py_ssize_t name_size, const char *value, Py_ssize_t value_size):
        # A whole field of our response (packed in the block): what framing needs of it.
        if named_at(name, name_size, b"content-length", 14):
            self.has_length = True
        elif named_at(name, name_size, b"content-type", 12):
            self.body_kind = content_kind(value, value_size)
            if self.body_kind != BODY_BYTES:
                try:
                    self.content_type = latin1(value, value_size)
                except BaseException as exc:
                    self._store(exc)
        elif named_at(name, name_size, b"transfer-encoding", 17):
            self.chunked = mentions_chunked(value, value_size)

    cdef int headers_complete(self):
        """Returns 1 when the response has no body whatever its headers announce (HEAD)."""
        cdef int status
        if self.state != WAITING:
            self.reusable = False
            return 0
        try:
            status = self.parser.status_code
            self.status = status
            if status < 200 and status != 101:
                return 0   # informational: the final response follows
            self.headers = take_block(&_block)
            self.headers_at = monotonic_us()
            if self.measured:
                self.headers_us.record_c(self.headers_at - self.sent_at)
            self.state = BODY
        except BaseException as exc:
            self._store(exc)
        return 1 if self.head else 0

    cdef void body_chunk(self, bytes chunk):
        cdef object body
        if self.state != BODY:
            return
        body = self.body
        if body is None:
            self.body = chunk
        elif type(body) is list:
            (<list>body).append(chunk)
        else:
            self.body = [body, chunk]

    cdef void message_complete(self):
        cdef int state = self.state
        if state == WAITING:
            # The end of a 1xx: forget its headers, wait for the final response.
            block_clear(&_block)
            self.has_length = False
            self.chunked = False
            self.body_kind = BODY_BYTES
            self.content_type = None
            return
        if state != BODY:
            if state != UPGRADED:
                self.reusable = False
            return
        try:
            if self.status == 101:
                self.state = UPGRADED
                self.leftover = b""
                self.reusable = False
                return
            self.reusable = llhttp_should_keep_alive(&self.parser) and not self.close_after
            self._finish()
        except BaseException as exc:
            self._store(exc)


# llhttp's callbacks: C functions, each handing its bytes to the core the parser is
# in. A header's name or value lies whole in the chunk being fed, or (a read that ends
# inside it) comes in pieces joined as bytes; the core gets it when its *_complete
# callback comes. A callback whose core stored an error stops the parser
# (llhttp_execute returns an error; feed() raises it).

cdef int _on_message_begin(llhttp_t *parser) noexcept:
    cdef Http1Core core = <Http1Core>parser.data
    core.message_begin()
    return 0


cdef inline int _add_piece(llhttp_t *parser, const char *at, size_t length, bint to_value) noexcept:
    # A piece of the name (or value) of a field of our response: into the block.
    cdef Http1Core core = <Http1Core>parser.data
    cdef int failed
    if core.state != WAITING:
        return 0   # a message after ours, or trailers: not our response's headers
    failed = block_piece(&_block, at, length, to_value)
    if failed:
        _store_block_error(core, failed)
        return -1
    return 0


cdef void _store_block_error(Http1Core core, int failed) noexcept:
    try:
        core._store(block_error(failed))
    except BaseException as exc:
        core._store(exc)


cdef int _on_header_field(llhttp_t *parser, const char *at, size_t length) noexcept:
    return _add_piece(parser, at, length, False)


cdef int _on_header_value(llhttp_t *parser, const char *at, size_t length) noexcept:
    return _add_piece(parser, at, length, True)


cdef int _on_header_value_complete(llhttp_t *parser) noexcept:
    cdef Http1Core core = <Http1Core>parser.data
    cdef const char *name
    cdef const char *value
    cdef Py_ssize_t name_size, value_size
    cdef int failed
    if core.state != WAITING:
        core.reusable = False   # a second message after ours, or trailers
        return 0
    failed = block_field_done(&_block, &name, &name_size, &value, &value_size)
    if failed:
        _store_block_error(core, failed)
        return -1
    core.header(name, name_size, value, value_size)
    return -1 if core.error is not None else 0


cdef int _on_headers_complete(llhttp_t *parser) noexcept:
    cdef Http1Core core = <Http1Core>parser.data
    cdef int skip_body = core.headers_complete()
    return -1 if core.error is not None else skip_body


cdef int _on_body(llhttp_t *parser, const char *at, size_t length) noexcept:
    cdef Http1Core core = <Http1Core>parser.data
    try:
        core.body_chunk(PyBytes_FromStringAndSize(at, length))
    except BaseException as exc:
        core._store(exc)
        return -1
    return 0


cdef int _on_message_complete(llhttp_t *parser) noexcept:
    cdef Http1Core core = <Http1Core>parser.data
    core.message_complete()
    return -1 if core.error is not None else 0


cdef llhttp_settings_t _SETTINGS
llhttp_settings_init(&_SETTINGS)
_SETTINGS.on_message_begin = _on_message_begin
_SETTINGS.on_header_field = _on_header_field
_SETTINGS.on_header_value = _on_header_value
_SETTINGS.on_header_value_complete = _on_header_value_complete
_SETTINGS.on_headers_complete = _on_headers_complete
_SETTINGS.on_body = _on_body
_SETTINGS.on_message_complete = _on_message_complete


_writers = {}


def request_writer(str host, int port, bint tls, bint http10):
    """The process's ``RequestWriter`` for a target: devices of one target share it."""
    key = (host, port, tls, http10)
    writer = _writers.get(key)
    if writer is None:
        writer = _writers[key] = RequestWriter(host, port, tls, http10)
    return writer


cdef class RequestWriter:
    """Serializes one device's requests to its target.

    ``host`` goes in the Host header (the plan's host name, not the address
    connected to); ``http10`` writes HTTP/1.0 requests, which the server closes
    after answering. After ``build()``, ``close_after`` says whether the
    connection ends with this request (HTTP/1.0 or a ``Connection: close``).
    """

    def __cinit__(self, str host, int port, bint tls, bint http10):
        self.http10 = http10
        self.version = b" HTTP/1.0\r\n" if http10 else b" HTTP/1.1\r\n"
        self.host_line = b"Host: " + authority(host, port, tls) + b"\r\n"
        self.version_host = self.version + self.host_line + b"\r\n"
        self.close_after = http10

    cpdef bytes build(self, bytes method, path, headers=(), body=None, bytes content_type=None):
        """The request's bytes. ``body`` None sends no body and no Content-Length."""
        cdef list parts
        cdef int flags = 0
        cdef bint close_after = self.http10
        if not headers and body is None:
            # Scripts repeat the same GET: reuse its bytes when method and path are the same objects.
            if path is self.last_path and method is self.last_method:
                self.close_after = close_after
                return self.last_request
            request = method + b" " + request_path(path) + self.version_host
            self.last_method = method
            self.last_path = path
            self.last_request = request
            self.close_after = close_after
            return request
        parts = [method, b" ", request_path(path), self.version, None]
        if headers:
            flags = normalise_headers(headers, False, parts, True)
            if flags & CONNECTION_CLOSE:
                close_after = True
        parts[4] = b"" if flags & HAS_HOST else self.host_line
        if body is not None:
            if content_type is not None and not flags & HAS_CONTENT_TYPE:
                parts += (b"Content-Type: ", content_type, b"\r\n")
            parts += (b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n\r\n", body)
        else:
            parts.append(b"\r\n")
        self.close_after = close_after
        return b"".join(parts)
