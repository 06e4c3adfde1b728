# What HTTP/1 and HTTP/2 share about a request and its response body.

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


cpdef bytes request_path(path)
cdef list normalise_headers(object headers, bint lower, int *flags)
cpdef tuple request_body(object body, object json, object msgpack)
cpdef double timeout_seconds(object timeout, double default_s) except -1.0
cdef int content_kind(const char *value, Py_ssize_t length) noexcept
cpdef object decode_body(int kind, object body, object content_type)
