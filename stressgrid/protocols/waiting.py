"""Waiting for data with a deadline, without a task, a future or a loop timer per wait."""
import asyncio

from stressgrid._core.deadline import DeadlineTimer
from stressgrid._core.device import now_us
from stressgrid._core.pending import new_pending
from stressgrid.errors import count_error


def time_limit(seconds):
    """``async with time_limit(s):`` raises ``TimeoutError`` once ``s`` seconds have passed.

    Unlike ``asyncio.wait_for``, which on Python 3.11 and older returns the result when
    the awaited operation completes in the same instant as a cancellation from outside
    (and so swallows the cancellation: a stopped device connected and ran on), a
    cancellation from outside always goes through.
    """
    if hasattr(asyncio, "timeout"):
        return asyncio.timeout(seconds)
    return _TimeLimit(seconds)


class _TimeLimit:
    # Python 3.10 has no asyncio.timeout: the timer cancels the task, and a cancellation
    # that the timer made becomes TimeoutError.

    def __init__(self, seconds):
        self.seconds = seconds
        self.expired = False
        self.handle = None

    async def __aenter__(self):
        self.handle = asyncio.get_running_loop().call_later(
            self.seconds, self._expire, asyncio.current_task())
        return self

    def _expire(self, task):
        self.expired = True
        task.cancel()

    async def __aexit__(self, exc_type, exc, tb):
        self.handle.cancel()
        if self.expired and exc_type is asyncio.CancelledError:
            raise TimeoutError() from exc
        return False


def as_bytes(data):
    """Bytes from bytes-like data, text (UTF-8) or a list of those (iodata)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (list, tuple)):
        return b"".join(as_bytes(part) for part in data)
    raise TypeError(f"data must be bytes, str or a list of them, not {type(data).__name__}")


class HoldsTimer:
    """A client or connection with one ``DeadlineTimer`` in its ``timer`` attribute, which
    refers back to it: ``drop_timer`` when it closes, so the loop's timer queue lets it go.
    A mixin."""

    __slots__ = ()

    def drop_timer(self):
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()


class WakeOnData(HoldsTimer):
    """The receive side of the socket protocols (TCP, UDP): ``wait(seconds)`` hands the
    script a ``Pending`` that ``wake`` completes when data or an error came, or that fails
    with a counted ``TimeoutError`` at its deadline. One ``DeadlineTimer`` per client, armed
    again for each wait (``HoldsTimer``). A mixin: the class has
    ``device``, ``waiter`` and ``timer`` attributes."""

    __slots__ = ()

    def wait(self, seconds):
        device = self.device
        waiter = self.waiter = new_pending(device.loop)
        timer = self.timer
        if timer is None:
            timer = self.timer = DeadlineTimer(device.loop, self)
        timer.arm(now_us() + int(seconds * 1e6))
        return waiter

    def wake(self, now=False):
        """The wait is over: ``now``, in this call (data came, and the device's runner steps
        the script from here), else through the loop."""
        waiter, self.waiter = self.waiter, None
        if waiter is None:
            return
        if now:
            waiter.complete(None)
        elif not waiter.done():
            waiter.set_result(None)

    def on_deadline(self):
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(count_error(self.device.recorder, TimeoutError()))


class WriteFlow:
    """The write side of an ``asyncio.Protocol``: ``paused`` while the transport's buffer is
    full, and the futures of the sends waiting for it to drain (``drain_waiters``, a list
    made when the first one waits). A mixin: the class says where the two attributes live."""

    __slots__ = ()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._release_drain_waiters()

    def _release_drain_waiters(self):
        waiters, self.drain_waiters = self.drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _drain_waiter(self, loop):
        """A future the caller awaits until the buffer drained (or the connection ended)."""
        waiter = loop.create_future()
        if self.drain_waiters is None:
            self.drain_waiters = [waiter]
        else:
            self.drain_waiters.append(waiter)
        return waiter
