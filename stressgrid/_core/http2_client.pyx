# cython: freethreading_compatible = False
"""The compiled per-request path of the HTTP/2 asyncio client.

``ClientBase`` and ``ProtocolBase`` glue the sans-IO core (``stressgrid._core.http2``,
over libnghttp2) to asyncio for the steady state of a device: a request submitted on
the open connection, its ``Pending`` completed when the response has finished, inside
``data_received`` (the device's runner steps the script right there). Everything
rarer (connecting, resends of refused streams, deadlines, failures, losses) is in
their Python subclasses in ``stressgrid.protocols.http2``, through the hooks declared
in ``http2_client.pxd``. The script functions (``stressgrid._core.http_functions``)
call ``ClientBase.request_c`` directly.
"""
from libc.stdint cimport int64_t

from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.deadline cimport DeadlineTimer
from stressgrid._core.device cimport Device
from stressgrid._core.headers cimport headers_of_pairs
from stressgrid._core.http2 cimport Http2Connection, Http2Stream, PendingRequest
from stressgrid._core.metrics cimport RequestGroup
from stressgrid._core.pending cimport Pending, pending_on
from stressgrid._core.request cimport request_path, timeout_seconds
from stressgrid._core.timers cimport timers_of

from stressgrid._core.request import check_headers
from stressgrid.errors import RemoteProtocolError, count_error


cdef class ClientBase:
    """A device's HTTP/2 client: the steady-state request path (see the Python subclass)."""

    def request(self, bytes method not None, path, headers=(), body=None, bytes content_type=None,
                timeout=None, RequestGroup group=None):
        """An awaitable of ``(status, headers, body)``.

        Checked before anything is sent (``RequestArgumentError``): the path, the timeout,
        and the headers (by the core's ``request`` on an open connection, else by a check
        of their own here).
        """
        return self.request_c(method, path, headers, body, content_type, timeout, group)

    cdef object request_c(self, bytes method, path, headers, body, bytes content_type, timeout,
                          RequestGroup group):
        cdef double seconds = timeout_seconds(timeout, self.device.timeout_s)
        cdef bytes target = request_path(path)
        cdef ProtocolBase protocol = self.protocol
        if protocol is not None:
            pending = protocol.submit_c(method, target, headers, body, content_type, seconds, False, group)
            if pending is not None:
                return pending
        if headers:
            check_headers(headers)
        return self.request_on_new_connection(method, target, headers, body, content_type, seconds, group)

    # ---- hooks: the Python subclass implements them ----------------------------

    cpdef object request_on_new_connection(self, bytes method, bytes path, headers, body, content_type,
                                           double seconds, group):
        """An awaitable of the response of a request that waits for a new connection."""
        raise NotImplementedError

    cpdef resend(self, request):
        """Send a request the server refused unprocessed again, on a new connection."""
        raise NotImplementedError


cdef class ProtocolBase:
    """One connection's per-request path (see ``_Http2Protocol`` in the Python layer)."""

    def data_received(self, data):
        if self.lost:
            return  # failed already: what still arrives is not read
        cdef Http2Connection core = self.core
        try:
            core.feed(data)
            out = core.data_to_send()
        except Exception as exc:  # noqa: BLE001 - RemoteProtocolError, or a failure the core stored
            self.fail(exc)
            return
        if out:
            self.transport.write(out)
        finished = core.take_finished()  # what the read finished, and any reset sending it answered
        if finished is not None:
            for stream in <list>finished:
                self.complete_c(<Http2Stream>stream)
        if core.goaway_received and not core.streams:
            self.transport.close()

    def submit(self, bytes method, bytes path, headers, body, content_type, double timeout_s,
               bint retried=False, group=None):
        """Send a request; its awaitable (a ``Pending``), or ``None`` when this connection takes
        no more. ``group``: a named request's metrics group."""
        return self.submit_c(method, path, headers, body, content_type, timeout_s, retried, group)

    cdef object submit_c(self, bytes method, bytes path, headers, body, content_type, double timeout_s,
                         bint retried, group):
        cdef Pending pending = pending_on(timers_of(self.client.loop))
        cdef Http2Stream stream = self.core.request(
            method, path, headers, body,
            PendingRequest(pending, method, path, headers, body, content_type, timeout_s, retried, group),
            content_type)
        if stream is None:
            return None
        cdef int64_t deadline = monotonic_us() + <int64_t>(timeout_s * 1e6)
        stream.deadline_us = deadline
        cdef DeadlineTimer timer = self.timer
        if timer is None:
            timer = self.timer = DeadlineTimer(self.client.loop, self)
        if timer.deadline_us == 0 or deadline < timer.deadline_us:
            timer.arm(deadline)
        self.flush_c()
        return pending

    def flush(self):
        """Write what the core has to send; hand over the streams that finished meanwhile."""
        self.flush_c()

    cdef int flush_c(self) except -1:
        cdef Http2Connection core = self.core
        try:
            out = core.data_to_send()
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)
            return 0
        if out and not self.lost:
            self.transport.write(out)
        finished = core.take_finished()
        if finished is not None:
            for stream in <list>finished:
                self.complete_c(<Http2Stream>stream)
        return 0

    def complete(self, Http2Stream stream not None):
        """Hand ``stream``'s outcome to the script that waits for it."""
        self.complete_c(stream)

    cdef int complete_c(self, Http2Stream stream) except -1:
        cdef PendingRequest request = <PendingRequest>stream.user
        cdef Pending pending = <Pending>request.future
        cdef ClientBase client = self.client
        if pending.done():
            return 0
        if stream.complete:
            try:
                body = stream.decoded_body()
            except RemoteProtocolError as exc:
                pending.set_exception(count_error(client.recorder, exc))
                return 0
            group = request.group
            if group is not None:
                (<RequestGroup>group).record(stream.started_us, stream.headers_at_us, monotonic_us(), stream.status)
            client.device.record_intended_headers(stream.headers_at_us - stream.started_us, group)
            pending.complete((stream.status, headers_of_pairs(stream.headers), body))   # the script may go on right here
        elif stream.refused and not request.retried:
            client.resend(request)
        else:
            pending.set_exception(count_error(client.recorder, stream.exception()))
        return 0

    # ---- hooks: the Python subclass implements them ----------------------------

    cpdef fail(self, exc):
        """The connection is broken: fail every request on it, count it once, close."""
        raise NotImplementedError
