"""The open load model's plan options and schedule shape (DESIGN.md section 3).

An ``arrival_rate`` run starts iterations of its blocks' scripts at a
scheduled rate across the whole fleet, on a pool of devices. The rate is
either constant (``rate`` iterations a second, for ``sustain_ms``) or a list
of ``rate_steps`` ``[duration_ms, rate]``: each step goes in a straight line
from the rate the previous one ended at (0 for the first) to its own.

Rates are kept as integers, in thousandths of an iteration a second
(``milli``), so that every level of the fleet computes the same schedule
with no rounding drift: see ``stressgrid._core.arrivals``.

How the fleet shares the schedule: iteration ``k`` (counting from 0 over the
whole fleet) belongs to the worker whose share has ``k % stride == offset``.
The coordinator gives generator ``g`` of ``G`` the share ``(g, G)``; a
generator with ``W`` workers gives worker ``w`` the share
``(offset + stride * w, stride * W)``. The workers' shares partition the
iterations exactly, whatever the number of workers on each generator.
"""
import dataclasses

DEVICES = "devices"
ARRIVAL_RATE = "arrival_rate"
EXECUTORS = (DEVICES, ARRIVAL_RATE)
UNIFORM = "uniform"
POISSON = "poisson"
ARRIVALS = (UNIFORM, POISSON)

MAX_RATE = 10_000_000  # iterations a second over the whole fleet
MIN_RATE = 0.001
MAX_RATE_STEPS = 1000
# The opts key of the share of the schedule a generator or worker runs (``share_part``), a map
# of offset, stride, from_ms (where in the schedule it begins), behind_ms (how long the
# schedule has been running when the share starts: what fell due in that time starts at once,
# late), max_devices and pre_allocated_devices (its part of the pool).
ARRIVAL_SHARE = "arrival_share"
# The share a generator or worker runs: ``stride`` is at most this many parts of the fleet.
MAX_STRIDE = 1 << 20
# Block sizes weigh the blocks in an arrival-rate run; their sum is kept small enough that
# the choice of a block per iteration stays in 64-bit integers.
MAX_TOTAL_WEIGHT = 1 << 31

# Live warnings of an arrival-rate run: iterations dropped (no free device), and iterations
# started this late (p99 over a second) after their scheduled time.
START_DELAY_WARNING_US = 10_000

# The metrics an arrival-rate run records (histograms with ``_us``, counters with ``_count``).
ITERATION_HISTOGRAM = "iteration_us"
INTENDED_ITERATION_HISTOGRAM = "intended_iteration_us"
START_DELAY_HISTOGRAM = "iteration_start_delay_us"
INTENDED_FIRST_RESPONSE_HISTOGRAM = "intended_first_response_us"
# Every response's headers_us from its step's intended start: the headers_us plus how late
# the step began (its arrival-rate iteration, or its tick of pace()). A named request's
# twin is request_<name>_intended_headers_us, a timing's intended_<key>_us.
INTENDED_HEADERS_HISTOGRAM = "intended_headers_us"
ITERATION_COUNTER = "iteration_count"
DROPPED_ITERATION_COUNTER = "dropped_iteration_count"


class ArrivalError(ValueError):
    """A bad arrival option: ``field`` is its name under ``opts``."""

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _rate(value, field, allow_zero):
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
        raise ArrivalError(field, "must be a positive number of iterations a second"
                           if not allow_zero else "must be a number of iterations a second, 0 or more")
    if value > MAX_RATE or (0 < value < MIN_RATE):
        raise ArrivalError(field, f"must be from {MIN_RATE} to {MAX_RATE:,} iterations a second")
    return value


