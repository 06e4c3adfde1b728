"""How many established connections one generator host holds at once on this machine.

A real host agent (``python -m stressgrid.generator``) with many workers, driven by a
wire-speaking coordinator in this process, connects devices from many loopback source
addresses (``--source-addresses``) to one target. The open-file limit is 20,000 per process
here and cannot be raised, and on loopback every connection costs two descriptors (the
client's and the target's), so by default both sides get one process per 19,000
connections and one source address per 20,000 (a third of one address's ephemeral ports).
Every device sends a 16-byte heartbeat every 30 s (the first at a random moment of the
first 30 s) and times its way back (histogram ``heartbeat_us``). The cohort ramps in steps,
each one started once the target holds every connection of the steps before.

``--protocol tcp`` (the default): raw TCP devices against a small epoll echo server in many
processes sharing the port (``SO_REUSEPORT``); the target counts the connections it holds.
``--protocol mqtt``: MQTT 5 devices (connected with a keep-alive of 60 s, subscribed to a
topic of their own, the heartbeat a QoS 0 publish on it that the broker delivers back)
against mosquitto brokers, one port each (devices dealt round-robin over them); the target's
count is the brokers' own (``$SYS/broker/clients/connected``, which they republish every
second). Needs ``mosquitto`` (Debian package).

For the run it widens the local port range to 1024-65535, raises the kernel's TCP memory
limits (``tcp_mem``) where they are short of two pages a connection and, if connection
tracking is in use, its table's size; all are put back as they were on the way out. It
refuses to start when the machine's available memory is short of its estimate.

Printed at every ``--report-every`` connections (the ramp pauses for a measured window):
the connections held, counted by the target and by ``ss``; the client's RSS per
connection (the workers' RSS growth over the connections, from after a warm-up device in
each worker); the kernel's socket memory
(``/proc/net/sockstat``); the ramp rate; the machine's CPU idle, the heartbeat
latency (p50, p99, max) and the workers' loop lag (p99, max) over the window; and at
the end, after an abort of the run (its duration until the target holds no connection, and
the workers the agent killed for not confirming the stop within its timeout), a ``RESULT``
line. The target's processes run at a real-time priority (round robin),
the agent and this process (the coordinator) at nice -10, the workers at the normal one.
Every process it started is stopped on the way out, also on Ctrl-C or SIGTERM.

    python benchmarks/connections.py --connections 100000
    python benchmarks/connections.py --connections 1000000
    python benchmarks/connections.py --protocol mqtt --connections 100000
"""
import argparse
import contextlib
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
from stressgrid.plan.constants import LOOP_LAG_HISTOGRAM  # noqa: E402
from tests.generator.conftest import AgentProcess, FakeCoordinator  # noqa: E402
from tests.mqtt.broker import mosquitto  # noqa: E402
from tests.support.servers import free_port, require, stop_process  # noqa: E402

HEARTBEAT = b"0123456789abcdef"
HEARTBEAT_PERIOD_S = 30.0
STOP_TIMEOUT_S = 300   # how long the abort at the end may take to close every connection
# The script's loop is bounded: a device beats for this long at most (past any run of this benchmark).
BEATING_S = 3600
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
MQTT_SCRIPT = """
period_ms = params["period_ms"]
topic = "beat/" + device_id
await mqtt_connect(keepalive=60)
await subscribe(topic)
await delay(period_ms // 2, random_ratio=1.0)
for _ in range(params["heartbeats"]):
    start_timing("heartbeat")
    await publish(topic, params["heartbeat"])
    await mqtt_receive(timeout=10000)
    stop_timing("heartbeat")
    await delay(period_ms)
"""
LISTEN_BACKLOG = 65535
TARGET_RT_PRIORITY = 1  # the target processes' real-time priority (the lowest)


# -- the target -----------------------------------------------------------------------

