"""A QoS 2 message sent again before it is released is delivered once.

A broker resends an unreleased QoS 2 PUBLISH when it has not seen the PUBREC (MQTT 3.1.1
allows it at any time, both versions on a resumed session). mosquitto does it only on a
resumed session, which a device never has, so a scripted broker on a real socket sends it.
"""
import functools
import socket
import threading

import pytest

from tests.support import plans
from tests.support.plans import LINGER, error_counters
from tests.support.varint import varint

plan = functools.partial(plans.plan, name="mqtt-test", protocol="mqtt")
CONNACK = {"5.0": b"\x20\x03\x00\x00\x00", "3.1.1": b"\x20\x02\x00\x00"}


def publish_qos2(version, packet_id, payload, dup=False):
    body = b"\x00\x03t/a" + packet_id.to_bytes(2, "big") + (b"\x00" if version == "5.0" else b"") + payload
    return bytes([0x34 | (0x08 if dup else 0)]) + varint(len(body)) + body


def pubrel(packet_id):
    return b"\x62\x02" + packet_id.to_bytes(2, "big")


class ScriptedBroker:
    """Accepts one device; answers its CONNECT, then sends ``steps`` in turn: bytes to send,
    or a packet type the device must send next (its packets are kept in ``received``)."""

    def __init__(self, version, steps):
        self.version = version
        self.steps = steps
        self.received = []
        self.failure = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _read_packet(self, conn):
        def read(n):
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("the device closed the connection")
                data += chunk
            return data

        first = read(1)[0]
        length, shift = 0, 0
        while True:
            byte = read(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first >> 4, read(length)

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(10)
                kind, _ = self._read_packet(conn)
                assert kind == 1, f"CONNECT expected, packet type {kind} came"
                conn.sendall(CONNACK[self.version])
                for step in self.steps:
                    if isinstance(step, bytes):
                        conn.sendall(step)
                        continue
                    kind, body = self._read_packet(conn)
                    self.received.append((kind, int.from_bytes(body[:2], "big")))
                    assert kind == step, f"packet type {step} expected, {kind} came"
                self.done.set()
                conn.recv(1)  # hold the connection until the device goes
        except (OSError, AssertionError) as exc:
            self.failure = exc
            self.done.set()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.listener.close()
        self.thread.join(10)


PUBREC, PUBCOMP = 5, 7


@pytest.mark.parametrize("version", ["5.0", "3.1.1"])
def test_a_qos2_message_sent_again_before_its_release_is_delivered_once(version):
    steps = [publish_qos2(version, 7, b"first"), PUBREC,
             publish_qos2(version, 7, b"first", dup=True), PUBREC,  # answered again
             pubrel(7), PUBCOMP,
             publish_qos2(version, 7, b"second"), PUBREC,  # released: the identifier is free again
             pubrel(7), PUBCOMP]
    script = """
await mqtt_connect()
assert (await mqtt_receive()).payload == b"first"
assert (await mqtt_receive()).payload == b"second"
assert mqtt_fetch() is None
inc_counter("done")
""" + LINGER
    with ScriptedBroker(version, steps) as broker:
        result = plans.run_local(plan(broker.port, script, mqtt_version=version), 20,
                                 until=lambda agg: broker.done.is_set() and agg.counters.get("done_count", 0) >= 1)
    assert broker.failure is None, broker.failure
    assert broker.received == [(PUBREC, 7), (PUBREC, 7), (PUBCOMP, 7), (PUBREC, 7), (PUBCOMP, 7)]
    assert error_counters(result) == {}, result.errors
    assert result.counters["message_count"] == 2
    assert result.counters["mqtt_duplicate_message_count"] == 1
