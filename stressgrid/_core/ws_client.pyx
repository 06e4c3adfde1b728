# cython: freethreading_compatible = False
"""The compiled per-message path of the WebSocket client.

``ConnectionBase`` glues the sans-IO core (``stressgrid._core.websocket``) to
asyncio for the steady state of a device: bytes in, the queued message handed to
the receive that waits (its ``Pending`` completed inside ``data_received``, so the
device's runner steps the script right there); a message framed and written out.
Closing, losses, deadlines and errors are in its Python subclass,
``stressgrid.protocols.websocket.WebSocketConnection``, through the hooks declared in
``ws_client.pxd``. The script functions that send and receive are here too: a
receive is one call that returns the ``Pending`` (done at once when a message is
queued), with no coroutine of its own.
"""
import json

from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.deadline cimport DeadlineTimer
from stressgrid._core.device cimport Device, running_device, wait_seconds
from stressgrid._core.http1_client cimport ClientBase
from stressgrid._core.pending cimport Pending, pending_on
from stressgrid._core.timers cimport timers_of
from stressgrid._core.websocket cimport WebSocketCore

from stressgrid.errors import LocalProtocolError, RemoteProtocolError, count_error

cdef object json_loads = json.loads


cdef object converted(int receive_as, object message):
    """``message`` (str or bytes, as it came) as the script asked for it."""
    if receive_as == AS_TEXT:
        return message if type(message) is str else (<bytes>message).decode("utf-8")
    if receive_as == AS_BINARY:
        return message if type(message) is bytes else (<str>message).encode("utf-8")
    return json_loads(message)


cdef class ConnectionBase:
    """A device's connection after the upgrade: bytes to the core, messages to the script."""

    @property
    def ended(self):
        """Closed by either side, failed or lost: no message goes out any more."""
        return self.ended_c()

    cdef bint ended_c(self):
        cdef WebSocketCore core = self.core
        return self.lost or core.close_received or core.failed or core.close_sent

    def data_received(self, data):
        cdef WebSocketCore core = self.core
        cdef Py_ssize_t queued
        try:
            queued = core.feed(data)
        except RemoteProtocolError as exc:
            self.failure = count_error(self.recorder, exc)
            self._write(core.data_to_send())
            self._shut()
            self._wake(False)
            return
        out = core.data_to_send()
        if out:
            self._write(out)
        if core.close_received:
            self._shut()
            self._wake(False)
        elif queued and self.waiter is not None:
            self._wake(True)

    cdef _write(self, data):
        if data and not self.lost and self.transport is not None:
            self.transport.write(data)

    cpdef _wake(self, bint now=False):
        """The receive that waits gets the next message, or the error of the ended
        connection: ``now``, in this call (a message came, and the device's runner steps
        the script from here), else through the loop."""
        cdef Pending waiter = self.waiter
        if waiter is None:
            return
        self.waiter = None
        if waiter.done():
            return   # the script stopped waiting
        message = self.core.next_message()
        if message is None:
            if not self.ended_c():
                self.waiter = waiter   # nothing for it yet
            else:
                waiter.set_exception(self._closed_error())
            return
        try:
            value = converted(self.receive_as, message)
        except Exception as exc:  # noqa: BLE001 - raised where the script awaits
            waiter.set_exception(exc)
            return
        if now:
            waiter.complete(value)
        else:
            waiter.set_result(value)

    cpdef object send(self, bint binary, message):
        """Send one message (``bytes`` when ``binary``, else ``str``); an awaitable that
        waits while the transport's buffer is full."""
        if self.ended_c():
            raise self._closed_error()
        cdef WebSocketCore core = self.core
        if binary:
            core.send_binary(message)
        else:
            core.send_text(message)
        self.transport.write(core.data_to_send())
        if not self.paused:
            return self.sent
        return self._drain_waiter(self.loop)

    cpdef object receive(self, int receive_as, double timeout_s):
        """An awaitable of the next message as ``receive_as`` says, waiting up to
        ``timeout_s``: done at once when one is queued."""
        cdef Pending waiter
        message = self.core.next_message()
        if message is not None:
            waiter = pending_on(timers_of(self.loop))
            waiter.set_result(converted(receive_as, message))
            return waiter
        if self.waiter is not None and not self.waiter.done():
            raise LocalProtocolError("one WebSocket receive at a time per device")
        if self.ended_c():
            raise self._closed_error()
        waiter = pending_on(timers_of(self.loop))
        self.waiter = waiter
        self.receive_as = receive_as
        self.budget_s = timeout_s
        cdef DeadlineTimer timer = self.timer
        if timer is None:
            timer = self.timer = DeadlineTimer(self.loop, self)
        timer.arm(monotonic_us() + <long long>(timeout_s * 1e6))
        return waiter

    # ---- hooks: the Python subclass implements them ----------------------------

    cpdef _shut(self):
        """Close the transport, if it is still open."""
        raise NotImplementedError

    cpdef _closed_error(self):
        """The exception for a use of the connection after it ended."""
        raise NotImplementedError


# ---- the script functions ----------------------------------------------------

cdef ConnectionBase connection_of(Device device):
    client = device.client
    ws = (<ClientBase>client).ws if isinstance(client, ClientBase) else getattr(client, "ws", None)
    if ws is None:
        raise LocalProtocolError("no WebSocket on this device: call await ws_upgrade(path) first")
    return <ConnectionBase>ws


def ws_send_text(text):
    """Send ``text`` as one text message (await it)."""
    cdef ConnectionBase ws = connection_of(running_device())
    if type(text) is not str:
        if not isinstance(text, str):
            raise TypeError(f"ws_send_text takes str, not {type(text).__name__}")
        text = str(text)
    return ws.send(False, text)


def ws_send_binary(data):
    """Send ``data`` as one binary message (await it)."""
    cdef ConnectionBase ws = connection_of(running_device())
    if type(data) is not bytes:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
        elif isinstance(data, str):
            data = data.encode()
        else:
            raise TypeError(f"ws_send_binary takes bytes, not {type(data).__name__}")
    return ws.send(True, data)


def ws_send_json(obj):
    """Send ``obj`` as JSON in one text message (await it)."""
    cdef ConnectionBase ws = connection_of(running_device())
    return ws.send(False, json.dumps(obj, separators=(",", ":")))


cdef object receive(int receive_as, timeout):
    cdef Device device = running_device()
    cdef ConnectionBase ws = connection_of(device)
    return ws.receive(receive_as, wait_seconds(timeout, device))


def ws_receive_text(timeout=5000):
    """The next message as ``str``, waiting up to ``timeout`` ms (await it)."""
    return receive(AS_TEXT, timeout)


def ws_receive_binary(timeout=5000):
    """The next message as ``bytes``, waiting up to ``timeout`` ms (await it)."""
    return receive(AS_BINARY, timeout)


def ws_receive_json(timeout=5000):
    """The next message parsed as JSON, waiting up to ``timeout`` ms (await it)."""
    return receive(AS_JSON, timeout)


cdef object fetch(int receive_as):
    cdef ConnectionBase ws = connection_of(running_device())
    message = ws.core.next_message()
    if message is None:
        if ws.ended_c():
            raise ws._closed_error()
        return None
    return converted(receive_as, message)


def ws_fetch_text():
    """The next queued message as ``str``, or ``None``."""
    return fetch(AS_TEXT)


def ws_fetch_binary():
    """The next queued message as ``bytes``, or ``None``."""
    return fetch(AS_BINARY)


def ws_fetch_json():
    """The next queued message parsed as JSON, or ``None``."""
    return fetch(AS_JSON)
