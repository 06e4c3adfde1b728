"""The sans-IO WebSocket core, checked against the ``websockets`` frame codec.

Server frames are built by ``websockets`` (an independent RFC 6455
implementation) and fed to the core whole, byte by byte and with the start of
the next frame behind them; the core's client frames are parsed back by
``websockets`` with masking required.
"""
import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from stressgrid._core.metrics import Counter
from stressgrid._core.websocket import WebSocketCore, accept_key, new_key
from stressgrid.errors import RemoteProtocolError

pytestmark = pytest.mark.unit


def server_frame(opcode, payload, fin=True):
    return Frame(opcode, payload, fin=fin).serialize(mask=False)


def raw_frame(first_byte, payload):
    """A frame ``websockets`` would refuse to build (short payloads only)."""
    assert len(payload) < 126
    return bytes([first_byte, len(payload)]) + payload


def parse_client_frames(data):
    """Frames the client core sent; ``websockets`` insists they are masked."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=True)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
            continue
        raise AssertionError("the client sent an incomplete frame")
    return frames


def feed(core, data, mode):
    if mode == "whole":
        return core.feed(data)
    queued = 0
    for i in range(len(data)):
        queued += core.feed(data[i:i + 1])
    return queued


def drain(core):
    messages = []
    while (message := core.next_message()) is not None:
        messages.append(message)
    return messages


MODES = ["whole", "bytewise"]


@pytest.mark.parametrize("mode", MODES)
def test_text_and_binary_messages(mode):
    core = WebSocketCore()
    data = (server_frame(Opcode.TEXT, "héllo ☃".encode()) + server_frame(Opcode.BINARY, b"\x00\xff")
            + server_frame(Opcode.TEXT, b""))
    assert feed(core, data, mode) == 3
    assert drain(core) == ["héllo ☃", b"\x00\xff", ""]
    assert core.next_message() is None


def test_trailing_partial_frame_waits_for_the_rest():
    core = WebSocketCore()
    first = server_frame(Opcode.TEXT, b"one")
    second = server_frame(Opcode.BINARY, b"two" * 100)
    assert core.feed(first + second[:5]) == 1
    assert drain(core) == ["one"]
    assert core.feed(second[5:-1]) == 0
    assert core.feed(second[-1:] + first[:1]) == 1
    assert drain(core) == [b"two" * 100]
    assert core.feed(first[1:]) == 1
    assert drain(core) == ["one"]


@pytest.mark.parametrize("length", [125, 126, 65535, 65536, 3_000_000])
def test_frame_length_encodings_both_ways(length):
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    core = WebSocketCore()
    data = server_frame(Opcode.BINARY, payload)
    for start in range(0, len(data), 40_000):
        core.feed(data[start:start + 40_000])
    assert drain(core) == [payload]
    (frame,) = parse_client_frames(sent(core.send_binary, payload))
    assert frame.opcode == Opcode.BINARY and frame.data == payload and frame.fin


@pytest.mark.parametrize("mode", MODES)
def test_fragmented_message_with_a_ping_in_the_middle(mode):
    core = WebSocketCore()
    snowman = "☃".encode()  # three bytes, split across fragments below
    data = (server_frame(Opcode.TEXT, b"frag" + snowman[:1], fin=False)
            + server_frame(Opcode.PING, b"are you there")
            + server_frame(Opcode.CONT, snowman[1:], fin=False)
            + server_frame(Opcode.CONT, b"ment", fin=True))
    assert feed(core, data, mode) == 1
    assert drain(core) == ["frag☃ment"]
    assert core.pings_received == 1
    (pong,) = parse_client_frames(core.data_to_send())
    assert pong.opcode == Opcode.PONG and pong.data == b"are you there"


def sent(send, *args):
    """What ``send(*args)`` (a core's ``send*`` method) queued, taken from its ``data_to_send``."""
    send(*args)
    return send.__self__.data_to_send()


def test_sends_queue_in_order_until_taken():
    core = WebSocketCore()
    core.send_text("a")
    core.send_binary(b"b")
    core.send_ping(b"c")
    frames = parse_client_frames(core.data_to_send())
    assert [(f.opcode, f.data) for f in frames] == [(Opcode.TEXT, b"a"), (Opcode.BINARY, b"b"), (Opcode.PING, b"c")]
    assert core.data_to_send() == b""


def test_client_frames_are_masked_with_fresh_keys():
    core = WebSocketCore()
    first = sent(core.send_text, "same text")
    second = sent(core.send_text, "same text")
    assert first[1] & 0x80 and second[1] & 0x80
    assert first[2:6] != second[2:6]  # a new masking key per frame
    assert b"same text" not in first
    frames = parse_client_frames(first + second + sent(core.send_fragments, b"abcdefg", 3))
    assert [f.data for f in frames] == [b"same text", b"same text", b"abc", b"def", b"g"]
    assert [f.fin for f in frames] == [True, True, False, False, True]
    assert [f.opcode for f in frames][2:] == [Opcode.BINARY, Opcode.CONT, Opcode.CONT]


def test_server_mode_core_reads_client_frames():
    client, server = WebSocketCore(), WebSocketCore(client=False)
    data = sent(client.send_fragments, "x" * 1000 + "ü", 7) + sent(client.send_binary, b"\x01" * 70000)
    server.feed(data)
    assert drain(server) == ["x" * 1000 + "ü", b"\x01" * 70000]
    server.feed(sent(client.send_ping, b"p"))
    client.feed(server.data_to_send())  # the server's pong (unmasked)
    assert client.next_message() is None


@pytest.mark.parametrize("mode", MODES)
def test_close_handshake_echoes_the_code(mode):
    core = WebSocketCore()
    data = (server_frame(Opcode.TEXT, b"last words")
            + server_frame(Opcode.CLOSE, Close(1001, "bye ✓").serialize())
            + server_frame(Opcode.TEXT, b"after close is ignored"))
    feed(core, data, mode)
    assert drain(core) == ["last words"]
    assert core.close_received and core.close_code == 1001 and core.close_reason == "bye ✓"
    (reply,) = parse_client_frames(core.data_to_send())
    assert reply.opcode == Opcode.CLOSE and Close.parse(reply.data).code == 1001
    assert core.close_sent and core.closed


def test_close_without_code_is_answered_without_code():
    core = WebSocketCore()
    core.feed(server_frame(Opcode.CLOSE, b""))
    assert core.close_code == 1005
    (reply,) = parse_client_frames(core.data_to_send())
    assert reply.data == b""


@pytest.mark.parametrize("reason", ["x" * 200, "é" * 100, "x" + "€" * 60, "😀" * 40, "ab" + "😀" * 40,
                                    "x" * 123, "é" * 61 + "x"])
def test_a_long_close_reason_is_cut_on_a_character_boundary(reason):
    client, server = WebSocketCore(), WebSocketCore(client=False)
    server.feed(sent(client.send_close, 1000, reason))      # our own parser must accept it
    received = server.close_reason.encode("utf-8")
    assert server.close_code == 1000 and not server.failed
    assert reason.startswith(server.close_reason)
    assert len(received) <= 123 and len(received) > 123 - 4    # cut at most a partial character short
    if len(reason.encode("utf-8")) <= 123:
        assert server.close_reason == reason


def test_our_close_then_the_servers():
    core = WebSocketCore()
    (frame,) = parse_client_frames(sent(core.send_close, 1000, "done"))
    assert Close.parse(frame.data) == Close(1000, "done")
    core.feed(server_frame(Opcode.PING, b"x"))
    assert core.data_to_send() == b""  # nothing after our close frame
    core.feed(server_frame(Opcode.CLOSE, Close(1000, "").serialize()))
    assert core.closed and core.data_to_send() == b""


BAD_FRAMES = {
    "invalid utf-8": (server_frame(Opcode.TEXT, b"ok \xff\xfe"), 1007),
    "utf-8 surrogate": (server_frame(Opcode.TEXT, b"\xed\xa0\x80"), 1007),
    "invalid utf-8 across fragments": (server_frame(Opcode.TEXT, b"a\xe2", fin=False)
                                       + server_frame(Opcode.CONT, b"\x28\xa1"), 1007),
    "masked server frame": (Frame(Opcode.TEXT, b"hi").serialize(mask=True), 1002),
    "reserved bit": (raw_frame(0xC1, b"hi"), 1002),
    "unknown opcode": (bytes([0x83, 0x00]), 1002),
    "unknown control opcode": (bytes([0x8B, 0x00]), 1002),
    "long ping": (bytes([0x89, 126, 0, 126]) + b"p" * 126, 1002),
    "fragmented ping": (raw_frame(0x09, b"p"), 1002),
    "continuation first": (raw_frame(0x80, b"x"), 1002),
    "new message inside a fragmented one": (server_frame(Opcode.TEXT, b"a", fin=False)
                                            + server_frame(Opcode.BINARY, b"b"), 1002),
    "close code 1005 on the wire": (raw_frame(0x88, b"\x03\xed"), 1002),
    "close code 999": (raw_frame(0x88, b"\x03\xe7"), 1002),
    "1-byte close": (raw_frame(0x88, b"\x03"), 1002),
    "close reason not utf-8": (raw_frame(0x88, b"\x03\xe8\xff"), 1007),
    "64-bit length with top bit": (bytes([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]), 1002),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_protocol_violations_fail_with_a_close_code(case, mode):
    data, code = BAD_FRAMES[case]
    core = WebSocketCore()
    with pytest.raises(RemoteProtocolError) as raised:
        feed(core, data, mode)
    assert raised.value.close_code == code
    assert raised.value.reason == "protocol"
    (reply,) = parse_client_frames(core.data_to_send())
    assert reply.opcode == Opcode.CLOSE and Close.parse(reply.data).code == code
    assert core.failed and core.closed
    assert core.feed(server_frame(Opcode.TEXT, b"later")) == 0


def test_message_over_the_size_limit_fails_before_it_is_buffered():
    core = WebSocketCore(max_message_size=1000)
    with pytest.raises(RemoteProtocolError) as raised:
        core.feed(server_frame(Opcode.BINARY, b"x" * 1001)[:20])  # only the header arrived
    assert raised.value.close_code == 1009
    fragmented = WebSocketCore(max_message_size=1000)
    fragmented.feed(server_frame(Opcode.BINARY, b"x" * 600, fin=False))
    with pytest.raises(RemoteProtocolError):
        fragmented.feed(server_frame(Opcode.CONT, b"x" * 600))


def test_full_queue_drops_the_oldest_and_counts_it():
    dropped = Counter()
    core = WebSocketCore(max_messages=3, dropped_counter=dropped)
    data = b"".join(server_frame(Opcode.TEXT, str(i).encode()) for i in range(5))
    assert core.feed(data) == 5
    assert core.dropped == 2 and dropped.value == 2
    assert drain(core) == ["2", "3", "4"]


def test_handshake_keys():
    # The example of RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert new_key() != new_key() and len(new_key()) == 24


def test_unmasking_never_writes_into_shared_bytes():
    client, server = WebSocketCore(), WebSocketCore(client=False)
    for value in range(256):
        server.feed(sent(client.send_binary, bytes([value])))
    assert drain(server) == [bytes([value]) for value in range(256)]
    # One-byte bytes objects are interpreter-wide singletons: still intact.
    assert [bytes([value]) for value in range(256)] == [b"%c" % value for value in range(256)]
