# cython: freethreading_compatible = False
"""MQTT 3.1.1 and 5.0, the client's side, sans-IO: packets in, packets out.

``MqttCore(version)`` parses what the socket read (``feed``, which returns the whole
packets it completed as ``MqttPacket`` objects, or ``None``) and checks everything a
broker sends against the specification: the fixed header's flags, the remaining length
(at most four bytes, in its shortest form, and at most ``max_packet_size`` for the whole
packet), every field's bounds, UTF-8 strings without U+0000, packet identifiers other
than 0, MQTT 5 properties (known, allowed in that packet, not repeated unless the
specification says they may be), and that the first packet is a CONNACK and the only
one. A broker that breaks any of it makes ``feed`` raise ``MqttProtocolError`` (a
``RemoteProtocolError``) carrying the MQTT 5 reason code this side should disconnect
with (0x81 malformed packet, 0x82 protocol error, 0x95 packet too large); the core
stays failed and raises again on any later ``feed``.

The encoders (``connect``, ``publish``, ``puback`` ... ``disconnect``) return one
packet's bytes for the version of the core; a bad argument (a topic too long, an unknown
property, a QoS of 3) raises ``ValueError`` or ``TypeError`` naming it, before anything
is sent.

Properties are a ``dict`` by their names in snake case (``session_expiry_interval``,
``reason_string``, ``user_property``...): ``user_property`` is a list of ``(name,
value)`` pairs, and ``subscription_identifier`` of a received PUBLISH a list of ints.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memchr, memcpy

from stressgrid.errors import RemoteProtocolError

# Packet types (the fixed header's high nibble).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

PACKET_NAMES = {CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
                PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
                SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK", PINGREQ: "PINGREQ",
                PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", AUTH: "AUTH"}

MQTT_3_1_1 = 4
MQTT_5 = 5
MAX_REMAINING_LENGTH = 268_435_455
DEFAULT_MAX_PACKET_SIZE = 1 << 20

MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
PACKET_TOO_LARGE = 0x95

# MQTT 5 reason codes by value: their names as the specification spells them, in snake case.
REASON_NAMES = {
    0x00: "success", 0x01: "granted_qos_1", 0x02: "granted_qos_2", 0x04: "disconnect_with_will_message",
    0x10: "no_matching_subscribers", 0x11: "no_subscription_existed", 0x18: "continue_authentication",
    0x19: "re_authenticate", 0x80: "unspecified", 0x81: "malformed_packet", 0x82: "protocol",
    0x83: "implementation_specific", 0x84: "unsupported_protocol_version",
    0x85: "client_identifier_not_valid", 0x86: "bad_user_name_or_password", 0x87: "not_authorized",
    0x88: "server_unavailable", 0x89: "server_busy", 0x8A: "banned", 0x8B: "server_shutting_down",
    0x8C: "bad_authentication_method", 0x8D: "keep_alive_timeout", 0x8E: "session_taken_over",
    0x8F: "topic_filter_invalid", 0x90: "topic_name_invalid", 0x91: "packet_identifier_in_use",
    0x92: "packet_identifier_not_found", 0x93: "receive_maximum_exceeded", 0x94: "topic_alias_invalid",
    0x95: "packet_too_large", 0x96: "message_rate_too_high", 0x97: "quota_exceeded",
    0x98: "administrative_action", 0x99: "payload_format_invalid", 0x9A: "retain_not_supported",
    0x9B: "qos_not_supported", 0x9C: "use_another_server", 0x9D: "server_moved",
    0x9E: "shared_subscriptions_not_supported", 0x9F: "connection_rate_exceeded",
    0xA0: "maximum_connect_time", 0xA1: "subscription_identifiers_not_supported",
    0xA2: "wildcard_subscriptions_not_supported",
}
# MQTT 3.1.1's CONNACK return codes, as the MQTT 5 reason code that means the same.
CONNACK_3_1_1_REASONS = {1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}
SUBACK_3_1_1_FAILURE = 0x80


def reason_name(int code):
    """The snake-case name of a reason code (``0x87`` -> ``not_authorized``)."""
    return REASON_NAMES.get(code, f"reason_0x{code:02x}")


class MqttProtocolError(RemoteProtocolError):
    """The broker broke MQTT: ``reason_code`` is what this side disconnects with (MQTT 5)."""

    def __init__(self, message, reason_code=MALFORMED_PACKET):
        super().__init__(message)
        self.reason_code = reason_code


# -- properties (MQTT 5, section 2.2.2.2) --------------------------------------------------

cdef enum PropertyType:
    P_BYTE = 1
    P_TWO = 2
    P_FOUR = 3
    P_VARINT = 4
    P_STRING = 5
    P_BINARY = 6
    P_PAIR = 7

# The packets (and the will, as 16) each property may appear in, as bits of 1 << type.
cdef enum:
    WILL = 16
    MAX_PROPERTY_ID = 0x2A

_AT_CONNACK = 1 << CONNACK
_AT_PUBLISH = 1 << PUBLISH
_AT_ACKS = (1 << PUBACK) | (1 << PUBREC) | (1 << PUBREL) | (1 << PUBCOMP)
_AT_ALL_REPLIES = _AT_CONNACK | _AT_ACKS | (1 << SUBACK) | (1 << UNSUBACK) | (1 << DISCONNECT) | (1 << AUTH)
_PROPERTY_TABLE = (
    # id, name, type, where (bits), repeatable
    (0x01, "payload_format_indicator", P_BYTE, _AT_PUBLISH | (1 << WILL), False),
    (0x02, "message_expiry_interval", P_FOUR, _AT_PUBLISH | (1 << WILL), False),
    (0x03, "content_type", P_STRING, _AT_PUBLISH | (1 << WILL), False),
    (0x08, "response_topic", P_STRING, _AT_PUBLISH | (1 << WILL), False),
    (0x09, "correlation_data", P_BINARY, _AT_PUBLISH | (1 << WILL), False),
    (0x0B, "subscription_identifier", P_VARINT, _AT_PUBLISH | (1 << SUBSCRIBE), True),
    (0x11, "session_expiry_interval", P_FOUR, (1 << CONNECT) | _AT_CONNACK | (1 << DISCONNECT), False),
    (0x12, "assigned_client_identifier", P_STRING, _AT_CONNACK, False),
    (0x13, "server_keep_alive", P_TWO, _AT_CONNACK, False),
    (0x15, "authentication_method", P_STRING, (1 << CONNECT) | _AT_CONNACK | (1 << AUTH), False),
    (0x16, "authentication_data", P_BINARY, (1 << CONNECT) | _AT_CONNACK | (1 << AUTH), False),
    (0x17, "request_problem_information", P_BYTE, 1 << CONNECT, False),
    (0x18, "will_delay_interval", P_FOUR, 1 << WILL, False),
    (0x19, "request_response_information", P_BYTE, 1 << CONNECT, False),
    (0x1A, "response_information", P_STRING, _AT_CONNACK, False),
    (0x1C, "server_reference", P_STRING, _AT_CONNACK | (1 << DISCONNECT), False),
    (0x1F, "reason_string", P_STRING, _AT_ALL_REPLIES, False),
    (0x21, "receive_maximum", P_TWO, (1 << CONNECT) | _AT_CONNACK, False),
    (0x22, "topic_alias_maximum", P_TWO, (1 << CONNECT) | _AT_CONNACK, False),
    (0x23, "topic_alias", P_TWO, _AT_PUBLISH, False),
    (0x24, "maximum_qos", P_BYTE, _AT_CONNACK, False),
    (0x25, "retain_available", P_BYTE, _AT_CONNACK, False),
    (0x26, "user_property", P_PAIR, 0xFFFFFFFF, True),
    (0x27, "maximum_packet_size", P_FOUR, (1 << CONNECT) | _AT_CONNACK, False),
    (0x28, "wildcard_subscription_available", P_BYTE, _AT_CONNACK, False),
    (0x29, "subscription_identifier_available", P_BYTE, _AT_CONNACK, False),
    (0x2A, "shared_subscription_available", P_BYTE, _AT_CONNACK, False),
)
cdef object _property_names = [None] * (MAX_PROPERTY_ID + 1)
cdef int _property_types[MAX_PROPERTY_ID + 1]
cdef uint32_t _property_where[MAX_PROPERTY_ID + 1]
cdef bint _property_repeatable[MAX_PROPERTY_ID + 1]
_PROPERTIES_BY_NAME = {}
for _id, _name, _type, _where, _repeatable in _PROPERTY_TABLE:
    _property_names[_id] = _name
    _property_types[_id] = _type
    _property_where[_id] = _where
    _property_repeatable[_id] = _repeatable
    _PROPERTIES_BY_NAME[_name] = (_id, _type, _where)
# Properties whose value must be 0 or 1 when received.
_BOOLEAN_PROPERTIES = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
PROPERTY_NAMES = frozenset(_PROPERTIES_BY_NAME)


# -- received packets -----------------------------------------------------------------

cdef class MqttPacket:
    """One packet from the broker. ``type`` is its packet type (``CONNACK``...); the other
    fields are those of that type, the rest keep their defaults:

    - CONNACK: ``session_present``, ``reason_code`` (MQTT 3.1.1's return codes as the
      MQTT 5 reason code of the same meaning), ``properties``;
    - PUBLISH: ``topic``, ``payload``, ``qos``, ``retain``, ``dup``, ``packet_id`` (QoS 1
      and 2), ``properties``;
    - PUBACK, PUBREC, PUBREL, PUBCOMP: ``packet_id``, ``reason_code``, ``properties``;
    - SUBACK, UNSUBACK: ``packet_id``, ``reason_codes`` (one per filter; an MQTT 3.1.1
      UNSUBACK has none), ``properties``;
    - DISCONNECT and AUTH (MQTT 5): ``reason_code``, ``properties``; PINGRESP: nothing.
    """
    cdef readonly int type
    cdef readonly int packet_id
    cdef readonly int reason_code
    cdef readonly int qos
    cdef readonly bint retain
    cdef readonly bint dup
    cdef readonly bint session_present
    cdef readonly str topic
    cdef readonly bytes payload
    cdef readonly list reason_codes
    cdef readonly dict properties

    @property
    def name(self):
        return PACKET_NAMES[self.type]

    def __repr__(self):
        return f"<MqttPacket {self.name} id={self.packet_id} reason=0x{self.reason_code:02x}>"


cdef struct Reader:
    const uint8_t *data
    Py_ssize_t pos
    Py_ssize_t end


cdef int _malformed(str message) except -1:
    raise MqttProtocolError(message, MALFORMED_PACKET)


cdef int _protocol(str message) except -1:
    raise MqttProtocolError(message, PROTOCOL_ERROR)


cdef inline int _need(Reader *r, Py_ssize_t size, str what) except -1:
    if r.end - r.pos < size:
        _malformed(f"{what} runs past the end of the packet")
    return 0


cdef inline int _u8(Reader *r, str what) except -1:
    _need(r, 1, what)
    r.pos += 1
    return r.data[r.pos - 1]


cdef inline int _u16(Reader *r, str what) except -1:
    _need(r, 2, what)
    r.pos += 2
    return (r.data[r.pos - 2] << 8) | r.data[r.pos - 1]


cdef inline long long _u32(Reader *r, str what) except -1:
    _need(r, 4, what)
    r.pos += 4
    return ((<long long>r.data[r.pos - 4] << 24) | (r.data[r.pos - 3] << 16) | (r.data[r.pos - 2] << 8)
            | r.data[r.pos - 1])


cdef long long _varint(Reader *r, str what) except -2:
    """A variable byte integer in at most four bytes, in its shortest form."""
    cdef long long value = 0
    cdef int shift = 0
    cdef int byte
    cdef int count = 0
    while True:
        byte = _u8(r, what)
        count += 1
        value |= <long long>(byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and count > 1:
                _malformed(f"{what} is not in its shortest form")
            return value
        if count == 4:
            _malformed(f"{what} is longer than four bytes")
        shift += 7


cdef bytes _binary(Reader *r, str what):
    cdef int size = _u16(r, what)
    _need(r, size, what)
    r.pos += size
    return PyBytes_FromStringAndSize(<const char *>r.data + r.pos - size, size)


cdef str _string(Reader *r, str what):
    cdef int size = _u16(r, what)
    _need(r, size, what)
    cdef const char *start = <const char *>r.data + r.pos
    r.pos += size
    if size and memchr(start, 0, size) != NULL:
        _malformed(f"{what} holds U+0000")
    try:
        return PyUnicode_DecodeUTF8(start, size, "strict")
    except UnicodeDecodeError:
        _malformed(f"{what} is not UTF-8")


cdef dict _properties(Reader *r, int packet_type):
    """The properties of a packet of ``packet_type``, ``None`` when it has none."""
    cdef long long length = _varint(r, "the property length")
    if length == 0:
        return None
    _need(r, length, "the properties")
    cdef Reader inner = Reader(r.data, r.pos, r.pos + length)
    r.pos += length
    cdef dict found = {}
    cdef int identifier
    cdef long long number
    cdef object value
    cdef str name
    cdef int kind
    while inner.pos < inner.end:
        identifier = <int>_varint(&inner, "a property identifier")
        if identifier > MAX_PROPERTY_ID or _property_names[identifier] is None:
            _malformed(f"unknown property 0x{identifier:02x} in {PACKET_NAMES[packet_type]}")
        name = _property_names[identifier]
        if not _property_where[identifier] & (1 << packet_type):
            _protocol(f"property {name} is not allowed in {PACKET_NAMES[packet_type]}")
        kind = _property_types[identifier]
        if kind == P_BYTE:
            number = _u8(&inner, name)
            if identifier in _BOOLEAN_PROPERTIES and number > 1:
                _protocol(f"property {name} is {number}, not 0 or 1")
            value = number
        elif kind == P_TWO:
            value = _u16(&inner, name)
        elif kind == P_FOUR:
            value = _u32(&inner, name)
        elif kind == P_VARINT:
            value = _varint(&inner, name)
            if value == 0:
                _protocol(f"property {name} is 0")
        elif kind == P_STRING:
            value = _string(&inner, name)
        elif kind == P_BINARY:
            value = _binary(&inner, name)
        else:
            value = (_string(&inner, name), _string(&inner, name))
        if _property_repeatable[identifier]:
            found.setdefault(name, []).append(value)
        elif name in found:
            _protocol(f"property {name} appears twice in {PACKET_NAMES[packet_type]}")
        else:
            found[name] = value
    return found


cdef int _packet_id(Reader *r, str packet) except -1:
    cdef int packet_id = _u16(r, f"the packet identifier of {packet}")
    if packet_id == 0:
        _protocol(f"{packet} has packet identifier 0")
    return packet_id


# -- the core -------------------------------------------------------------------------

cdef class MqttCore:
    """One client connection's MQTT state: the version, what is left of a partly read
    packet, whether the CONNACK came, and a failure once there was one."""
    cdef readonly int version
    cdef readonly Py_ssize_t max_packet_size
    cdef readonly bint connack_received
    cdef readonly bint failed
    cdef bytes pending        # the start of a packet not yet whole, or None

    def __cinit__(self, int version=MQTT_5, Py_ssize_t max_packet_size=DEFAULT_MAX_PACKET_SIZE):
        if version != MQTT_3_1_1 and version != MQTT_5:
            raise ValueError(f"MQTT version must be {MQTT_3_1_1} (3.1.1) or {MQTT_5} (5.0), not {version!r}")
        if max_packet_size < 2 or max_packet_size > MAX_REMAINING_LENGTH + 5:
            raise ValueError(f"max_packet_size must be between 2 and {MAX_REMAINING_LENGTH + 5}")
        self.version = version
        self.max_packet_size = max_packet_size
        self.pending = None

    def feed(self, data):
        """The packets ``data`` completed, in order (a list), or ``None``; raises
        ``MqttProtocolError`` when the broker broke the protocol."""
        cdef bytes chunk
        if self.failed:
            raise MqttProtocolError("the connection already failed", PROTOCOL_ERROR)
        if self.pending is not None:
            chunk = self.pending + bytes(data)
            self.pending = None
        elif type(data) is bytes:
            chunk = <bytes>data
        else:
            chunk = bytes(data)
        try:
            return self._parse(chunk)
        except MqttProtocolError:
            self.failed = True
            self.pending = None
            raise

    cdef list _parse(self, bytes chunk):
        cdef const uint8_t *data = <const uint8_t *>PyBytes_AS_STRING(chunk)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(chunk)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t header
        cdef long long remaining
        cdef int shift
        cdef int byte
        cdef list packets = None
        while pos < size:
            # The fixed header: a byte, then the remaining length in one to four bytes.
            header = 1
            remaining = 0
            shift = 0
            while True:
                if header == 5:
                    _malformed("the remaining length is longer than four bytes")
                if pos + header >= size:
                    self.pending = chunk[pos:]
                    return packets
                byte = data[pos + header]
                remaining |= <long long>(byte & 0x7F) << shift
                header += 1
                if not byte & 0x80:
                    if byte == 0 and header > 2:
                        _malformed("the remaining length is not in its shortest form")
                    break
                shift += 7
            if header + remaining > self.max_packet_size:
                raise MqttProtocolError(f"a {PACKET_NAMES.get(data[pos] >> 4, 'packet')} of "
                                        f"{header + remaining} bytes is over the limit of "
                                        f"{self.max_packet_size}", PACKET_TOO_LARGE)
            if pos + header + remaining > size:
                self.pending = chunk[pos:]
                return packets
            packet = self._packet(data[pos], data + pos + header, remaining)
            if packets is None:
                packets = []
            packets.append(packet)
            pos += header + remaining
        return packets

    cdef MqttPacket _packet(self, int first, const uint8_t *body, Py_ssize_t size):
        cdef int kind = first >> 4
        cdef int flags = first & 0x0F
        cdef Reader r = Reader(body, 0, size)
        cdef MqttPacket packet = MqttPacket.__new__(MqttPacket)
        cdef str name = PACKET_NAMES.get(kind, "a packet of type 0")
        packet.type = kind
        if kind == PUBLISH:
            packet.dup = flags & 0x08
            packet.qos = (flags >> 1) & 0x03
            packet.retain = flags & 0x01
            if packet.qos == 3:
                _malformed("PUBLISH with QoS 3")
            if packet.qos == 0 and packet.dup:
                _malformed("PUBLISH with QoS 0 and the DUP flag")
        elif kind == PUBREL:
            if flags != 0x02:
                _malformed(f"PUBREL with flags 0x{flags:x}, not 0x2")
        elif flags:
            _malformed(f"{name} with flags 0x{flags:x}, not 0")
        if kind in (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, 0) or (
                self.version == MQTT_3_1_1 and kind in (DISCONNECT, AUTH)):
            _protocol(f"the broker sent {name}, which only a client sends")
        if not self.connack_received and kind != CONNACK:
            _protocol(f"the broker sent {name} before CONNACK")
        if kind == CONNACK:
            self._connack(&r, packet)
        elif kind == PUBLISH:
            self._publish(&r, packet)
        elif kind == PUBACK or kind == PUBREC or kind == PUBREL or kind == PUBCOMP:
            packet.packet_id = _packet_id(&r, name)
            if self.version == MQTT_5 and r.pos < r.end:
                packet.reason_code = _u8(&r, "the reason code")
                if r.pos < r.end:
                    packet.properties = _properties(&r, kind)
        elif kind == SUBACK or kind == UNSUBACK:
            packet.packet_id = _packet_id(&r, name)
            if self.version == MQTT_5:
                packet.properties = _properties(&r, kind)
            if kind == SUBACK or self.version == MQTT_5:  # an MQTT 3.1.1 UNSUBACK has no payload
                packet.reason_codes = [body[i] for i in range(r.pos, r.end)]
                r.pos = r.end
            else:
                packet.reason_codes = []
            if not packet.reason_codes and (kind == SUBACK or self.version == MQTT_5):
                _protocol(f"{name} without a reason code")
            if kind == SUBACK and self.version == MQTT_3_1_1:
                for code in packet.reason_codes:
                    if code not in (0, 1, 2, SUBACK_3_1_1_FAILURE):
                        _malformed(f"SUBACK return code 0x{code:02x}")
        elif kind == DISCONNECT or kind == AUTH:
            if r.pos < r.end:
                packet.reason_code = _u8(&r, "the reason code")
                if r.pos < r.end:
                    packet.properties = _properties(&r, kind)
        # PINGRESP has no body.
        if r.pos != r.end:
            _malformed(f"{name} has {r.end - r.pos} bytes past its end")
        return packet

    cdef int _connack(self, Reader *r, MqttPacket packet) except -1:
        if self.connack_received:
            _protocol("a second CONNACK")
        cdef int flags = _u8(r, "the CONNACK flags")
        if flags & 0xFE:
            _malformed(f"CONNACK flags 0x{flags:02x}")
        packet.session_present = flags & 0x01
        cdef int code = _u8(r, "the CONNACK reason code")
        if self.version == MQTT_3_1_1:
            if code > 5:
                _malformed(f"CONNACK return code {code}")
            code = CONNACK_3_1_1_REASONS.get(code, 0)
        else:
            packet.properties = _properties(r, CONNACK)
        if code and packet.session_present:
            _protocol("a CONNACK refusing the connection has session present set")
        packet.reason_code = code
        self.connack_received = True
        return 0

    cdef int _publish(self, Reader *r, MqttPacket packet) except -1:
        packet.topic = _string(r, "the PUBLISH topic")
        if packet.qos:
            packet.packet_id = _packet_id(r, "PUBLISH")
        if self.version == MQTT_5:
            packet.properties = _properties(r, PUBLISH)
            if packet.properties is not None and "topic_alias" in packet.properties:
                # This client announces no topic alias maximum: any alias is out of range.
                _protocol("PUBLISH with a topic alias (this client accepts none)")
        if not packet.topic:
            _protocol("PUBLISH without a topic")
        if "+" in packet.topic or "#" in packet.topic:
            _protocol(f"PUBLISH topic {packet.topic!r} holds a wildcard")
        packet.payload = PyBytes_FromStringAndSize(<const char *>r.data + r.pos, r.end - r.pos)
        r.pos = r.end
        return 0

    # -- encoders ---------------------------------------------------------------------

    def connect(self, str client_id, int keepalive=60, bint clean_start=True, str username=None,
                password=None, will=None, dict properties=None):
        """CONNECT. ``will`` is ``None`` or a dict with ``topic`` and ``payload`` and
        optional ``qos``, ``retain`` and (MQTT 5) ``properties``."""
        if not 0 <= keepalive <= 0xFFFF:
            raise ValueError(f"keepalive must be between 0 and 65535 seconds, not {keepalive}")
        cdef bytearray body = bytearray(b"\x00\x04MQTT")
        body.append(self.version)
        cdef int flags = 0x02 if clean_start else 0
        if username is not None:
            flags |= 0x80
        if password is not None:
            if username is None and self.version == MQTT_3_1_1:
                raise ValueError("MQTT 3.1.1 sends a password only with a user name")
            flags |= 0x40
        if will is not None:
            will_topic, will_payload, will_qos, will_retain, will_properties = _will(will)
            flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        body.append(flags)
        body += _two(keepalive)
        body += self._properties_field(properties, CONNECT)
        body += _utf8(client_id, "client_id")
        if will is not None:
            body += self._properties_field(will_properties, WILL, "will properties")
            body += _utf8(will_topic, "the will's topic")
            body += _bytes_field(will_payload, "the will's payload")
        if username is not None:
            body += _utf8(username, "username")
        if password is not None:
            body += _bytes_field(password, "password")
        return _packet_bytes(CONNECT << 4, body)

    def publish(self, str topic, payload, int qos=0, bint retain=False, int packet_id=0, bint dup=False,
                dict properties=None):
        """PUBLISH of ``payload`` (bytes-like) on ``topic``; QoS 1 and 2 need a ``packet_id``."""
        if qos < 0 or qos > 2:
            raise ValueError(f"qos must be 0, 1 or 2, not {qos}")
        if (packet_id != 0) != (qos != 0) or not 0 <= packet_id <= 0xFFFF:
            raise ValueError("a packet identifier (1-65535) goes with QoS 1 and 2 only")
        if not topic or "+" in topic or "#" in topic:
            raise ValueError(f"a topic to publish on is not empty and has no wildcard, not {topic!r}")
        cdef bytes encoded_topic = _utf8(topic, "topic")
        cdef const unsigned char[:] view = payload if not isinstance(payload, str) else payload.encode()
        cdef bytes encoded_properties = self._properties_field(properties, PUBLISH)
        cdef Py_ssize_t length = (PyBytes_GET_SIZE(encoded_topic) + (2 if qos else 0)
                                  + PyBytes_GET_SIZE(encoded_properties) + view.shape[0])
        if length > MAX_REMAINING_LENGTH:
            raise ValueError(f"a PUBLISH of {length} bytes is over MQTT's limit")
        cdef bytes prefix = _remaining_length(length)
        cdef Py_ssize_t total = 1 + PyBytes_GET_SIZE(prefix) + length
        cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
        cdef char *p = PyBytes_AS_STRING(out)
        p[0] = <char>((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0))
        p += 1
        memcpy(p, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix))
        p += PyBytes_GET_SIZE(prefix)
        memcpy(p, PyBytes_AS_STRING(encoded_topic), PyBytes_GET_SIZE(encoded_topic))
        p += PyBytes_GET_SIZE(encoded_topic)
        if qos:
            p[0] = <char>(packet_id >> 8)
            p[1] = <char>(packet_id & 0xFF)
            p += 2
        memcpy(p, PyBytes_AS_STRING(encoded_properties), PyBytes_GET_SIZE(encoded_properties))
        p += PyBytes_GET_SIZE(encoded_properties)
        if view.shape[0]:
            memcpy(p, &view[0], view.shape[0])
        return out

    def puback(self, int packet_id, int reason_code=0, dict properties=None):
        return self._ack(PUBACK << 4, PUBACK, packet_id, reason_code, properties)

    def pubrec(self, int packet_id, int reason_code=0, dict properties=None):
        return self._ack(PUBREC << 4, PUBREC, packet_id, reason_code, properties)

    def pubrel(self, int packet_id, int reason_code=0, dict properties=None):
        return self._ack((PUBREL << 4) | 0x02, PUBREL, packet_id, reason_code, properties)

    def pubcomp(self, int packet_id, int reason_code=0, dict properties=None):
        return self._ack(PUBCOMP << 4, PUBCOMP, packet_id, reason_code, properties)

    cdef bytes _properties_field(self, dict properties, int where, str what="properties"):
        """The properties field of a packet (or the will) of type ``where``: their length and
        them in MQTT 5; nothing in MQTT 3.1.1, which refuses any (``what`` names them)."""
        if self.version == MQTT_5:
            return _encode_properties(properties, where) if properties else b"\x00"
        if properties:
            raise ValueError(f"{what} need MQTT 5")
        return b""

    cdef bytes _ack(self, int first, int kind, int packet_id, int reason_code, dict properties):
        _check_packet_id(packet_id)
        cdef bytearray body = bytearray(_two(packet_id))
        if self.version == MQTT_5 and (reason_code or properties):
            body.append(_reason_byte(reason_code))
            if properties:
                body += _encode_properties(properties, kind)
        elif self.version == MQTT_3_1_1 and (reason_code or properties):
            raise ValueError("reason codes and properties need MQTT 5")
        return _packet_bytes(first, body)

    def subscribe(self, int packet_id, list filters, dict properties=None):
        """SUBSCRIBE to ``filters``: ``(topic_filter, options)`` pairs, where ``options`` is
        the QoS (0-2) with, in MQTT 5, the no-local (4), retain-as-published (8) and
        retain-handling (16 * 0-2) bits."""
        _check_packet_id(packet_id)
        if not filters:
            raise ValueError("SUBSCRIBE needs at least one topic filter")
        cdef bytearray body = bytearray(_two(packet_id))
        body += self._properties_field(properties, SUBSCRIBE)
        for topic_filter, options in filters:
            if not topic_filter:
                raise ValueError("a topic filter is not empty")
            if (options & 0x03) == 3 or options < 0 or options > (0x2F if self.version == MQTT_5 else 0x02) \
                    or (options & 0x30) == 0x30:
                raise ValueError(f"subscription options {options!r} are not valid for MQTT "
                                 f"{'5.0' if self.version == MQTT_5 else '3.1.1'}")
            body += _utf8(topic_filter, "topic filter")
            body.append(options)
        return _packet_bytes((SUBSCRIBE << 4) | 0x02, body)

    def unsubscribe(self, int packet_id, list filters, dict properties=None):
        _check_packet_id(packet_id)
        if not filters:
            raise ValueError("UNSUBSCRIBE needs at least one topic filter")
        cdef bytearray body = bytearray(_two(packet_id))
        body += self._properties_field(properties, UNSUBSCRIBE)
        for topic_filter in filters:
            if not topic_filter:
                raise ValueError("a topic filter is not empty")
            body += _utf8(topic_filter, "topic filter")
        return _packet_bytes((UNSUBSCRIBE << 4) | 0x02, body)

    def pingreq(self):
        return b"\xc0\x00"

    def disconnect(self, int reason_code=0, dict properties=None):
        if self.version == MQTT_3_1_1:
            return b"\xe0\x00"
        cdef bytearray body = bytearray()
        if reason_code or properties:
            body.append(_reason_byte(reason_code))
            if properties:
                body += _encode_properties(properties, DISCONNECT)
        return _packet_bytes(DISCONNECT << 4, body)


# -- encoding helpers ---------------------------------------------------------------------

cdef bytes _remaining_length(Py_ssize_t length):
    cdef uint8_t out[4]
    cdef int count = 0
    while True:
        out[count] = length & 0x7F
        length >>= 7
        if length:
            out[count] |= 0x80
        count += 1
        if not length:
            return PyBytes_FromStringAndSize(<char *>out, count)


cdef bytes _varint_bytes(long long value):
    if value < 0 or value > MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit a variable byte integer")
    return _remaining_length(value)


cdef bytes _packet_bytes(int first, bytearray body):
    if len(body) > MAX_REMAINING_LENGTH:
        raise ValueError(f"a packet of {len(body)} bytes is over MQTT's limit")
    return bytes([first]) + _remaining_length(len(body)) + bytes(body)


cdef bytes _two(long long value):
    return bytes(((value >> 8) & 0xFF, value & 0xFF))


cdef bytes _utf8(str text, str what):
    if text is None:
        raise TypeError(f"{what} must be a str")
    cdef bytes encoded = text.encode()
    if len(encoded) > 0xFFFF:
        raise ValueError(f"{what} is over 65535 bytes in UTF-8")
    if b"\x00" in encoded:
        raise ValueError(f"{what} holds U+0000")
    return _two(len(encoded)) + encoded


cdef bytes _bytes_field(object data, str what):
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > 0xFFFF:
        raise ValueError(f"{what} is over 65535 bytes")
    return _two(len(data)) + data


cdef int _reason_byte(int code) except -1:
    if not 0 <= code <= 0xFF:
        raise ValueError(f"a reason code is one byte, not {code}")
    return code


cdef int _check_packet_id(int packet_id) except -1:
    if not 1 <= packet_id <= 0xFFFF:
        raise ValueError(f"a packet identifier is between 1 and 65535, not {packet_id}")
    return 0


cdef tuple _will(object will):
    if not isinstance(will, dict):
        raise TypeError(f"will must be a dict with topic and payload, not {type(will).__name__}")
    unknown = set(will) - {"topic", "payload", "qos", "retain", "properties"}
    if unknown:
        raise ValueError(f"unknown will field {sorted(unknown)[0]!r}")
    if "topic" not in will or "payload" not in will:
        raise ValueError("a will needs a topic and a payload")
    qos = will.get("qos", 0)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise ValueError(f"the will's qos must be 0, 1 or 2, not {qos!r}")
    topic = will["topic"]
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
        raise ValueError(f"the will's topic is a str, not empty, without wildcards, not {topic!r}")
    properties = will.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise TypeError("the will's properties must be a dict")
    return topic, will["payload"], qos, bool(will.get("retain", False)), properties


def _encode_properties(dict properties, int where):
    """MQTT 5 properties for a packet of type ``where`` (or ``WILL``), length first."""
    if not properties:
        return b"\x00"
    cdef bytearray out = bytearray()
    for name, value in properties.items():
        try:
            identifier, kind, allowed = _PROPERTIES_BY_NAME[name]
        except KeyError:
            raise ValueError(f"unknown MQTT property {name!r}") from None
        if not allowed & (1 << where):
            raise ValueError(f"property {name} is not allowed in "
                             f"{'the will' if where == WILL else PACKET_NAMES[where]}")
        values = value if kind == P_PAIR or (kind == P_VARINT and isinstance(value, (list, tuple))) else [value]
        if kind == P_PAIR:
            if isinstance(value, dict):
                values = list(value.items())
            elif not isinstance(value, (list, tuple)):
                raise TypeError(f"property {name} is a list of (name, value) pairs")
        for item in values:
            out += _varint_bytes(identifier)
            if kind == P_PAIR:
                if not isinstance(item, (list, tuple)) or len(item) != 2:
                    raise TypeError(f"property {name} is a list of (name, value) pairs")
                out += _utf8(item[0], name) + _utf8(item[1], name)
            elif kind == P_STRING:
                if not isinstance(item, str):
                    raise TypeError(f"property {name} is a str")
                out += _utf8(item, name)
            elif kind == P_BINARY:
                out += _bytes_field(item, name)
            else:
                if not isinstance(item, int):
                    raise TypeError(f"property {name} is an int")
                number = int(item)
                limit = {P_BYTE: 0xFF, P_TWO: 0xFFFF, P_FOUR: 0xFFFFFFFF, P_VARINT: MAX_REMAINING_LENGTH}[kind]
                if not 0 <= number <= limit:
                    raise ValueError(f"property {name} must be between 0 and {limit}, not {number}")
                if kind == P_BYTE:
                    out.append(number)
                elif kind == P_TWO:
                    out += _two(number)
                elif kind == P_FOUR:
                    out += number.to_bytes(4, "big")
                else:
                    out += _varint_bytes(number)
    if len(out) > MAX_REMAINING_LENGTH:
        raise ValueError("the properties are over MQTT's limit")
    return _varint_bytes(len(out)) + bytes(out)