def real_time(pid):
    """Real-time round robin for the target's process ``pid`` (0: this one), where the user may set it.

    In a fleet the target is a machine of its own. Here it shares two cores with the 50-odd
    workers whose load it answers: at the normal priority, and at nice -5 too, a woken echo
    process waited for a core for up to 0.3-0.6 s at 1,000,000 (perf sched), and the heartbeat
    latency measured that wait, not the generator. Real-time round robin (the kernel keeps 5%
    of each second for the others) answers at once.
    """
    with contextlib.suppress(OSError):
        os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(TARGET_RT_PRIORITY))


def echo_server(port, held, ready):
    """One process of the target: accept, echo, and keep ``held`` = its open connections."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    real_time(0)
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


class EchoTarget:
    """``processes`` echo-server processes on one port."""

    protocol = "tcp"
    script = SCRIPT
    kind = "echo processes"
    watchers = 0  # connections of its own to its ports

    def __init__(self, processes):
        self.port = free_port()
        self.ports = [self.port]
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


class MosquittoTarget:
    """``brokers`` mosquitto processes, a port each; ``held`` is what they count themselves.

    Each broker's ``$SYS/broker/clients/connected`` is followed by a ``mosquitto_sub`` of its
    own (a client too, so one less is held) into a file whose last line is the latest count.
    """

    protocol = "mqtt"
    script = MQTT_SCRIPT
    kind = "mosquitto brokers"

    def __init__(self, brokers):
        self.stack = contextlib.ExitStack()
        self.ports = []
        self.readings = []
        try:
            directory = pathlib.Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="mosquitto-")))
            for index in range(brokers):
                home = directory / str(index)
                home.mkdir()
                broker = self.stack.enter_context(mosquitto(home))
                real_time(broker.process.pid)
                self.ports.append(broker.port)
                reading = home / "connected"
                with open(reading, "wb") as output:
                    reader = subprocess.Popen([require("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port),
                                               "-t", "$SYS/broker/clients/connected"], stdout=output)
                self.stack.callback(stop_process, reader)
                self.readings.append(reading)
        except BaseException:
            self.stack.close()
            raise
        self.port = ", ".join(map(str, self.ports))
        self.watchers = len(self.readings)

    def held(self):
        total = 0
        for reading in self.readings:
            with open(reading, "rb") as file:
                file.seek(max(0, os.fstat(file.fileno()).st_size - 64))
                lines = file.read().split()
            if lines:
                total += max(0, int(lines[-1]) - 1)  # less the reader
        return total

    def stop(self):
        self.stack.close()


TARGETS = {target.protocol: target for target in (EchoTarget, MosquittoTarget)}


def established_by_ss(coordinator, target):
    """Devices' connections established to the target's ports, counted by ``ss`` at its side (the
    coordinator keeps answering meanwhile: at a million sockets ``ss`` takes seconds)."""
    where = " or ".join(f"sport = :{port}" for port in target.ports)
    with tempfile.TemporaryFile() as output:
        counting = subprocess.Popen(["ss", "-Htn", "state", "established", f"( {where} )"], stdout=output)
        wait_until(coordinator, lambda: counting.poll() is not None, 600)
        if counting.wait() != 0:
            raise SystemExit(f"ss failed with status {counting.returncode}")
        output.seek(0)
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: output.read(1 << 20), b""))
        return lines - target.watchers


# -- the machine ------------------------------------------------------------------------

PER_PROCESS = 19_000  # connections per process, under the 20,000-descriptor limit
# Connections per loopback source address: a third of its 64,512 ephemeral ports. The kernel
# looks for a free port from a random start; the fuller the range, the longer it looks: at
# 50,000 connections per address the connects alone held both cores, and some timed out.
PER_SOURCE_ADDRESS = 20_000
PORT_RANGE = "1024 65535"
# The memory estimate: per connection (client worker, target process, two kernel sockets),
# and per process (an interpreter with its imports).
ESTIMATE_BYTES_PER_CONNECTION = 12 * 1024
ESTIMATE_BYTES_PER_PROCESS = 40 * 2**20
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
CONNTRACK_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
LOCAL_PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
# The kernel's TCP memory limits, in pages: low, pressure, max. Over max, the kernel refuses
# socket memory and connections stall and time out; a stall of the readers (a busy CPU) can
# park a few KB in every socket, so the pressure mark is raised to a page a connection and the
# maximum to two (4 and 8 GiB for 1,000,000), as a limit, not an allocation.
TCP_MEM = "/proc/sys/net/ipv4/tcp_mem"


def read_setting(path):
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def write_setting(path, value):
    try:
        with open(path, "w") as file:
            file.write(value)
        return True
    except OSError:
        return False


class KernelSettings:
    """The settings a big run needs, each put back as it was by ``restore``."""

    def __init__(self, connections):
        self.saved = {}
        self._set(LOCAL_PORT_RANGE, PORT_RANGE)
        count = read_setting(CONNTRACK_COUNT)
        maximum = read_setting(CONNTRACK_MAX)
        if count is not None and maximum is not None and int(maximum) < 2 * connections + 10_000:
            self._set(CONNTRACK_MAX, str(2 * connections + 10_000))  # tracked or not: harmless
        tcp_mem = (read_setting(TCP_MEM) or "").split()
        if len(tcp_mem) == 3 and int(tcp_mem[2]) < 2 * connections:
            low, pressure, _ = (int(value) for value in tcp_mem)
            self._set(TCP_MEM, f"{low} {max(pressure, connections)} {2 * connections}")

    def _set(self, path, value):
        before = read_setting(path)
        if before is None:
            return
        if write_setting(path, value):
            self.saved[path] = before
            print(f"set {path} to {value!r} (was {before!r}; put back at the end)")
        else:
            print(f"could not set {path} to {value!r}; it stays {before!r}")

    def restore(self):
        for path, value in self.saved.items():
            write_setting(path, value)


def available_memory():
    return psutil.virtual_memory().available


def check_memory(connections, processes):
    need = connections * ESTIMATE_BYTES_PER_CONNECTION + processes * ESTIMATE_BYTES_PER_PROCESS
    available = available_memory()
    if need > available:
        raise SystemExit(f"{connections:,} connections need about {need / 2**30:.1f} GiB "
                         f"({ESTIMATE_BYTES_PER_CONNECTION // 1024} KiB a connection, client, target and kernel, "
                         f"and {ESTIMATE_BYTES_PER_PROCESS // 2**20} MiB for each of {processes} processes); "
                         f"this machine has {available / 2**30:.1f} GiB available")
    return need


def sockstat():
    """``(TCP sockets in use, TCP memory in bytes)`` from ``/proc/net/sockstat``."""
    text = read_setting("/proc/net/sockstat") or ""
    for line in text.splitlines():
        if line.startswith("TCP:"):
            fields = line.split()[1:]
            values = dict(zip(fields[::2], fields[1::2]))
            return int(values.get("inuse", 0)), int(values.get("mem", 0)) * os.sysconf("SC_PAGE_SIZE")
    return 0, 0


# -- the generator ----------------------------------------------------------------------

def cohort(target, size, name, offset, period_s, heartbeats):
    """Cohort ``name`` (a step of the ramp): ``size`` devices, dealt over the target's ports from ``offset``."""
    params = {"period_ms": int(period_s * 1000), "heartbeats": heartbeats, "heartbeat": HEARTBEAT.decode()}
    addresses = [{"host": "127.0.0.1", "ip": "127.0.0.1", "port": port, "protocol": target.protocol}
                 for port in target.ports]
    return wire.StartCohort(run_id="connections", cohort_id=str(name),
                            blocks=[{"script": target.script, "params": params, "size": size}],
                            addresses=addresses, opts={"timeout_ms": 20_000}, address_offset=offset)


