from libc.stdint cimport int64_t

from stressgrid._core.headers cimport ResponseHeaders
from stressgrid._core.llhttp cimport llhttp_t
from stressgrid._core.metrics cimport Histogram, ResponseCounters


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

# What feed() and eof() return: how many responses are ready for result() (a 101 is one).
cdef enum:
    NEED_MORE = 0
    COMPLETE = 1

cdef class Http1Core:
    # llhttp's parser, in the core itself; its callbacks are C functions (http1.pyx).
    cdef llhttp_t parser
    cdef readonly int state
    # Request facts the response depends on.
    cdef bint head
    cdef bint close_after
    cdef bint measured
    # Response framing, from its headers.
    cdef bint has_length
    cdef bint chunked
    cdef readonly bint reusable   # the connection may carry another request after this one
    cdef readonly int status
    cdef ResponseHeaders headers
    # What the header block held when a read ended inside the header fields (http1.pyx).
    cdef bytes head_kept
    cdef Py_ssize_t head_count
    cdef Py_ssize_t head_entry
    cdef object body            # None, one bytes chunk, or a list of chunks
    cdef int body_kind          # a request.BodyKind
    cdef object content_type    # its Content-Type, for the error of a body that does not decode
    # Bytes of this response seen so far: 0 at EOF means the server never answered.
    cdef readonly Py_ssize_t received
    # Responses completed on this connection (a reused connection has at least one).
    cdef readonly Py_ssize_t completed
    cdef object error           # raised inside a parser callback, re-raised by feed()
    cdef readonly bytes leftover  # bytes after a 101 response
    cdef bytes out              # the request start() was given, until data_to_send()
    cdef int64_t sent_at
    cdef int64_t headers_at
    cdef Histogram headers_us
    cdef Histogram body_us
    cdef ResponseCounters responses

    cpdef start(self, bytes request, bint head, bint close_after, bint measured=*)
    cpdef bytes data_to_send(self)
    cpdef int feed(self, data) except -1
    cpdef int eof(self) except -1
    cpdef tuple result(self)
    cpdef void release(self)
    cdef inline void _reset_response(self)
    cdef inline void _finish(self)
    cdef inline void _store(self, exc)
    cdef void message_begin(self)
    cdef void header(self, const char *name, Py_ssize_t name_size, const char *value, Py_ssize_t value_size)
    cdef int headers_complete(self)
    cdef void body_chunk(self, bytes chunk)
    cdef void message_complete(self)


cdef class RequestWriter:
    cdef bytes version          # b" HTTP/1.1\r\n"
    cdef bytes host_line        # b"Host: example.com\r\n"
    cdef bytes version_host     # both, plus the blank line: the tail of a header-less request
    cdef readonly bint http10
    cdef readonly bint close_after
    # The last header-less, bodiless request, reused while a script repeats it.
    cdef object last_path
    cdef bytes last_method
    cdef bytes last_request

    cpdef bytes build(self, bytes method, path, headers=*, body=*, bytes content_type=*)
