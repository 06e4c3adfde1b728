"""The running device and the common script functions (DESIGN.md section 4).

The script functions find their device as the one whose ``DeviceRunner`` is
stepping (``step_into``/``step_out``), or else through a context variable: an
arrival-rate iteration's task and the tasks a script makes carry their device
in their context.
"""
from contextvars import ContextVar

from cpython.contextvars cimport get_value

from libc.stdint cimport int64_t

from stressgrid._core.clock cimport monotonic_us
from stressgrid._core.metrics cimport Counter, Histogram, Recorder, RequestGroup
from stressgrid._core.sleeps cimport sleep_until
from stressgrid._core.timers cimport timers_of

import os
import random as _random

from stressgrid.plan.arrivals import INTENDED_HEADERS_HISTOGRAM

_current = ContextVar("stressgrid_device")
_uniform = _random.random


def now_us():
    """Monotonic clock in microseconds, the one every timing uses."""
    return monotonic_us()


# A metric key names a histogram or counter the coordinator accepts: 1 to MAX_KEY_LENGTH
# characters of a-z 0-9 _ (it adds its suffix, ``_us`` or ``_count``, to at most 100). A key
# it would refuse is the script's mistake, raised at its line, so it never costs the
# generator's telemetry. Keys already seen are remembered (up to a bound), not checked again.
MAX_KEY_LENGTH = 80
cdef set _valid_keys = set()
cdef Py_ssize_t _MAX_REMEMBERED_KEYS = 10000
_KEY_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


cdef str metric_key(object key):
    """``key`` as a metric key the coordinator accepts, or ``TypeError``/``ValueError``."""
    cdef str text
    if type(key) is str:
        text = <str>key
    elif isinstance(key, str):
        text = str(key)
    else:
        raise TypeError(f"metric key must be a string, not {type(key).__name__}")
    if text in _valid_keys:
        return text
    if not 0 < len(text) <= MAX_KEY_LENGTH or not _KEY_CHARACTERS.issuperset(text):
        raise ValueError(f"metric key {text[:MAX_KEY_LENGTH]!r} must be 1 to {MAX_KEY_LENGTH} "
                         f"characters of a-z 0-9 _")
    if len(_valid_keys) < _MAX_REMEMBERED_KEYS:
        _valid_keys.add(text)
    return text


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
        self.intended_start_us = 0
        self.step_delay_us = -1
        self.in_iteration = False
        self.pace_interval_us = 0
        self.pace_next_us = 0
        self.timeout_s = opts.timeout_ms / 1000.0 if opts is not None else 5.0

    def reset(self):
        """Forget timings and the step's delay: the script starts over. The ticks of
        ``pace`` go on: they are the device's, whichever pass of its script takes them."""
        self.timings = None
        self.step_delay_us = -1

    cpdef record_intended(self, str twin, int64_t value):
        """A latency of the step the device is in, also recorded in ``twin`` from the step's
        intended start (``value`` plus the step's delay), if its steps are measured so."""
        cdef Histogram histogram
        if self.step_delay_us >= 0:
            histogram = self.recorder.histogram(twin)
            histogram.record_c(value + self.step_delay_us)

    cpdef record_intended_headers(self, int64_t headers_us, RequestGroup group):
        """A response's ``headers_us`` twins: ``intended_headers_us``, and its named request's
        (``group``, or ``None``) ``request_<name>_intended_headers_us``."""
        if self.step_delay_us >= 0:
            self.record_intended(INTENDED_HEADERS_HISTOGRAM, headers_us)
            if group is not None:
                self.record_intended(group.intended_headers_name, headers_us)

    cdef _start(self, str key, int64_t now):
        if self.timings is None:
            self.timings = {}
        self.timings[key] = now

    def start_timing(self, key):
        self._start(metric_key(key), monotonic_us())

    def stop_timing(self, key):
        self._stop(metric_key(key), monotonic_us())

    cdef _stop(self, str key, int64_t now):
        if self.timings is None or key not in self.timings:
            raise KeyError(f"stop_timing({key!r}) without start_timing({key!r})")
        cdef int64_t started = self.timings.pop(key)
        cdef tuple names = timing_names(key)
        cdef Histogram histogram = self.recorder.histogram(names[0])
        histogram.record_c(now - started)
        if self.step_delay_us >= 0:
            self.record_intended(names[1], now - started)

    def stop_start_timing(self, stop_key, start_key):
        cdef int64_t now = monotonic_us()
        self._stop(metric_key(stop_key), now)
        self._start(metric_key(start_key), now)

    def __repr__(self):
        return f"<Device {self.device_id} {self.address}>"


