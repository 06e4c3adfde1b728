from libc.stdint cimport int64_t

from stressgrid._core.deadline cimport DeadlineTimer
from stressgrid._core.metrics cimport Counter, Histogram


# Where one connection stands in its current request/response exchange.
cdef enum ExchangeState:
    IDLE = 0        # no request in flight; the connection may be reused
    WAITING = 1     # request sent, status line and headers not complete yet
    BODY = 2        # headers complete, reading the body
    DONE = 3        # response complete; result() hands it over
    UPGRADED = 4    # 101 Switching Protocols: the bytes now belong to another protocol
    FAILED = 5      # the response was malformed; the connection is unusable

# Flags of a request (ClientBase.send).
cdef enum:
    REQUEST_HEAD = 1      # a HEAD: its response has no body
    REQUEST_CLOSE = 2     # the connection ends with this request

# What feed() and eof() report.
cdef enum FeedEvent:
    NEED_MORE = 0
    COMPLETE = 1
    SWITCHED = 2

cdef class Http1Core:
    # llhttp through httptools; replaced after a HEAD response (see on_headers_complete).
    cdef object parser
    cdef public int state
    # Request facts the response depends on.
    cdef bint head
    cdef bint close_after
    cdef bint measured
    # Response framing, from its headers.
    cdef bint has_length
    cdef bint chunked
    cdef public bint reusable   # the connection may carry another request after this one
    cdef bint drop_parser
    cdef public int status
    cdef list headers
    cdef object body            # None, one bytes chunk, or a list of chunks
    cdef int body_kind          # a request.BodyKind
    cdef object content_type    # its Content-Type, for the error of a body that does not decode
    # Bytes of this response seen so far: 0 at EOF means the server never answered.
    cdef public Py_ssize_t received
    # Responses completed on this connection (a reused connection has at least one).
    cdef public Py_ssize_t completed
    cdef object error           # raised inside a parser callback, re-raised by feed()
    cdef public bytes leftover  # bytes after a 101 response
    cdef int64_t sent_at
    cdef int64_t headers_at
    cdef Histogram headers_us
    cdef Histogram body_us
    cdef Counter response_count

    cpdef start(self, bint head, bint close_after, bint measured=*)
    cpdef int feed(self, data) except -1
    cpdef int eof(self) except -1
    cpdef tuple result(self)
    cpdef void shrink(self)
    cpdef void release(self)
    cdef inline void _reset_response(self)
    cdef inline void _finish(self)
    cdef inline void _store(self, exc)
    cdef void message_begin(self)
    cdef void header(self, bytes name, bytes value)
    cdef void headers_complete(self)
    cdef void body_chunk(self, bytes chunk)
    cdef void message_complete(self)


cdef class RequestWriter:
    cdef bytes version          # b" HTTP/1.1\r\n"
    cdef bytes host_line        # b"Host: example.com\r\n"
    cdef bytes version_host     # both, plus the blank line: the tail of a header-less request
    cdef public bint http10
    cdef public bint close_after
    # The last header-less, bodiless request, reused while a script repeats it.
    cdef object last_path
    cdef bytes last_method
    cdef bytes last_request

    cpdef bytes build(self, bytes method, path, headers=*, body=*, bytes content_type=*)


cdef class ConnectionBase

# The per-request path of the asyncio layer (stressgrid.protocols.http1), compiled:
# sending on an open connection and completing a response. Connecting, timeouts,
# losses, retries and upgrades are in the Python subclasses.
cdef class ClientBase:
    cdef public object recorder
    cdef public object loop
    cdef public RequestWriter writer
    cdef public ConnectionBase conn      # the open connection, if any
    cdef public ConnectionBase inflight  # the connection whose response is due
    cdef public DeadlineTimer timer      # the device's one deadline timer, made on its first request
    cdef public int64_t deadline_us     # when the response in flight is due
    cdef public double budget_s
    cdef public double timeout_s
    cdef public bint closed
    cdef public bint connecting
    cdef public object ws

    cdef object request_c(self, bytes method, path, headers, body, bytes content_type, timeout)
    cpdef object send(self, ConnectionBase conn, object waiter, bytes data, int flags,
                      int64_t deadline_us, double budget_s)
    cpdef arm(self, int64_t deadline_us)


cdef class ConnectionBase:
    cdef public Http1Core core
    cdef public ClientBase client
    cdef public object transport
    cdef public object waiter            # the script's future while a response is due
    cdef public bytes request            # a request that may go out once more
    cdef public int flags                # REQUEST_HEAD, REQUEST_CLOSE of the request in flight
    cdef public bint reused
    cdef public bint upgraded
    cdef public bint lost

    cpdef complete(self, int event)
