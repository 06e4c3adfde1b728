"""WebSocket servers for the end-to-end tests, built on the ``websockets`` library.

Each runs on its own event loop in a background thread, on a free loopback
port, and records what it saw (close codes from clients, events) so tests can
assert on the server side too. ``ScriptServer`` routes by path to behaviours the
tests need; ``PusherServer`` speaks enough of the Pusher channels protocol for
the Pusher example.
"""
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import threading

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from tests.support.servers import free_port


class _ThreadedServer:
    """Runs ``self.handler`` under ``websockets.serve`` in a thread."""

    def __init__(self, **serve_options):
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.serve_options = {"compression": None, "ping_interval": None, **serve_options}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.closed = threading.Condition(self.lock)
        self.closes = []
        self.opened = 0
        self.stop_event = None
        self.failure = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.failure = exc
            self.ready.set()

    async def _main(self):
        self.stop_event = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", self.port, **self.serve_options):
            self.ready.set()
            await self.stop_event.wait()

    async def _handle(self, connection):
        with self.lock:
            self.opened += 1
        try:
            await self.handler(connection)
        except ConnectionClosed:
            pass
        finally:
            await connection.wait_closed()
            with self.closed:
                self.closes.append((connection.request.path if connection.request else None,
                                    connection.close_code))
                self.closed.notify_all()

    def start(self):
        self.thread.start()
        if not self.ready.wait(10) or self.failure is not None:
            raise RuntimeError(f"WebSocket test server did not start: {self.failure!r}")
        return self

    def stop(self):
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)

    def wait_for_close(self, path, timeout=10.0):
        """Block until a connection to ``path`` has closed; returns its close code."""
        def code():
            return next((code for seen, code in self.closes if seen == path), None)
        with self.closed:
            if not self.closed.wait_for(lambda: code() is not None, timeout):
                raise AssertionError(f"no connection to {path} closed within {timeout} s")
            return code()

    def wait_all_closed(self, timeout=10.0):
        """Block until every connection the server accepted has closed and been handled.

        Once the client side stops, the server may still be reading the last
        frames; its counters are final only after this returns.
        """
        with self.closed:
            if not self.closed.wait_for(lambda: len(self.closes) == self.opened, timeout):
                raise AssertionError(
                    f"{self.opened - len(self.closes)} connections still open after {timeout} s")


def _raw_text_frame(payload):
    """An unmasked text frame, written around the library (for invalid payloads)."""
    assert len(payload) < 126
    return bytes([0x81, len(payload)]) + payload


