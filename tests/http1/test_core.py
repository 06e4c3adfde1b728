"""The sans-IO HTTP/1 core: request bytes and response parsing, fed bytes directly."""
import json
import random

import msgpack
import pytest

from stressgrid._core.http1 import STATE_FAILED, STATE_IDLE, Http1Core, RequestWriter
from stressgrid._core.metrics import Recorder
from stressgrid.errors import ConnectionClosedError, LocalProtocolError, RemoteProtocolError

pytestmark = pytest.mark.unit

# What feed() and eof() return, as for every protocol core: how many results are ready.
NEED_MORE, READY = 0, 1
REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


# ---- requests ---------------------------------------------------------------------

def test_get_request_bytes_and_reuse():
    writer = RequestWriter("example.com", 80, False, False)
    path = "/index.html"
    first = writer.build(b"GET", path)
    assert first == b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
    assert writer.build(b"GET", path) is first          # same method and path: same bytes
    assert writer.build(b"GET", "/other") == b"GET /other HTTP/1.1\r\nHost: example.com\r\n\r\n"
    assert writer.close_after is False


def test_host_header_carries_port_and_brackets():
    assert b"Host: example.com:8080\r\n" in RequestWriter("example.com", 8080, False, False).build(b"GET", "/")
    assert b"Host: example.com\r\n" in RequestWriter("example.com", 443, True, False).build(b"GET", "/")
    assert b"Host: example.com:80\r\n" in RequestWriter("example.com", 80, True, False).build(b"GET", "/")
    assert b"Host: [::1]:8080\r\n" in RequestWriter("::1", 8080, False, False).build(b"GET", "/")


