# What HTTP/1 and HTTP/2 share about a request and its response body.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE


cdef inline bint same_caseless(const char *a, const char *b, Py_ssize_t n) noexcept:
    """The ``n`` bytes at ``a`` and at ``b`` are the same but for the case of ASCII letters.
    (libc's strncasecmp follows the locale, stops at a NUL, and cost a call per header.)"""
    cdef Py_ssize_t i
    cdef unsigned char x, y
    for i in range(n):
        x = <unsigned char>a[i]
        y = <unsigned char>b[i]
        if x != y:
            if 65 <= x <= 90:
                x += 32
            if 65 <= y <= 90:
                y += 32
            if x != y:
                return False
    return True

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
    return size == length and same_caseless(name, lower, length)


cdef inline bint named(bytes name, const char *lower, Py_ssize_t length) noexcept:
    """``name`` is ``lower`` (``length`` bytes), whatever its case."""
    return named_at(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), lower, length)


cpdef bytes request_path(path)
cdef int normalise_headers(object headers, bint lower, list out, bint as_lines) except -1
cpdef tuple request_body(object body, object json, object msgpack)
cpdef double timeout_seconds(object timeout, double default_s) except -1.0
cdef int content_kind(const char *value, Py_ssize_t length) noexcept
cpdef object decode_body(int kind, object body, object content_type)
