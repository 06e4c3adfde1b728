"""Checks of every field a generator sends, before anything of it is merged (DESIGN.md section 6).

``wire.decode`` checks a message's shape (its fields and their types); this
module checks what the values may be: ids and metric names from a small
alphabet, counts that are not negative and cannot wrap a sum, device numbers
within what the generator said it can hold. A message that fails is rejected
whole with ``InvalidMessage`` (a ``ValueError`` naming the field), which the
coordinator answers with ``wire.Error``.

Histogram encodings are checked by ``Histogram.add_encoded`` as they merge
(bucket range, ``MAX_HISTOGRAM_VALUES``, overflow); everything else is
checked here.
"""
import dataclasses
import re

from stressgrid.plan.constants import MAX_POOL_ADDRESSES

GENERATOR_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
METRIC_NAME = re.compile(r"[a-z0-9_]{1,100}")
MAX_VERSION_LENGTH = 64
MAX_CORES = 65536
MAX_WORKERS = 65536
MAX_CAPACITY = 100_000_000  # devices one generator may say it holds
# Per message (one generator-second): far beyond any real generator, and small enough that
# no sum of them over any run comes near 2**63.
MAX_HISTOGRAM_VALUES = 2 ** 32
MAX_COUNTER_VALUE = 2 ** 40
MAX_ERROR_LINE_LENGTH = 2000
MAX_EVENT_LENGTH = 2000
DEFAULT_MAX_METRIC_KEYS = 10_000
_METRIC_PARTS = frozenset(("histograms", "counters", "gauges"))


class InvalidMessage(ValueError):
    """A message from a generator with a value it may not have; names the field."""


def _int(value):
    return type(value) is int


MAX_INSTANCE_LENGTH = 64


def check_register(message):
    """Raise ``InvalidMessage`` unless every field of a ``wire.Register`` is acceptable."""
    if GENERATOR_ID.fullmatch(message.generator_id) is None:
        raise InvalidMessage("register: generator_id must be 1 to 64 characters of A-Z a-z 0-9 . _ -")
    if not message.version or len(message.version) > MAX_VERSION_LENGTH or not message.version.isprintable():
        raise InvalidMessage(f"register: version must be 1 to {MAX_VERSION_LENGTH} printable characters")
    for name, highest in (("cores", MAX_CORES), ("workers", MAX_WORKERS), ("capacity", MAX_CAPACITY)):
        value = getattr(message, name)
        if not 1 <= value <= highest:
            raise InvalidMessage(f"register: {name} must be from 1 to {highest}, not {value}")
    if not 0 <= message.source_addresses <= MAX_POOL_ADDRESSES:
        raise InvalidMessage(f"register: source_addresses must be from 0 to {MAX_POOL_ADDRESSES}, "
                             f"not {message.source_addresses}")
    if len(message.instance) > MAX_INSTANCE_LENGTH or not message.instance.isprintable():
        raise InvalidMessage(f"register: instance must be at most {MAX_INSTANCE_LENGTH} printable characters")


def check_event(message):
    """Raise ``InvalidMessage`` unless a ``wire.Event``'s kind and text are acceptable."""
    if METRIC_NAME.fullmatch(message.kind) is None:
        raise InvalidMessage("event: kind must be 1 to 100 characters of a-z 0-9 _")
    if len(message.message) > MAX_EVENT_LENGTH:
        raise InvalidMessage(f"event: message longer than {MAX_EVENT_LENGTH} characters")


class TelemetryCheck:
    """Checks ``wire.Telemetry`` and holds the run's budget of distinct metric keys.

    A run may use at most ``max_keys`` distinct metric names (histograms,
    counters and error lines together); values of further new names are
    dropped and counted in ``dropped`` so one event can say so.
    """

    def __init__(self, max_keys=DEFAULT_MAX_METRIC_KEYS):
        self.max_keys = max_keys
        self.keys = set()
        self.dropped = 0

    def start_run(self):
        """Every run has its own budget of keys."""
        self.keys = set()
        self.dropped = 0

    def _admit(self, name, part):
        """True when ``name`` may be merged; raises ``InvalidMessage`` on a bad name."""
        if name in self.keys:
            return True
        if type(name) is not str or METRIC_NAME.fullmatch(name) is None:
            raise InvalidMessage(f"{part} name {str(name)[:100]!r} must be 1 to 100 "
                                 f"characters of a-z 0-9 _")
        if len(self.keys) >= self.max_keys:
            return False
        self.keys.add(name)
        return True

    def check(self, message, capacity):
        """The telemetry to merge: ``message`` itself, or a copy without over-budget keys.

        ``capacity``: the devices the sending generator registered with.
        Raises ``InvalidMessage`` naming the first bad field.
        """
        devices = message.active_device_number
        if not 0 <= devices <= capacity:
            raise InvalidMessage(f"active_device_number must be from 0 to the "
                                 f"generator's capacity {capacity}, not {devices}")
        metrics = message.metrics
        histograms = metrics.get("histograms", {})
        counters = metrics.get("counters", {})
        gauges = metrics.get("gauges", {})
        if type(histograms) is not dict or type(counters) is not dict or type(gauges) is not dict:
            raise InvalidMessage("metrics.histograms, .counters and .gauges must be maps")
        if not _METRIC_PARTS.issuperset(metrics):
            raise InvalidMessage("metrics may hold only histograms, counters and gauges")
        over = []
        for name, encoded in histograms.items():
            if not self._admit(name, "histogram"):
                over.append(("histograms", name))
            elif (type(encoded) not in (list, tuple) or len(encoded) != 2 or type(encoded[0]) is not bytes
                  or not _int(encoded[1]) or not 0 <= encoded[1] <= MAX_HISTOGRAM_VALUES):
                raise InvalidMessage(f"histogram {name!r} must be [encoding, clamped count "
                                     f"from 0 to {MAX_HISTOGRAM_VALUES}]")
        for name, value in counters.items():
            if not self._admit(name, "counter"):
                over.append(("counters", name))
            elif not _int(value) or not 0 <= value <= MAX_COUNTER_VALUE:
                raise InvalidMessage(f"counter {name!r} must be an integer from 0 to "
                                     f"{MAX_COUNTER_VALUE}")
        for name, line in message.errors.items():
            if not self._admit(name, "error"):
                over.append((None, name))
            elif type(line) is not str or len(line) > MAX_ERROR_LINE_LENGTH:
                raise InvalidMessage(f"error line of {name!r} must be text of at most "
                                     f"{MAX_ERROR_LINE_LENGTH} characters")
        if not over:
            return message
        return self._without(message, over)

    def _without(self, message, over):
        parts = {part: dict(message.metrics.get(part, {})) for part in ("histograms", "counters")}
        errors = dict(message.errors)
        for part, name in over:
            self.dropped += 1
            (parts[part] if part else errors).pop(name, None)
        metrics = dict(message.metrics, **parts)
        return dataclasses.replace(message, metrics=metrics, errors=errors)

