"""Servers for the HTTP/2 device tests: a real nginx (h2c, TLS with ALPN, WebDAV
uploads, a GOAWAY after a few requests) and a small h2-based server whose
misbehaviour is chosen by the request path."""
import asyncio
import json
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import msgpack
import pytest

from tests.support.servers import free_port, nginx_with_certificate, public_web_root

INDEX = b"<html>" + b"x" * 600 + b"</html>\n"
BIG = bytes(range(256)) * 12288          # 3 MiB: far over every default window
DOC = {"kind": "test", "values": [1, 2, 3]}


@pytest.fixture(scope="session")
def web_root():
    files = {"index.html": INDEX, "big.bin": BIG, "doc.json": json.dumps(DOC).encode(),
             "doc.msgpack": msgpack.packb(DOC)}
    with public_web_root("sg-http2-", files) as root:
        yield root


class NginxServers:
    """Ports of one nginx: ``h2c``; ``tls`` (h2 by ALPN, certificate for localhost);
    ``tls_http1`` (TLS without h2); ``goaway`` (h2c, GOAWAY after 10 requests);
    ``plain`` (HTTP/1 only)."""

    def __init__(self, **ports):
        self.__dict__.update(ports)


@pytest.fixture(scope="session")
def nginx_servers(tmp_path_factory, web_root):
    h2c, tls, tls_http1, goaway, plain = free_port(), free_port(), free_port(), free_port(), free_port()
    common = f"""
        root {web_root};
        types {{ text/html html; application/json json; application/msgpack msgpack;
                 application/octet-stream bin; }}
        location = /status/404 {{ return 404 "missing\\n"; }}
        location /dav/ {{
            root {web_root};
            client_body_temp_path {web_root}/dav-tmp;
            client_max_body_size 16m;
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:rw all:rw;
        }}
        add_header X-Alpn $ssl_alpn_protocol always;
        add_header X-Sni $ssl_server_name always;
    """

    def blocks(key, cert):
        return f"""
    server {{ listen 127.0.0.1:{h2c} http2 backlog=4096; {common} }}
    server {{
        listen 127.0.0.1:{tls} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {common}
    }}
    server {{
        listen 127.0.0.1:{tls_http1} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {common}
    }}
    server {{ listen 127.0.0.1:{goaway} http2; keepalive_requests 10; {common} }}
    server {{ listen 127.0.0.1:{plain}; {common} }}
    """
    directory = tmp_path_factory.mktemp("nginx-h2")
    with nginx_with_certificate(directory, blocks) as cert:
        yield NginxServers(h2c=h2c, tls=tls, tls_http1=tls_http1, goaway=goaway, plain=plain,
                           certificate=str(cert), root=web_root)


# ---- an HTTP/2 server that misbehaves on purpose ---------------------------------------

class EdgeServer:
    """An h2c server (the ``h2`` package) on its own thread; the path picks the behaviour.

    ``/hello``: 200 "hello"; ``/reset``: RST_STREAM INTERNAL_ERROR; ``/slow``: never
    answers; ``/close``: closes the connection without answering; ``/goaway``:
    answers, then GOAWAY; ``/refuse-once``: the first time, GOAWAY that leaves the
    stream unprocessed (the client may send it again), then 200; ``/concurrent``:
    200 after 20 ms, counting streams open at once (``max_concurrent``);
    ``/bad-json``: a JSON content type over a body that is not JSON. Every
    connection announces ``SETTINGS_MAX_CONCURRENT_STREAMS`` 2.
    """

    MAX_STREAMS = 2

    def __init__(self):
        self.port = free_port()
        self.connections = 0
        self.refused = 0
        self.open_streams = 0
        self.max_concurrent = 0
        self._loop = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop = None

    def _run(self):
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())

    async def _main(self):
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _serve(self, reader, writer):
        self.connections += 1
        config = h2.config.H2Configuration(client_side=False)
        conn = h2.connection.H2Connection(config=config)
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.MAX_STREAMS})
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        tasks = set()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        path = dict(event.headers)[b":path"].decode()
                        if path == "/close":
                            writer.close()
                            return
                        task = asyncio.ensure_future(self._answer(conn, writer, event.stream_id, path))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                writer.write(conn.data_to_send())
        except (ConnectionError, h2.exceptions.RemoteProtocolError):
            pass
        finally:
            writer.close()

    async def _answer(self, conn, writer, stream_id, path):
        if path == "/slow":
            return
        if path == "/reset":
            conn.reset_stream(stream_id, error_code=2)
        elif path == "/bad-json":
            conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json")])
            conn.send_data(stream_id, b"{not json", end_stream=True)
        elif path == "/refuse-once" and self.refused == 0:
            self.refused += 1
            conn.close_connection(last_stream_id=stream_id - 2 if stream_id > 1 else 0)
        else:
            if path == "/concurrent":
                self.open_streams += 1
                self.max_concurrent = max(self.max_concurrent, self.open_streams)
                await asyncio.sleep(0.02)
                self.open_streams -= 1
            conn.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain")])
            conn.send_data(stream_id, b"hello", end_stream=True)
            if path == "/goaway":
                conn.close_connection(last_stream_id=stream_id)
        writer.write(conn.data_to_send())

    def start(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("h2 edge server did not start")
        return self

    def stop(self):
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def edge():
    server = EdgeServer().start()
    yield server
    server.stop()
