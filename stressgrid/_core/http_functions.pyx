# cython: freethreading_compatible = False
"""The HTTP script functions (``get``, ``head``, ``options``, ``delete``, ``post``,
``put``, ``patch``), one set for every HTTP protocol.

Each finds the running device through the task's context variable and hands
the request to its client: straight into the compiled HTTP/1 or HTTP/2 path
(``request_c`` of their ``ClientBase``) without a Python frame. ``body``/``json=``/``msgpack=`` become the body and
its content type here (``stressgrid._core.request``); the clients check the
rest before anything is sent.

The first request of an arrival-rate iteration also records
``intended_first_response_us``: from the iteration's scheduled start to the
whole response, the wait a user arriving then would have seen.
"""
from libc.stdint cimport int64_t

from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.device cimport Device, device_or_none, metric_key
from stressgrid._core.http1_client cimport ClientBase
from stressgrid._core.http2_client cimport ClientBase as Http2ClientBase
from stressgrid._core.metrics cimport Histogram, RequestGroup
from stressgrid._core.request cimport request_body

from stressgrid.errors import LocalProtocolError, RequestArgumentError
from stressgrid.plan.arrivals import INTENDED_FIRST_RESPONSE_HISTOGRAM

# request_<name>_response_5xx_count, the longest key of a group, stays within 100 characters.
MAX_REQUEST_NAME_LENGTH = 64


cdef RequestGroup request_group(Device device, name):
    """The metrics group of requests named ``name``, or ``RequestArgumentError``."""
    cdef str key
    try:
        key = metric_key(name)
        if len(key) > MAX_REQUEST_NAME_LENGTH:
            raise ValueError(f"request name {key!r} is over {MAX_REQUEST_NAME_LENGTH} characters")
        return device.recorder.request_group(key)
    except (TypeError, ValueError) as exc:
        raise RequestArgumentError(f"name: {exc}") from None


def group_for(Device device not None, name):
    """The ``RequestGroup`` of requests named ``name`` on ``device`` (``None`` for no name), or
    ``RequestArgumentError``: for the script functions written in Python (``ws_upgrade``)."""
    return None if name is None else request_group(device, name)


cdef object send(bytes method, path, headers, body, bytes content_type, timeout, name):
    cdef object device = device_or_none()
    if device is None:
        raise RuntimeError("HTTP functions run inside a device script")
    cdef RequestGroup group = None if name is None else request_group(<Device?>device, name)
    client = (<Device?>device).client
    if isinstance(client, ClientBase):
        response = (<ClientBase>client).request_c(method, path, headers, body, content_type, timeout, group)
    elif isinstance(client, Http2ClientBase):
        response = (<Http2ClientBase>client).request_c(method, path, headers, body, content_type, timeout, group)
    else:
        raise LocalProtocolError("HTTP functions need an HTTP target (http10, http10s, http, https, http2, http2s)")
    cdef int64_t intended_us = (<Device>device).intended_start_us
    if intended_us:
        (<Device>device).intended_start_us = 0
        return from_intended_start(response, (<Device>device).recorder.histogram(
            INTENDED_FIRST_RESPONSE_HISTOGRAM), intended_us)
    return response


async def from_intended_start(response, Histogram histogram, int64_t intended_us):
    result = await response
    histogram.record_c(monotonic_us() - intended_us)
    return result


cdef object send_with_body(bytes method, path, headers, body, json, msgpack, timeout, name):
    cdef tuple encoded = request_body(body, json, msgpack)
    return send(method, path, headers, <bytes>encoded[0], <bytes>encoded[1], timeout, name)


def get(path, headers=(), *, timeout=None, name=None):
    """GET ``path``; await it for ``(status, headers, body)``. ``name``: the request's group
    (``request_<name>_headers_us``, ``_body_us``, ``_response_count`` and status classes),
    besides the totals every request counts in."""
    return send(b"GET", path, headers, None, None, timeout, name)


def head(path, headers=(), *, timeout=None, name=None):
    """HEAD ``path``; the body is always ``b""``."""
    return send(b"HEAD", path, headers, None, None, timeout, name)


def options(path, headers=(), *, timeout=None, name=None):
    """OPTIONS ``path``."""
    return send(b"OPTIONS", path, headers, None, None, timeout, name)


def delete(path, headers=(), *, timeout=None, name=None):
    """DELETE ``path``."""
    return send(b"DELETE", path, headers, None, None, timeout, name)


def post(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None, name=None):
    """POST ``body`` (or ``json=``/``msgpack=`` with their content type) to ``path``."""
    return send_with_body(b"POST", path, headers, body, json, msgpack, timeout, name)


def put(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None, name=None):
    """PUT ``body`` (or ``json=``/``msgpack=``) at ``path``."""
    return send_with_body(b"PUT", path, headers, body, json, msgpack, timeout, name)


def patch(path, headers=(), body=b"", *, json=None, msgpack=None, timeout=None, name=None):
    """PATCH ``path`` with ``body`` (or ``json=``/``msgpack=``)."""
    return send_with_body(b"PATCH", path, headers, body, json, msgpack, timeout, name)


BUILTINS = {
    "get": get,
    "head": head,
    "options": options,
    "delete": delete,
    "post": post,
    "put": put,
    "patch": patch,
}
