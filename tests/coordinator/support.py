"""Helpers for coordinator tests: a coordinator process, an HTTP client, a scripted generator.

``coordinator_process`` runs ``python -m coordinator_app`` exactly as a user
would. ``FakeGenerator`` is a ZeroMQ DEALER speaking the real wire codec,
so tests can control every message a generator sends and see every message
the coordinator sends back.
"""
import contextlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import zmq

from stressgrid import __version__, wire
from stressgrid._core.metrics import Recorder
from stressgrid.generator.coordinator_link import secure
from stressgrid.generator.host_metrics import TCP_RETRANSMITS
from stressgrid.join_token import ENV as JOIN_TOKEN_ENV
from stressgrid.join_token import read_token_file
from tests.support.servers import free_port, wait_for, wait_for_port

ROOT = pathlib.Path(__file__).resolve().parents[2]


def device_errors(summary):
    """A run summary's errors less the host-wide TCP retransmit count, a warning that any
    other traffic on a loaded machine can raise (it never fails a run either)."""
    return {key: value for key, value in summary["errors"].items() if key != TCP_RETRANSMITS}


def wait_until(predicate, timeout=15.0, interval=0.02, message="condition"):
    """Poll ``predicate`` until it returns a true value (returned), or fail."""
    value = wait_for(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout}s waiting for {message}")
    return value


class Api:
    """A tiny JSON client for the coordinator's HTTP API."""

    def __init__(self, base_url, token=None):
        self.base_url = base_url
        self.token = token

    def request(self, method, path, body=None, token=None, raw_body=None, headers=None, timeout=30):
        """``(status, decoded JSON or bytes, headers)``; never raises on HTTP errors."""
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        token = self.token if token is None else token
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload, response_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, payload, response_headers = exc.code, exc.read(), exc.headers
        if response_headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(payload)
        return status, payload, response_headers

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def state(self):
        status, body, _ = self.get("/api/state")
        assert status == 200, body
        return body

    def wait_run_finished(self, run_id, timeout=60):
        """Block until run ``run_id`` is done or aborted; returns its detail."""
        def finished():
            status, body, _ = self.get(f"/api/runs/{run_id}")
            assert status == 200, body
            return body if body["state"] in ("done", "aborted") else None
        return wait_until(finished, timeout, interval=0.1, message=f"run {run_id} to finish")

    def wait_generators(self, count, timeout=30):
        return wait_until(lambda: len(self.state()["generators"]) == count and self.state(),
                          timeout, message=f"{count} registered generators")


class CoordinatorProcess:
    """A running ``python -m coordinator_app`` and how to reach it."""

    def __init__(self, process, management_port, generator_port, data_dir, token, stderr_path):
        self.process = process
        self.stderr_path = stderr_path
        self.management_port = management_port
        self.generator_port = generator_port
        self.data_dir = data_dir
        self.api = Api(f"http://127.0.0.1:{management_port}", token)
        self.generator_url = f"tcp://127.0.0.1:{generator_port}"

    def stop(self, timeout=30):
        """SIGTERM and wait; returns stderr text."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.stderr()

    def stderr(self):
        return pathlib.Path(self.stderr_path).read_text()

    @property
    def join_token_path(self):
        """Where the coordinator wrote the fleet's join token (before it opened its ports)."""
        return pathlib.Path(self.data_dir) / "join-token"

    @property
    def join_token(self):
        """The fleet's ``JoinToken``."""
        return read_token_file(self.join_token_path)


def coordinator_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "STRESSGRID_", "MANAGEMENT_PORT", "GENERATORS_PORT"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env.update(extra or {})
    return env


@contextlib.contextmanager
def coordinator_process(tmp_path, token=None, args=(), env=None, data_dir=None,
                        management_port=None, generator_port=None, generator_timeout=2.0):
    """Run a coordinator on free loopback ports until the block ends."""
    management_port = management_port or free_port()
    generator_port = generator_port or free_port()
    data_dir = data_dir or (tmp_path / "data")
    extra = dict(env or {})
    if token:
        extra["STRESSGRID_TOKEN"] = token
    stderr_path = tmp_path / f"coordinator-{management_port}.log"
    command = [sys.executable, "-m", "coordinator_app", "--management-port", str(management_port),
               "--generator-port", str(generator_port), "--data-dir", str(data_dir),
               "--generator-timeout", str(generator_timeout), *args]
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=coordinator_env(extra),
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    coordinator = CoordinatorProcess(process, management_port, generator_port, data_dir, token,
                                     stderr_path)
    try:
        wait_for_port(management_port, process=process)
        yield coordinator
    finally:
        coordinator.stop()