def warm_up(coordinator, target, workers):
    """One device a worker, connected and stopped again: what a worker's first device of a
    protocol loads (its modules, the compiled script) is then not counted per connection."""
    coordinator.send(cohort(target, workers, "warm-up", 0, HEARTBEAT_PERIOD_S, 1))
    if not wait_until(coordinator, lambda: target.held() >= workers, 60):
        raise SystemExit(f"warm-up: the target holds {target.held()} of {workers} connections after 60 s")
    coordinator.send(wire.StopCohort(run_id="connections", cohort_id="warm-up"))
    if not wait_until(coordinator, lambda: target.held() == 0, 60):
        raise SystemExit(f"warm-up: the target still holds {target.held()} connections 60 s after the stop")


def workers_rss(agent):
    total = 0
    for pid in agent.worker_pids():
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def raise_priority(pid):
    """Nice -10 for every thread of ``pid``: on Linux a priority belongs to a thread, and ZeroMQ
    sends and receives (CurveZMQ included) on I/O threads of its own, which a renice of the
    process's id alone leaves at the workers' priority."""
    for thread in psutil.Process(pid).threads():
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread.id, -10)


def wait_until(coordinator, condition, timeout):
    """Receive messages (the agent sends several a second) until ``condition()`` or ``timeout``.

    A ``Register`` is answered, as the coordinator would: an agent whose coordinator was slow
    to heartbeat registers again (and keeps its devices), and reports nothing until it is
    registered.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        if coordinator.receive(min(0.5, max(0.01, deadline - time.monotonic()))):
            latest = coordinator.received[-1]
            if isinstance(latest.message, wire.Register):
                # As the coordinator: a connection it knows keeps its place, and its devices.
                known = latest.identity in coordinator.registered
                coordinator.send(wire.Registered(coordinator_version="benchmark", known=known), latest.identity)
                coordinator.registered.add(latest.identity)
    return True


def merged(coordinator, since):
    metrics = MetricsAggregate()
    for message in coordinator.telemetry_since(since):
        metrics.add_snapshot(message.metrics)
    return metrics


def milliseconds(histogram, names):
    """The summary figures ``names`` of ``histogram`` (microseconds) in ms, ``None`` each if it is empty."""
    summary = histogram.summary() if histogram.total_count else None
    return [summary[name] / 1000 if summary else None for name in names]


class Window:
    """CPU idle, heartbeat latency and the workers' loop lag over a stretch of the run."""

    def __init__(self, coordinator, seconds):
        psutil.cpu_times_percent(interval=None)  # from here
        started = time.monotonic()
        wait_until(coordinator, lambda: False, seconds)
        self.cpu_idle = psutil.cpu_times_percent(interval=None).idle
        metrics = merged(coordinator, started)
        beats = metrics.histogram("heartbeat_us")
        self.heartbeats = beats.total_count
        self.p50_ms, self.p99_ms, self.max_ms = milliseconds(beats, ("median", "pc99", "max"))
        self.loop_lag_p99_ms, self.loop_lag_max_ms = milliseconds(metrics.histogram(LOOP_LAG_HISTOGRAM),
                                                                  ("pc99", "max"))

    def describe(self):
        def ms(value):
            return "-" if value is None else f"{value:.1f} ms"
        return (f"CPU idle {self.cpu_idle:.0f}%, heartbeat p50 {ms(self.p50_ms)} p99 {ms(self.p99_ms)} "
                f"max {ms(self.max_ms)} ({self.heartbeats:,} heartbeats), workers' loop lag p99 "
                f"{ms(self.loop_lag_p99_ms)} max {ms(self.loop_lag_max_ms)}")