# Timing key -> the names of its histogram and of that histogram's twin from the step's
# intended start (``<key>_us``, ``intended_<key>_us``), so a timing builds no string per call.
cdef dict _timing_names = {}


cdef tuple timing_names(str key):
    cdef object names = _timing_names.get(key)
    if names is None:
        names = remembered(_timing_names, key, (f"{key}_us", f"intended_{key}_us"))
    return <tuple>names


cdef object remembered(dict names, str key, object value):
    """``value``, kept in ``names`` for ``key`` while they hold fewer than the bound: the
    names a script's keys make are built once, however many calls use them."""
    if len(names) < _MAX_REMEMBERED_KEYS:
        names[key] = value
    return value


# The device whose DeviceRunner is stepping its script right now (runner.pyx): a
# runner's device needs no context of its own. The tasks a script makes get one, with
# the device in ``_current`` (runner.pyx's task factory), as do arrival-rate iterations.
cdef Device _stepping = None


cdef void step_into(Device device) noexcept:
    global _stepping
    _stepping = device


cdef void step_out() noexcept:
    global _stepping
    _stepping = None


cdef object device_or_none():
    """The device whose script is running, or ``None``."""
    if _stepping is not None:
        return _stepping
    return get_value(_current)


cdef Device running_device():
    cdef object device = device_or_none()
    if device is None:
        raise LookupError("no device is running in this task")
    return <Device>device


cpdef double wait_seconds(object timeout_ms, Device device) except -1.0:
    """A script's ``timeout=`` in milliseconds as seconds; ``None`` is the plan's default
    (the socket and message protocols; HTTP's is ``request.timeout_seconds``)."""
    if timeout_ms is None:
        return device.timeout_s
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or timeout_ms < 0:
        raise ValueError(f"timeout must be a non-negative number of milliseconds, not {timeout_ms!r}")
    return timeout_ms / 1000.0


def current_device():
    """The device whose script is running in this task."""
    return running_device()


def set_current_device(Device device):
    _current.set(device)


def start_timing(key):
    """Start timing ``key``; ``stop_timing(key)`` records histogram ``<key>_us``."""
    running_device()._start(metric_key(key), monotonic_us())


def stop_timing(key):
    """Record the microseconds since ``start_timing(key)`` in ``<key>_us``."""
    running_device()._stop(metric_key(key), monotonic_us())


def stop_start_timing(stop_key, start_key):
    """Stop timing ``stop_key`` and start ``start_key`` at the same instant."""
    cdef int64_t now = monotonic_us()
    cdef Device device = running_device()
    device._stop(metric_key(stop_key), now)
    device._start(metric_key(start_key), now)


# A recorded timing past this is clamped by the histogram (its highest value), as any other.
_LONGEST_TIMING_US = 1 << 62


def record_timing(key, microseconds):
    """Record ``microseconds``, a duration the script measured itself (a message's trip from the
    timestamp it carries, a time the target reports), in histogram ``<key>_us``.

    It has no ``intended_`` twin: the script knows what it measured from.
    """
    if (isinstance(microseconds, bool) or not isinstance(microseconds, (int, float))
            or not 0 <= microseconds < _LONGEST_TIMING_US):
        raise ValueError(f"record_timing needs a non-negative number of microseconds, not {microseconds!r}")
    cdef Histogram histogram = running_device().recorder.histogram(timing_names(metric_key(key))[0])
    histogram.record_c(<int64_t>microseconds)


# A counter's key -> its name (``<key>_count``), so a count builds no string per call.
cdef dict _counter_names = {}


