"""The sans-IO HTTP/2 core against an independent HTTP/2 server implementation.

The peer is the pure-Python ``h2`` package in server mode: it decodes what the
core sends and encodes the responses the core is fed, so both directions are
checked by a second implementation of the protocol.
"""
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from stressgrid._core.http2 import CANCEL, REFUSED_STREAM, Http2Connection
from stressgrid._core.metrics import Recorder
from stressgrid.errors import Http2StreamError, LocalProtocolError, RemoteProtocolError, RequestArgumentError

pytestmark = pytest.mark.unit


class Peer:
    """An h2 server connected to a core by hand."""

    def __init__(self, core, settings=None):
        config = h2.config.H2Configuration(client_side=False, validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.core = core
        self.requests = {}
        self.bodies = {}
        self.ended = set()
        self.window_updates = 0

    def pump_client(self):
        """Deliver everything the core wants to send; returns the h2 events."""
        data = self.core.data_to_send()
        events = self.h2.receive_data(data) if data else []
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = event.headers
                self.bodies[event.stream_id] = b""
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self.window_updates += 1
        return events

    def server_bytes(self):
        return self.h2.data_to_send()

    def handshake(self):
        self.pump_client()
        assert self.core.feed(self.server_bytes()) == 0 and self.core.take_finished() is None
        self.pump_client()  # SETTINGS ACK


def make_core(**kwargs):
    recorder = Recorder()
    headers, body = recorder.histogram("headers_us"), recorder.histogram("body_us")
    core = Http2Connection("example.test:8080", "http", headers, body, recorder.response_counters(), **kwargs)
    return core, headers, body, recorder.counter("response_count")


def feed(core, data):
    """Feed ``data``; returns the streams it finished (as many as ``feed`` said)."""
    count = core.feed(data)
    finished = core.take_finished() or []
    assert len(finished) == count
    return finished


def feed_all(core, data, mode):
    """Feed ``data`` whole or byte by byte; returns every finished stream."""
    finished = []
    chunks = [data] if mode == "whole" else [data[i:i + 1] for i in range(len(data))]
    for chunk in chunks:
        finished.extend(feed(core, chunk))
    return finished


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
def test_get_response(mode):
    core, headers_h, body_h, responses = make_core()
    peer = Peer(core)
    peer.handshake()
    stream = core.request(b"GET", b"/items?x=1", [("X-Trace", "abc"), (b"Accept", b"*/*")], None, "me")
    assert stream.stream_id == 1 and stream.user == "me"
    peer.pump_client()
    sent = dict(peer.requests[1])
    assert sent[b":method"] == b"GET" and sent[b":path"] == b"/items?x=1"
    assert sent[b":scheme"] == b"http" and sent[b":authority"] == b"example.test:8080"
    assert sent[b"x-trace"] == b"abc" and sent[b"accept"] == b"*/*"
    assert 1 in peer.ended  # no body: END_STREAM on HEADERS

    peer.h2.send_headers(1, [(":status", "200"), ("content-type", "application/json"),
                             ("x-answer", "42")])
    peer.h2.send_data(1, b'{"ok":', end_stream=False)
    peer.h2.send_data(1, b" true}", end_stream=True)
    finished = feed_all(core, peer.server_bytes(), mode)
    assert finished == [stream]
    assert stream.complete and stream.status == 200
    assert stream.headers == [("content-type", "application/json"), ("x-answer", "42")]
    assert stream.content_type == "application/json"
    assert stream.body == b'{"ok": true}'
    assert responses.value == 1
    assert headers_h.total_count == 1 and body_h.total_count == 1
    assert core.open_streams == 0


def test_host_header_sets_authority_and_hop_by_hop_headers_are_dropped():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    core.request(b"GET", b"/", [("Host", "other.test"), ("Connection", "keep-alive"),
                                ("Upgrade", "h2c"), ("te", "trailers")], None, None)
    peer.pump_client()
    sent = peer.requests[1]
    names = [name for name, _ in sent]
    assert (b":authority", b"other.test") in sent
    assert b"host" not in names and b"connection" not in names and b"upgrade" not in names
    assert (b"te", b"trailers") in sent


def test_transfer_encoding_is_refused_like_on_http1():
    core, *_ = make_core()
    with pytest.raises(RequestArgumentError, match="transfer-encoding"):
        core.request(b"GET", b"/", [("Transfer-Encoding", "chunked")], None, None)
    assert core.open_streams == 0


def test_two_responses_in_one_read_and_split_across_reads():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    first = core.request(b"GET", b"/a", (), None, "a")
    second = core.request(b"GET", b"/b", (), None, "b")
    peer.pump_client()
    assert set(peer.requests) == {1, 3}
    peer.h2.send_headers(3, [(":status", "404")])
    peer.h2.send_data(3, b"missing", end_stream=True)
    peer.h2.send_headers(1, [(":status", "200")], end_stream=True)
    data = peer.server_bytes()
    # The first read ends in the middle of the second response: trailing data.
    cut = len(data) - 3
    assert feed(core, data[:cut]) == [second]
    assert second.status == 404 and second.body == b"missing"
    assert not first.complete
    assert feed(core, data[cut:]) == [first]
    assert first.status == 200 and first.body == b""


def test_request_body_larger_than_the_servers_window_waits_for_window_updates():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    body = bytes(range(256)) * 1000  # 256,000 bytes > the default 65,535 window
    core.request(b"POST", b"/upload", [("content-type", "application/octet-stream")], body, None)
    rounds = 0
    while 1 not in peer.ended:
        rounds += 1
        assert rounds < 100, "request body never completed"
        peer.pump_client()
        # The server acknowledges what it read: WINDOW_UPDATE lets the client go on.
        feed(core, peer.server_bytes())
    assert rounds > 1  # the window did stop the client at least once
    assert peer.bodies[1] == body
    sent = dict(peer.requests[1])
    assert sent[b"content-length"] == b"256000"


def test_large_response_with_a_small_receive_window_sends_window_updates():
    core, *_ = make_core(window_size=65535)
    peer = Peer(core)
    peer.handshake()
    stream = core.request(b"GET", b"/big", (), None, None)
    peer.pump_client()
    body = b"z" * 1_000_000
    peer.h2.send_headers(1, [(":status", "200")])
    offset = 0
    finished = None
    rounds = 0
    while offset < len(body):
        rounds += 1
        assert rounds < 1000
        window = min(peer.h2.local_flow_control_window(1), peer.h2.max_outbound_frame_size)
        if window == 0:
            # Blocked until the client's WINDOW_UPDATE arrives.
            before = peer.window_updates
            finished = feed(core, peer.server_bytes())
            peer.pump_client()
            assert peer.window_updates > before
            continue
        chunk = body[offset:offset + window]
        offset += len(chunk)
        peer.h2.send_data(1, chunk, end_stream=offset == len(body))
        finished = feed(core, peer.server_bytes())
        peer.pump_client()
    assert finished == [stream]
    assert stream.body == body


def test_server_max_concurrent_streams_is_honoured():
    core, *_ = make_core()
    peer = Peer(core, {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    peer.handshake()
    streams = [core.request(b"GET", f"/{i}".encode(), (), None, i) for i in range(3)]
    peer.pump_client()
    assert list(peer.requests) == [1]
    for expected_open in ([1, 3], [1, 3, 5]):
        stream_id = expected_open[-2]
        peer.h2.send_headers(stream_id, [(":status", "200")], end_stream=True)
        feed(core, peer.server_bytes())
        peer.pump_client()
        assert list(peer.requests) == expected_open
    peer.h2.send_headers(5, [(":status", "204")], end_stream=True)
    assert feed(core, peer.server_bytes()) == [streams[2]]
    assert [s.status for s in streams] == [200, 200, 204]


def test_reset_stream_finishes_it_with_the_error_code():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    stream = core.request(b"GET", b"/", (), None, None)
    peer.pump_client()
    peer.h2.reset_stream(1, error_code=2)  # INTERNAL_ERROR
    assert feed(core, peer.server_bytes()) == [stream]
    assert not stream.complete and stream.error_code == 2 and not stream.refused
    error = stream.exception()
    assert isinstance(error, Http2StreamError) and "INTERNAL_ERROR" in str(error)
    assert error.reason == "http2_stream"


def test_goaway_refuses_unprocessed_streams_and_new_requests():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    done = core.request(b"GET", b"/1", (), None, None)
    refused = core.request(b"GET", b"/2", (), None, None)
    peer.pump_client()
    peer.h2.send_headers(1, [(":status", "200")], end_stream=True)
    peer.h2.close_connection(last_stream_id=1)
    finished = feed(core, peer.server_bytes())
    assert done in finished and done.complete
    assert refused in finished and refused.refused and refused.error_code == REFUSED_STREAM
    assert core.goaway_received and core.goaway_last_stream_id == 1
    assert not core.request_allowed
    assert core.request(b"GET", b"/3", (), None, None) is None


def test_interim_response_and_trailers():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    stream = core.request(b"POST", b"/", [("expect", "100-continue")], b"abc", None)
    peer.pump_client()
    peer.h2.send_headers(1, [(":status", "100"), ("x-interim", "1")])
    peer.h2.send_headers(1, [(":status", "201"), ("x-final", "1")])
    peer.h2.send_data(1, b"made")
    peer.h2.send_headers(1, [("x-checksum", "abc")], end_stream=True)
    assert feed_all(core, peer.server_bytes(), "bytewise") == [stream]
    assert stream.status == 201 and stream.body == b"made"
    assert stream.headers == [("x-final", "1"), ("x-checksum", "abc")]


def test_garbage_from_the_server_is_a_protocol_error_and_queues_goaway():
    core, *_ = make_core()
    core.data_to_send()
    with pytest.raises(RemoteProtocolError, match="connection error"):
        feed(core, b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert core.data_to_send()  # GOAWAY for the server
    assert not core.request_allowed


def test_invalid_status_is_reported_never_swallowed():
    core, *_ = make_core()
    config = h2.config.H2Configuration(client_side=False, validate_outbound_headers=False,
                                       normalize_outbound_headers=False)
    peer = Peer(core)
    peer.h2.config = config
    peer.handshake()
    stream = core.request(b"GET", b"/", (), None, None)
    peer.pump_client()
    peer.h2.send_headers(1, [(":status", "2x0")], end_stream=True)
    # The library resets just that stream: the caller sees an error, not a response.
    assert feed(core, peer.server_bytes()) == [stream]
    assert not stream.complete and stream.error_code == 1  # PROTOCOL_ERROR
    assert ":status" in core.library_error


def test_cancelled_stream_is_not_reported():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    stream = core.request(b"GET", b"/", (), None, None)
    peer.pump_client()
    core.reset_stream(stream.stream_id)
    events = peer.pump_client()
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == CANCEL for e in events)
    assert stream.cancelled
    assert core.open_streams == 0


def test_connection_lost_returns_streams_in_flight():
    core, *_ = make_core()
    peer = Peer(core)
    peer.handshake()
    a = core.request(b"GET", b"/a", (), None, None)
    b = core.request(b"GET", b"/b", (), None, None)
    assert sorted(s.stream_id for s in core.connection_lost()) == [a.stream_id, b.stream_id]
    assert not core.request_allowed
    with pytest.raises(LocalProtocolError):  # feeding a closed connection is the caller's mistake
        core.feed(b"")


def test_header_values_must_be_text_or_bytes():
    core, *_ = make_core()
    with pytest.raises(TypeError):
        core.request(b"GET", b"/", [("x-a", object())], None, None)
