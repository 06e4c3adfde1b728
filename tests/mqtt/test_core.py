"""The sans-IO MQTT core: packets a broker sends, fed whole, byte by byte and in random
splits; malformed ones refused with their reason code; what the encoders write, byte for byte."""
import random

import pytest

from stressgrid._core import mqtt
from stressgrid._core.mqtt import MQTT_3_1_1, MQTT_5, MqttCore, MqttProtocolError
from stressgrid.errors import RemoteProtocolError, error_counter_name

pytestmark = pytest.mark.unit

CONNACK_5 = b"\x20\x03\x00\x00\x00"
CONNACK_3 = b"\x20\x02\x00\x00"


def connected(version=MQTT_5):
    core = MqttCore(version)
    [connack] = core.feed(CONNACK_5 if version == MQTT_5 else CONNACK_3)
    assert connack.type == mqtt.CONNACK and connack.reason_code == 0
    return core


def feed_in_pieces(core, data, pieces):
    """Every packet ``data`` holds, fed cut into ``pieces``."""
    packets = []
    for piece in pieces:
        packets.extend(core.feed(piece) or ())
    return packets


def splits(data, seed):
    """``data`` whole, byte by byte, and cut at random places."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6)))) if len(data) > 1 else []
    random_pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    return [[data], [data[i:i + 1] for i in range(len(data))], random_pieces]


def summary(packet):
    return (packet.name, packet.packet_id, packet.reason_code, packet.qos, packet.retain, packet.dup,
            packet.session_present, packet.topic, packet.payload, packet.reason_codes, packet.properties)


# A broker's side of a session, MQTT 5: what each packet decodes to.
STREAM_5 = [
    (b"\x20\x13\x01\x00\x10\x21\x00\x0a\x13\x00\x1e\x12\x00\x05dev-1\x24\x01",
     ("CONNACK", 0, 0, 0, False, False, True, None, None, None,
      {"receive_maximum": 10, "server_keep_alive": 30, "assigned_client_identifier": "dev-1", "maximum_qos": 1})),
    (b"\x90\x04\x00\x01\x00\x01",
     ("SUBACK", 1, 0, 0, False, False, False, None, None, [1], None)),
    (b"\x30\x0d\x00\x05a/b/c\x00hello",
     ("PUBLISH", 0, 0, 0, False, False, False, "a/b/c", b"hello", None, None)),
    (b"\x3b\x14\x00\x03t/x\x00\x09\x0a\x0b\x05\x26\x00\x01k\x00\x02v1\x01\x02",
     ("PUBLISH", 9, 0, 1, True, True, False, "t/x", b"\x01\x02", None,
      {"subscription_identifier": [5], "user_property": [("k", "v1")]})),
    (b"\x40\x02\x00\x07", ("PUBACK", 7, 0, 0, False, False, False, None, None, None, None)),
    (b"\x40\x03\x00\x08\x10", ("PUBACK", 8, 0x10, 0, False, False, False, None, None, None, None)),
    (b"\x50\x02\x00\x09", ("PUBREC", 9, 0, 0, False, False, False, None, None, None, None)),
    (b"\x62\x02\x00\x0a", ("PUBREL", 10, 0, 0, False, False, False, None, None, None, None)),
    (b"\x70\x08\x00\x0b\x92\x04\x1f\x00\x01x", ("PUBCOMP", 11, 0x92, 0, False, False, False, None, None, None,
                                                  {"reason_string": "x"})),
    (b"\xb0\x05\x00\x0c\x00\x00\x11", ("UNSUBACK", 12, 0, 0, False, False, False, None, None, [0, 0x11], None)),
    (b"\xd0\x00", ("PINGRESP", 0, 0, 0, False, False, False, None, None, None, None)),
    (b"\x32\x0a\x00\x01t\x00\x02\x00abcd",
     ("PUBLISH", 2, 0, 1, False, False, False, "t", b"abcd", None, None)),
    (b"\xe0\x01\x8b", ("DISCONNECT", 0, 0x8B, 0, False, False, False, None, None, None, None)),
]

STREAM_3 = [
    (b"\x20\x02\x01\x00", ("CONNACK", 0, 0, 0, False, False, True, None, None, None, None)),
    (b"\x90\x05\x00\x01\x00\x02\x80", ("SUBACK", 1, 0, 0, False, False, False, None, None, [0, 2, 0x80], None)),
    (b"\x31\x08\x00\x03a/bxyz", ("PUBLISH", 0, 0, 0, True, False, False, "a/b", b"xyz", None, None)),
    (b"\x34\x07\x00\x01t\x12\x34ok", ("PUBLISH", 0x1234, 0, 2, False, False, False, "t", b"ok", None, None)),
    (b"\xb0\x02\x00\x05", ("UNSUBACK", 5, 0, 0, False, False, False, None, None, [], None)),
    (b"\xd0\x00", ("PINGRESP", 0, 0, 0, False, False, False, None, None, None, None)),
]


@pytest.mark.parametrize("version, stream", [(MQTT_5, STREAM_5), (MQTT_3_1_1, STREAM_3)], ids=["5.0", "3.1.1"])
@pytest.mark.parametrize("seed", range(8))
def test_a_session_decodes_the_same_however_it_is_cut(version, stream, seed):
    data = b"".join(raw for raw, _ in stream)
    expected = [decoded for _, decoded in stream]
    for pieces in splits(data, seed):
        core = MqttCore(version)
        assert [summary(packet) for packet in feed_in_pieces(core, data, pieces)] == expected


def test_a_large_publish_with_a_four_byte_length():
    payload = bytes(range(256)) * 8192  # 2 MiB: a remaining length of four bytes
    core = MqttCore(MQTT_3_1_1, max_packet_size=4 << 20)
    core.feed(CONNACK_3)
    body = b"\x00\x01t" + payload
    length = len(body)
    encoded = bytes([(length & 0x7F) | 0x80, ((length >> 7) & 0x7F) | 0x80, ((length >> 14) & 0x7F) | 0x80,
                     length >> 21])
    data = b"\x30" + encoded + body
    packets = feed_in_pieces(core, data, [data[i:i + 65536] for i in range(0, len(data), 65536)])
    assert [(p.topic, p.payload) for p in packets] == [("t", payload)]


def test_connack_refusals_carry_the_reason_of_either_version():
    for code, reason in ((1, 0x84), (2, 0x85), (3, 0x88), (4, 0x86), (5, 0x87)):
        [packet] = MqttCore(MQTT_3_1_1).feed(bytes([0x20, 2, 0, code]))
        assert packet.reason_code == reason
    [packet] = MqttCore(MQTT_5).feed(b"\x20\x03\x00\x87\x00")
    assert mqtt.reason_name(packet.reason_code) == "not_authorized"
    assert mqtt.reason_name(0x97) == "quota_exceeded"
    assert mqtt.reason_name(0xFE) == "reason_0xfe"


MALFORMED = [
    # (version, bytes after CONNACK or None to send them first, reason code, words in the message)
    (MQTT_5, b"\x30\x03\x00\x01t", mqtt.MALFORMED_PACKET, "past the end"),  # no property length
    (MQTT_5, b"\x36\x05\x00\x01t\x00\x01", mqtt.MALFORMED_PACKET, "QoS 3"),
    (MQTT_5, b"\x38\x04\x00\x01t\x00", mqtt.MALFORMED_PACKET, "QoS 0 and the DUP flag"),
    (MQTT_5, b"\x32\x05\x00\x01t\x00\x00", mqtt.PROTOCOL_ERROR, "packet identifier 0"),
    (MQTT_5, b"\x30\x04\x00\x01+\x00", mqtt.PROTOCOL_ERROR, "wildcard"),
    (MQTT_5, b"\x30\x03\x00\x00\x00", mqtt.PROTOCOL_ERROR, "without a topic"),
    (MQTT_5, b"\x30\x05\x00\x02\xc3\x28\x00", mqtt.MALFORMED_PACKET, "not UTF-8"),
    (MQTT_5, b"\x30\x05\x00\x02a\x00\x00", mqtt.MALFORMED_PACKET, "U+0000"),
    (MQTT_5, b"\x30\x06\x00\x01t\x02\x7f\x00", mqtt.MALFORMED_PACKET, "unknown property 0x7f"),
    (MQTT_5, b"\x30\x06\x00\x01t\x02\x24\x01", mqtt.PROTOCOL_ERROR, "maximum_qos is not allowed in PUBLISH"),
    (MQTT_5, b"\x30\x08\x00\x01t\x04\x01\x01\x01\x00", mqtt.PROTOCOL_ERROR, "appears twice"),
    (MQTT_5, b"\x30\x06\x00\x01t\x02\x01\x02", mqtt.PROTOCOL_ERROR, "not 0 or 1"),
    (MQTT_5, b"\x30\x07\x00\x01t\x03\x23\x00\x01", mqtt.PROTOCOL_ERROR, "topic alias"),
    (MQTT_5, b"\x30\x06\x00\x01t\x02\x0b\x00", mqtt.PROTOCOL_ERROR, "subscription_identifier is 0"),
    (MQTT_5, b"\x30\x05\x00\x01t\x05\x00", mqtt.MALFORMED_PACKET, "past the end"),  # properties too long
    (MQTT_5, b"\x40\x01\x00", mqtt.MALFORMED_PACKET, "past the end"),
    (MQTT_5, b"\x41\x02\x00\x01", mqtt.MALFORMED_PACKET, "flags 0x1"),
    (MQTT_5, b"\x60\x02\x00\x01", mqtt.MALFORMED_PACKET, "PUBREL with flags 0x0"),
    (MQTT_5, b"\x90\x02\x00\x01", mqtt.MALFORMED_PACKET, "past the end"),  # no property length
    (MQTT_5, b"\x90\x03\x00\x01\x00", mqtt.PROTOCOL_ERROR, "without a reason code"),
    (MQTT_5, b"\xd0\x01\x00", mqtt.MALFORMED_PACKET, "past its end"),
    (MQTT_5, b"\x10\x00", mqtt.PROTOCOL_ERROR, "only a client sends"),
    (MQTT_5, b"\x82\x00", mqtt.MALFORMED_PACKET, "flags 0x2"),
    (MQTT_5, b"\xc0\x00", mqtt.PROTOCOL_ERROR, "only a client sends"),
    (MQTT_5, b"\x00\x00", mqtt.PROTOCOL_ERROR, "only a client sends"),
    (MQTT_5, CONNACK_5, mqtt.PROTOCOL_ERROR, "a second CONNACK"),
    (MQTT_5, b"\xd0\x80\x00", mqtt.MALFORMED_PACKET, "shortest form"),
    (MQTT_5, b"\xd0\xff\xff\xff\xff\x01", mqtt.MALFORMED_PACKET, "longer than four bytes"),
    (MQTT_5, b"\x30\x80\x80\x80\x01", mqtt.PACKET_TOO_LARGE, "over the limit"),
    (MQTT_3_1_1, b"\xe0\x00", mqtt.PROTOCOL_ERROR, "only a client sends"),
    (MQTT_3_1_1, b"\xf0\x00", mqtt.PROTOCOL_ERROR, "only a client sends"),
    (MQTT_3_1_1, b"\x40\x03\x00\x01\x00", mqtt.MALFORMED_PACKET, "past its end"),
    (MQTT_3_1_1, b"\x90\x03\x00\x01\x03", mqtt.MALFORMED_PACKET, "return code 0x03"),
    (MQTT_3_1_1, b"\xb0\x03\x00\x01\x00", mqtt.MALFORMED_PACKET, "past its end"),
]


@pytest.mark.parametrize("version, data, reason_code, words", MALFORMED,
                         ids=[f"{v}-{d.hex()}" for v, d, _, _ in MALFORMED])
def test_a_broken_packet_is_a_protocol_error_however_it_is_cut(version, data, reason_code, words):
    for pieces in splits(data, 1):
        core = connected(version)
        with pytest.raises(MqttProtocolError) as caught:
            feed_in_pieces(core, data, pieces)
        assert caught.value.reason_code == reason_code
        assert words in str(caught.value)
        assert isinstance(caught.value, RemoteProtocolError)
        assert error_counter_name(caught.value) == "protocol_error_count"
        assert core.failed
        with pytest.raises(MqttProtocolError, match="already failed"):
            core.feed(b"\xd0\x00")


@pytest.mark.parametrize("data, words", [
    (b"\xd0\x00", "PINGRESP before CONNACK"),
    (b"\x20\x02\x00\x00", "past the end"),  # an MQTT 3.1.1 CONNACK on a 5.0 core: no properties
    (b"\x20\x03\x02\x00\x00", "CONNACK flags 0x02"),
    (b"\x20\x03\x01\x87\x00", "session present"),
    (b"\x20\x05\x00\x00\x02\x12\x00", "past the end"),
])
def test_a_broken_start_is_a_protocol_error(data, words):
    with pytest.raises(MqttProtocolError, match=words):
        MqttCore(MQTT_5).feed(data)


def test_the_size_limit_is_checked_before_the_packet_arrives():
    core = MqttCore(MQTT_5, max_packet_size=100)
    core.feed(CONNACK_5)
    assert core.feed(b"\x30\x62\x00\x01t\x00" + b"x" * 94) is not None  # 100 bytes: at the limit
    with pytest.raises(MqttProtocolError) as caught:
        core.feed(b"\x30\x63")  # 101 bytes announced: refused before its body comes
    assert caught.value.reason_code == mqtt.PACKET_TOO_LARGE


def test_a_core_needs_a_known_version():
    with pytest.raises(ValueError, match="MQTT version"):
        MqttCore(3)


# ---- what the client sends ---------------------------------------------------------------

def test_connect_bytes_of_both_versions():
    assert MqttCore(MQTT_3_1_1).connect("d1", keepalive=60) == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02d1"
    assert MqttCore(MQTT_5).connect("d1", keepalive=60) == b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02d1"
    data = MqttCore(MQTT_5).connect(
        "d", keepalive=5, clean_start=False, username="u", password=b"pw",
        will={"topic": "w", "payload": b"bye", "qos": 1, "retain": True, "properties": {"will_delay_interval": 3}},
        properties={"session_expiry_interval": 300, "user_property": [("a", "b")]})
    assert data == (b"\x10\x2f\x00\x04MQTT\x05" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04]) + b"\x00\x05"
                    + b"\x0c\x11\x00\x00\x01\x2c\x26\x00\x01a\x00\x01b"  # properties
                    + b"\x00\x01d"  # client id
                    + b"\x05\x18\x00\x00\x00\x03" + b"\x00\x01w" + b"\x00\x03bye"  # the will
                    + b"\x00\x01u" + b"\x00\x02pw")
    assert len(data) == 2 + 0x2f


def test_publish_bytes():
    core5, core3 = MqttCore(MQTT_5), MqttCore(MQTT_3_1_1)
    assert core3.publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert core5.publish("a/b", b"hi") == b"\x30\x08\x00\x03a/b\x00hi"
    assert core5.publish("a", b"", qos=1, packet_id=258, retain=True) == b"\x33\x06\x00\x01a\x01\x02\x00"
    assert core3.publish("a", "é", qos=2, packet_id=1, dup=True) == b"\x3c\x07\x00\x01a\x00\x01\xc3\xa9"
    assert core5.publish("a", bytearray(b"x"), properties={"message_expiry_interval": 9}) == \
        b"\x30\x0a\x00\x01a\x05\x02\x00\x00\x00\x09x"
    big = core3.publish("t", b"x" * 200)
    assert big[:3] == b"\x30\xcb\x01" and len(big) == 3 + 203


def test_acks_subscribe_unsubscribe_ping_disconnect_bytes():
    core5, core3 = MqttCore(MQTT_5), MqttCore(MQTT_3_1_1)
    assert core5.puback(7) == core3.puback(7) == b"\x40\x02\x00\x07"
    assert core5.pubrec(7, 0x10) == b"\x50\x03\x00\x07\x10"
    assert core5.pubrel(7) == b"\x62\x02\x00\x07"
    assert core5.pubcomp(7, 0, {"reason_string": "ok"}) == b"\x70\x09\x00\x07\x00\x05\x1f\x00\x02ok"
    assert core3.subscribe(1, [("a/#", 1), ("b", 0)]) == b"\x82\x0c\x00\x01\x00\x03a/#\x01\x00\x01b\x00"
    assert core5.subscribe(2, [("a/+", 2 | 4)]) == b"\x82\x09\x00\x02\x00\x00\x03a/+\x06"
    assert core5.unsubscribe(3, ["a/#"]) == b"\xa2\x08\x00\x03\x00\x00\x03a/#"
    assert core3.unsubscribe(3, ["a/#"]) == b"\xa2\x07\x00\x03\x00\x03a/#"
    assert core5.pingreq() == b"\xc0\x00"
    assert core3.disconnect() == b"\xe0\x00"
    assert core5.disconnect() == b"\xe0\x00"
    assert core5.disconnect(0x81) == b"\xe0\x01\x81"


@pytest.mark.parametrize("call, error, words", [
    (lambda c: c.publish("a/#", b""), ValueError, "wildcard"),
    (lambda c: c.publish("", b""), ValueError, "not empty"),
    (lambda c: c.publish("a", b"", qos=3), ValueError, "qos"),
    (lambda c: c.publish("a", b"", qos=1), ValueError, "packet identifier"),
    (lambda c: c.publish("a", b"", packet_id=4), ValueError, "packet identifier"),
    (lambda c: c.publish("a" * 70000, b""), ValueError, "over 65535"),
    (lambda c: c.publish("a\x00", b""), ValueError, "U\\+0000"),
    (lambda c: c.publish("a", b"", properties={"nonsense": 1}), ValueError, "unknown MQTT property 'nonsense'"),
    (lambda c: c.publish("a", b"", properties={"maximum_qos": 1}), ValueError, "not allowed in PUBLISH"),
    (lambda c: c.publish("a", b"", properties={"message_expiry_interval": -1}), ValueError, "between 0"),
    (lambda c: c.publish("a", b"", properties={"content_type": 5}), TypeError, "is a str"),
    (lambda c: c.publish("a", b"", properties={"user_property": "x"}), TypeError, "pairs"),
    (lambda c: c.connect("d", keepalive=70000), ValueError, "keepalive"),
    (lambda c: c.connect("d", will={"topic": "t"}), ValueError, "topic and a payload"),
    (lambda c: c.connect("d", will={"topic": "t", "payload": b"", "qos": 5}), ValueError, "qos"),
    (lambda c: c.connect("d", will={"topic": "t", "payload": b"", "when": 1}), ValueError, "'when'"),
    (lambda c: c.subscribe(1, []), ValueError, "at least one"),
    (lambda c: c.subscribe(1, [("a", 3)]), ValueError, "options"),
    (lambda c: c.subscribe(0, [("a", 0)]), ValueError, "between 1 and 65535"),
    (lambda c: c.puback(70000), ValueError, "between 1 and 65535"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(call, error, words):
    with pytest.raises(error, match=words):
        call(MqttCore(MQTT_5))


def test_mqtt_3_1_1_refuses_what_only_mqtt_5_has():
    core = MqttCore(MQTT_3_1_1)
    with pytest.raises(ValueError, match="need MQTT 5"):
        core.publish("a", b"", properties={"content_type": "x"})
    with pytest.raises(ValueError, match="need MQTT 5"):
        core.puback(1, 0x80)
    with pytest.raises(ValueError, match="options"):
        core.subscribe(1, [("a", 4)])  # no-local is MQTT 5's
    with pytest.raises(ValueError, match="only with a user name"):
        core.connect("d", password=b"x")


def test_a_publish_round_trips_through_the_decoder():
    """What ``publish`` writes, fed back as if a broker forwarded it, decodes to the same message."""
    for version in (MQTT_3_1_1, MQTT_5):
        writer, reader = MqttCore(version), connected(version)
        for qos, packet_id in ((0, 0), (1, 77), (2, 65535)):
            payload = bytes(range(256)) * 3
            [packet] = reader.feed(writer.publish("x/y", payload, qos=qos, packet_id=packet_id, retain=True))
            assert (packet.topic, packet.payload, packet.qos, packet.packet_id, packet.retain) == \
                ("x/y", payload, qos, packet_id, True)
