"""MQTT devices end to end: scripts run by the local runner against a real mosquitto."""
import functools
import os
import signal

import pytest

from tests.mqtt.broker import mosquitto
from tests.support import plans
from tests.support.plans import LINGER, error_counters
from tests.support.servers import wait_for

plan = functools.partial(plans.plan, name="mqtt-test", protocol="mqtt")
run_until = functools.partial(plans.run_until, duration=30)
VERSIONS = ["5.0", "3.1.1"]


@pytest.fixture
def broker(tmp_path):
    with mosquitto(tmp_path) as broker:
        yield broker


@pytest.mark.parametrize("version", VERSIONS)
def test_publish_and_receive_at_every_qos(broker, version):
    script = """
connack = await mqtt_connect(keepalive=30)
assert connack.reason_code == 0 and not connack.session_present
topic = "echo/" + device_id
for qos in (0, 1, 2):
    assert await subscribe(topic + "/" + str(qos), qos=qos) == qos
for qos in (0, 1, 2):
    payload = ("%s-%d" % (device_id, qos)).encode()
    await publish(topic + "/" + str(qos), payload, qos=qos)
    message = await mqtt_receive()
    assert (message.topic, message.payload, message.qos) == (topic + "/" + str(qos), payload, qos), message
assert mqtt_fetch() is None
await unsubscribe(topic + "/0")
await publish(topic + "/0", b"nobody listens")
await publish(topic + "/1", b"last", qos=1, retain=True)
assert (await mqtt_receive()).payload == b"last"
inc_counter("done")
""" + LINGER
    with broker.listener("echo/#") as routed:
        result = run_until(plan(broker.port, script, size=4, mqtt_version=version), "done_count", 4)
        # The broker routed every PUBLISH the devices sent (a listener on every topic saw them).
        assert len(routed(result.counters["publish_count"])) == result.counters["publish_count"]
        # The broker's own count of the QoS 1 and 2 PUBLISH packets it received (mosquitto's
        # $SYS leaves QoS 0 out), those the devices timed to their answer. It is republished
        # every second: read until it has them all (a bound, not a wait for a figure).
        acknowledged = result.histograms["publish_us"].total_count
        wait_for(lambda: broker.sys_value("publish/messages/received") >= acknowledged, 10, 0.2)
        assert broker.sys_value("publish/messages/received") == acknowledged
    assert error_counters(result) == {}, result.errors
    assert result.counters["publish_count"] == 4 * 5
    assert result.counters["message_count"] == 4 * 4
    assert result.histograms["mqtt_connect_us"].total_count == 4
    assert result.histograms["publish_us"].total_count == 4 * 3  # QoS 1 and 2 only


def test_mqtt_5_properties_go_both_ways(broker):
    script = """
await mqtt_connect(properties={"session_expiry_interval": 0, "user_property": [("role", "test")]})
await subscribe("props/" + device_id, qos=1)
await publish("props/" + device_id, b"{}", qos=1, properties={
    "content_type": "application/json", "user_property": [("k", "v")], "message_expiry_interval": 60})
message = await mqtt_receive()
assert message.properties["content_type"] == "application/json", message.properties
assert message.properties["user_property"] == [("k", "v")], message.properties
inc_counter("done")
""" + LINGER
    result = run_until(plan(broker.port, script), "done_count", 1)
    assert error_counters(result) == {}, result.errors


@pytest.mark.parametrize("version", VERSIONS)
def test_a_refused_login_is_counted_with_its_reason(tmp_path, version):
    script = """
await mqtt_connect(username=params["user"], password=params["password"])
inc_counter("connected")
""" + LINGER
    with mosquitto(tmp_path, users={"device": "secret"}) as broker:
        good = run_until(plan(broker.port, script, params={"user": "device", "password": "secret"},
                              mqtt_version=version), "connected_count", 1)
        assert error_counters(good) == {}
        bad = plans.run_local(plan(broker.port, script, params={"user": "device", "password": "wrong"},
                                   mqtt_version=version), 8,
                              until=lambda agg: any(n.endswith("_error_count") for n in agg.counters))
    assert "connected_count" not in bad.counters
    # mosquitto answers a wrong password with "not authorized" (MQTT 3.1.1's return code 5,
    # MQTT 5's reason 0x87): counted by that reason, and the line that raised it.
    assert set(error_counters(bad)) == {"not_authorized_error_count"}, bad.errors
    assert "CONNACK with reason 0x87 (not_authorized)" in bad.errors["not_authorized_error_count"]


