"""Fixtures for the generator host: a fake coordinator, a real agent process, redis probes.

``FakeCoordinator`` is a ZeroMQ ROUTER in the test process that speaks the
wire protocol like the coordinator does (including its one-second heartbeat),
so every test drives a real ``python -m stressgrid.generator`` over real
sockets. Waits are on messages (``expect``, ``wait_until``) or on state outside
them (``wait_for_state``), bounded by a timeout; none loses a message
(``tests.support.mailbox``).
"""
import collections
import contextlib
import errno
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import zmq

from stressgrid import wire
from stressgrid.join_token import ENV as JOIN_TOKEN_ENV
from stressgrid.join_token import JoinToken
from stressgrid.metrics import MetricsAggregate
from tests.conftest import ROOT, example
from tests.support.mailbox import Mailbox
from tests.support.servers import free_port, redis_server, wait_for

GENERATOR_ID = "test-generator"
# The fake coordinator's CURVE keys, and the join token agents get for it.
COORDINATOR_PUBLIC, COORDINATOR_SECRET = zmq.curve_keypair()
JOIN_TOKEN = JoinToken.new(COORDINATOR_PUBLIC)


class FakeCoordinator(Mailbox):
    """A coordinator's ROUTER: records what generators send, heartbeats the registered ones.

    It speaks CurveZMQ with the keys of ``JOIN_TOKEN`` (letting in any CURVE
    client: who may join is the real coordinator's ZAP handler's business).
    """

    def __init__(self, context, port=None):
        super().__init__()
        self.context = context
        self.port = port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.curve_secretkey = COORDINATOR_SECRET
        self.socket.curve_server = True
        # A port just released by a closed ROUTER (a coordinator restart) frees up
        # once ZeroMQ's I/O thread has closed it.
        assert wait_for(self._bind, timeout=5), f"cannot bind {self.url}"
        self.heartbeating = True
        self.registered = set()
        self.identity = None  # the ROUTER identity of the agent that registered last
        self.last_sent_at = None  # when the latest command or heartbeat went out
        self.longest_heartbeat_gap = 0.0  # the longest time between two rounds of heartbeats, s
        self._last_heartbeat = None
        self._next_heartbeat = 0.0

    def _bind(self):
        try:
            self.socket.bind(self.url)
            return True
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False

    # -- sending -------------------------------------------------------------------------

    def send(self, message, identity=None):
        self.send_raw(wire.encode(message), identity)

    def send_raw(self, data, identity=None):
        """Send a command to ``identity`` (default: the agent that registered last).

        Message waits then look only at what arrives after it (``Mailbox.mark``).
        """
        self.socket.send_multipart([identity or self.identity, data])
        self.last_sent_at = self.mark()

    def _pump_heartbeats(self):
        now = time.monotonic()
        if self.heartbeating and self.registered and now >= self._next_heartbeat:
            for identity in self.registered:
                self.socket.send_multipart([identity, wire.encode(wire.Heartbeat(sent_at=time.time()))])
            self.last_sent_at = now
            if self._last_heartbeat is not None:
                self.longest_heartbeat_gap = max(self.longest_heartbeat_gap, now - self._last_heartbeat)
            self._last_heartbeat = now
            self._next_heartbeat = now + 1.0

    # -- receiving (waits: tests.support.mailbox) ---------------------------------------

    def _read(self, timeout):
        """The next ``(identity, message)`` within ``timeout`` s, or ``None``; heartbeats meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump_heartbeats()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait = min(remaining, max(0.0, self._next_heartbeat - time.monotonic())) \
                if self.heartbeating and self.registered else remaining
            if not self.socket.poll(max(1, int(wait * 1000))):
                continue
            identity, data = self.socket.recv_multipart()
            try:
                return identity, wire.decode(data)
            except wire.WireError as exc:
                return identity, exc

    def register(self, timeout=15.0, known=False):
        """Wait for ``Register``, answer ``Registered`` (``known``: as the coordinator answers the
        agent it already holds registering again); returns the Register message."""
        register = self.expect(wire.Register, timeout)
        identity = self.identity = self.matched.identity
        self.send(wire.Registered(coordinator_version="test", known=known), identity)
        self.registered.add(identity)
        self._next_heartbeat = 0.0
        return register

    def telemetry_since(self, moment):
        return [m for at, _, m in self.received if at >= moment and isinstance(m, wire.Telemetry)]

    def close(self):
        self.socket.close(linger=0)


class AgentProcess:
    """A real host agent process, its log in a file."""

    def __init__(self, coordinator_url, log_path, workers=2, grace_s=None, extra_args=(), environment=None,
                 open_files=None):
        self.log_path = log_path
        environment = dict(os.environ, **(environment or {}))
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        environment.pop("GENERATOR_ID", None)
        environment[JOIN_TOKEN_ENV] = JOIN_TOKEN.encode()
        if grace_s is not None:
            environment["STRESSGRID_COORDINATOR_GRACE_S"] = str(grace_s)
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stressgrid.generator", "--workers", str(workers),
             "--coordinator", coordinator_url, "--id", GENERATOR_ID, *extra_args],
            cwd=str(ROOT), env=environment, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
        self.pid = self.process.pid

    def worker_pids(self):
        """Pids of the agent's live worker processes."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        return sorted(child.pid for child in children if _alive(child))

    def log(self):
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def signal(self, signum):
        self.process.send_signal(signum)

    def stop(self):
        workers = self.worker_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in workers:  # never leave load behind, whatever the test did
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