def test_request_with_headers_and_body():
    writer = RequestWriter("h", 80, False, False)
    data = writer.build(b"POST", "/p", [("X-One", "1"), ("Content-Length", "999")], b"{}", b"application/json")
    assert data == (b"POST /p HTTP/1.1\r\nHost: h\r\nX-One: 1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    # The script's own Host and Content-Type win; dict headers work.
    data = writer.build(b"PUT", "/p", {"Host": "other", "Content-Type": "text/plain"}, b"abc", b"application/json")
    assert data == b"PUT /p HTTP/1.1\r\nHost: other\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc"
    assert writer.build(b"POST", "/e", (), b"").endswith(b"Content-Length: 0\r\n\r\n")


def test_connection_close_and_http10():
    writer = RequestWriter("h", 80, False, False)
    writer.build(b"GET", "/", [("Connection", "close")])
    assert writer.close_after is True
    writer.build(b"GET", "/")
    assert writer.close_after is False
    old = RequestWriter("h", 80, False, True)
    assert old.build(b"GET", "/") == b"GET / HTTP/1.0\r\nHost: h\r\n\r\n"
    assert old.close_after is True


def test_paths_are_percent_encoded():
    writer = RequestWriter("h", 80, False, False)
    assert writer.build(b"GET", "").startswith(b"GET / HTTP")
    assert writer.build(b"GET", "/a b/é?q=1").startswith(b"GET /a%20b/%C3%A9?q=1 HTTP/1.1\r\n")
    assert writer.build(b"GET", "/x\r\nEvil: 1").startswith(b"GET /x%0D%0AEvil:%201 HTTP/1.1\r\n")
    assert writer.build(b"GET", "/already%20encoded").startswith(b"GET /already%20encoded ")


@pytest.mark.parametrize("headers, error", [
    ([("Bad Name", "v")], ValueError),
    ([("X", "a\r\nInjected: 1")], ValueError),
    ([("X",)], ValueError),
    ([(1, "v")], TypeError),
    ([("Transfer-Encoding", "chunked")], ValueError),
])
def test_bad_request_headers_are_local_errors(headers, error):
    with pytest.raises(error):
        RequestWriter("h", 80, False, False).build(b"GET", "/", headers)


def test_bad_path_type():
    with pytest.raises(TypeError):
        RequestWriter("h", 80, False, False).build(b"GET", 42)


# ---- responses --------------------------------------------------------------------

def split_whole(data):
    return [data]


def split_bytes(data):
    return [data[i:i + 1] for i in range(len(data))]


def split_random(data, seed=7):
    rng = random.Random(seed)
    parts, i = [], 0
    while i < len(data):
        n = rng.randint(1, 9)
        parts.append(data[i:i + n])
        i += n
    return parts


SPLITS = [split_whole, split_bytes, split_random]


def new_core():
    recorder = Recorder()
    return Http1Core(recorder), recorder


def exchange(core, data, split, head=False, close_after=False):
    """Start a request and feed ``data``; returns what the last ``feed`` returned."""
    core.start(REQUEST, head, close_after)
    assert core.data_to_send() == REQUEST and core.data_to_send() == b""  # handed over once
    ready = NEED_MORE
    for part in split(data):
        assert ready == NEED_MORE, "the response completed before all its bytes were fed"
        ready = core.feed(part)
    return ready


@pytest.mark.parametrize("split", SPLITS)
def test_content_length_response(split):
    core, recorder = new_core()
    data = b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 5\r\n\r\nhello"
    assert exchange(core, data, split) == READY and not core.upgraded
    assert core.result() == (200, [("Server", "t"), ("Content-Length", "5")], b"hello")
    assert core.reusable and core.state == STATE_IDLE
    assert recorder.counter("response_count").value == 1
    assert recorder.histogram("headers_us").total_count == 1
    assert recorder.histogram("body_us").total_count == 1


@pytest.mark.parametrize("split", SPLITS)
def test_chunked_response(split):
    core, _ = new_core()
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    assert exchange(core, data, split) == READY
    status, headers, body = core.result()
    assert (status, body) == (200, b"hello world")
    assert core.reusable


@pytest.mark.parametrize("split", SPLITS)
def test_close_delimited_body_finishes_on_eof(split):
    core, recorder = new_core()
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    assert exchange(core, data, split) == NEED_MORE
    assert core.eof() == READY
    assert core.result() == (200, [("Content-Type", "text/plain")], b"until the end")
    assert not core.reusable
    assert recorder.counter("response_count").value == 1


@pytest.mark.parametrize("split", SPLITS)
def test_head_response_has_no_body_and_core_goes_on(split):
    core, _ = new_core()
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: application/json\r\n\r\n"
    assert exchange(core, data, split, head=True) == READY
    assert core.result() == (200, [("Content-Length", "1234"), ("Content-Type", "application/json")], b"")
    assert core.reusable
    # The next exchange on the same connection parses from a clean state.
    assert exchange(core, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", split) == READY
    assert core.result()[::2] == (201, b"ok")


@pytest.mark.parametrize("split", SPLITS)
def test_informational_responses_are_skipped(split):
    core, recorder = new_core()
    data = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert exchange(core, data, split) == READY
    assert core.result() == (200, [("Content-Length", "2")], b"ok")
    assert recorder.counter("response_count").value == 1
    assert recorder.histogram("headers_us").total_count == 1


def test_no_content_and_not_modified_have_no_body():
    core, _ = new_core()
    for status in (204, 304):
        assert exchange(core, f"HTTP/1.1 {status} X\r\n\r\n".encode(), split_whole) == READY
        assert core.result()[::2] == (status, b"")
        assert core.reusable


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/problem+json", "APPLICATION/JSON"])
def test_json_bodies_are_decoded(content_type):
    core, _ = new_core()
    doc = {"a": [1, 2, {"b": "ü"}]}
    body = json.dumps(doc).encode()
    data = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
    exchange(core, data, split_whole)
    assert core.result()[2] == doc


@pytest.mark.parametrize("content_type", ["application/msgpack", "application/x-msgpack"])
def test_msgpack_bodies_are_decoded(content_type):
    core, _ = new_core()
    body = msgpack.packb({"n": 1, "s": "x"})
    data = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
    exchange(core, data, split_whole)
    assert core.result()[2] == {"n": 1, "s": "x"}


def test_empty_json_body_stays_bytes_and_invalid_json_is_protocol_error():
    core, _ = new_core()
    exchange(core, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
             split_whole)
    assert core.result()[2] == b""
    exchange(core, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{x}",
             split_whole)
    with pytest.raises(RemoteProtocolError, match="not valid JSON"):
        core.result()
    # The framing was fine: the connection carries on.
    assert core.state == STATE_IDLE and core.reusable


def test_large_body_in_many_chunks():
    core, _ = new_core()
    body = bytes(random.Random(1).getrandbits(8) for _ in range(4096)) * 300   # 1.2 MB
    data = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    core.start(REQUEST, False, False)
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    events = [core.feed(chunk) for chunk in chunks]
    assert events[-1] == READY and set(events[:-1]) == {NEED_MORE}
    result = core.result()[2]
    assert len(result) == len(body) and result == body


@pytest.mark.parametrize("response, reusable", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
])
def test_keep_alive_follows_the_response(response, reusable):
    core, _ = new_core()
    exchange(core, response, split_whole)
    core.result()
    assert core.reusable is reusable


def test_request_close_makes_connection_single_use():
    core, _ = new_core()
    exchange(core, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", split_whole, close_after=True)
    assert core.reusable is False


@pytest.mark.parametrize("trailing", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",       # a pipelined second response
    b"HTTP/1.1 408 Request Timeout\r\n",                      # the start of one
    b"\x00garbage",                                           # junk
])
def test_trailing_data_keeps_the_response_but_not_the_connection(trailing):
    core, recorder = new_core()
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + trailing
    assert exchange(core, data, split_whole) == READY
    assert core.result() == (200, [("Content-Length", "5")], b"first")
    assert core.reusable is False
    assert recorder.counter("response_count").value == 1


@pytest.mark.parametrize("split", SPLITS)
def test_switching_protocols_hands_over_leftover(split):
    core, recorder = new_core()
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    frames = b"\x81\x05hello\x81\x02hi"
    core.start(REQUEST, False, False)
    events = [core.feed(part) for part in split(head + frames)]
    assert events[-1] == READY and core.upgraded
    status, headers, leftover = core.result()
    assert status == 101
    assert ("Upgrade", "websocket") in headers
    assert leftover == frames
    assert not core.reusable
    assert recorder.counter("response_count").value == 0


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
])
def test_malformed_responses_are_protocol_errors(data):
    core, recorder = new_core()
    core.start(REQUEST, False, False)
    with pytest.raises(RemoteProtocolError, match="malformed HTTP response"):
        for part in split_bytes(data):
            core.feed(part)
    assert core.state == STATE_FAILED and not core.reusable
    with pytest.raises(LocalProtocolError):  # feeding a failed core is the caller's mistake
        core.feed(b"more")
    assert recorder.counter("response_count").value == 0


