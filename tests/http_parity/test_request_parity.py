"""The same script call means the same request, and gives the same result, on every HTTP protocol.

Every case of the table runs in one real device per protocol (HTTP/1.1 plain
and over TLS, HTTP/2 as h2c and over TLS) against one nginx. For each case the
test compares, across the protocols and against what the case expects:

- what reached the server: what nginx forwarded to the recorder behind
  ``/echo/`` (method, target, the script's headers in order, body), and, by
  ``X-Seen-Host``, the Host/:authority nginx saw;
- what the script got back: status, content type and (decoded) body, or the
  class of the exception it raised.

A case that is the script's own mistake must reach no server at all.
"""
import ast
import hashlib
import json
import random

import msgpack
import pytest

from tests.http_parity.conftest import DOC, FILES
from tests.support import plans

PROTOCOLS = {"http": "http", "https": "tls", "http2": "h2c", "http2s": "tls"}
SEEN_PROTOCOL = {"http": "HTTP/1.1", "https": "HTTP/1.1", "http2": "HTTP/2.0", "http2s": "HTTP/2.0"}
BIG = random.Random(12).randbytes(3 * 1024 * 1024 + 7)

# name -> (the call, with {h} for the headers (X-Case first), what nginx forwards, what the script gets)
# sent: None when the case reaches no recorder (static files, refused calls); else the fields
# that must match. got: (status, content type, body) or the exception class name.
ECHO = "application/json"


def echoed(method, target, length=0):
    body = {"method": method, "target": target, "body_length": length}
    return (200, ECHO, b"" if method == "HEAD" else body)


