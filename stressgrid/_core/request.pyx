# cython: freethreading_compatible = False
"""What a script's HTTP request means, whatever the protocol carries it.

HTTP/1 (``stressgrid._core.http1``) and HTTP/2 (``stressgrid._core.http2``)
both take a script's request apart here, so a call behaves the same on every
HTTP target:

- the path: empty becomes ``/``; spaces, controls and non-ASCII characters are
  sent percent-encoded (UTF-8); ``%`` stays, so an encoded path is sent as is;
- headers: ``(name, value)`` pairs or a dict; a name must be an HTTP token, and
  neither may hold CR, LF or NUL; ``Content-Length`` is always computed from
  the body (the script's own is dropped); ``Transfer-Encoding`` is refused;
- the body: ``bytes``/``str``, or ``json=``/``msgpack=`` with their content
  type (a script's own ``Content-Type`` wins), never both;
- the timeout: a positive number of milliseconds, or the plan's default;
- the response body: decoded when its content type is JSON
  (``application/json``, ``text/json``, ``*/*+json``) or msgpack
  (``application/msgpack``, ``application/x-msgpack``,
  ``application/vnd.msgpack``, ``*/*+msgpack``); else ``bytes``;
- the authority (``Host`` / ``:authority``): the plan's host name, IPv6 in
  brackets, the port unless it is the scheme's default.

A request the script built wrong raises ``RequestArgumentError`` before any
byte is sent: the script's fault, counted like any exception a script raises,
never against the target. A response body that does not decode raises
``ProtocolError``: the target's fault.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.math cimport isfinite

from json import dumps as _json_dumps, loads as _json_loads
from urllib.parse import quote as _quote

from msgpack import packb as _msgpack_packb, unpackb as _msgpack_unpackb

from stressgrid.errors import ProtocolError, RequestArgumentError

cdef extern from "strings.h" nogil:
    int strncasecmp(const char *s1, const char *s2, size_t n)

# Everything printable but space: what may stand in a request target unescaped.
_PATH_SAFE = "".join(chr(c) for c in range(0x21, 0x7f))
cdef bytes _JSON_TYPE = b"application/json"
cdef bytes _MSGPACK_TYPE = b"application/msgpack"


cpdef bytes request_path(path):
    """The request target as bytes: ``""`` -> ``b"/"``, unsafe bytes percent-encoded."""
    cdef bytes encoded
    cdef const unsigned char *p
    cdef Py_ssize_t i, n
    if isinstance(path, str):
        encoded = (<str>path).encode("utf-8")
    elif isinstance(path, (bytes, bytearray)):
        encoded = bytes(path)
    else:
        raise RequestArgumentError(f"path must be a string, not {type(path).__name__}")
    n = PyBytes_GET_SIZE(encoded)
    if n == 0:
        return b"/"
    p = <const unsigned char *>PyBytes_AS_STRING(encoded)
    for i in range(n):
        if p[i] <= 0x20 or p[i] >= 0x7f:
            return _quote(encoded, safe=_PATH_SAFE).encode("ascii")
    return encoded


cdef bytes header_bytes(value, str what):
    cdef bytes encoded
    if isinstance(value, str):
        try:
            encoded = (<str>value).encode("latin-1")
        except UnicodeEncodeError:
            encoded = (<str>value).encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        encoded = bytes(value)
    elif isinstance(value, int) and not isinstance(value, bool) and what == "value":
        encoded = str(value).encode("ascii")
    else:
        raise RequestArgumentError(f"header {what} must be a string, not {type(value).__name__}")
    if b"\r" in encoded or b"\n" in encoded or b"\0" in encoded:
        raise RequestArgumentError(f"header {what} {value!r} contains CR, LF or NUL")
    return encoded


cdef inline bint is_token(bytes name):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(name)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(name)
    cdef unsigned char c
    if n == 0:
        return False
    for i in range(n):
        c = p[i]
        if c <= 0x20 or c >= 0x7f or c in b'"(),/:;<=>?@[\\]{}':
            return False
    return True


cdef list normalise_headers(object headers, bint lower, int *flags):
    """A script's headers as ``[name, value, name, value, ...]`` bytes, checked.

    Names are lowercased when ``lower`` (HTTP/2). ``flags`` gets the
    ``HeaderFlag`` facts; ``Content-Length`` is left out.
    """
    cdef list out = []
    cdef bytes name, value, lowered
    cdef int found = 0
    if isinstance(headers, dict):
        headers = headers.items()
    elif isinstance(headers, (str, bytes)):
        raise RequestArgumentError("headers must be (name, value) pairs or a dict, not a string")
    try:
        pairs = iter(headers)
    except TypeError:
        raise RequestArgumentError(
            f"headers must be (name, value) pairs or a dict, not {type(headers).__name__}") from None
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise RequestArgumentError(f"a header must be a (name, value) pair, not {pair!r}")
        name = header_bytes(pair[0], "name")
        if not is_token(name):
            raise RequestArgumentError(f"invalid header name {pair[0]!r}")
        value = header_bytes(pair[1], "value")
        lowered = name.lower()
        if lowered == b"content-length":
            continue
        if lowered == b"host":
            found |= HAS_HOST
        elif lowered == b"content-type":
            found |= HAS_CONTENT_TYPE
        elif lowered == b"transfer-encoding":
            raise RequestArgumentError("transfer-encoding is not supported in requests; pass the whole body")
        elif lowered == b"connection" and b"close" in value.lower():
            found |= CONNECTION_CLOSE
        out.append(lowered if lower else name)
        out.append(value)
    flags[0] = found
    return out


cpdef tuple request_body(object body, object json, object msgpack):
    """``(body bytes, content type or None)`` from a script's ``body``/``json``/``msgpack``."""
    if json is not None or msgpack is not None:
        if json is not None and msgpack is not None:
            raise RequestArgumentError("pass json= or msgpack=, not both")
        if body:
            raise RequestArgumentError("pass body= or json=/msgpack=, not both")
        try:
            if json is not None:
                return (_json_dumps(json, separators=(",", ":")).encode("utf-8"), _JSON_TYPE)
            return (_msgpack_packb(msgpack), _MSGPACK_TYPE)
        except (TypeError, ValueError, OverflowError) as exc:
            what = "json" if json is not None else "msgpack"
            raise RequestArgumentError(f"{what}= cannot be encoded: {exc}") from None
    if body is None:
        return (b"", None)
    if isinstance(body, bytes):
        return (body, None)
    if isinstance(body, str):
        return ((<str>body).encode("utf-8"), None)
    if isinstance(body, (bytearray, memoryview)):
        return (bytes(body), None)
    raise RequestArgumentError(f"body must be bytes or str, not {type(body).__name__}")


