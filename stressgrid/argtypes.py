"""Value types for the ``argparse`` parsers of the CLI, the generator, the coordinator and
the demo target: each turns a flag's text into a value or says plainly what is wrong."""
import argparse
import math


def _number(text, kind, what):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def positive_int(text):
    """An integer of at least 1."""
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def non_negative_int(text):
    """An integer of 0 or more."""
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive_float(text):
    """A finite number above zero."""
    value = _number(text, float, "a number")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def seconds(text):
    """A duration in seconds: a finite number, zero or more (fractions allowed)."""
    value = _number(text, float, "a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, not {text}")
    return value


def rate_steps(text):
    """Arrival-rate steps ``SECONDS:RATE,SECONDS:RATE,...`` as ``[[duration_ms, rate], ...]``:
    each step lasts SECONDS and goes in a straight line to RATE iterations a second."""
    steps = []
    for part in text.split(","):
        duration, colon, rate = part.strip().partition(":")
        if not colon:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not SECONDS:RATE (e.g. 10:100,60:1000)")
        length = seconds(duration.strip())
        value = _number(rate.strip(), float, "a rate in iterations a second")
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"a rate must be zero or more iterations a second, not {rate}")
        steps.append([int(round(length * 1000)), int(value) if value.is_integer() else value])
    return steps


def port(text):
    """A TCP or UDP port to connect to: 1 to 65535."""
    value = _number(text, int, "a port number")
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535, not {text}")
    return value


def listen_port(text):
    """A port to listen on: 0 (the system picks a free one) to 65535."""
    value = _number(text, int, "a port number")
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, not {text}")
    return value
