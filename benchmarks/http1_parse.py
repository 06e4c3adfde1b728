"""Parsing one HTTP/1.1 response: our core vs httptools, no sockets.

    python benchmarks/http1_parse.py

A response the shape of nginx's (8 header fields, a 615-byte body) is fed whole, again
and again, to

- ours: ``Http1Core`` (start, feed, result: what a device's GET costs the core, its
  ``headers_us`` and ``body_us`` recorded); the header fields are packed raw and never
  decoded, as when a script does not read them;
- ours, read: the same, and the script reads ``headers.get("content-type")``;
- httptools: ``HttpResponseParser`` with the callbacks a client needs (each field's name
  and value into a list of pairs, the body, the end of the message); httptools is llhttp
  too, so the difference is what each does around it.

Figures are the best of 7 runs of 200,000 responses, in nanoseconds a response. Where
ours spends them (``perf record`` of this script): llhttp 26% (the same C as
httptools'), packing the fields as llhttp hands them over 11%, the core's callbacks and
state 10%, the clock (``headers_us``, ``body_us``) 5%, the rest the interpreter's loop
and objects. Before the fields were packed raw each one was decoded to a ``(name,
value)`` pair through a cache: 1,010-1,070 ns against 783-789 after.

The last line is ``RESULT ours_ns=... read_ns=... httptools_ns=... ratio=...``
(ours/httptools).
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import httptools

from stressgrid._core.http1 import Http1Core
from stressgrid._core.metrics import Recorder

BODY = b"x" * 615
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 08 Dec 2026 01:00:00 GMT\r\n"
            b"Content-Type: text/html\r\nContent-Length: 615\r\n"
            b"Last-Modified: Mon, 07 Dec 2026 10:00:00 GMT\r\nConnection: keep-alive\r\n"
            b"ETag: \"5f2d-267\"\r\nAccept-Ranges: bytes\r\n\r\n" + BODY)
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
N = 200_000
RUNS = 7


def ours(n, read):
    core = Http1Core(Recorder())
    start, send, feed, result = core.start, core.data_to_send, core.feed, core.result
    began = time.perf_counter()
    for _ in range(n):
        start(REQUEST, False, False)
        send()
        feed(RESPONSE)
        status, headers, body = result()
        if read:
            headers.get("content-type")
    assert status == 200 and body == BODY and headers.get("Content-Length") == "615"
    return (time.perf_counter() - began) / n * 1e9


class Collector:
    """What a client keeps of a response through httptools' callbacks."""

    def __init__(self):
        self.headers = []
        self.body = []
        self.complete = False

    def on_header(self, name, value):
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, chunk):
        self.body.append(chunk)

    def on_message_complete(self):
        self.complete = True


def theirs(n, read):
    collector = Collector()
    parser = httptools.HttpResponseParser(collector)
    feed = parser.feed_data
    began = time.perf_counter()
    for _ in range(n):
        collector.headers = []
        collector.body = []
        collector.complete = False
        feed(RESPONSE)
        status, headers, body = parser.get_status_code(), collector.headers, b"".join(collector.body)
    assert status == 200 and collector.complete and body == BODY and len(headers) == 8
    return (time.perf_counter() - began) / n * 1e9


def best(measure, read=False):
    measure(N // 20, read)   # warm up
    return min(measure(N, read) for _ in range(RUNS))


def main():
    figures = {"ours_ns": best(ours), "read_ns": best(ours, True), "httptools_ns": best(theirs)}
    for name, value in figures.items():
        print(f"{name:14} {value:8.1f} ns a response")
    print("RESULT " + " ".join(f"{name}={value:.1f}" for name, value in figures.items())
          + f" ratio={figures['ours_ns'] / figures['httptools_ns']:.2f}")


if __name__ == "__main__":
    main()