@pytest.mark.parametrize("data, message", [
    (b"", "before responding"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "incomplete"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "incomplete"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "incomplete"),
])
def test_eof_before_the_end_is_connection_closed(data, message):
    core, recorder = new_core()
    core.start(REQUEST, False, False)
    if data:
        assert core.feed(data) == NEED_MORE
    with pytest.raises(ConnectionClosedError, match=message):
        core.eof()
    assert recorder.counter("response_count").value == 0


def test_eof_while_idle_is_quiet_and_unsolicited_data_is_an_error():
    core, _ = new_core()
    assert core.eof() == NEED_MORE
    core, _ = new_core()
    with pytest.raises(RemoteProtocolError, match="no request"):
        core.feed(b"HTTP/1.1 408 Request Timeout\r\n\r\n")


def test_one_request_at_a_time():
    core, _ = new_core()
    core.start(REQUEST, False, False)
    with pytest.raises(LocalProtocolError, match="one request at a time"):
        core.start(REQUEST, False, False)


def test_many_exchanges_on_one_core():
    core, recorder = new_core()
    for i in range(100):
        body = str(i).encode()
        data = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        assert exchange(core, data, split_random if i % 2 else split_whole) == READY
        assert core.result()[2] == body
    assert recorder.counter("response_count").value == 100
    assert core.completed == 100


def test_repeated_and_colliding_headers_decode_right():
    # Decoded header pairs are cached per process; every lookup must still match exactly.
    core, _ = new_core()
    for i in range(3000):
        value = f"v{i}-é".encode("latin-1")
        data = (b"HTTP/1.1 200 OK\r\nServer: same\r\nX-Index: " + value +
                b"\r\nX-Long: " + b"y" * (300 + i % 3) + b"\r\nContent-Length: 0\r\n\r\n")
        exchange(core, data, split_whole)
        _, headers, _ = core.result()
        assert headers == [("Server", "same"), ("X-Index", f"v{i}-é"), ("X-Long", "y" * (300 + i % 3)),
                           ("Content-Length", "0")]


