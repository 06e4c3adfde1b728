"""The constants the coordinator, the CLI and the website share (stressgrid.plan.constants)."""
import pytest

from stressgrid.plan import api, constants

pytestmark = pytest.mark.unit


def test_effective_devices_round_down_to_ten_per_generator():
    assert constants.effective_devices(1234, 3) == 1230
    assert constants.effective_devices(29, 3) == 0
    # No generator registered yet counts as one.
    assert constants.effective_devices(105, 0) == 100
    assert constants.ramp_step_size(0) == constants.ramp_step_size(1) == 10
    assert constants.ramp_step_size(4) == 40


def test_every_protocol_has_a_label_and_a_default_port():
    assert list(constants.PROTOCOL_LABELS) == list(api.PROTOCOLS)
    assert list(constants.DEFAULT_PORTS) == list(api.PROTOCOLS)
    assert all(0 < port < 65536 for port in constants.DEFAULT_PORTS.values())

