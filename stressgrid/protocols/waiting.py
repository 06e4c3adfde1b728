"""Waiting on a future with a deadline, without a coroutine per wait."""


def _expire(future):
    if not future.done():
        future.set_exception(TimeoutError())


def arm_timeout(loop, future, timeout_s):
    """Fail ``future`` with ``TimeoutError`` after ``timeout_s``; cancel the handle when done."""
    return loop.call_later(timeout_s, _expire, future)


def timeout_seconds(timeout_ms, device):
    """A script's ``timeout=`` in milliseconds, or the plan's default."""
    if timeout_ms is None:
        return device.timeout_s
    if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool) or timeout_ms < 0:
        raise ValueError(f"timeout must be a non-negative number of milliseconds, not {timeout_ms!r}")
    return timeout_ms / 1000.0


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
