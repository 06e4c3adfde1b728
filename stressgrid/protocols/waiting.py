"""Waiting on a future with a deadline, without a task per wait."""
import asyncio

from stressgrid.errors import count_error


def _expire(future):
    if not future.done():
        future.set_exception(TimeoutError())


def arm_timeout(loop, future, timeout_s):
    """Fail ``future`` with ``TimeoutError`` after ``timeout_s``; cancel the handle when done."""
    return loop.call_later(timeout_s, _expire, future)


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


async def wait_for_wakeup(owner, seconds):
    """Park until ``owner.waiter`` is resolved, or raise a counted ``TimeoutError``.

    ``owner`` is a protocol client with ``waiter`` and ``device`` attributes;
    its callbacks resolve ``owner.waiter`` when data or an error arrives.
    """
    device = owner.device
    loop = device.loop
    waiter = owner.waiter = loop.create_future()
    handle = arm_timeout(loop, waiter, seconds)
    try:
        await waiter
    except TimeoutError as exc:
        raise count_error(device.recorder, exc)
    finally:
        handle.cancel()
        owner.waiter = None


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

