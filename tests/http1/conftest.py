"""Servers for the HTTP/1 tests: a real nginx (plain, TLS, WebDAV) and a small
asyncio server whose misbehaviour is chosen by the request path."""
import asyncio
import base64
import json
import socket
import struct
import threading
from pathlib import Path

import msgpack
import pytest

from tests.support.servers import free_port, nginx_with_certificate, public_web_root

INDEX = b"<html>" + b"x" * 600 + b"</html>\n"
BIG = bytes(range(256)) * 8192          # 2 MiB
DOC = {"kind": "test", "values": [1, 2, 3]}


@pytest.fixture(scope="session")
def web_root():
    files = {"index.html": INDEX, "big.bin": BIG, "doc.json": json.dumps(DOC).encode()}
    with public_web_root("sg-http1-", files) as root:
        yield root


def dav_ext_module():
    """The WebDAV extension module of Debian's libnginx-mod-http-dav-ext."""
    for directory in ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules"):
        path = Path(directory) / "ngx_http_dav_ext_module.so"
        if path.exists():
            return str(path)
    raise RuntimeError("ngx_http_dav_ext_module.so not found: install libnginx-mod-http-dav-ext "
                       "(tests/http1/REQUIREMENTS.txt)")


class NginxServers:
    """Ports of one nginx: ``plain``, ``tls`` (certificate for localhost), ``dav``."""

    def __init__(self, plain, tls, dav, certificate):
        self.plain = plain
        self.tls = tls
        self.dav = dav
        self.certificate = certificate


@pytest.fixture(scope="session")
def nginx_servers(tmp_path_factory, web_root):
    plain, tls, dav = free_port(), free_port(), free_port()

    def blocks(key, cert):
        return f"""
    server {{
        listen 127.0.0.1:{plain} backlog=4096;
        root {web_root};
        location = /json {{ default_type application/json; return 200 '{{"ok":true}}'; }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {web_root};
        add_header X-Alpn $ssl_alpn_protocol always;
        add_header X-Sni $ssl_server_name always;
    }}
    server {{
        listen 127.0.0.1:{dav};
        root {web_root}/dav;
        # PUT bodies land in a temporary file first; workers must be able to write it.
        client_body_temp_path {web_root}/dav-tmp;
        client_max_body_size 16m;
        client_body_buffer_size 1m;
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:rw all:rw;
            types {{ }}
            default_type application/json;
        }}
    }}
    """
    directory = tmp_path_factory.mktemp("nginx")
    with nginx_with_certificate(directory, blocks, modules=[dav_ext_module()]) as cert:
        yield NginxServers(plain, tls, dav, str(cert))


# ---- a server that misbehaves on purpose ------------------------------------------------

