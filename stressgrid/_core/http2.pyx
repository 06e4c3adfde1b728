# cython: freethreading_compatible = False
"""A sans-IO HTTP/2 client connection over libnghttp2.

``Http2Connection`` owns one nghttp2 client session. The caller moves bytes:
``data_to_send()`` returns what must be written to the socket (the connection
preface first), ``feed(data)`` takes what the socket read and returns how many
streams finished, which ``take_finished()`` then hands over. The library does the framing, HPACK, flow
control (WINDOW_UPDATE is sent as received data is consumed), SETTINGS from
the server and GOAWAY handling; this module turns its callbacks into
``Http2Stream`` results and records ``headers_us``, ``body_us`` and
``response_count`` with its status class (``ResponseCounters``) as it goes.

No nghttp2 callback lets a Python exception escape into C: a failure is stored
and ``feed`` raises it after the library returns.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.string cimport memcpy, memcmp

from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.header_cache cimport header_pair, new_header_cache
from stressgrid._core.metrics cimport Histogram, ResponseCounters
from stressgrid._core.request cimport BODY_BYTES, content_kind, decode_body, normalise_headers

from stressgrid.errors import Http2StreamError, LocalProtocolError, RemoteProtocolError, RequestArgumentError

# Our receive windows: large, so a big response streams without waiting for
# WINDOW_UPDATE round trips. The library sends WINDOW_UPDATE as data is read.
DEFAULT_WINDOW = 1 << 24
cdef enum:
    NV_ON_STACK = 16  # request headers up to this many need no allocation
MAX_HEADER_LIST = 1 << 20

# Connection-specific headers (RFC 9113 8.2.2): HTTP/1 means, not sent on HTTP/2.
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"upgrade"})

ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR", 0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM", 0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR", 0xa: "CONNECT_ERROR", 0xb: "ENHANCE_YOUR_CALM",
    0xc: "INADEQUATE_SECURITY", 0xd: "HTTP_1_1_REQUIRED",
}
REFUSED_STREAM = NGHTTP2_REFUSED_STREAM
CANCEL = NGHTTP2_CANCEL


def error_name(uint32_t code):
    """``7`` -> ``"REFUSED_STREAM"``."""
    return ERROR_NAMES.get(code, f"0x{code:x}")


cdef class Http2Stream:
    """One request and, as it arrives, its response.

    ``status``, ``headers`` (a list of ``(name, value)`` strings), ``body``
    (bytes, once ``complete``; ``decoded_body()`` as its content type says)
    and ``content_type``; a stream that ended
    without a whole response has ``complete`` false and the server's
    ``error_code``. ``user`` and ``deadline_us`` belong to the caller.
    """

    def __cinit__(self):
        self.headers = []
        self.chunks = None
        self.content_type = None
        self.body_kind = BODY_BYTES
        self.deadline_us = 0

    @property
    def body(self):
        if self.chunks is None:
            return b""
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)

    def decoded_body(self):
        """The body, decoded when its content type is JSON or msgpack (else bytes)."""
        return decode_body(self.body_kind, self.body, self.content_type)

    @property
    def refused(self):
        """The server did not process the request: it may be sent again."""
        return not self.response_started and self.error_code == NGHTTP2_REFUSED_STREAM

    def exception(self):
        """The error a caller raises for a stream that ended without a response."""
        return Http2StreamError(
            f"HTTP/2 stream {self.stream_id} reset by the server: {error_name(self.error_code)}")

    def __repr__(self):
        return (f"<Http2Stream {self.stream_id} status={self.status} complete={self.complete} "
                f"error={error_name(self.error_code)}>")


cdef class PendingRequest:
    """A request in flight, kept as its stream's ``user`` by the asyncio layer: the
    script's ``future``, and what is needed to send the request again when the server
    refused it unprocessed (``retried``: sent again once already; ``group``: a named
    request's metrics group, or ``None``)."""

    def __cinit__(self, future, bytes method, path, headers, body, content_type, double timeout_s,
                  bint retried, group):
        self.future = future
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.content_type = content_type
        self.timeout_s = timeout_s
        self.retried = retried
        self.group = group


cdef list _header_cache = new_header_cache()   # decoded header pairs (header_cache.pxd)


# ---------------------------------------------------------------------------
# nghttp2 callbacks. user_data is the Http2Connection, alive for as long as the
# library runs (only inside feed/data_to_send/request of that object).

cdef int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                   const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen,
                   uint8_t flags, void *user_data) noexcept:
    cdef Http2Connection conn = <Http2Connection>user_data
    cdef void *ptr
    cdef Http2Stream stream
    cdef int status = 0
    cdef size_t i
    if frame.hd.type != NGHTTP2_HEADERS:
        return 0
    ptr = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if ptr == NULL:
        return 0
    stream = <Http2Stream>ptr
    try:
        if namelen == 7 and memcmp(name, b":status", 7) == 0:
            if valuelen != 3:
                raise RemoteProtocolError(f"HTTP/2 response with a bad :status")
            for i in range(3):
                if value[i] < 48 or value[i] > 57:
                    raise RemoteProtocolError(f"HTTP/2 response with a bad :status")
                status = status * 10 + (value[i] - 48)
            stream.status = status
            # A new header block: fields of an interim (1xx) block before it are dropped.
            stream.headers = []
            stream.content_type = None
            stream.body_kind = BODY_BYTES
            return 0
        if stream.status < 200:
            return 0  # a field of an interim response
        pair = header_pair(_header_cache, <const char *>name, namelen, <const char *>value, valuelen)
        if namelen == 12 and memcmp(name, b"content-type", 12) == 0:
            stream.content_type = pair[1]
            stream.body_kind = content_kind(<const char *>value, valuelen)
        stream.headers.append(pair)
        return 0
    except BaseException as exc:
        conn.error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                       void *user_data) noexcept:
    cdef Http2Connection conn = <Http2Connection>user_data
    cdef void *ptr
    cdef Http2Stream stream
    cdef uint8_t kind = frame.hd.type
    try:
        if kind == NGHTTP2_HEADERS or kind == NGHTTP2_DATA:
            ptr = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
            if ptr == NULL:
                return 0
            stream = <Http2Stream>ptr
            if kind == NGHTTP2_HEADERS and not stream.response_started and stream.status >= 200:
                stream.response_started = True
                stream.headers_at_us = monotonic_us()
                if conn.headers_histogram is not None:
                    conn.headers_histogram.record_c(stream.headers_at_us - stream.started_us)
            if (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) and stream.response_started:
                stream.complete = True
                conn._finish(stream)
        elif kind == NGHTTP2_GOAWAY:
            conn.goaway_received = True
            conn.goaway_last_stream_id = frame.goaway.last_stream_id
        return 0
    except BaseException as exc:
        conn.error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                            const uint8_t *data, size_t length, void *user_data) noexcept:
    cdef Http2Connection conn = <Http2Connection>user_data
    cdef void *ptr = nghttp2_session_get_stream_user_data(session, stream_id)
    cdef Http2Stream stream
    if ptr == NULL or length == 0:
        return 0
    stream = <Http2Stream>ptr
    try:
        chunk = PyBytes_FromStringAndSize(<const char *>data, length)
        if stream.chunks is None:
            stream.chunks = [chunk]
        else:
            stream.chunks.append(chunk)
        return 0
    except BaseException as exc:
        conn.error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                         void *user_data) noexcept:
    cdef Http2Connection conn = <Http2Connection>user_data
    cdef void *ptr = nghttp2_session_get_stream_user_data(session, stream_id)
    cdef Http2Stream stream
    if ptr == NULL:
        return 0
    stream = <Http2Stream>ptr
    try:
        stream.closed = True
        if not stream.complete:
            stream.error_code = error_code if error_code != NGHTTP2_NO_ERROR else NGHTTP2_INTERNAL_ERROR
            conn._finish(stream)
        if conn.streams is not None:
            conn.streams.pop(stream_id, None)
        return 0
    except BaseException as exc:
        conn.error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef int on_library_error(nghttp2_session *session, int lib_error_code, const char *msg,
                          size_t length, void *user_data) noexcept:
    cdef Http2Connection conn = <Http2Connection>user_data
    try:
        conn.library_error = msg[:length].decode("utf-8", "replace")
        return 0
    except BaseException as exc:
        conn.error = exc
        return NGHTTP2_ERR_CALLBACK_FAILURE