def check_rate_steps(value, max_duration_ms):
    """``rate_steps`` as a tuple of ``(duration_ms, rate)``; raises ``ArrivalError``."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ArrivalError("rate_steps", "must be a non-empty list of [duration_ms, rate]")
    if len(value) > MAX_RATE_STEPS:
        raise ArrivalError("rate_steps", f"has {len(value)} steps; at most {MAX_RATE_STEPS} are allowed")
    steps = []
    total = 0
    for i, step in enumerate(value):
        field = f"rate_steps[{i}]"
        if not isinstance(step, (list, tuple)) or len(step) != 2:
            raise ArrivalError(field, "must be [duration_ms, rate]")
        duration, rate = step
        if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
            raise ArrivalError(field, "duration_ms must be an integer, 0 or more")
        steps.append((duration, _rate(rate, field, allow_zero=True)))
        total += duration
    if total <= 0:
        raise ArrivalError("rate_steps", "must last longer than 0 ms")
    if total > max_duration_ms:
        raise ArrivalError("rate_steps", f"last {total} ms; at most {max_duration_ms} are allowed")
    if not any(rate for _, rate in steps):
        raise ArrivalError("rate_steps", "never rise above 0 iterations a second")
    return tuple(steps)


@dataclasses.dataclass(frozen=True)
class ArrivalOpts:
    """The validated arrival options of a plan (``rate_steps`` is always set)."""

    rate: float
    rate_steps: tuple
    arrivals: str
    max_devices: int
    pre_allocated_devices: int


def check_arrival_opts(value, sustain_ms, plan_devices, max_duration_ms, max_devices):
    """The arrival options of an ``opts`` map of an arrival-rate plan.

    ``value`` is the map as given; ``sustain_ms`` the plan's (given or default), the
    length of a constant ``rate``; with ``rate_steps`` it may be left out of ``value`` or
    must equal their length. ``plan_devices`` (the blocks' sizes together) is the default
    ``max_devices``; ``pre_allocated_devices`` defaults to ``max_devices``. Raises
    ``ArrivalError``.
    """
    has_rate = value.get("rate") not in (None, 0)
    has_steps = bool(value.get("rate_steps"))
    if has_rate == has_steps:
        raise ArrivalError("rate", "an arrival-rate run needs either rate or rate_steps (not both)")
    if has_rate:
        rate = _rate(value["rate"], "rate", allow_zero=False)
        if sustain_ms <= 0:
            raise ArrivalError("sustain_ms", "is how long a constant rate lasts: more than 0")
        steps = ((sustain_ms, rate),)
    else:
        rate = 0
        steps = check_rate_steps(value["rate_steps"], max_duration_ms)
        sustain = value.get("sustain_ms")
        total = sum(duration for duration, _ in steps)
        if sustain is not None and sustain != total:
            raise ArrivalError("sustain_ms", f"is {sustain}, but the rate steps last {total} ms; "
                                             f"leave it out")
    arrivals = value.get("arrivals", UNIFORM)
    if arrivals not in ARRIVALS:
        raise ArrivalError("arrivals", f"must be one of {', '.join(ARRIVALS)}")
    devices = value.get("max_devices")
    if devices is None:
        devices = plan_devices
    if not isinstance(devices, int) or isinstance(devices, bool) or not 1 <= devices <= max_devices:
        raise ArrivalError("max_devices", f"must be an integer from 1 to {max_devices}")
    pre_allocated = value.get("pre_allocated_devices")
    if pre_allocated is None:
        pre_allocated = devices
    if not isinstance(pre_allocated, int) or isinstance(pre_allocated, bool) or pre_allocated < 0:
        raise ArrivalError("pre_allocated_devices", "must be an integer, 0 or more")
    if pre_allocated > devices:
        raise ArrivalError("pre_allocated_devices", f"is {pre_allocated}, more than max_devices ({devices})")
    if value.get("ramp_steps", 1) != 1:
        raise ArrivalError("ramp_steps", "an arrival-rate run ramps with rate_steps; leave ramp_steps at 1")
    return ArrivalOpts(rate=rate, rate_steps=steps, arrivals=arrivals, max_devices=devices,
                       pre_allocated_devices=pre_allocated)


def milli(rate):
    """A rate in iterations a second as an integer of thousandths."""
    return round(rate * 1000)


def segments(opts):
    """An arrival-rate ``Opts``'s schedule as ``(duration_us, start_milli, end_milli)`` lines:
    a constant ``rate`` for ``sustain_ms``, or ``rate_steps`` each from the rate the step
    before ended at (0 for the first)."""
    if opts.rate:
        return [(opts.sustain_ms * 1000, milli(opts.rate), milli(opts.rate))]
    result = []
    previous = 0
    for duration_ms, rate in opts.rate_steps:
        end = milli(rate)
        result.append((duration_ms * 1000, previous, end))
        previous = end
    return result


def rate_at(lines, elapsed_ms):
    """The rate (iterations a second) of ``segments`` ``elapsed_ms`` after the schedule began;
    0 after its end."""
    start = 0
    elapsed_us = elapsed_ms * 1000
    for duration, start_rate, end_rate in lines:
        if elapsed_us < start + duration:
            return (start_rate + (end_rate - start_rate) * (elapsed_us - start) / duration) / 1000
        start += duration
    return 0.0


def share_part(offset, stride, index, parts):
    """Part ``index`` of ``parts`` of the share ``(offset, stride)``, as ``(offset, stride)``."""
    return offset + stride * index, stride * parts
