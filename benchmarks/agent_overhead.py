"""CPU used by the generator host agent itself while workers report metrics.

    python benchmarks/agent_overhead.py [--workers 2] [--keys 50] [--seconds 30]

Starts a real host agent (``python -m stressgrid.generator``) against a
minimal coordinator in this process (a ZeroMQ ROUTER on loopback that answers
``Register`` and heartbeats every second), runs a cohort whose devices touch
``--keys`` metric keys (half counters, half timings) on every worker, and
measures the agent process's CPU time (user + system, its workers excluded)
over ``--seconds``. Goal: at most 2% of one core with 2 workers x 50 keys.

The helpers here (``BenchCoordinator``, ``agent_running``) are shared with
``worker_scaling.py``.
"""
import argparse
import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import zmq  # noqa: E402

from stressgrid import wire  # noqa: E402
from stressgrid.metrics import MetricsAggregate  # noqa: E402
from stressgrid.join_token import ENV as JOIN_TOKEN_ENV  # noqa: E402
from tests.generator.conftest import COORDINATOR_SECRET, JOIN_TOKEN  # noqa: E402
from tests.support.servers import stop_process  # noqa: E402

GENERATOR_ID = "bench-generator"


class BenchCoordinator:
    """Just enough coordinator: registers generators, heartbeats, collects telemetry. It speaks
    CurveZMQ with the keys of the tests' join token (``JOIN_TOKEN``), which ``agent_running`` gives."""

    def __init__(self):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.curve_secretkey = COORDINATOR_SECRET
        self.socket.curve_server = True
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{port}"
        self.identity = None
        self.telemetry = []  # (monotonic time, Telemetry)
        self._next_heartbeat = 0.0

    def send(self, message):
        self.socket.send_multipart([self.identity, wire.encode(message)])

    def serve(self, seconds, until=None):
        """Answer and collect for ``seconds`` (or until ``until()`` holds); heartbeats go out each second."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = time.monotonic()
            if self.identity is not None and now >= self._next_heartbeat:
                self.send(wire.Heartbeat(sent_at=time.time()))
                self._next_heartbeat = now + 1.0
            wait = min(deadline, self._next_heartbeat if self.identity else deadline) - now
            if self.socket.poll(max(1, int(wait * 1000))):
                identity, data = self.socket.recv_multipart()
                message = wire.decode(data)
                if isinstance(message, wire.Register):
                    self.identity = identity
                    self.send(wire.Registered(coordinator_version="bench"))
                elif isinstance(message, wire.Telemetry):
                    self.telemetry.append((time.monotonic(), message))
                elif isinstance(message, (wire.Error, wire.Event)):
                    print(f"generator says: {message}", file=sys.stderr)
            if until is not None and until():
                return True
        return False

    def wait_registered(self, timeout=20):
        if not self.serve(timeout, until=lambda: self.identity is not None):
            raise RuntimeError("the agent did not register")

    def wait_active(self, devices, timeout=30):
        if not self.serve(timeout, until=lambda: bool(self.telemetry)
                          and self.telemetry[-1][1].active_device_number == devices):
            raise RuntimeError(f"{devices} devices did not start")

    def merged_since(self, moment):
        aggregate = MetricsAggregate()
        messages = [m for at, m in self.telemetry if at >= moment]
        for message in messages:
            aggregate.add_snapshot(message.metrics)
        return aggregate, messages

    def close(self):
        self.socket.close(linger=0)
        self.context.term()


@contextlib.contextmanager
def agent_running(coordinator, workers):
    """A host agent process with ``workers`` workers, stopped by SIGTERM at the end."""
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **{JOIN_TOKEN_ENV: JOIN_TOKEN.encode()})
    process = subprocess.Popen(
        [sys.executable, "-m", "stressgrid.generator", "--workers", str(workers),
         "--coordinator", coordinator.url, "--id", GENERATOR_ID, "--log-level", "ERROR"],
        cwd=str(ROOT), env=environment)
    try:
        yield psutil.Process(process.pid)
    finally:
        stop_process(process, 20)


def udp_cohort(port, script, devices, cohort_id="1"):
    return wire.StartCohort(run_id="bench", cohort_id=cohort_id,
                            blocks=[{"script": script, "params": {}, "size": devices}],
                            addresses=[{"host": "127.0.0.1", "port": port, "protocol": "udp"}],
                            opts={}, address_offset=0)


@contextlib.contextmanager
def udp_sink():
    """A bound UDP socket nobody reads: datagrams sent to it cost the sender only."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield sink.getsockname()[1]


def keys_script(keys):
    """A device script touching ``keys`` metric keys (counters and timings) every 100 ms."""
    counters = keys // 2
    timings = keys - counters
    return (f"for i in range({counters}):\n"
            f"    inc_counter(f'key{{i}}')\n"
            f"for i in range({timings}):\n"
            f"    start_timing(f'step{{i}}')\n"
            f"    stop_timing(f'step{{i}}')\n"
            f"await delay(100)\n")


def cpu_seconds(process):
    times = process.cpu_times()
    return times.user + times.system


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keys", type=int, default=50, help="metric keys per worker")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    coordinator = BenchCoordinator()
    try:
        with udp_sink() as port, agent_running(coordinator, args.workers) as agent:
            coordinator.wait_registered()
            coordinator.send(udp_cohort(port, keys_script(args.keys), args.devices))
            coordinator.wait_active(args.devices)
            coordinator.serve(3.0)  # settle: every key exists, telemetry flows
            workers = agent.children()
            started = time.monotonic()
            agent_cpu = cpu_seconds(agent)
            worker_cpu = sum(cpu_seconds(worker) for worker in workers)
            coordinator.serve(args.seconds)
            elapsed = time.monotonic() - started
            agent_cpu = cpu_seconds(agent) - agent_cpu
            worker_cpu = sum(cpu_seconds(worker) for worker in workers) - worker_cpu
            merged, messages = coordinator.merged_since(started)
    finally:
        coordinator.close()
    device_keys = [name for name in list(merged.counters) + list(merged.histograms)
                   if name.startswith(("key", "step"))]
    agent_percent = 100.0 * agent_cpu / elapsed
    print(f"agent CPU {agent_cpu:.3f} s over {elapsed:.1f} s; workers {worker_cpu:.2f} s; "
          f"{len(messages)} telemetry messages with {len(device_keys)} device keys")
    print(f"RESULT agent_cpu_percent_of_core={agent_percent:.2f} workers={args.workers} "
          f"keys_per_worker={args.keys} merged_device_keys={len(device_keys)} seconds={elapsed:.0f} "
          f"telemetry_messages={len(messages)} goal_met={agent_percent <= 2.0}", flush=True)


if __name__ == "__main__":
    main()
