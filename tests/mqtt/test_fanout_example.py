"""``examples/mqtt_fanout.py`` as shipped, against a real mosquitto."""
import time

from stressgrid.runtime.local import run_local
from tests.conftest import example
from tests.mqtt.broker import mosquitto
from tests.support.plans import error_counters


def fanout_plan(port, size, **params):
    return {"name": "fanout",
            "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "mqtt"}],
            "blocks": [{"script": example("mqtt_fanout.py"), "params": params, "size": size}],
            "opts": {"timeout_ms": 5000}}


def test_every_subscriber_of_a_group_times_every_message_of_its_publisher(tmp_path):
    groups, group_size, messages = 2, 4, 15
    subscribers = groups * (group_size - 1)
    with mosquitto(tmp_path) as broker, broker.listener("fanout/#") as routed:
        started_ns = time.time_ns()
        result = run_local(fanout_plan(broker.port, groups * group_size, group_size=group_size, period_ms=20,
                                       messages=messages, start_ms=500), 60,
                           until=lambda agg: agg.counters.get("fanout_received_count", 0) >= subscribers * messages)
        elapsed_us = (time.time_ns() - started_ns) // 1000
        sent = result.counters["fanout_sent_count"]
        # What the broker itself routed: every publish of the run, numbered in its group.
        seen = routed(sent)
    assert error_counters(result) == {}, result.errors
    received = result.counters["fanout_received_count"]
    assert received >= subscribers * messages
    assert len(seen) == sent >= groups * messages
    assert {line.split()[0] for line in seen} == {b"fanout/0/0", b"fanout/0/1"}
    # Each group's publisher numbered its messages from 0 (the broker shows the payloads).
    for topic in (b"fanout/0/0", b"fanout/0/1"):
        numbers = [int(line.split()[2]) for line in seen if line.split()[0] == topic]
        assert numbers[:messages] == list(range(messages))
    # Each subscriber got each message once: no more receipts than sends times listeners.
    assert received <= sent * (group_size - 1)
    trips = result.histograms["fanout_us"]
    assert trips.total_count == received
    # Each trip is one message's, from its own timestamp: within the run, not the epoch.
    assert 0 <= trips.summary()["min"] and trips.summary()["max"] < elapsed_us
