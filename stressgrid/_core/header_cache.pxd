# Response headers as (name, value) strings, through a cache of the pairs already decoded.
#
# Responses repeat their headers ("Server: nginx", "Content-Type: text/html"...): a
# small direct-mapped cache of decoded pairs, one per module that decodes them (HTTP/1's
# ResponseHeaders, HTTP/2's header callback) shared by all its connections, saves two
# decodes and a tuple per header. Inline, so each of those modules compiles it in.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

cdef enum:
    HEADER_CACHE_SIZE = 1024        # a power of two
    HEADER_CACHE_MAX_BYTES = 256    # longer headers are decoded every time


cdef inline list new_header_cache():
    return [None] * HEADER_CACHE_SIZE


cdef inline str latin1(const char *data, Py_ssize_t size):
    # Header bytes map 1:1 onto code points 0-255: lossless, and the cheapest decode.
    return PyUnicode_DecodeLatin1(data, size, NULL)


cdef inline bint same_bytes(bytes known, const char *data, Py_ssize_t size) noexcept:
    return PyBytes_GET_SIZE(known) == size and memcmp(PyBytes_AS_STRING(known), data, size) == 0


cdef inline uint64_t mixed(uint64_t h, const char *data, Py_ssize_t size) noexcept:
    # Eight bytes a step (a byte a step took longer than the rest of a header's handling).
    cdef uint64_t word
    while size >= 8:
        memcpy(&word, data, 8)
        h = (h ^ word) * 0x9E3779B97F4A7C15u
        h ^= h >> 29
        data += 8
        size -= 8
    if size:
        word = 0
        memcpy(&word, data, size)
        h = (h ^ word) * 0x9E3779B97F4A7C15u
        h ^= h >> 29
    return h


cdef inline tuple header_pair(list cache, const char *name, Py_ssize_t n, const char *value, Py_ssize_t m):
    """The header as ``(name, value)`` strings, from ``cache`` when it repeats."""
    cdef Py_ssize_t i
    cdef uint64_t h
    cdef tuple entry, pair
    if n + m > HEADER_CACHE_MAX_BYTES:
        return (latin1(name, n), latin1(value, m))
    h = mixed(mixed(<uint64_t>n * 0xFF51AFD7ED558CCDu + <uint64_t>m, name, n), value, m)
    i = (h ^ (h >> 32)) & (HEADER_CACHE_SIZE - 1)
    cached = cache[i]
    if cached is not None:
        entry = <tuple>cached
        if same_bytes(<bytes>entry[0], name, n) and same_bytes(<bytes>entry[1], value, m):
            return <tuple>entry[2]
    pair = (latin1(name, n), latin1(value, m))
    cache[i] = (PyBytes_FromStringAndSize(name, n), PyBytes_FromStringAndSize(value, m), pair)
    return pair
