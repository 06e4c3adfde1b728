"""How many established TCP connections one generator host holds at once on this machine.

A real host agent (``python -m stressgrid.generator``) with several workers, driven by a
wire-speaking coordinator in this process, connects devices from several loopback source
addresses (``--source-addresses``) to one target: a small epoll echo server in several
processes sharing the port (``SO_REUSEPORT``), each within the per-process open-file limit.
Every device sends a 16-byte heartbeat every 30 s (the first at a random moment of the first
30 s) and times the echo (histogram ``heartbeat_us``). The cohort ramps in steps, each one
started once the target holds every connection of the steps before.

Printed: the connections held, counted by the target and by ``ss``; the client's RSS per
connection (the workers' RSS growth over the connections); the ramp time; the machine's
CPU idle while the connections are held; the heartbeat latency p99 over one heartbeat
period; and a last ``RESULT`` line. Every process it started is stopped on the way out.

    python benchmarks/connections.py --connections 100000
"""
import argparse
import ctypes
import multiprocessing
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import zmq  # noqa: E402

from stressgrid import wire  # noqa: E402
from stressgrid.metrics import MetricsAggregate  # noqa: E402
from tests.generator.conftest import AgentProcess, FakeCoordinator  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

HEARTBEAT = b"0123456789abcdef"
HEARTBEAT_PERIOD_S = 30.0
# The script's loop is bounded: this many heartbeats (past any run of this benchmark).
HEARTBEATS = 40
SCRIPT = """
period_ms = params["period_ms"]
await delay(period_ms // 2, random_ratio=1.0)
for _ in range(params["heartbeats"]):
    start_timing("heartbeat")
    await send(params["heartbeat"])
    echoed = b""
    while len(echoed) < len(params["heartbeat"]):
        echoed += await recv(timeout=10000)
    stop_timing("heartbeat")
    await delay(period_ms)
"""
LISTEN_BACKLOG = 65535


# -- the target -----------------------------------------------------------------------

def echo_server(port, held, ready):
    """One process of the target: accept, echo, and keep ``held`` = its open connections."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(LISTEN_BACKLOG)
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    connections = {}
    ready.set()
    while True:
        for fd, _ in poller.poll(1.0):
            if fd == listener.fileno():
                while True:
                    try:
                        connection, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # out of descriptors: leave it in the backlog
                        break
                    connection.setblocking(False)
                    connections[connection.fileno()] = connection
                    poller.register(connection.fileno(), select.EPOLLIN)
                continue
            connection = connections[fd]
            try:
                data = connection.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                try:
                    connection.send(data)
                    continue
                except OSError:
                    pass
            poller.unregister(fd)
            del connections[fd]
            connection.close()
        held.value = len(connections)


class Target:
    """``processes`` echo-server processes on one port."""

    def __init__(self, processes):
        self.port = free_port()
        context = multiprocessing.get_context("fork")
        self.counts = [context.Value(ctypes.c_long, 0, lock=False) for _ in range(processes)]
        self.processes = []
        for held in self.counts:
            ready = context.Event()
            process = context.Process(target=echo_server, args=(self.port, held, ready), daemon=True)
            process.start()
            self.processes.append(process)
            if not ready.wait(10):
                raise SystemExit("an echo-server process did not start")

    def held(self):
        return sum(count.value for count in self.counts)

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


def established_by_ss(port):
    """Connections established to ``port``, counted by ``ss`` at the target's side."""
    output = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                            capture_output=True, text=True, check=True).stdout
    return output.count("\n")


# -- the generator ----------------------------------------------------------------------

def cohort(port, size, index, period_s):
    params = {"period_ms": int(period_s * 1000), "heartbeats": HEARTBEATS, "heartbeat": HEARTBEAT.decode()}
    return wire.StartCohort(run_id="connections", cohort_id=str(index),
                            blocks=[{"script": SCRIPT, "params": params, "size": size}],
                            addresses=[{"host": "127.0.0.1", "ip": "127.0.0.1", "port": port, "protocol": "tcp"}],
                            opts={"timeout_ms": 20_000}, address_offset=0)


def workers_rss(agent):
    return sum(psutil.Process(pid).memory_info().rss for pid in agent.worker_pids())


