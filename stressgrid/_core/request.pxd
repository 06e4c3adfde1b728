# What HTTP/1 and HTTP/2 share about a request and its response body.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE


cdef extern from "strings.h" nogil:
    int strncasecmp(const char *s1, const char *s2, size_t n)

# Facts normalise_headers() reports about a request's headers.
cdef enum HeaderFlag:
    HAS_HOST = 1            # the script gave its own Host
    HAS_CONTENT_TYPE = 2    # the script gave its own Content-Type
    CONNECTION_CLOSE = 4    # a "Connection: close" (HTTP/1 closes after the response)

# How a response body is decoded, from its content type.
cdef enum BodyKind:
    BODY_BYTES = 0
    BODY_JSON = 1
    BODY_MSGPACK = 2


cdef inline bint named_at(const char *name, Py_ssize_t size, const char *lower, Py_ssize_t length) noexcept:
    """The ``size`` bytes at ``name`` are ``lower`` (``length`` bytes), whatever their case."""
    return size == length and strncasecmp(name, lower, length) == 0


cdef inline bint named(bytes name, const char *lower, Py_ssize_t length) noexcept:
    """``name`` is ``lower`` (``length`` bytes), whatever its case."""
    return named_at(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), lower, length)


cpdef bytes request_path(path)
cdef int normalise_headers(object headers, bint lower, list out, bint as_lines) except -1
cpdef tuple request_body(object body, object json, object msgpack)
cpdef double timeout_seconds(object timeout, double default_s) except -1.0
cdef int content_kind(const char *value, Py_ssize_t length) noexcept
cpdef object decode_body(int kind, object body, object content_type)
