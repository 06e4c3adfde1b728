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
``RemoteProtocolError``: the target's fault.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.math cimport isfinite

from json import dumps as _json_dumps, loads as _json_loads
from urllib.parse import quote as _quote

from msgpack import packb as _msgpack_packb, unpackb as _msgpack_unpackb

from stressgrid.errors import RemoteProtocolError, RequestArgumentError

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
    # str as Latin-1 when it fits (what responses are decoded with), else UTF-8.
    if type(value) is str:
        try:
            return (<str>value).encode("latin-1")
        except UnicodeEncodeError:
            return (<str>value).encode("utf-8")
    if type(value) is bytes:
        return <bytes>value
    if isinstance(value, str):
        return header_bytes(str(value), what)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int) and not isinstance(value, bool) and what == "value":
        return str(value).encode("ascii")
    raise RequestArgumentError(f"header {what} must be a string, not {type(value).__name__}")


cdef inline bint has_line_break(bytes data) noexcept:
    # CR, LF or NUL: what would end a header line early (or confuse a peer).
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(PyBytes_GET_SIZE(data)):
        c = p[i]
        if c == 13 or c == 10 or c == 0:
            return True
    return False


cdef inline bint is_token(bytes name) noexcept:
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


cdef int normalise_headers(object headers, bint lower, list out, bint as_lines) except -1:
    """Check a script's headers and append them to ``out``; returns their ``HeaderFlag`` facts.

    Names and values become bytes, names lowercased when ``lower`` (HTTP/2);
    ``as_lines`` appends ``name, b": ", value, b"\\r\\n"`` (HTTP/1), else
    ``name, value``. ``Content-Length`` is left out.
    """
    cdef bytes name, value
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
        if not (type(pair) is tuple or isinstance(pair, (tuple, list))) or len(pair) != 2:
            raise RequestArgumentError(f"a header must be a (name, value) pair, not {pair!r}")
        name = header_bytes(pair[0], "name")
        if not is_token(name):
            if has_line_break(name):
                raise RequestArgumentError(f"header name {pair[0]!r} contains CR, LF or NUL")
            raise RequestArgumentError(f"invalid header name {pair[0]!r}")
        value = header_bytes(pair[1], "value")
        if has_line_break(value):
            raise RequestArgumentError(f"header value {pair[1]!r} contains CR, LF or NUL")
        if named(name, b"content-length", 14):
            continue
        if named(name, b"host", 4):
            found |= HAS_HOST
        elif named(name, b"content-type", 12):
            found |= HAS_CONTENT_TYPE
        elif named(name, b"transfer-encoding", 17):
            raise RequestArgumentError("transfer-encoding is not supported in requests; pass the whole body")
        elif named(name, b"connection", 10) and b"close" in value.lower():
            found |= CONNECTION_CLOSE
        if lower:
            name = name.lower()
        if as_lines:
            out += (name, b": ", value, b"\r\n")
        else:
            out.append(name)
            out.append(value)
    return found


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
    return n >= m and same_caseless(p + n - m, suffix, m)


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
        if (n == 16 and same_caseless(p, b"application/json", 16)) \
                or (n == 9 and same_caseless(p, b"text/json", 9)):
            return BODY_JSON
        if ends_with(p, n, b"+json", 5) and has_type_slash(p, n - 5):
            return BODY_JSON
    elif ends_with(p, n, b"msgpack", 7):
        if (n == 19 and same_caseless(p, b"application/msgpack", 19)) \
                or (n == 21 and same_caseless(p, b"application/x-msgpack", 21)) \
                or (n == 23 and same_caseless(p, b"application/vnd.msgpack", 23)):
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
        raise RemoteProtocolError(f"response body is not valid {what} (content type {content_type}): {exc}") from None


def authority(str host, int port, bint tls):
    """The ``Host`` of a request: ``host`` (IPv6 in brackets), ``:port`` unless the default."""
    cdef str text = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port != (443 if tls else 80):
        text = f"{text}:{port}"
    return text.encode("ascii") if text.isascii() else text.encode("idna")



def check_headers(headers):
    """Raise ``RequestArgumentError`` if ``normalise_headers`` would."""
    normalise_headers(headers, False, [], False)
