# cython: freethreading_compatible = False
"""The HTTP script functions (``get``, ``head``, ``options``, ``delete``, ``post``,
``put``, ``patch``), one set for every HTTP protocol.

Each finds the running device through the task's context variable and hands
the request to its client: straight into the compiled HTTP/1 path
(``ClientBase.request_c``) without a Python frame, or to ``request()`` of
another client (HTTP/2). ``body``/``json=``/``msgpack=`` become the body and
its content type here (``stressgrid._core.request``); the clients check the
rest before anything is sent.
"""
from cpython.contextvars cimport get_value

from stressgrid._core.device cimport Device
from stressgrid._core.http1_client cimport ClientBase
from stressgrid._core.request cimport request_body

from stressgrid._core import device as _device_module

cdef object _device_var = _device_module._current


cdef object send(bytes method, path, headers, body, bytes content_type, timeout):
    cdef object device = get_value(_device_var)
    if device is None:
        raise RuntimeError("HTTP functions run inside a device script")
    client = (<Device?>device).client
    if isinstance(client, ClientBase):
        return (<ClientBase>client).request_c(method, path, headers, body, content_type, timeout)
    request = getattr(client, "request", None)
    if request is None:
        raise RuntimeError("HTTP functions need an HTTP target (http10, http10s, http, https, http2, http2s)")
    return request(method, path, headers, body, content_type, timeout)


cdef object send_with_body(bytes method, path, headers, body, json, msgpack, timeout):
    cdef tuple encoded = request_body(body, json, msgpack)
    return send(method, path, headers, <bytes>encoded[0], <bytes>encoded[1], timeout)


def get(path, headers=(), *, timeout=None):
    """GET ``path``; await it for ``(status, headers, body)``."""
    return send(b"GET", path, headers, None, None, timeout)


def head(path, headers=(), *, timeout=None):
    """HEAD ``path``; the body is always ``b""``."""
    return send(b"HEAD", path, headers, None, None, timeout)


def options(path, headers=(), *, timeout=None):
    """OPTIONS ``path``."""
    return send(b"OPTIONS", path, headers, None, None, timeout)


def delete(path, headers=(), *, timeout=None):
    """DELETE ``path``."""
    return send(b"DELETE", path, headers, None, None, timeout)


def post(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None):
    """POST ``body`` (or ``json=``/``msgpack=`` with their content type) to ``path``."""
    return send_with_body(b"POST", path, headers, body, json, msgpack, timeout)


def put(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None):
    """PUT ``body`` (or ``json=``/``msgpack=``) at ``path``."""
    return send_with_body(b"PUT", path, headers, body, json, msgpack, timeout)


def patch(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None):
    """PATCH ``path`` with ``body`` (or ``json=``/``msgpack=``)."""
    return send_with_body(b"PATCH", path, headers, body, json, msgpack, timeout)


BUILTINS = {
    "get": get,
    "head": head,
    "options": options,
    "delete": delete,
    "post": post,
    "put": put,
    "patch": patch,
}