class ScriptServer(_ThreadedServer):
    """Behaviour by path:

    - ``/echo``: every message back, same type.
    - ``/fragments``: a text message in fragments, then a binary one, then echo.
    - ``/ping``: a ping, then the text ``"pong seen"`` once the client answered it.
    - ``/close/<code>``: closes at once with ``code`` and reason ``"bye"``.
    - ``/large/<n>``: one binary message of ``n`` bytes, then echo.
    - ``/bad-utf8``: a text frame that is not UTF-8.
    - ``/flood/<n>``: ``n`` text messages ``"0"``..``"n-1"`` then ``"done"``.
    - ``/forbidden``: refuses the upgrade with a 403.

    The subprotocol ``chat`` is chosen when a client offers it.
    """

    def __init__(self, **serve_options):
        super().__init__(select_subprotocol=self._select_subprotocol, max_size=64 * 1024 * 1024,
                         process_request=self._process_request, **serve_options)

    @staticmethod
    def _select_subprotocol(connection, offered):
        return "chat" if "chat" in offered else None

    @staticmethod
    def _process_request(connection, request):
        if request.path.startswith("/forbidden"):
            return connection.respond(403, "no websockets here\n")
        return None

    async def handler(self, connection):
        path = connection.request.path
        if path.startswith("/fragments"):
            await connection.send(iter(["frag", "men", "ted ☃"]))
            await connection.send(iter([b"\x00\x01", b"\x02"]))
        elif path.startswith("/ping"):
            waiter = await connection.ping(b"hello?")
            await waiter
            await connection.send("pong seen")
        elif path.startswith("/close/"):
            await connection.close(int(path.rsplit("/", 1)[1]), "bye")
            return
        elif path.startswith("/large/"):
            size = int(path.rsplit("/", 1)[1])
            await connection.send(bytes(range(256)) * (size // 256) + b"\x07" * (size % 256))
        elif path.startswith("/bad-utf8"):
            connection.transport.write(_raw_text_frame(b"caf\xc3("))
            await connection.wait_closed()
            return
        elif path.startswith("/flood/"):
            for i in range(int(path.rsplit("/", 1)[1])):
                await connection.send(str(i))
            await connection.send("done")
        async for message in connection:
            await connection.send(message)


class PusherServer(_ThreadedServer):
    """The parts of the Pusher channels protocol the Pusher example uses.

    ``/app/<key>``: sends ``pusher:connection_established`` with a socket id;
    ``pusher:subscribe`` to a ``private-`` channel needs ``auth`` =
    ``<key>:<hex HMAC-SHA256(secret, "<socket_id>:<channel>")>``; a client event
    (``client-*``) on a subscribed private channel goes to every other
    subscriber of that channel.
    """

    def __init__(self, app_key="app_key", secret="secret"):
        super().__init__()
        self.app_key = app_key
        self.secret = secret.encode()
        self.channels = {}
        self.ids = itertools.count(1)
        self.stats = {"connections": 0, "subscriptions": 0, "auth_failures": 0,
                      "client_events": 0, "deliveries": 0, "errors": 0}

    def _count(self, name, n=1):
        with self.lock:
            self.stats[name] += n

    async def _send_error(self, connection, code, message):
        self._count("errors")
        await connection.send(json.dumps({"event": "pusher:error",
                                          "data": {"code": code, "message": message}}))

    async def handler(self, connection):
        request = connection.request
        if not request.path.startswith(f"/app/{self.app_key}"):
            await connection.close(4001, "application does not exist")
            return
        socket_id = f"{next(self.ids)}.{next(self.ids)}"
        subscribed = set()
        self._count("connections")
        await connection.send(json.dumps({
            "event": "pusher:connection_established",
            "data": json.dumps({"socket_id": socket_id, "activity_timeout": 120})}))
        try:
            async for raw in connection:
                message = json.loads(raw)
                event = message.get("event", "")
                if event == "pusher:subscribe":
                    data = message.get("data") or {}
                    channel = data.get("channel", "")
                    expected = hmac.new(self.secret, f"{socket_id}:{channel}".encode(),
                                        hashlib.sha256).hexdigest()
                    if not channel.startswith("private-") or \
                            data.get("auth") != f"{self.app_key}:{expected}":
                        self._count("auth_failures")
                        await self._send_error(connection, 4009, "invalid signature")
                        continue
                    self.channels.setdefault(channel, set()).add(connection)
                    subscribed.add(channel)
                    self._count("subscriptions")
                    await connection.send(json.dumps({
                        "event": "pusher_internal:subscription_succeeded",
                        "channel": channel, "data": "{}"}))
                elif event.startswith("client-"):
                    channel = message.get("channel", "")
                    if channel not in subscribed:
                        await self._send_error(connection, 4301, "not subscribed")
                        continue
                    self._count("client_events")
                    outgoing = json.dumps({"event": event, "channel": channel,
                                           "data": message.get("data")})
                    for other in list(self.channels.get(channel, ())):
                        if other is not connection:
                            with contextlib.suppress(ConnectionClosed):
                                await other.send(outgoing)
                                self._count("deliveries")
                elif event == "pusher:ping":
                    await connection.send(json.dumps({"event": "pusher:pong", "data": {}}))
        finally:
            for channel in subscribed:
                self.channels.get(channel, set()).discard(connection)


@contextlib.contextmanager
def running(server):
    server.start()
    try:
        yield server
    finally:
        server.stop()
