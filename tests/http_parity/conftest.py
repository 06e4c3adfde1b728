"""One real nginx speaking HTTP/1.1, h2c and h2 over TLS, in front of a recorder.

Every request under ``/echo/`` is proxied to ``Recorder``, a small HTTP server
on its own thread that keeps what nginx passed on (method, target, headers in
order, body) by the request's ``X-Case`` header and answers it as JSON. nginx
speaks plain HTTP/1 to the recorder whatever protocol the device used, so what
it records is comparable across protocols. Other paths are static files whose
content types exercise the response body decoder.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgpack
import pytest

from tests.support.servers import free_port, nginx_with_certificate, public_web_root

DOC = {"kind": "parity", "values": [1, 2, 3]}
FILES = {
    "index.html": b"<html>parity</html>\n",
    "doc.json": json.dumps(DOC).encode(),
    "doc.tjson": json.dumps(DOC).encode(),        # text/json
    "doc.pjson": json.dumps(DOC).encode(),        # application/problem+json
    "doc.msgpack": msgpack.packb(DOC),            # application/msgpack
    "doc.xmp": msgpack.packb(DOC),                # application/vnd.test+msgpack
    "bad.json": b"{not json",
}


class Recorder:
    """The upstream of ``/echo/``: what nginx forwarded, by ``X-Case``."""

    def __init__(self):
        self.port = free_port()
        self.requests = {}
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = {"method": self.command, "target": self.path,
                        "headers": [(name.lower(), value) for name, value in self.headers.items()],
                        "body": body}
                with recorder._lock:
                    recorder.requests[self.headers.get("X-Case", "")] = seen
                reply = json.dumps({"method": self.command, "target": self.path,
                                    "body_length": len(body)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _record

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def take(self):
        """Everything recorded so far; the recorder starts empty again."""
        with self._lock:
            requests, self.requests = self.requests, {}
        return requests


class ParityServers:
    """Ports of one nginx: ``http`` (HTTP/1.1), ``h2c``, ``tls`` (HTTP/1.1 and h2 by ALPN)."""

    def __init__(self, recorder, **ports):
        self.recorder = recorder
        self.__dict__.update(ports)


@pytest.fixture(scope="session")
def parity_servers(tmp_path_factory):
    http, h2c, tls = free_port(), free_port(), free_port()
    with Recorder() as recorder, public_web_root("sg-parity-", FILES) as root:
        common = f"""
        root {root};
        types {{ text/html html; application/json json; text/json tjson;
                 application/problem+json pjson; application/msgpack msgpack;
                 application/vnd.test+msgpack xmp; }}
        client_max_body_size 16m;
        location /echo/ {{
            proxy_pass http://127.0.0.1:{recorder.port};
            proxy_set_header X-Seen-Host $http_host;
            proxy_set_header X-Seen-Server $host;
            proxy_set_header X-Seen-Protocol $server_protocol;
            proxy_request_buffering on;
            client_body_buffer_size 16m;
        }}
        """

        def blocks(key, cert):
            return f"""
    server {{ listen 127.0.0.1:{http}; {common} }}
    server {{ listen 127.0.0.1:{h2c} http2; {common} }}
    server {{
        listen 127.0.0.1:{tls} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {common}
    }}
    """
        directory = tmp_path_factory.mktemp("nginx-parity")
        with nginx_with_certificate(directory, blocks):
            yield ParityServers(recorder, http=http, h2c=h2c, tls=tls)
