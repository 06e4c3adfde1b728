"""UDP devices: one connected socket per device, opened when the device starts.

Script functions: ``await send(datagram)`` and ``await recv(timeout=5000)``,
which returns one datagram.
"""
import asyncio
import collections

from stressgrid._core.device import current_device, wait_seconds
from stressgrid.errors import count_error

from .source import open_datagram
from .waiting import WakeOnData, as_bytes

# Datagrams kept for recv(); the oldest is dropped (and counted) past this.
RECEIVE_QUEUE_LIMIT = 1024


class UdpClient(WakeOnData, asyncio.DatagramProtocol):
    __slots__ = ("device", "transport", "queue", "waiter", "timer", "error")

    def __init__(self, device):
        self.device = device
        self.transport = None
        self.queue = None
        self.waiter = None
        self.timer = None
        self.error = None

    async def open(self):
        device = self.device
        address = device.address
        try:
            await open_datagram(device.loop, lambda: self, address.connect_host, address.port)
        except OSError as exc:
            raise count_error(device.recorder, exc)

    def close(self):
        self.drop_timer()
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, _addr):
        if self.queue is None:
            self.queue = collections.deque()
        elif len(self.queue) >= RECEIVE_QUEUE_LIMIT:
            self.queue.popleft()
            self.device.recorder.counter("udp_dropped_datagram_count").value += 1
        self.queue.append(data)
        self.wake(True)

    def error_received(self, exc):
        # ICMP errors (port unreachable -> ECONNREFUSED) fail the next recv.
        self.error = exc
        self.wake()

    def connection_lost(self, exc):
        self.transport = None

    def _raise_error(self):
        exc, self.error = self.error, None
        raise count_error(self.device.recorder, exc)

    async def send(self, data):
        payload = as_bytes(data)
        if self.error is not None:
            self._raise_error()
        if self.transport is None:
            raise count_error(self.device.recorder, ConnectionResetError("socket closed"))
        self.transport.sendto(payload)
        self.device.recorder.counter("send_count").value += 1

    async def recv(self, timeout=None):
        seconds = wait_seconds(timeout, self.device)
        if not self.queue:
            if self.error is not None:
                self._raise_error()
            await self.wait(seconds)
            if not self.queue:
                self._raise_error()
        self.device.recorder.counter("receive_count").value += 1
        return self.queue.popleft()


def create_client(device):
    return UdpClient(device)


def send(data):
    """Send one datagram (await it)."""
    return current_device().client.send(data)


def recv(timeout=None):
    """The next datagram, waiting up to ``timeout`` ms (await it)."""
    return current_device().client.recv(timeout)


BUILTINS = {"send": send, "recv": recv}