def run(args):
    workers = args.workers or max(1, -(-args.connections // PER_PROCESS))
    target_processes = args.target_processes or max(1, -(-args.connections // PER_PROCESS))
    sources = args.source_addresses or max(1, -(-args.connections // PER_SOURCE_ADDRESS))
    need = check_memory(args.connections, workers + target_processes + 2)
    print(f"{args.connections:,} {args.protocol} connections: {workers} workers, {target_processes} "
          f"{TARGETS[args.protocol].kind}, {sources} "
          f"source addresses; about {need / 2**30:.1f} GiB of {available_memory() / 2**30:.1f} GiB available")
    heartbeats = max(1, int(BEATING_S / args.heartbeat_period))
    pool = [f"127.0.0.{2 + index}" for index in range(sources)]
    with contextlib.ExitStack() as stack:  # unwound in reverse, every step even when one fails
        kernel = KernelSettings(args.connections)
        stack.callback(kernel.restore)
        target = TARGETS[args.protocol](target_processes)
        stack.callback(target.stop)
        context = zmq.Context()
        stack.callback(context.destroy, linger=0)
        coordinator = FakeCoordinator(context)
        stack.callback(coordinator.close)
        log_dir = tempfile.mkdtemp(prefix="connections-")
        agent = AgentProcess(coordinator.url, os.path.join(log_dir, "agent.log"), workers=workers,
                             extra_args=["--source-addresses", ",".join(pool), "--log-level", "WARNING"])
        stack.callback(agent.stop)
        stack.callback(wait_until, coordinator, lambda: False, 2)  # the abort's answer
        stack.callback(coordinator.send, wire.Abort(run_id="connections"))
        register = coordinator.register(timeout=60)
        print(f"generator: {workers} workers, {register.source_addresses} source addresses "
              f"({pool[0]}-{pool[-1]}), capacity {register.capacity:,}; target: {target_processes} "
              f"{target.kind} on 127.0.0.1:{target.port}")
        if register.capacity < args.connections:
            raise SystemExit(f"the generator holds at most {register.capacity:,} devices")
        wait_until(coordinator, lambda: len(agent.worker_pids()) == workers, 60)
        # This process plays the coordinator, which in a fleet runs on a machine of its own, and
        # the agent is the host's control plane: both must heartbeat on time however busy the
        # workers and the target keep both cores (an agent that hears nothing for 3 s registers
        # again, and a fresh registration drops its devices). The workers keep the normal
        # priority; the target runs at a real-time one (``echo_server``).
        for pid in (os.getpid(), agent.pid):
            raise_priority(pid)
        warm_up(coordinator, target, workers)
        rss_before = workers_rss(agent)
        started = time.monotonic()
        asked = 0
        index = 0
        next_report = args.report_every
        last_report = (started, 0)
        window = None
        while asked < args.connections:
            size = min(args.step, args.connections - asked, next_report - asked)
            coordinator.send(cohort(target, size, index, asked, args.heartbeat_period, heartbeats))
            index += 1
            asked += size
            if not wait_until(coordinator, lambda: target.held() >= asked, args.step_timeout):
                print(f"step {index}: the target holds {target.held():,} of {asked:,} after "
                      f"{args.step_timeout:.0f} s; stopping the ramp")
                break
            if asked == next_report or asked == args.connections:
                now = time.monotonic()
                rate = (asked - last_report[1]) / max(1e-9, now - last_report[0])
                window = Window(coordinator, args.window)
                held = target.held()
                inuse, socket_memory = sockstat()
                client = (workers_rss(agent) - rss_before) / max(1, held)
                print(f"[{asked:>9,}] held {held:,} (ss {established_by_ss(coordinator, target):,}); client "
                      f"{client / 1024:.2f} KB/connection; kernel TCP {inuse:,} sockets, "
                      f"{socket_memory / 2**20:.0f} MiB buffers; ramp {rate:,.0f}/s; {window.describe()}",
                      flush=True)
                next_report += args.report_every
                last_report = (time.monotonic(), asked)
        ramp_s = time.monotonic() - started
        held_target = target.held()
        print(f"ramp: {held_target:,} connections in {ramp_s:.1f} s (measured windows included)")
        # Hold: one heartbeat period after every device has sent its first.
        hold_from = time.monotonic()
        wait_until(coordinator, lambda: False, args.heartbeat_period / 2 + 2)
        window = Window(coordinator, args.heartbeat_period)
        held_target = target.held()
        held_ss = established_by_ss(coordinator, target)
        rss = workers_rss(agent)
        rss_per_connection = (rss - rss_before) / max(1, held_target)
        inuse, socket_memory = sockstat()
        metrics = merged(coordinator, hold_from)
        errors = {name: value for name, value in metrics.counters.items() if name.endswith("_error_count")}
        print(f"held: {held_target:,} by the target, {held_ss:,} by ss; kernel TCP {inuse:,} sockets, "
              f"{socket_memory / 2**20:.0f} MiB buffers")
        print(f"client RSS: {rss_per_connection / 1024:.2f} KB per connection "
              f"({rss / 2**20:.0f} MiB in {workers} workers)")
        print(f"over one heartbeat period ({args.heartbeat_period:g} s): {window.describe()}; "
              f"errors {errors or 'none'}")
        # The stop: an abort, as a user's (or the run's end) sends it; the target counts the closes.
        stop_mark = coordinator.mark()
        coordinator.send(wire.Abort(run_id="connections"))
        stopped = wait_until(coordinator, lambda: target.held() == 0, STOP_TIMEOUT_S)
        stop_s = time.monotonic() - stop_mark
        killed = [m.message for at, _, m in coordinator.received
                  if at >= stop_mark and isinstance(m, wire.Event) and m.kind == "worker_killed"]
        print(f"stop: the target held {target.held():,} connections {stop_s:.1f} s after the abort"
              f"{'' if stopped else ' (gave up waiting)'}; workers killed for not stopping in time: {len(killed)}"
              + "".join(f"\n  {line}" for line in killed[:5]))
        silences = agent.log().count("no word from the coordinator")
        print(f"control plane: the longest gap between the coordinator's heartbeats {coordinator.longest_heartbeat_gap:.2f} s; "
              f"the agent found the coordinator silent {silences} times")
        fields = {"protocol": args.protocol, "connections_target": held_target, "connections_ss": held_ss, "ramp_s": f"{ramp_s:.1f}",
                  "client_kb_per_connection": f"{rss_per_connection / 1024:.2f}",
                  "kernel_tcp_buffers_mib": f"{socket_memory / 2**20:.0f}",
                  "cpu_idle_percent": f"{window.cpu_idle:.1f}", "heartbeats": window.heartbeats,
                  "heartbeat_p99_ms": None if window.p99_ms is None else f"{window.p99_ms:.2f}",
                  "loop_lag_p99_ms": None if window.loop_lag_p99_ms is None else f"{window.loop_lag_p99_ms:.1f}",
                  "workers": workers, "target_processes": target_processes, "source_addresses": len(pool),
                  "heartbeat_gap_s": f"{coordinator.longest_heartbeat_gap:.2f}", "agent_silences": silences,
                  "stop_s": f"{stop_s:.1f}", "workers_killed": len(killed)}
        print(" ".join(["RESULT", *(f"{name}={value}" for name, value in fields.items() if value is not None)]))
        if held_target < args.connections or held_ss < args.connections:
            print(f"FAILED: {args.connections:,} connections asked, {held_target:,} held by the target, "
                  f"{held_ss:,} by ss", file=sys.stderr)
            return 1
        return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--protocol", choices=sorted(TARGETS), default="tcp",
                        help="tcp: echo processes; mqtt: mosquitto brokers (default: tcp)")
    parser.add_argument("--workers", type=int, help=f"generator workers (default: one per {PER_PROCESS:,})")
    parser.add_argument("--source-addresses", type=int,
                        help=f"loopback source addresses from 127.0.0.2 (default: one per {PER_SOURCE_ADDRESS:,})")
    parser.add_argument("--target-processes", type=int, help=f"echo-server processes or brokers (default: one per {PER_PROCESS:,})")
    parser.add_argument("--step", type=int, default=20_000, help="devices started per ramp step")
    parser.add_argument("--report-every", type=int, default=100_000, help="connections between progress lines")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds of each progress line's measured window (CPU idle, heartbeat p99)")
    parser.add_argument("--heartbeat-period", type=float, default=HEARTBEAT_PERIOD_S,
                        help="seconds between a device's heartbeats (and the last measured period)")
    parser.add_argument("--step-timeout", type=float, default=120.0, help="seconds a ramp step may take")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(run(parser.parse_args()))
    except KeyboardInterrupt:
        print("interrupted: everything it started is stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
