"""MQTT in plans: the protocols, ``opts.mqtt_version`` and the script checker's names."""
import pytest

from stressgrid.plan import Plan, PlanError
from stressgrid.plan import api as script_api
from stressgrid.plan.script import ScriptError, compile_script
from stressgrid.protocols.mqtt import protocol_level

pytestmark = pytest.mark.unit


def plan(protocol="mqtt", **opts):
    return Plan.from_dict({"name": "mqtt-plan", "addresses": [{"host": "localhost", "port": 1883,
                                                                 "protocol": protocol}],
                           "blocks": [{"script": "await mqtt_connect()", "params": {}, "size": 1}],
                           "opts": opts})


@pytest.mark.parametrize("written, kept, level", [(None, "5.0", 5), ("5.0", "5.0", 5), ("5", "5.0", 5),
                                                   (5, "5.0", 5), ("3.1.1", "3.1.1", 4)])
def test_the_mqtt_version_a_plan_may_write(written, kept, level):
    opts = {} if written is None else {"mqtt_version": written}
    parsed = plan(**opts)
    assert parsed.opts.mqtt_version == kept
    assert protocol_level(parsed.opts) == level
    # The default stays out of the plan's dict; another version round-trips.
    assert ("mqtt_version" in parsed.to_dict()["opts"]) == (kept != "5.0")
    assert Plan.from_dict(parsed.to_dict()).opts.mqtt_version == kept


@pytest.mark.parametrize("written", ["3.1", "3", 3, 3.1, True, None, ["5.0"]])
def test_any_other_mqtt_version_is_refused_naming_the_field(written):
    with pytest.raises(PlanError) as caught:
        plan(mqtt_version=written)
    assert caught.value.field == "opts.mqtt_version"


def test_mqtts_is_a_protocol_with_tls():
    assert plan("mqtts").addresses[0].protocol == "mqtts"
    assert "mqtts" in script_api.TLS_PROTOCOLS and "mqtt" not in script_api.TLS_PROTOCOLS


def test_the_checker_knows_the_mqtt_functions_and_only_for_mqtt():
    compile_script("await mqtt_connect()\nawait publish('t', b'x', qos=1)\nm = mqtt_fetch()", "mqtt")
    with pytest.raises(ScriptError, match="awaited"):
        compile_script("await mqtt_connect()\npublish('t', b'x')", "mqtts")
    with pytest.raises(ScriptError, match="mqtt_connect"):
        compile_script("await mqtt_connect()", "http")