CASES = {
    "get": ('get("/echo/plain", {h})',
            {"method": "GET", "target": "/echo/plain", "body": b""}, echoed("GET", "/echo/plain")),
    "empty_path": ('get("", {h})', None, (200, "text/html", FILES["index.html"])),
    "query_string": ('get("/echo/q?a=1&b=x%20y&c", {h})',
                     {"target": "/echo/q?a=1&b=x%20y&c"}, echoed("GET", "/echo/q?a=1&b=x%20y&c")),
    "space_in_path": ('get("/echo/a b", {h})', {"target": "/echo/a%20b"}, echoed("GET", "/echo/a%20b")),
    "unicode_path": ('get("/echo/é/ü?q=ß", {h})', {"target": "/echo/%C3%A9/%C3%BC?q=%C3%9F"},
                     echoed("GET", "/echo/%C3%A9/%C3%BC?q=%C3%9F")),
    "control_in_path": ('get("/echo/x\\ty", {h})', {"target": "/echo/x%09y"}, echoed("GET", "/echo/x%09y")),
    "encoded_path_kept": ('get("/echo/already%20encoded", {h})', {"target": "/echo/already%20encoded"},
                          echoed("GET", "/echo/already%20encoded")),
    "bytes_path": ('get(b"/echo/bytes", {h})', {"target": "/echo/bytes"}, echoed("GET", "/echo/bytes")),
    "head": ('head("/echo/head", {h})', {"method": "HEAD", "body": b""}, echoed("HEAD", "/echo/head")),
    "options": ('options("/echo/o", {h})', {"method": "OPTIONS"}, echoed("OPTIONS", "/echo/o")),
    "delete": ('delete("/echo/d", {h})', {"method": "DELETE"}, echoed("DELETE", "/echo/d")),
    "post_bytes": ('post("/echo/p", {h}, b"hello")',
                   {"method": "POST", "body": b"hello", "content-length": "5"}, echoed("POST", "/echo/p", 5)),
    "post_text": ('post("/echo/p", {h}, "héllo")', {"body": "héllo".encode()}, echoed("POST", "/echo/p", 6)),
    "post_empty": ('post("/echo/p", {h})', {"method": "POST", "body": b"", "content-length": "0"},
                   echoed("POST", "/echo/p")),
    "put_json": ('put("/echo/j", {h}, json={{"a": [1, 2], "é": None}})',
                 {"method": "PUT", "body": b'{"a":[1,2],"\\u00e9":null}', "content-type": "application/json"},
                 echoed("PUT", "/echo/j", 25)),
    "patch_msgpack": ('patch("/echo/m", {h}, msgpack={{"a": 1}})',
                      {"method": "PATCH", "body": msgpack.packb({"a": 1}), "content-type": "application/msgpack"},
                      echoed("PATCH", "/echo/m", 4)),
    "json_with_own_content_type": ('post("/echo/t", {h} + [("Content-Type", "application/vnd.t+json")], json=1)',
                                   {"body": b"1", "content-type": "application/vnd.t+json"},
                                   echoed("POST", "/echo/t", 1)),
    "own_content_length_replaced": ('post("/echo/l", {h} + [("Content-Length", "999")], b"abc")',
                                    {"body": b"abc", "content-length": "3"}, echoed("POST", "/echo/l", 3)),
    "repeated_headers": ('get("/echo/r", {h} + [("X-Repeat", "a"), ("X-Other", "o"), ("X-Repeat", "b")])',
                         {"x-repeat": ["a", "b"], "x-other": "o"}, echoed("GET", "/echo/r")),
    "dict_headers": ('get("/echo/dict", {{"X-Case": "dict_headers", "X-One": "1"}})',
                     {"x-one": "1"}, echoed("GET", "/echo/dict")),
    "header_kinds": ('get("/echo/k", {h} + [("X-Num", 42), (b"X-Bytes", b"v"), ("X-Latin", "café")])',
                     {"x-num": "42", "x-bytes": "v", "x-latin": "café"}, echoed("GET", "/echo/k")),
    "custom_host": ('get("/echo/host", {h} + [("Host", "other.test")])',
                    {"x-seen-host": "other.test"}, echoed("GET", "/echo/host")),
    "default_authority": ('get("/echo/authority", {h})', {"x-seen-host": "127.0.0.1:{port}"},
                          echoed("GET", "/echo/authority")),
    "big_body": ('put("/echo/big", {h}, params["big"].encode("latin-1"))', {"body": BIG, "content-length": str(len(BIG))},
                 echoed("PUT", "/echo/big", len(BIG))),
    "float_timeout": ('get("/echo/ft", {h}, timeout=2500.5)', {"target": "/echo/ft"}, echoed("GET", "/echo/ft")),
    "html_stays_bytes": ('get("/index.html", {h})', None, (200, "text/html", FILES["index.html"])),
    "json_body": ('get("/doc.json", {h})', None, (200, "application/json", DOC)),
    "text_json_body": ('get("/doc.tjson", {h})', None, (200, "text/json", DOC)),
    "suffix_json_body": ('get("/doc.pjson", {h})', None, (200, "application/problem+json", DOC)),
    "msgpack_body": ('get("/doc.msgpack", {h})', None, (200, "application/msgpack", DOC)),
    "suffix_msgpack_body": ('get("/doc.xmp", {h})', None, (200, "application/vnd.test+msgpack", DOC)),
    "invalid_json_body": ('get("/bad.json", {h})', None, "RemoteProtocolError"),
    "not_found": ('get("/missing", {h})', None, (404, "text/html", None)),
    "body_with_json": ('post("/echo/x", {h}, b"x", json={{}})', None, "RequestArgumentError"),
    "crlf_in_header": ('get("/echo/x", {h} + [("X-A", "v\\r\\nInjected: 1")])', None, "RequestArgumentError"),
    "nul_in_header_name": ('get("/echo/x", {h} + [("X\\0A", "v")])', None, "RequestArgumentError"),
    "transfer_encoding": ('post("/echo/x", {h} + [("Transfer-Encoding", "chunked")], b"x")',
                          None, "RequestArgumentError"),
    "timeout_zero": ('get("/echo/x", {h}, timeout=0)', None, "RequestArgumentError"),
}


