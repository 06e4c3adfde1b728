"""The wire codec and exact splitting."""
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stressgrid import wire
from stressgrid.plan.split import split_blocks, split_exactly

pytestmark = pytest.mark.unit

MESSAGES = [
    wire.Register("gen-1", "0.1.0", 4, 4, 19000),
    wire.Registered("0.1.0"),
    wire.Heartbeat(12.5),
    wire.Telemetry("run-1", {"histograms": {"conn_us": (b"\x05\x01", 0)}, "counters": {"conn_count": 1}, "gauges": {}},
                   3, {"key_error_count": "line 1: x -> KeyError"}),
    wire.Event("run-1", "worker_restarted", "worker 1 exited with -9"),
    wire.StartCohort("run-1", "3", [{"script": "await delay(1)", "params": {}, "size": 7}],
                     [{"host": "h", "ip": "127.0.0.1", "port": 80, "protocol": "http"}], {"timeout_ms": 5000}, 2),
    wire.StopCohort("run-1", "3"),
    wire.Abort("run-1"),
    wire.EndRun("run-1"),
    wire.RunStopped("run-1"),
    wire.Error("unknown message type 'x'"),
    wire.WorkerReady(1, 4242),
]


def test_every_message_type_is_covered():
    assert {m.type for m in MESSAGES} == set(wire.MessageType)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.type.value)
def test_round_trip(message):
    decoded = wire.decode(wire.encode(message))
    assert type(decoded) is type(message)
    assert wire.encode(decoded) == wire.encode(message)


@pytest.mark.parametrize("data, words", [
    (b"", "not a msgpack"),
    (b"\xc1", "not a msgpack"),
    (msgpack.packb([1, 2]), "must be a map"),
    (msgpack.packb({"t": "heartbeat", "sent_at": 1.0}), "version"),
    (msgpack.packb({"t": "heartbeat", "v": 99, "sent_at": 1.0}), "version 99"),
    (msgpack.packb({"t": "telemetry", "v": 1, "metrics": {}, "active_device_number": 0, "errors": {}}),
     "version 1"),  # before run ids
    (msgpack.packb({"t": "launch_missiles", "v": wire.PROTOCOL_VERSION}), "unknown message type"),
    (msgpack.packb({"t": "heartbeat", "v": wire.PROTOCOL_VERSION}), "missing field 'sent_at'"),
    (msgpack.packb({"t": "heartbeat", "v": wire.PROTOCOL_VERSION, "sent_at": "soon"}), "sent_at"),
    (msgpack.packb({"t": "abort", "v": wire.PROTOCOL_VERSION, "run_id": "r", "extra": 1}), "unknown field"),
    (msgpack.packb({"t": "register", "v": wire.PROTOCOL_VERSION, "generator_id": "g", "version": "1", "cores": True,
                    "workers": 1, "capacity": 1}), "cores"),
])
def test_malformed_messages_raise_wire_error(data, words):
    with pytest.raises(wire.WireError) as caught:
        wire.decode(data)
    assert words in str(caught.value)


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=500))
def test_split_exactly_loses_nothing(total, parts):
    shares = split_exactly(total, parts)
    assert sum(shares) == total and len(shares) == parts
    assert max(shares) - min(shares) <= 1


def test_split_blocks_keeps_every_device():
    blocks = [{"script": "a", "size": 7}, {"script": "b", "size": 2}]
    for rotate in range(3):
        parts = split_blocks(blocks, 3, rotate)
        for name, size in (("a", 7), ("b", 2)):
            assert sum(b["size"] for part in parts for b in part if b["script"] == name) == size
        assert all(b["size"] > 0 for part in parts for b in part)
