# cython: freethreading_compatible = False
"""The compiled per-request path of the HTTP/1 asyncio client.

``ClientBase`` and ``ConnectionBase`` glue the sans-IO core
(``stressgrid._core.http1``) to asyncio: sending on an open connection and
completing a response, the steady state of a device. Everything rarer
(connecting, timeouts, losses, retries, upgrades) is in their Python
subclasses in ``stressgrid.protocols.http1``, through the hooks declared in
``http1_client.pxd``.

The script functions (``get``, ``post``...) in ``stressgrid._core.http_functions``
call ``ClientBase.request_c`` directly.
"""
from libc.stdint cimport int64_t

from stressgrid._core.deadline cimport DeadlineTimer
from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.device cimport Device
from stressgrid._core.http1 cimport (REQUEST_CLOSE, REQUEST_HEAD, UPGRADED, Http1Core,
                                     RequestWriter)
from stressgrid._core.pending cimport Pending, pending_on
from stressgrid._core.request cimport timeout_seconds
from stressgrid._core.timers cimport timers_of

from stressgrid.errors import RemoteProtocolError, count_error


cdef class ClientBase:
    """A device's HTTP/1 client: the steady-state request path (see the Python subclass)."""

    def request(self, bytes method not None, path, headers=(), body=None, bytes content_type=None,
                timeout=None, RequestGroup group=None):
        """Send a request; returns an awaitable of ``(status, headers, body)``. A ``group``
        (a named request's) also gets the response's timings and status."""
        return self.request_c(method, path, headers, body, content_type, timeout, group)

    cdef object request_c(self, bytes method, path, headers, body, bytes content_type, timeout,
                          RequestGroup group):
        cdef double budget_s = timeout_seconds(timeout, self.timeout_s)
        cdef RequestWriter writer = self.writer
        cdef bytes data = writer.build(method, path, headers, body, content_type)
        self.group = group   # one request at a time per device: it is this one's
        # Read right after build(): writers are shared by the devices of a target.
        cdef int flags = (REQUEST_HEAD if method == b"HEAD" else 0) \
            | (REQUEST_CLOSE if writer.close_after else 0)
        cdef ConnectionBase conn = self.conn
        if conn is not None and conn.waiter is None and not conn.upgraded:
            return self.send(conn, pending_on(timers_of(self.loop)), data, flags, 0, budget_s)
        return self.request_slow(data, flags, budget_s)

    # ---- hooks: the Python subclass implements them ----------------------------

    cpdef object request_slow(self, bytes data, int flags, double budget_s):
        """``request()`` when there is no idle open connection: connect, then send."""
        raise NotImplementedError

    cpdef on_deadline(self):
        """The deadline of the last request (or connect) passed."""
        raise NotImplementedError

    cpdef object send(self, ConnectionBase conn, object waiter, bytes data, int flags,
                      int64_t deadline_us, double budget_s):
        """Write ``data`` on ``conn``; ``waiter`` gets the response by ``deadline_us``.

        ``flags``: ``REQUEST_HEAD`` and/or ``REQUEST_CLOSE``. ``deadline_us`` is
        on the monotonic microsecond clock; 0 means ``budget_s`` from now.
        """
        cdef Http1Core core = conn.core
        conn.reused = core.completed > 0
        core.start(data, flags & REQUEST_HEAD, flags & REQUEST_CLOSE)
        conn.waiter = waiter
        conn.request = data if conn.reused else None
        conn.flags = flags
        conn.transport.write(core.data_to_send())
        self.inflight = conn
        if deadline_us == 0:
            deadline_us = core.sent_at + <int64_t>(budget_s * 1e6)
        self.budget_s = budget_s
        self.arm_c(deadline_us)
        return waiter

    def arm(self, int64_t deadline_us):
        """The response in flight (or the connect) is due at ``deadline_us``: ``on_deadline`` then.

        Back-to-back requests share the device's one timer (see ``DeadlineTimer``).
        """
        self.arm_c(deadline_us)

    cdef int arm_c(self, int64_t deadline_us) except -1:
        cdef DeadlineTimer timer = self.timer
        self.deadline_us = deadline_us
        if timer is None:
            timer = self.timer = DeadlineTimer(self.loop, self)
        timer.arm(deadline_us)
        return 0


cdef class ConnectionBase:
    """One connection's per-response path (see ``_Connection`` in the Python layer)."""

    def data_received(self, data):
        if self.waiter is None:
            self.idle_data(data)
            return
        cdef int ready
        try:
            ready = self.core.feed(data)
        except Exception as exc:   # a RemoteProtocolError: the server broke HTTP
            self.fail(exc)
            return
        if ready:
            self.complete()

    # ---- hooks: the Python subclass implements them ----------------------------

    cpdef idle_data(self, data):
        """Bytes arrived while no response was due."""
        raise NotImplementedError

    cpdef fail(self, exc):
        """The response was malformed (``exc``): fail the waiter, drop the connection."""
        raise NotImplementedError

    cpdef discard(self, bint abort):
        """Stop using this connection: close it (``abort``: at once)."""
        raise NotImplementedError

    cpdef complete(self):
        """Hand the finished response (or a 101's leftover) to the waiting script."""
        cdef object waiter = self.waiter
        cdef ClientBase client = self.client
        cdef Http1Core core = self.core
        cdef bint switched = core.state == UPGRADED
        self.waiter = None
        self.request = None
        if client is not None:
            client.inflight = None
        if switched:
            self.upgraded = True
        elif not core.reusable:
            self.discard(False)
        try:
            result = core.result()
        except RemoteProtocolError as exc:
            if client is not None:
                count_error(client.recorder, exc)
            if not waiter.done():
                waiter.set_exception(exc)
            return
        cdef RequestGroup group = client.group if client is not None else None
        if group is not None:
            client.group = None    # result() has reset the core's status: the result has it
            group.record(core.sent_at, core.headers_at,
                         core.headers_at if switched else monotonic_us(), <int>(<tuple>result)[0])
        cdef Device device = client.device if client is not None else None
        if device is not None:
            device.record_intended_headers(core.headers_at - core.sent_at, group)
        # A script that stopped waiting (cancelled) has done with the result. One that waits
        # in its device's runner takes its next step inside this call.
        if isinstance(waiter, Pending):
            (<Pending>waiter).complete(result)
        elif not waiter.done():
            waiter.set_result(result)