def parity_script():
    """One script that makes every call of the table in turn and writes down each outcome."""
    lines = ["import json", "outcomes = {}"]
    for name, (call, _, _) in CASES.items():
        source = call.format(h=f'[("X-Case", "{name}")]')
        lines += ["try:",
                  f"    status, headers, body = await {source}",
                  "    kind = [value for key, value in headers if key.lower() == 'content-type']",
                  f"    outcomes[{name!r}] = repr((status, kind[0].split(';')[0] if kind else None, body))",
                  "except Exception as exc:",
                  f"    outcomes[{name!r}] = type(exc).__name__"]
    lines += ["with open(params['out'], 'w') as out:",
              "    json.dump(outcomes, out)",
              "inc_counter('done')",
              "await delay(60000)"]
    return "\n".join(lines)


def forwarded(seen):
    """What nginx forwarded, as the fields ``CASES`` name (repeated headers as lists)."""
    fields = {"method": seen["method"], "target": seen["target"], "body": seen["body"]}
    for name, value in seen["headers"]:
        if name in ("host", "connection", "x-case"):
            continue        # nginx's own towards the recorder
        if name in fields:
            previous = fields[name]
            fields[name] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            fields[name] = value
    return fields


@pytest.fixture(scope="module")
def outcomes(parity_servers, tmp_path_factory):
    """``{protocol: {case: (what the script got, what the recorder saw)}}``."""
    results = {}
    directory = tmp_path_factory.mktemp("parity")
    for protocol, listener in PROTOCOLS.items():
        out = directory / f"{protocol}.json"
        plan = plans.plan(getattr(parity_servers, listener), parity_script(), protocol=protocol,
                          host="localhost" if protocol.endswith("s") else "127.0.0.1",
                          params={"out": str(out), "big": BIG.decode("latin-1")})
        parity_servers.recorder.take()
        result = plans.run_until(plan, "done_count", 1, duration=60)
        unexpected = {name: value for name, value in plans.error_counters(result).items()
                      if name not in ("protocol_error_count", "request_argument_error_count")}
        assert unexpected == {}, (protocol, unexpected, result.errors)
        got = json.loads(out.read_text())
        seen = parity_servers.recorder.take()
        port = getattr(parity_servers, listener)
        host = "localhost" if protocol.endswith("s") else "127.0.0.1"
        results[protocol] = {name: (got.get(name), seen.get(name), f"{host}:{port}") for name in CASES}
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_every_protocol_sends_and_gets_the_same(outcomes, case):
    _, sent, expected = CASES[case]
    views = {}
    for protocol, by_case in outcomes.items():
        got, seen, authority = by_case[case]
        if isinstance(expected, str):
            assert got == expected, (protocol, got)
        else:
            status, kind, body = ast.literal_eval(got)    # the repr the script wrote
            assert (status, kind) == expected[:2], (protocol, got)
            if expected[2] is not None:
                assert body == expected[2], (protocol, body)
        if sent is None:
            assert seen is None, f"{protocol}: {case} reached the recorder: {seen}"
            views[protocol] = (got, None)
            continue
        assert seen is not None, f"{protocol}: {case} never reached the recorder"
        fields = forwarded(seen)
        assert fields.pop("x-seen-protocol") == SEEN_PROTOCOL[protocol], (protocol, seen)
        for name, value in sent.items():
            if isinstance(value, str):
                value = value.format(port=authority.rsplit(":", 1)[1])
                if name == "x-seen-host":
                    value = value.replace("127.0.0.1", authority.rsplit(":", 1)[0])
            assert fields.get(name) == value, (protocol, name, fields.get(name), value)
        fields.pop("x-seen-host")
        fields.pop("x-seen-server")
        if case == "big_body":
            fields["body"] = hashlib.sha256(fields["body"]).hexdigest()
        views[protocol] = (got, fields)
    first = next(iter(views))
    for protocol, view in views.items():
        assert view == views[first], f"{case}: {protocol} differs from {first}:\n{view}\n{views[first]}"
