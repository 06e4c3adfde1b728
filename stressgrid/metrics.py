"""Merging metric snapshots and summarizing them (shared by every level).

A snapshot is the wire form a ``Recorder`` produces every second:
``{"histograms": {name: (bytes, clamped)}, "counters": {name: int},
"gauges": {name: number}}``. Merging adds bucket counts and counter values, so
the result is exact at every level (worker, host, coordinator).
"""
import base64

from stressgrid._core.metrics import PERCENTILES, Histogram, add_encoded_all

COUNTER_SUFFIX = "_count"
RATE_SUFFIX = "_per_second"
# A counter whose name ends so counts errors (errors.py names them ``<reason>_error_count``).
ERROR_SUFFIXES = ("_error_count", "_error")


def rate_name(counter_name):
    """``response_count`` -> ``response_per_second``."""
    base = counter_name[: -len(COUNTER_SUFFIX)] if counter_name.endswith(COUNTER_SUFFIX) else counter_name
    return base + RATE_SUFFIX


def is_error(name):
    return name.endswith(ERROR_SUFFIXES)


def encode_histograms(histograms):
    """``{name: [base64 of the sparse encoding, clamped count]}`` of the histograms with values."""
    encoded = {}
    for name, histogram in sorted(histograms.items()):
        if histogram.total_count:
            data, clamped = histogram.encode()
            encoded[name] = [base64.b64encode(data).decode("ascii"), clamped]
    return encoded


def decode_histograms(encoded):
    """``encode_histograms``'s form back into ``{name: Histogram}``."""
    return {name: Histogram.decode((base64.b64decode(data, validate=True), clamped), name)
            for name, (data, clamped) in encoded.items()}


class MetricsAggregate:
    """Histograms, counters and last gauges summed over any number of snapshots."""

    def __init__(self):
        self.histograms = {}
        self.counters = {}
        self.gauges = {}

    def histogram(self, name):
        found = self.histograms.get(name)
        if found is None:
            found = self.histograms[name] = Histogram(name)
        return found

    def add_snapshot(self, snapshot):
        """Merge one wire snapshot; raises ``ValueError`` on a malformed one."""
        if not isinstance(snapshot, dict):
            raise ValueError("snapshot must be a map")
        histograms = snapshot.get("histograms", {})
        counters = snapshot.get("counters", {})
        gauges = snapshot.get("gauges", {})
        if not all(isinstance(x, dict) for x in (histograms, counters, gauges)):
            raise ValueError("snapshot parts must be maps")
        for name, encoded in histograms.items():
            if not isinstance(name, str) or not isinstance(encoded, (list, tuple)) or len(encoded) != 2:
                raise ValueError(f"bad histogram {name!r}")
            data, clamped = encoded
            if not isinstance(data, bytes) or not isinstance(clamped, int) or isinstance(clamped, bool):
                raise ValueError(f"bad histogram {name!r}")
        for name, value in counters.items():
            if not isinstance(name, str) or not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"bad counter {name!r}")
        # Every histogram or none: a snapshot that fails part-way leaves this aggregate as it was
        # (histograms it named first are dropped again).
        new_names = [name for name in histograms if name not in self.histograms]
        try:
            add_encoded_all([(self.histogram(name), data, clamped) for name, (data, clamped) in histograms.items()])
        except ValueError:
            for name in new_names:
                del self.histograms[name]
            raise
        for name, value in counters.items():
            self.counters[name] = self.counters.get(name, 0) + value
        for name, value in gauges.items():
            if isinstance(name, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.gauges[name] = value

    def add(self, other):
        """Merge another aggregate into this one."""
        for name, histogram in other.histograms.items():
            self.histogram(name).add(histogram)
        for name, value in other.counters.items():
            self.counters[name] = self.counters.get(name, 0) + value
        self.gauges.update(other.gauges)

    def to_snapshot(self):
        """This aggregate in the wire form (for forwarding upward)."""
        return {
            "histograms": {name: h.encode() for name, h in self.histograms.items() if h.total_count},
            "counters": {name: value for name, value in self.counters.items() if value},
            "gauges": dict(self.gauges),
        }

    def counter(self, name):
        return self.counters.get(name, 0)

    def errors(self):
        """Error counters with a non-zero count."""
        return {name: value for name, value in self.counters.items() if is_error(name) and value}

    def summary(self):
        """``{"histograms": {name: summary}, "counters": {...}, "gauges": {...}}``."""
        return {
            "histograms": {name: h.summary() for name, h in sorted(self.histograms.items())},
            "counters": dict(sorted(self.counters.items())),
            "gauges": dict(sorted(self.gauges.items())),
        }

    def clear(self):
        self.histograms.clear()
        self.counters.clear()
        self.gauges.clear()


__all__ = ["Histogram", "MetricsAggregate", "PERCENTILES", "rate_name", "is_error"]
