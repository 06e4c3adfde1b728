"""The flag value types shared by the CLI, the generator, the coordinator and the demo target."""
import argparse

import pytest

from stressgrid import argtypes

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind, text, value", [
    (argtypes.positive_int, "1", 1),
    (argtypes.positive_int, "250000", 250000),
    (argtypes.positive_float, "0.25", 0.25),
    (argtypes.seconds, "0", 0.0),
    (argtypes.seconds, "1.5", 1.5),
    (argtypes.port, "1", 1),
    (argtypes.port, "65535", 65535),
    (argtypes.listen_port, "0", 0),
    (argtypes.listen_port, "9696", 9696),
])
def test_accepted_values(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize("kind, text, message", [
    (argtypes.positive_int, "0", "must be at least 1, not 0"),
    (argtypes.positive_int, "1.5", "not an integer: '1.5'"),
    (argtypes.positive_float, "0", "must be positive, not 0"),
    (argtypes.positive_float, "nan", "must be positive, not nan"),
    (argtypes.positive_float, "ten", "not a number: 'ten'"),
    (argtypes.seconds, "-1", "must be zero or more seconds, not -1"),
    (argtypes.seconds, "inf", "must be zero or more seconds, not inf"),
    (argtypes.port, "0", "must be from 1 to 65535, not 0"),
    (argtypes.port, "65536", "must be from 1 to 65535, not 65536"),
    (argtypes.listen_port, "-1", "must be from 0 to 65535, not -1"),
    (argtypes.listen_port, "http", "not a port number: 'http'"),
])
def test_rejected_values_say_why(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        kind(text)
    assert str(caught.value) == message


def test_a_parser_reports_the_flag_and_the_reason(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--workers", type=argtypes.positive_int)
    with pytest.raises(SystemExit):
        parser.parse_args(["--workers", "0"])
    assert "argument --workers: must be at least 1, not 0" in capsys.readouterr().err