def response(status, body=b"", headers=(), version=b"HTTP/1.1", reason=b"X"):
    head = [version + b" %d " % status + reason]
    head += [name + b": " + value for name, value in headers]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class EdgeServer:
    """An HTTP/1 server on its own thread; the path picks the behaviour.

    ``/hello``: 200 "hello"; ``/slow``: never answers; ``/abort``: closes without
    answering; ``/partial``: half a body, then closes; ``/reset``: a TCP reset;
    ``/chunked``: a chunked body written in pieces; ``/eof-body``: a body that
    ends with the connection; ``/idle-close``: answers, then closes the
    connection after 30 ms idle; ``/race``: answers the first request of a
    connection, closes on the second without a byte; ``/echo``: the request as
    JSON; ``/echo-msgpack``: as msgpack; ``/upgrade``: 101 with raw bytes after it,
    more raw bytes, then "more" once it reads 4 bytes;
    ``/stress/_doc/<id>``: ElasticSearch's PUT and GET of a document;
    ``/malformed``: a broken status line; ``/status/N``: status N.
    HTTP/1.0 requests are answered and closed.
    """

    def __init__(self):
        self.port = free_port()
        self.connections = 0
        self.closed_by_client = 0
        self.idle_closes = 0
        self.documents = {}
        self._loop = None
        self._thread = None
        self._ready = threading.Event()
        self._handlers = set()
        self._changed = threading.Condition()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "edge server did not start"
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def wait_for(self, predicate, timeout=10):
        """Block until ``predicate(self)`` holds (checked whenever the server notes something)."""
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self), timeout), "edge server: condition not met"

    def _note(self, **changes):
        with self._changed:
            for name, delta in changes.items():
                setattr(self, name, getattr(self, name) + delta)
            self._changed.notify_all()

    def _run(self):
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self):
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        self._ready.set()
        async with server:
            await self._stop.wait()
        handlers = [task for task in self._handlers if not task.done()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader, writer):
        self._handlers.add(asyncio.current_task())
        self._note(connections=1)
        served = 0
        idle_timeout = None
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_timeout)
                except asyncio.TimeoutError:
                    self._note(idle_closes=1)
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    self._note(closed_by_client=1)
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, version = lines[0].split(" ")
                headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if line]
                length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                served += 1
                keep = await self._answer(method, path, version, headers, body, served, reader, writer)
                if not keep or version == "HTTP/1.0":
                    return
                idle_timeout = keep if type(keep) is float else None
        finally:
            writer.close()

    async def _answer(self, method, path, version, headers, body, served, reader, writer):
        if path == "/hello":
            writer.write(response(200, b"hello", version=version.encode()))
        elif path == "/slow":
            try:
                await reader.read()         # until the client gives up and closes
            finally:
                self._note(closed_by_client=1)
            return False
        elif path == "/abort":
            return False
        elif path == "/partial":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            await writer.drain()
            return False
        elif path == "/reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")
            for piece in (b"first ", b"second ", b"third"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.002)
            writer.write(b"0\r\n\r\n")
        elif path == "/eof-body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
            await writer.drain()
            await asyncio.sleep(0.002)
            writer.write(b"part two")
            await writer.drain()
            return False
        elif path == "/idle-close":
            writer.write(response(200, b"ok"))
            await writer.drain()
            return 0.03     # like a server with a 30 ms keepalive_timeout
        elif path == "/race":
            if served > 1:
                return False       # the request is dropped without a byte of answer
            writer.write(response(200, b"raced"))
        elif path in ("/echo", "/echo-msgpack"):
            doc = {"method": method, "path": path, "version": version, "headers": headers,
                   "body": base64.b64encode(body).decode()}
            if path == "/echo":
                payload, kind = json.dumps(doc).encode(), b"application/json"
            else:
                payload, kind = msgpack.packb(doc), b"application/x-msgpack"
            writer.write(response(200, payload, [(b"Content-Type", kind)]))
        elif path == "/upgrade":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"
                         b"leftover")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"early")                   # before the client hands the connection over
            await writer.drain()
            await reader.readexactly(4)              # the client's "ping" over the raw transport
            writer.write(b"more")
            await writer.drain()
            await reader.read()
            return False
        elif path.startswith("/stress/_doc/"):
            # ElasticSearch's document API, as far as the example uses it.
            key = path.rsplit("/", 1)[1]
            kind = [(b"Content-Type", b"application/json; charset=UTF-8")]
            if method == "PUT":
                created = key not in self.documents
                self.documents[key] = json.loads(body)
                reply = {"_index": "stress", "_id": key, "result": "created" if created else "updated"}
                writer.write(response(201 if created else 200, json.dumps(reply).encode(), kind))
            elif key in self.documents:
                reply = {"_index": "stress", "_id": key, "found": True, "_source": self.documents[key]}
                writer.write(response(200, json.dumps(reply).encode(), kind))
            else:
                writer.write(response(404, b'{"found":false}', kind))
        elif path == "/malformed":
            writer.write(b"HTTP/1.1 two hundred OK\r\n\r\n")
        elif path.startswith("/status/"):
            writer.write(response(int(path.rsplit("/", 1)[1])))
        else:
            writer.write(response(404, b"no such behaviour"))
        await writer.drain()
        return True


@pytest.fixture
def edge():
    with EdgeServer() as server:
        yield server