def inc_counter(key, value=1):
    """Add ``value`` to counter ``<key>_count``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"inc_counter value must be a non-negative integer, not {value!r}")
    cdef str text = metric_key(key)
    cdef object name = _counter_names.get(text)
    if name is None:
        name = remembered(_counter_names, text, f"{text}_count")
    cdef Counter counter = running_device().recorder.counter(<str>name)
    counter.value += value


# A check's name -> its pass and fail counter names, so a check builds no string per call.
cdef dict _check_names = {}


def check(name, condition):
    """Count ``condition`` as a pass or a fail of check ``name`` and return it as a bool.

    The counters are ``check_<name>_pass_count`` and ``check_<name>_fail_count``; a failed
    check is not an error and raises nothing: the script goes on as it was.
    """
    cdef str key = metric_key(name)
    cdef object names = _check_names.get(key)
    if names is None:
        names = remembered(_check_names, key, (f"check_{key}_pass_count", f"check_{key}_fail_count"))
    cdef bint passed = bool(condition)
    cdef Counter counter = running_device().recorder.counter(names[0] if passed else names[1])
    counter.value += 1
    return passed


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


def delay(ms, random_ratio=0.0):
    """Sleep ``ms * (1 + random_ratio * U(-1, 1))`` milliseconds (await it)."""
    if not isinstance(ms, (int, float)) or ms < 0:
        raise ValueError(f"delay must be a non-negative number of milliseconds, not {ms!r}")
    if not isinstance(random_ratio, (int, float)) or not 0.0 <= random_ratio <= 1.0:
        raise ValueError(f"delay random_ratio must be from 0 to 1, not {random_ratio!r}")
    cdef double seconds = ms / 1000.0
    if random_ratio:
        seconds *= 1.0 + random_ratio * (_uniform() * 2.0 - 1.0)
    return sleep_until(timers_of(running_device().loop), monotonic_us() + <int64_t>(seconds * 1e6))


# pace(ms) takes ticks of 1 ms to 1 hour.
MIN_PACE_MS = 1
MAX_PACE_MS = 3_600_000
MISSED_TICK_COUNTER = "missed_tick_count"


class _Tick:
    # pace()'s awaitable: sleeps until the tick if it is ahead, then sets how late the
    # device's step starts (0 if on time).
    __slots__ = ("device", "tick_us", "sleep")

    def __init__(self, Device device, int64_t tick_us, bint ahead):
        self.device = device
        self.tick_us = tick_us
        # Exact: what follows is measured from the tick, so a late wake-up would be charged to it.
        self.sleep = sleep_until(timers_of(device.loop), tick_us, True) if ahead else None

    def __await__(self):
        if self.sleep is not None:
            yield from self.sleep
        cdef int64_t late = monotonic_us() - <int64_t>self.tick_us
        (<Device>self.device).step_delay_us = late if late > 0 else 0


def pace(ms):
    """Wait for the device's next tick, every ``ms`` milliseconds from its first ``pace``
    (await it); the steps after it are measured from their tick too (``intended_`` twins).
    The ticks are the device's: a script that ends and starts again keeps them.

    A device that comes back after its tick has passed goes on at once, its steps late by
    that much; ticks that passed while it was busy beyond that one are counted in
    ``missed_tick_count``, not made up.
    """
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not MIN_PACE_MS <= ms <= MAX_PACE_MS:
        raise ValueError(f"pace must be from {MIN_PACE_MS} to {MAX_PACE_MS} milliseconds, not {ms!r}")
    cdef Device device = running_device()
    if device.in_iteration:
        raise RuntimeError("pace() is for the devices executor: an arrival-rate iteration already "
                           "starts on its schedule")
    cdef int64_t interval = <int64_t>(ms * 1000)
    cdef int64_t now = monotonic_us()
    if device.pace_interval_us != interval:  # the first tick is now
        device.pace_interval_us = interval
        device.pace_next_us = now
    cdef int64_t tick = device.pace_next_us
    cdef int64_t missed = 0
    if now < tick:
        device.pace_next_us = tick + interval
        return _Tick(device, tick, True)
    missed = (now - tick) // interval
    if missed:
        (<Counter>device.recorder.counter(MISSED_TICK_COUNTER)).value += missed
    device.pace_next_us = tick + (missed + 1) * interval
    return _Tick(device, tick, False)


COMMON_BUILTINS = {
    "start_timing": start_timing,
    "stop_timing": stop_timing,
    "stop_start_timing": stop_start_timing,
    "record_timing": record_timing,
    "inc_counter": inc_counter,
    "check": check,
    "random_bytes": random_bytes,
    "random_bits": random_bits,
    "delay": delay,
    "pace": pace,
}