class FakeGenerator:
    """A generator host agent played by the test: a DEALER speaking the wire codec.

    A background thread heartbeats (while ``alive``), records every message
    received and, while ``answers_end``, answers an ``EndRun`` with
    ``RunStopped`` (after whatever the test sent before); it answers nothing
    else by itself. ``wait_for`` waits on the messages received.
    """

    def __init__(self, coordinator, generator_id, workers=1, heartbeat_s=0.5, register=True, token=None,
                 identity=None, answers_end=True):
        """Connect to ``coordinator`` (a ``CoordinatorProcess``) with its join token, or ``token``;
        ``identity``: the ROUTER identity (default the generator id)."""
        self.answers_end = answers_end
        self.generator_id = generator_id
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, (identity or generator_id).encode())
        self.socket.setsockopt(zmq.LINGER, 0)
        secure(self.socket, token or coordinator.join_token)
        self.socket.connect(coordinator.generator_url)
        self.workers = workers
        self.heartbeat_s = heartbeat_s
        self.alive = False  # heartbeats start with register()
        self.received = []
        self._lock = threading.Lock()
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if register:
            self.register()

    def send(self, message):
        self.send_raw(wire.encode(message))

    def send_raw(self, *frames):
        """Queue ``frames``; dropped when the socket has no connection (one refused at the handshake)."""
        with self._lock:
            try:
                self.socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass

    def register(self, wait=True):
        self.send(wire.Register(generator_id=self.generator_id, version=__version__, cores=1,
                                workers=self.workers, capacity=1000))
        self.alive = True
        if wait:
            self.wait_for(wire.Registered)

    def telemetry(self, snapshot=None, active=0, errors=None, run_id=None):
        """Send one second of metrics, of ``run_id`` (default: the run of the latest cohort received)."""
        if run_id is None:
            starts = self.messages(wire.StartCohort)
            run_id = starts[-1].run_id if starts else ""
        self.send(wire.Telemetry(run_id=run_id,
                                 metrics=snapshot or {"histograms": {}, "counters": {}, "gauges": {}},
                                 active_device_number=active, errors=errors or {}))

    def _run(self):
        next_heartbeat = time.monotonic()
        while not self._closed:
            with self._lock:
                events = self.socket.poll(20)
                messages = []
                if events:
                    while True:
                        try:
                            messages.append(self.socket.recv(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                if self.alive and time.monotonic() >= next_heartbeat:
                    try:
                        self.socket.send(wire.encode(wire.Heartbeat(sent_at=time.time())), zmq.NOBLOCK)
                    except zmq.Again:
                        pass  # no connection
                    next_heartbeat = time.monotonic() + self.heartbeat_s
            if messages:
                with self._condition:
                    for payload in messages:
                        try:
                            message = wire.decode(payload)
                        except wire.WireError as exc:
                            message = exc
                        self.received.append(message)
                        if isinstance(message, wire.EndRun) and self.answers_end and self.alive:
                            self.send(wire.RunStopped(run_id=message.run_id))
                    self._condition.notify_all()

    def messages(self, kind):
        with self._condition:
            return [m for m in self.received if isinstance(m, kind)]

    def wait_for(self, kind, predicate=lambda m: True, count=1, timeout=15.0):
        """Wait until ``count`` messages of ``kind`` matching ``predicate`` arrived; returns them."""
        def found():
            return [m for m in self.received if isinstance(m, kind) and predicate(m)]
        with self._condition:
            if not self._condition.wait_for(lambda: len(found()) >= count, timeout):
                raise AssertionError(f"{self.generator_id}: no {count} x {kind.__name__} in {timeout}s; "
                                     f"got {[type(m).__name__ for m in self.received][-20:]}")
            return found()

    def close(self):
        self._closed = True
        self._thread.join(5)
        self.socket.close(0)


def reconnect(coordinator, generator_id, timeout=15.0):
    """A ``FakeGenerator`` registered as ``generator_id`` on a new connection with that identity.

    Until the coordinator's ROUTER has seen the old connection with the identity close, it
    ignores a new one that claims it (no ROUTER_HANDOVER, on purpose), and what is sent on
    that one is lost: each refused try is closed and another made on a new connection.
    """
    deadline = time.monotonic() + timeout
    while True:
        generator = FakeGenerator(coordinator, generator_id, register=False)
        generator.register(wait=False)
        try:
            generator.wait_for(wire.Registered, timeout=1.0)
            return generator
        except AssertionError:
            generator.close()
            if time.monotonic() > deadline:
                raise


def snapshot(histograms=None, counters=None, gauges=None):
    """A wire metrics snapshot: ``histograms`` maps name -> values (us)."""
    recorder = Recorder()
    for name, values in (histograms or {}).items():
        for value in values:
            recorder.record(name, value)
    for name, value in (counters or {}).items():
        recorder.inc(name, value)
    for name, value in (gauges or {}).items():
        recorder.set_gauge(name, value)
    return recorder.snapshot()


class GeneratorProcess:
    """A real ``python -m stressgrid.generator`` host agent."""

    def __init__(self, coordinator, generator_id, log_path, workers=1, prefix=()):
        """Start one for ``coordinator`` (a ``CoordinatorProcess``), with its join token."""
        self.generator_id = generator_id
        self.log_path = log_path
        env = coordinator_env({"COORDINATOR_URL": coordinator.generator_url, "GENERATOR_ID": generator_id,
                               JOIN_TOKEN_ENV: coordinator.join_token.encode()})
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "stressgrid.generator", "--workers", str(workers)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)

    def log(self):
        return pathlib.Path(self.log_path).read_text()

    def stop(self, timeout=20):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self):
        self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def generator_processes(coordinator, tmp_path, ids, workers=1, prefix=lambda generator_id: ()):
    """Start one real generator per id; stop them all when the block ends."""
    started = []
    try:
        for generator_id in ids:
            started.append(GeneratorProcess(coordinator, generator_id,
                                            tmp_path / f"generator-{generator_id}.log", workers,
                                            prefix(generator_id)))
        yield started
    finally:
        for generator in started:
            generator.stop()


def redis_bulk(port, command, host="127.0.0.1"):
    """The text of a redis command's bulk-string answer (INFO, CLIENT LIST), over a plain socket."""
    import socket
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(command.encode() + b"\r\n")
        data = b""
        while True:
            data += sock.recv(65536)
            header, _, rest = data.partition(b"\r\n")
            if header.startswith(b"$") and len(rest) >= int(header[1:]):
                return rest.decode()


def redis_info(port, section="clients", host="127.0.0.1"):
    """A redis INFO section as a dict."""
    lines = redis_bulk(port, f"INFO {section}", host).splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)