cdef ssize_t read_request_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                               size_t length, uint32_t *data_flags,
                               nghttp2_data_source *source, void *user_data) noexcept:
    cdef Http2Stream stream = <Http2Stream>source.ptr
    cdef Py_ssize_t size = PyBytes_GET_SIZE(stream.request_body)
    cdef Py_ssize_t n = size - stream.body_offset
    if n > <Py_ssize_t>length:
        n = <Py_ssize_t>length
    memcpy(buf, PyBytes_AS_STRING(stream.request_body) + stream.body_offset, n)
    stream.body_offset += n
    if stream.body_offset >= size:
        data_flags[0] |= NGHTTP2_DATA_FLAG_EOF
    return n


cdef nghttp2_session_callbacks *_callbacks = NULL


cdef nghttp2_session_callbacks *shared_callbacks() except NULL:
    global _callbacks
    if _callbacks == NULL:
        if nghttp2_session_callbacks_new(&_callbacks) != 0:
            raise MemoryError()
        nghttp2_session_callbacks_set_on_header_callback(_callbacks, on_header)
        nghttp2_session_callbacks_set_on_frame_recv_callback(_callbacks, on_frame_recv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(_callbacks, on_data_chunk_recv)
        nghttp2_session_callbacks_set_on_stream_close_callback(_callbacks, on_stream_close)
        nghttp2_session_callbacks_set_error_callback2(_callbacks, on_library_error)
    return _callbacks


cdef class Http2Connection:
    """One HTTP/2 client connection, sans-IO (see the module docstring).

    ``authority`` and ``scheme`` fill the ``:authority`` and ``:scheme`` of
    every request (a ``host`` header given to a request overrides the
    authority). The histograms and the counters are optional; when given they
    get ``headers_us`` (request submitted to response headers), ``body_us``
    (headers to the end of the body) and one count per whole response, in
    ``response_count`` and its status class.
    """

    def __cinit__(self, authority, scheme="http", Histogram headers_histogram=None,
                  Histogram body_histogram=None, ResponseCounters responses=None,
                  uint32_t window_size=DEFAULT_WINDOW):
        cdef nghttp2_settings_entry settings[4]
        cdef int rv
        self.authority = authority.encode("ascii") if isinstance(authority, str) else bytes(authority)
        self.scheme = scheme.encode("ascii") if isinstance(scheme, str) else bytes(scheme)
        self.streams = {}
        self.finished = None
        self.headers_histogram = headers_histogram
        self.body_histogram = body_histogram
        self.responses = responses
        self.out_cap = 1024  # grows with what one flush carries; idle devices stay small
        self.out = <uint8_t *>PyMem_Malloc(self.out_cap)
        if self.out == NULL:
            raise MemoryError()
        rv = nghttp2_session_client_new(&self.session, shared_callbacks(), <void *>self)
        if rv != 0:
            raise MemoryError(nghttp2_strerror(rv).decode())
        settings[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH
        settings[0].value = 0
        settings[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        settings[1].value = window_size
        settings[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        settings[2].value = MAX_HEADER_LIST
        settings[3].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        settings[3].value = 100
        rv = nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, settings, 4)
        if rv != 0:
            raise LocalProtocolError(nghttp2_strerror(rv).decode())
        if window_size > 65535:
            rv = nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0,
                                                       <int32_t>window_size)
            if rv != 0:
                raise LocalProtocolError(nghttp2_strerror(rv).decode())

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL
        PyMem_Free(self.out)

    # -- requests -----------------------------------------------------------

    cpdef Http2Stream request(self, bytes method, bytes path, object headers, bytes body,
                              object user, bytes content_type=None):
        """Queue a request; returns its stream, or ``None`` when this connection
        takes no more requests (GOAWAY, stream ids used up): open a new one.

        ``path`` is sent as given (``stressgrid._core.request.request_path``
        makes a script's path one); ``headers`` are checked and normalised by
        ``stressgrid._core.request`` like HTTP/1's, then HTTP/1's
        connection-specific ones are left out and a ``host`` becomes the
        ``:authority``. ``body`` None sends no body and no ``content-length``;
        ``content_type`` goes with it unless ``headers`` have their own."""
        cdef Py_ssize_t count, i, n
        cdef nghttp2_nv *nva
        cdef nghttp2_nv nva_stack[NV_ON_STACK]
        cdef nghttp2_data_provider provider
        cdef nghttp2_data_provider *provider_ptr = NULL
        cdef int32_t stream_id
        cdef bytes name, value
        cdef bytes authority = self.authority
        cdef list given, extra = None
        cdef Http2Stream stream
        if self.session == NULL or not nghttp2_session_check_request_allowed(self.session):
            return None
        if headers:
            given = []
            normalise_headers(headers, True, given, False)
            extra = []
            for i in range(0, len(given), 2):
                name = <bytes>given[i]
                value = <bytes>given[i + 1]
                if name in _CONNECTION_SPECIFIC:
                    continue
                if name == b"host":
                    authority = value
                    continue
                if name == b"te" and value.lower() != b"trailers":
                    continue
                if name == b"content-type":
                    content_type = None     # the script's own wins
                extra.append(name)
                extra.append(value)
        if body is not None:
            if extra is None:
                extra = []
            if content_type is not None:
                extra.append(b"content-type")
                extra.append(content_type)
            extra.append(b"content-length")
            extra.append(str(len(body)).encode())
        count = 4 + (len(extra) // 2 if extra is not None else 0)
        if count <= NV_ON_STACK:
            nva = nva_stack
        else:
            nva = <nghttp2_nv *>PyMem_Malloc(count * sizeof(nghttp2_nv))
            if nva == NULL:
                raise MemoryError()
        try:
            _set_nv(&nva[0], b":method", method)
            _set_nv(&nva[1], b":scheme", self.scheme)
            _set_nv(&nva[2], b":authority", authority)
            _set_nv(&nva[3], b":path", path)
            if extra is not None:
                n = len(extra)
                i = 0
                while i < n:
                    _set_nv(&nva[4 + i // 2], <bytes>extra[i], <bytes>extra[i + 1])
                    i += 2
            stream = Http2Stream.__new__(Http2Stream)
            stream.user = user
            stream.started_us = monotonic_us()
            if body:
                stream.request_body = body
                provider.source.ptr = <void *>stream
                provider.read_callback = read_request_body
                provider_ptr = &provider
            # nghttp2 copies the name/value pairs before this returns.
            stream_id = nghttp2_submit_request(self.session, NULL, nva, count, provider_ptr,
                                               <void *>stream)
        finally:
            if nva != nva_stack:
                PyMem_Free(nva)
        if stream_id < 0:
            if stream_id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE:
                return None
            # nghttp2 refuses what the script asked for (a malformed request).
            raise RequestArgumentError(f"HTTP/2 request refused locally: {nghttp2_strerror(stream_id).decode()}")
        stream.stream_id = stream_id
        self.streams[stream_id] = stream
        return stream

    def reset_stream(self, int32_t stream_id, uint32_t error_code=NGHTTP2_CANCEL):
        """Give up on a stream (RST_STREAM); it is not reported by ``feed``."""
        # The stream stays in ``streams`` until the library closes it: the
        # library still holds a pointer to it until then.
        stream = self.streams.get(stream_id)
        if stream is not None and self.session != NULL:
            (<Http2Stream>stream).cancelled = True
            nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, stream_id, error_code)

    def terminate(self, uint32_t error_code=NGHTTP2_NO_ERROR):
        """Queue a GOAWAY; the connection takes no more requests."""
        self.terminated = True
        if self.session != NULL:
            nghttp2_session_terminate_session(self.session, error_code)

    # -- bytes in and out ---------------------------------------------------

    cdef void _finish(self, Http2Stream stream) noexcept:
        cdef int64_t now
        if stream.cancelled:
            return
        if stream.complete:
            now = monotonic_us()
            if self.body_histogram is not None:
                self.body_histogram.record_c(now - stream.headers_at_us)
            if self.responses is not None:
                self.responses.count(stream.status)
            if stream.request_body is not None and \
                    stream.body_offset < PyBytes_GET_SIZE(stream.request_body):
                # The server answered before reading the whole body: stop sending it.
                nghttp2_submit_rst_stream(self.session, NGHTTP2_FLAG_NONE, stream.stream_id,
                                          NGHTTP2_NO_ERROR)
        if self.finished is None:
            self.finished = [stream]
        else:
            self.finished.append(stream)

    cpdef Py_ssize_t feed(self, object data) except -1:
        """Take bytes read from the socket; returns how many streams finished (whole
        responses and resets), for ``take_finished``. What the library answers
        (acknowledgements, WINDOW_UPDATE) waits in ``data_to_send``.

        Raises ``RemoteProtocolError`` when the server broke the protocol; the
        connection is then unusable (``data_to_send`` has its GOAWAY)."""
        cdef const uint8_t *ptr
        cdef Py_ssize_t size
        cdef ssize_t rv
        if self.session == NULL:
            raise LocalProtocolError("HTTP/2 connection is closed")
        if type(data) is not bytes:
            data = bytes(data)
        ptr = <const uint8_t *>PyBytes_AS_STRING(data)
        size = PyBytes_GET_SIZE(data)
        rv = nghttp2_session_mem_recv(self.session, ptr, size)
        if self.error is not None:
            error, self.error = self.error, None
            self.terminated = True
            nghttp2_session_terminate_session(self.session, NGHTTP2_INTERNAL_ERROR)
            raise error
        if rv < 0:
            self.terminated = True
            raise RemoteProtocolError(f"HTTP/2 protocol error: {nghttp2_strerror(<int>rv).decode()}")
        # Sending can close streams too (a reset of a malformed response):
        # serialize now so they are reported with this read.
        self._drain()
        if not self.terminated and not self.goaway_received and \
                not nghttp2_session_want_read(self.session):
            # The library found a connection error and queued its GOAWAY.
            self.terminated = True
            raise RemoteProtocolError(f"HTTP/2 connection error: {self.library_error or 'unknown'}")
        return len(self.finished) if self.finished is not None else 0

    cpdef object take_finished(self):
        """The streams finished since the last call, or ``None``."""
        cdef list finished = self.finished
        self.finished = None
        return finished

    cdef int _drain(self) except -1:
        cdef const uint8_t *chunk
        cdef ssize_t n
        cdef size_t cap
        cdef uint8_t *grown
        while True:
            n = nghttp2_session_mem_send(self.session, &chunk)
            if n <= 0:
                break
            if self.out_len + n > self.out_cap:
                cap = self.out_cap * 2
                while cap < self.out_len + n:
                    cap *= 2
                grown = <uint8_t *>PyMem_Realloc(self.out, cap)
                if grown == NULL:
                    raise MemoryError()
                self.out = grown
                self.out_cap = cap
            memcpy(self.out + self.out_len, chunk, n)
            self.out_len += n
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if n < 0:
            raise LocalProtocolError(f"HTTP/2 send failed: {nghttp2_strerror(<int>n).decode()}")
        return 0

    cpdef bytes data_to_send(self):
        """Bytes to write to the socket now (``b""`` when there are none).

        Streams this closes are kept for ``take_finished`` (or the next ``feed``)."""
        cdef bytes out
        cdef uint8_t *grown
        if self.session == NULL:
            return b""
        self._drain()
        if self.out_len == 0:
            return b""
        out = PyBytes_FromStringAndSize(<const char *>self.out, self.out_len)
        self.out_len = 0
        if self.out_cap > 65536:
            # A large upload went through: give its buffer back.
            grown = <uint8_t *>PyMem_Realloc(self.out, 1024)
            if grown != NULL:
                self.out = grown
                self.out_cap = 1024
        return out

    def connection_lost(self):
        """The socket is gone: returns the streams still waiting, and frees the session."""
        pending = [s for s in self.streams.values() if not (<Http2Stream>s).cancelled]
        self.out_len = 0
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL
        self.streams.clear()
        return pending

    # -- state --------------------------------------------------------------

    @property
    def request_allowed(self):
        """True while new requests may go on this connection."""
        return self.session != NULL and nghttp2_session_check_request_allowed(self.session) != 0

    @property
    def open_streams(self):
        return len(self.streams)


cdef inline void _set_nv(nghttp2_nv *nv, bytes name, bytes value) noexcept:
    nv.name = <uint8_t *>PyBytes_AS_STRING(name)
    nv.namelen = PyBytes_GET_SIZE(name)
    nv.value = <uint8_t *>PyBytes_AS_STRING(value)
    nv.valuelen = PyBytes_GET_SIZE(value)
    nv.flags = NGHTTP2_NV_FLAG_NONE