cpdef double timeout_seconds(object timeout, double default_s) except -1.0:
    """A script's ``timeout=`` (ms) in seconds; ``None`` is the plan's default."""
    cdef double ms
    if timeout is None:
        return default_s
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise RequestArgumentError(f"timeout must be a positive number of milliseconds, not {timeout!r}")
    ms = timeout
    if not (ms > 0 and isfinite(ms)):
        raise RequestArgumentError(f"timeout must be a positive number of milliseconds, not {timeout!r}")
    return ms / 1000.0


cdef inline bint ends_with(const char *p, Py_ssize_t n, const char *suffix, Py_ssize_t m) noexcept:
    return n >= m and strncasecmp(p + n - m, suffix, m) == 0


cdef int content_kind(const char *p, Py_ssize_t n) noexcept:
    """The ``BodyKind`` of a Content-Type value (case-insensitive, parameters ignored)."""
    cdef Py_ssize_t start = 0, end
    while start < n and (p[start] == b' ' or p[start] == b'\t'):
        start += 1
    end = start
    while end < n and p[end] != b';':
        end += 1
    while end > start and (p[end - 1] == b' ' or p[end - 1] == b'\t'):
        end -= 1
    p += start
    n = end - start
    if ends_with(p, n, b"json", 4):
        if (n == 16 and strncasecmp(p, b"application/json", 16) == 0) \
                or (n == 9 and strncasecmp(p, b"text/json", 9) == 0):
            return BODY_JSON
        if ends_with(p, n, b"+json", 5) and has_type_slash(p, n - 5):
            return BODY_JSON
    elif ends_with(p, n, b"msgpack", 7):
        if (n == 19 and strncasecmp(p, b"application/msgpack", 19) == 0) \
                or (n == 21 and strncasecmp(p, b"application/x-msgpack", 21) == 0) \
                or (n == 23 and strncasecmp(p, b"application/vnd.msgpack", 23) == 0):
            return BODY_MSGPACK
        if ends_with(p, n, b"+msgpack", 8) and has_type_slash(p, n - 8):
            return BODY_MSGPACK
    return BODY_BYTES


cdef inline bint has_type_slash(const char *p, Py_ssize_t n) noexcept:
    # "type/subtype" before a structured-syntax suffix: a slash, not first or last.
    cdef Py_ssize_t i
    for i in range(1, n - 1):
        if p[i] == b'/':
            return True
    return False


cpdef object decode_body(int kind, object body, object content_type):
    """``body`` decoded as its ``kind`` says; an empty body stays ``b""``."""
    if kind == BODY_BYTES or not body:
        return body
    try:
        if kind == BODY_JSON:
            return _json_loads(body)
        return _msgpack_unpackb(body)
    except Exception as exc:
        what = "JSON" if kind == BODY_JSON else "msgpack"
        raise ProtocolError(f"response body is not valid {what} (content type {content_type}): {exc}") from None


def authority(str host, int port, bint tls):
    """The ``Host`` of a request: ``host`` (IPv6 in brackets), ``:port`` unless the default."""
    cdef str text = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port != (443 if tls else 80):
        text = f"{text}:{port}"
    return text.encode("ascii") if text.isascii() else text.encode("idna")



def check_headers(headers):
    """Raise ``RequestArgumentError`` if ``normalise_headers`` would."""
    cdef int flags = 0
    normalise_headers(headers, False, &flags)