def wait_until(coordinator, condition, timeout):
    """Receive messages (the agent sends several a second) until ``condition()`` or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        coordinator.receive(min(0.5, max(0.01, deadline - time.monotonic())))
    return True


def run(args):
    pool = [f"127.0.0.{2 + index}" for index in range(args.source_addresses)]
    target = Target(args.target_processes)
    context = zmq.Context()
    coordinator = FakeCoordinator(context)
    log_dir = tempfile.mkdtemp(prefix="connections-")
    agent = AgentProcess(coordinator.url, os.path.join(log_dir, "agent.log"), workers=args.workers,
                         extra_args=["--source-addresses", ",".join(pool), "--log-level", "WARNING"])
    try:
        register = coordinator.register(timeout=30)
        print(f"generator: {args.workers} workers, {register.source_addresses} source addresses "
              f"({pool[0]}-{pool[-1]}), capacity {register.capacity}; target: {args.target_processes} "
              f"echo processes on 127.0.0.1:{target.port}")
        if register.capacity < args.connections:
            raise SystemExit(f"the generator holds at most {register.capacity} devices")
        wait_until(coordinator, lambda: len(agent.worker_pids()) == args.workers, 30)
        rss_before = workers_rss(agent)
        steps = max(1, -(-args.connections // args.step))
        started = time.monotonic()
        asked = 0
        for index in range(steps):
            size = min(args.step, args.connections - asked)
            coordinator.send(cohort(target.port, size, index, args.heartbeat_period))
            asked += size
            if not wait_until(coordinator, lambda: target.held() >= asked, args.step_timeout):
                print(f"step {index}: the target holds {target.held()} of {asked} after "
                      f"{args.step_timeout:.0f} s; stopping the ramp")
                break
        ramp_s = time.monotonic() - started
        held_target = target.held()
        print(f"ramp: {held_target} connections in {ramp_s:.1f} s")
        # Hold: one heartbeat period after every device has sent its first.
        hold_from = time.monotonic()
        wait_until(coordinator, lambda: False, args.heartbeat_period / 2 + 2)
        psutil.cpu_times_percent(interval=None)  # from here: the measured period
        measured_from = time.monotonic()
        wait_until(coordinator, lambda: False, args.heartbeat_period)
        cpu = psutil.cpu_times_percent(interval=None)
        held_target = target.held()
        held_ss = established_by_ss(target.port)
        rss_per_connection = (workers_rss(agent) - rss_before) / max(1, held_target)
        metrics = MetricsAggregate()
        for message in coordinator.telemetry_since(hold_from):
            metrics.add_snapshot(message.metrics)
        period = MetricsAggregate()
        for message in coordinator.telemetry_since(measured_from):
            period.add_snapshot(message.metrics)
        beats = period.histogram("heartbeat_us")
        p99_ms = beats.summary()["pc99"] / 1000 if beats.total_count else None
        errors = {name: value for name, value in metrics.counters.items() if name.endswith("_error_count")}
        print(f"held: {held_target} by the target, {held_ss} by ss")
        print(f"client RSS: {rss_per_connection / 1024:.2f} KB per connection "
              f"({(workers_rss(agent)) / 2**20:.0f} MiB in {args.workers} workers)")
        print(f"CPU idle while holding: {cpu.idle:.1f} %")
        print(f"heartbeats over {args.heartbeat_period:g} s: {beats.total_count}, "
              f"p99 {p99_ms if p99_ms is None else round(p99_ms, 2)} ms; errors {errors or 'none'}")
        fields = {"connections_target": held_target, "connections_ss": held_ss, "ramp_s": f"{ramp_s:.1f}",
                  "client_kb_per_connection": f"{rss_per_connection / 1024:.2f}",
                  "cpu_idle_percent": f"{cpu.idle:.1f}", "heartbeats": beats.total_count,
                  "heartbeat_p99_ms": None if p99_ms is None else f"{p99_ms:.2f}",
                  "workers": args.workers, "source_addresses": len(pool)}
        print(" ".join(["RESULT", *(f"{name}={value}" for name, value in fields.items() if value is not None)]))
    finally:
        coordinator.send(wire.Abort(run_id="connections"))
        wait_until(coordinator, lambda: False, 2)
        agent.stop()
        coordinator.close()
        context.destroy(linger=0)
        target.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=7, help="generator workers (each under its file limit)")
    parser.add_argument("--source-addresses", type=int, default=4, help="loopback source addresses from 127.0.0.2")
    parser.add_argument("--target-processes", type=int, default=7, help="echo-server processes")
    parser.add_argument("--step", type=int, default=5_000, help="devices started per ramp step")
    parser.add_argument("--heartbeat-period", type=float, default=HEARTBEAT_PERIOD_S,
                        help="seconds between a device's heartbeats (and the measured period)")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds a ramp step may take")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
