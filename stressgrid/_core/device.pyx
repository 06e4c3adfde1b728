"""The running device and the common script functions (DESIGN.md section 4).

The script functions find their device through a context variable: each device
runs in its own asyncio task, and a task carries its own context.
"""
from contextvars import ContextVar

from libc.stdint cimport int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from stressgrid._core.metrics cimport Counter, Histogram, Recorder

import os
import random as _random

_current = ContextVar("stressgrid_device")
_uniform = _random.random


cdef int64_t monotonic_us() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return <int64_t>now.tv_sec * 1000000 + now.tv_nsec // 1000


def now_us():
    """Monotonic clock in microseconds, the one every timing uses."""
    return monotonic_us()


cdef class Device:
    """One simulated device: its id, target, metrics and protocol client."""

    def __cinit__(self, str device_id, address, opts, Recorder recorder not None, loop):
        self.device_id = device_id
        self.address = address
        self.opts = opts
        self.recorder = recorder
        self.loop = loop
        self.client = None
        self.timings = None
        self.timeout_s = opts.timeout_ms / 1000.0 if opts is not None else 5.0

    cdef void clear_timings(self):
        self.timings = None

    def reset(self):
        """Forget timings: the device starts over as a new one."""
        self.timings = None

    def start_timing(self, key):
        if self.timings is None:
            self.timings = {}
        self.timings[key] = monotonic_us()

    def stop_timing(self, key):
        cdef int64_t now = monotonic_us()
        self._stop(key, now)

    cdef _stop(self, key, int64_t now):
        if self.timings is None or key not in self.timings:
            raise KeyError(f"stop_timing({key!r}) without start_timing({key!r})")
        cdef int64_t started = self.timings.pop(key)
        cdef Histogram histogram = self.recorder.histogram(f"{key}_us")
        histogram.record_c(now - started)

    def stop_start_timing(self, stop_key, start_key):
        cdef int64_t now = monotonic_us()
        self._stop(stop_key, now)
        self.timings[start_key] = now

    def __repr__(self):
        return f"<Device {self.device_id} {self.address}>"


def current_device():
    """The device whose script is running in this task."""
    return _current.get()


def set_current_device(Device device):
    _current.set(device)


def _key(key):
    if isinstance(key, str):
        return key
    raise TypeError(f"metric key must be a string, not {type(key).__name__}")


def start_timing(key):
    """Start timing ``key``; ``stop_timing(key)`` records histogram ``<key>_us``."""
    (<Device>_current.get()).start_timing(_key(key))


def stop_timing(key):
    """Record the microseconds since ``start_timing(key)`` in ``<key>_us``."""
    (<Device>_current.get()).stop_timing(_key(key))


def stop_start_timing(stop_key, start_key):
    """Stop timing ``stop_key`` and start ``start_key`` at the same instant."""
    (<Device>_current.get()).stop_start_timing(_key(stop_key), _key(start_key))


def inc_counter(key, value=1):
    """Add ``value`` to counter ``<key>_count``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"inc_counter value must be a non-negative integer, not {value!r}")
    cdef Counter counter = (<Device>_current.get()).recorder.counter(f"{_key(key)}_count")
    counter.value += value


def random_bytes(size):
    """``size`` random bytes."""
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"random_bytes size must be a non-negative integer, not {size!r}")
    return os.urandom(size)


def random_bits(size):
    """``size`` random bits as bytes, front-padded with zero bits to whole bytes."""
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"random_bits size must be a non-negative integer, not {size!r}")
    cdef int nbytes = (size + 7) // 8
    if nbytes == 0:
        return b""
    return _random.getrandbits(size).to_bytes(nbytes, "big")


def _wake(future):
    if not future.done():
        future.set_result(None)


class _Delay:
    # An awaitable timer without a coroutine frame: idle devices stay small.
    __slots__ = ("future", "handle")

    def __init__(self, loop, double seconds):
        self.future = loop.create_future()
        self.handle = loop.call_later(seconds, _wake, self.future)

    def __await__(self):
        try:
            return (yield from self.future.__await__())
        finally:
            self.handle.cancel()


def delay(ms, random_ratio=0.0):
    """Sleep ``ms * (1 + random_ratio * U(-1, 1))`` milliseconds (await it)."""
    if not isinstance(ms, (int, float)) or ms < 0:
        raise ValueError(f"delay must be a non-negative number of milliseconds, not {ms!r}")
    if not isinstance(random_ratio, (int, float)) or not 0.0 <= random_ratio <= 1.0:
        raise ValueError(f"delay random_ratio must be from 0 to 1, not {random_ratio!r}")
    cdef double seconds = ms / 1000.0
    if random_ratio:
        seconds *= 1.0 + random_ratio * (_uniform() * 2.0 - 1.0)
    return _Delay((<Device>_current.get()).loop, seconds)


COMMON_BUILTINS = {
    "start_timing": start_timing,
    "stop_timing": stop_timing,
    "stop_start_timing": stop_start_timing,
    "inc_counter": inc_counter,
    "random_bytes": random_bytes,
    "random_bits": random_bits,
    "delay": delay,
}
