"""Raw TCP devices: one connection per device, opened when the device starts.

Script functions: ``await send(data)`` and ``await recv(timeout=5000)``, which
returns every buffered byte (waiting while there is none).
"""
import asyncio

from stressgrid._core.device import current_device, wait_seconds
from stressgrid.errors import ConnectionClosedError, count_error, lost_connection_error

from .connect import connect
from .waiting import WakeOnData, as_bytes

# Reading pauses when this much is buffered and not yet taken by recv().
RECEIVE_BUFFER_LIMIT = 1 << 20


class TcpClient(WakeOnData, asyncio.Protocol):
    __slots__ = ("device", "transport", "buffer", "waiter", "timer", "closed_exc", "paused",
                 "drain_waiter", "writing_paused")

    def __init__(self, device):
        self.device = device
        self.transport = None
        self.buffer = None
        self.waiter = None
        self.timer = None
        self.closed_exc = None
        self.paused = False
        self.drain_waiter = None
        self.writing_paused = False

    async def open(self):
        device = self.device
        address = device.address
        await connect(device.recorder, device.loop, lambda: self, address.connect_host, address.port,
                      device.timeout_s)

    def close(self):
        self.drop_timer()
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    # asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.buffer is None:
            self.buffer = bytearray(data)
        else:
            self.buffer += data
        if len(self.buffer) >= RECEIVE_BUFFER_LIMIT and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self.wake(True)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.closed_exc = lost_connection_error(exc, "connection closed by the target")
        self.wake()
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # script side -----------------------------------------------------------

    def _raise_closed(self):
        exc = self.closed_exc
        self.closed_exc = type(exc)(*exc.args)  # a fresh instance for every raise
        raise count_error(self.device.recorder, exc)

    async def send(self, data):
        payload = as_bytes(data)
        if self.closed_exc is not None or self.transport is None:
            if self.closed_exc is None:
                self.closed_exc = ConnectionClosedError("not connected")
            self._raise_closed()
        self.transport.write(payload)
        self.device.recorder.counter("send_count").value += 1
        if self.writing_paused:
            self.drain_waiter = self.device.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None
            if self.closed_exc is not None:
                self._raise_closed()

    async def recv(self, timeout=None):
        seconds = wait_seconds(timeout, self.device)
        if not self.buffer:
            if self.closed_exc is not None:
                self._raise_closed()
            await self.wait(seconds)
            if not self.buffer:
                self._raise_closed()
        data = bytes(self.buffer)
        self.buffer = None
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        self.device.recorder.counter("receive_count").value += 1
        return data


def create_client(device):
    return TcpClient(device)


def send(data):
    """Send ``data`` (bytes, str or a list of them) on the device's connection (await it)."""
    return current_device().client.send(data)


def recv(timeout=None):
    """Every byte received so far, waiting up to ``timeout`` ms for the first (await it)."""
    return current_device().client.recv(timeout)


BUILTINS = {"send": send, "recv": recv}