# ---- the response's headers: packed while parsed, decoded when read -------------------

HEADED = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: Text/HTML\r\nX-Empty:\r\n"
          b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nX-Latin: caf\xe9\r\nContent-Length: 2\r\n\r\nok")
HEADED_PAIRS = [("Server", "nginx"), ("Content-Type", "Text/HTML"), ("X-Empty", ""), ("Set-Cookie", "a=1"),
                ("set-cookie", "b=2"), ("X-Latin", "café"), ("Content-Length", "2")]


@pytest.mark.parametrize("split", SPLITS)
def test_headers_read_as_a_sequence_of_pairs(split):
    from collections.abc import Sequence
    core, _ = new_core()
    assert exchange(core, HEADED, split) == READY
    status, headers, body = core.result()
    assert isinstance(headers, Sequence) and len(headers) == 7
    # Looked up before anything else decodes them, then read every other way.
    assert headers.get("content-type") == "Text/HTML" and headers.get("SET-COOKIE") == "a=1"
    assert headers.get("x-empty") == "" and headers.get("x-latin") == "café"
    assert headers.get("x-missing") is None and headers.get("x-missing", "-") == "-"
    assert headers.get("caf\u00e9") is None and headers.get("\u20ac") is None   # not a name sent
    assert headers == HEADED_PAIRS and headers == tuple(HEADED_PAIRS) and headers != HEADED_PAIRS[:-1]
    assert list(headers) == HEADED_PAIRS and headers[0] == ("Server", "nginx") and headers[-1][1] == "2"
    assert headers[1:3] == HEADED_PAIRS[1:3] and list(reversed(headers)) == HEADED_PAIRS[::-1]
    assert ("X-Empty", "") in headers and headers.index(("set-cookie", "b=2")) == 4
    assert headers.count(("Server", "nginx")) == 1 and dict(headers)["Set-Cookie"] == "a=1"
    assert repr(headers) == repr(HEADED_PAIRS)
    assert headers.get("content-type") == "Text/HTML"                               # after decoding too
    with pytest.raises(TypeError):
        hash(headers)


def test_a_response_without_header_fields_has_empty_headers():
    core, _ = new_core()
    assert exchange(core, b"HTTP/1.1 204 No Content\r\n\r\n", split_whole) == READY
    status, headers, body = core.result()
    assert (status, len(headers), list(headers), headers.get("server")) == (204, 0, [], None)


def test_connections_whose_reads_end_inside_their_headers_keep_them_apart():
    # One buffer packs every connection's header fields while it parses: a read that ends
    # inside them keeps what it has until that connection's next read, whatever others read.
    cores = [new_core()[0] for _ in range(3)]
    responses = [HEADED.replace(b"nginx", f"server-{i}".encode()) for i in range(3)]
    cut = HEADED.index(b"Set-Cookie") + 5
    for core, response in zip(cores, responses):
        core.start(REQUEST, False, False)
        assert core.feed(response[:cut]) == NEED_MORE
    other, _ = new_core()
    assert exchange(other, b"HTTP/1.1 200 OK\r\nX-Other: 1\r\nContent-Length: 0\r\n\r\n", split_whole) == READY
    assert list(other.result()[1]) == [("X-Other", "1"), ("Content-Length", "0")]
    for i in reversed(range(3)):
        assert cores[i].feed(responses[i][cut:]) == READY
        assert cores[i].result()[1] == [("Server", f"server-{i}")] + HEADED_PAIRS[1:]


@pytest.mark.parametrize("split", [split_whole, split_random])
def test_header_fields_past_a_mebibyte_are_a_protocol_error(split):
    core, _ = new_core()
    field = b"X-Big: " + b"v" * 8000 + b"\r\n"
    data = b"HTTP/1.1 200 OK\r\n" + field * 140 + b"Content-Length: 0\r\n\r\n"
    core.start(REQUEST, False, False)
    with pytest.raises(RemoteProtocolError, match="header fields exceed 1048576 bytes"):
        for part in split(data):
            core.feed(part)
    assert core.state == STATE_FAILED and not core.reusable
    # Just under the limit is a response like any other.
    core, _ = new_core()
    assert exchange(core, b"HTTP/1.1 200 OK\r\n" + field * 120 + b"Content-Length: 0\r\n\r\n", split) == READY
    assert len(core.result()[1]) == 121