@pytest.fixture
def zmq_context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def coordinator(zmq_context):
    fake = FakeCoordinator(zmq_context)
    yield fake
    fake.close()


@pytest.fixture
def start_agent(tmp_path, request):
    """``start_agent(coordinator_url, workers=2, grace_s=None)`` -> a running ``AgentProcess``."""
    agents = []

    def start(coordinator_url, **options):
        agent = AgentProcess(coordinator_url, tmp_path / f"agent-{len(agents)}.log", **options)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            print(f"--- agent log ({agent.log_path}) ---\n{agent.log()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def agent(coordinator, start_agent):
    """An agent with two workers, registered with ``coordinator``, both workers ready."""
    process = start_agent(coordinator.url)
    coordinator.register()
    return process


class Redis:
    """One connection to a redis-server for reading its counters."""

    def __init__(self, port):
        self.port = port
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._buffer = b""

    def info(self, section):
        """``INFO <section>`` as a dict of strings."""
        body = self._bulk_reply(f"INFO {section}")
        return dict(line.split(":", 1) for line in body.decode().splitlines() if ":" in line)

    def client_addresses(self):
        """``CLIENT LIST``: the source address of every client other than this probe, by count."""
        probe = "%s:%d" % self.socket.getsockname()
        peers = [dict(part.split("=", 1) for part in line.split() if "=" in part)["addr"]
                 for line in self._bulk_reply("CLIENT LIST").decode().splitlines()]
        return collections.Counter(peer.rsplit(":", 1)[0] for peer in peers if peer != probe)

    def _bulk_reply(self, command):
        self.socket.sendall(f"{command}\r\n".encode())
        while b"\r\n" not in self._buffer:
            self._buffer += self.socket.recv(65536)
        header, self._buffer = self._buffer.split(b"\r\n", 1)
        length = int(header[1:])
        while len(self._buffer) < length + 2:
            self._buffer += self.socket.recv(65536)
        body, self._buffer = self._buffer[:length], self._buffer[length + 2:]
        return body

    def device_connections(self):
        """Connected clients other than this probe."""
        return int(self.info("clients")["connected_clients"]) - 1

    def command_calls(self, command):
        stats = self.info("commandstats").get(f"cmdstat_{command}")
        if stats is None:
            return 0
        return int(dict(part.split("=") for part in stats.split(","))["calls"])

    def connections_received(self):
        return int(self.info("stats")["total_connections_received"])

    def close(self):
        self.socket.close()


def redis_cohort(port, size, cohort_id="1", run_id="run-1", address_offset=0, ports=None,
                 iterations=100000, delay_ms=1000):
    """A ``StartCohort`` running ``examples/redis_tcp.py`` against redis at ``port`` (or ``ports``)."""
    addresses = [{"host": "127.0.0.1", "ip": "127.0.0.1", "port": p, "protocol": "tcp"}
                 for p in (ports or [port])]
    return wire.StartCohort(run_id=run_id, cohort_id=cohort_id,
                            blocks=[{"script": example("redis_tcp.py"),
                                     "params": {"iterations": iterations, "delay_ms": delay_ms},
                                     "size": size}],
                            addresses=addresses, opts={"timeout_ms": 5000}, address_offset=address_offset)


def script_cohort(port, script, size, cohort_id="1", run_id="run-1", address_offset=0):
    """A ``StartCohort`` running ``script`` (source text) over TCP to ``port`` on loopback."""
    return wire.StartCohort(run_id=run_id, cohort_id=cohort_id,
                            blocks=[{"script": script, "params": {}, "size": size}],
                            addresses=[{"host": "127.0.0.1", "ip": "127.0.0.1", "port": port, "protocol": "tcp"}],
                            opts={"timeout_ms": 5000}, address_offset=address_offset)


@contextlib.contextmanager
def one_device_on_redis(coordinator, start_agent, tmp_path, script):
    """An agent with one worker running one device of ``script`` against a fresh redis.

    Yields ``(redis, since)``: a ``Redis`` probe and the monotonic time just before the start.
    """
    start_agent(coordinator.url, workers=1)
    coordinator.register()
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        since = time.monotonic()
        coordinator.send(script_cohort(port, script, 1))
        try:
            yield redis, since
        finally:
            redis.close()


def error_lines_since(coordinator, since):
    """The first error lines the agent sent since ``since``, by counter name."""
    return {name: line for message in coordinator.telemetry_since(since) for name, line in message.errors.items()}


def merged(telemetry):
    """One ``MetricsAggregate`` of a list of ``Telemetry`` messages."""
    aggregate = MetricsAggregate()
    for message in telemetry:
        aggregate.add_snapshot(message.metrics)
    return aggregate


def connections_to(pid, ports):
    """Established TCP connections of process ``pid`` to any of ``ports`` on loopback."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return 0
    return sum(1 for c in connections
               if c.raddr and c.raddr.port in ports and c.status == psutil.CONN_ESTABLISHED)


def _alive(process):
    """Whether ``process`` is running: neither a zombie nor gone (a worker may exit meanwhile)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