def test_tls(tmp_path):
    script = """
await mqtt_connect()
await subscribe("tls/" + device_id, qos=1)
await publish("tls/" + device_id, b"secure", qos=1)
assert (await mqtt_receive()).payload == b"secure"
inc_counter("done")
""" + LINGER
    with mosquitto(tmp_path, tls=True) as broker:
        result = run_until(plan(broker.port, script, size=2, protocol="mqtts"), "done_count", 2)
        assert error_counters(result) == {}, result.errors
        # Verifying the broker's certificate against the CA that signed it works too.
        verified = run_until(plan(broker.port, script, protocol="mqtts", host="localhost", tls_verify=True,
                                  tls_ca_file=str(broker.certificate)), "done_count", 1)
        assert error_counters(verified) == {}, verified.errors
        # Plain MQTT to a TLS listener is no MQTT at all: counted, never a crash.
        plain = plans.run_local(plan(broker.port, script, timeout_ms=1000), 6,
                                until=lambda agg: any(n.endswith("_error_count") for n in agg.counters))
        assert error_counters(plain), plain.counters


def test_the_engine_keeps_an_idle_session_alive(broker):
    """A keep-alive of 1 s: mosquitto drops a client silent for 1.5 s, so a device idle for
    several keep-alives is still connected only because the engine pinged for it."""
    script = """
await mqtt_connect(keepalive=1)
await subscribe("alive/" + device_id, qos=1)
await delay(params["idle_ms"])
await publish("alive/" + device_id, b"still here", qos=1)
assert (await mqtt_receive()).payload == b"still here"
inc_counter("done")
""" + LINGER
    result = run_until(plan(broker.port, script, size=3, params={"idle_ms": 4000}), "done_count", 3)
    assert error_counters(result) == {}, result.errors


def run_stopping_the_broker(broker, plan_dict, when, until):
    """Run ``plan_dict``; stop the broker (SIGSTOP) once counter ``when[0]`` reaches ``when[1]``,
    end the run once ``until[0]`` reaches ``until[1]`` (or after 20 s), let the broker go on."""
    stopped = []

    def check(aggregate):
        if not stopped and aggregate.counters.get(when[0], 0) >= when[1]:
            os.kill(broker.process.pid, signal.SIGSTOP)
            stopped.append(True)
        return aggregate.counters.get(until[0], 0) >= until[1]

    try:
        result = plans.run_local(plan_dict, 20, until=check)
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    assert stopped, result.counters
    assert result.counters.get(until[0], 0) >= until[1], result.counters
    return result


def test_a_stopped_broker_is_a_counted_ping_timeout(broker):
    script = """
await mqtt_connect(keepalive=1)
inc_counter("connected")
await delay(60000)
"""
    run_stopping_the_broker(broker, plan(broker.port, script, size=2, timeout_ms=1000),
                            when=("connected_count", 2), until=("ping_timeout_error_count", 2))


def test_a_killed_broker_is_counted_as_connection_errors(broker):
    script = """
await mqtt_connect()
await subscribe("gone/" + device_id, qos=1)
inc_counter("connected")
while True:
    await mqtt_receive(timeout=60000)
"""
    killed = False

    def kill_broker_once_connected(aggregate):
        nonlocal killed
        if not killed and aggregate.counters.get("connected_count", 0) >= 3:
            broker.process.kill()
            killed = True
        errors = sum(value for name, value in aggregate.counters.items() if name.endswith("_error_count"))
        return errors >= 3

    result = plans.run_local(plan(broker.port, script, size=3), 20, until=kill_broker_once_connected)
    assert killed, result.counters
    errors = error_counters(result)
    # Each device's wait ends with its connection (closed or reset), then its reconnects are refused.
    assert sum(errors.get(name, 0) for name in ("closed_error_count", "conn_reset_error_count")) == 3, errors
    assert set(errors) <= {"closed_error_count", "conn_reset_error_count", "conn_refused_error_count"}, errors


def test_functions_used_out_of_turn(broker):
    script = """
try:
    await publish("t", b"x")
except RuntimeError as exc:
    assert "needs mqtt_connect first" in str(exc)
    inc_counter("refused")
await mqtt_connect()
try:
    await mqtt_connect()
except RuntimeError:
    inc_counter("refused")
try:
    await publish("t/#", b"x")
except ValueError as exc:
    assert "wildcard" in str(exc)
    inc_counter("refused")
inc_counter("done")
""" + LINGER
    result = run_until(plan(broker.port, script), "done_count", 1)
    assert result.counters["refused_count"] == 3


def test_an_answer_that_does_not_come_is_a_counted_timeout(broker):
    script = """
await mqtt_connect(keepalive=0)
while True:
    await publish("slow/" + device_id, b"x", qos=1, timeout=300)
    inc_counter("acked")
    await delay(20)
"""
    result = run_stopping_the_broker(broker, plan(broker.port, script), when=("acked_count", 3),
                                     until=("timeout_error_count", 1))
    assert "no PUBACK" in result.errors["timeout_error_count"]
