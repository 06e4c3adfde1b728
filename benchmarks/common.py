"""What the benchmarks share: for the protocol ones (http1.py, http2.py, websocket.py) most
of it, for those measuring in a process of their own (idle_devices.py, mqtt.py) ``in_process``.

The server runs pinned to ``SERVER_CORE`` and each load generator in turn to
``CLIENT_CORE``; rounds interleave the generators so drift hits all alike. A
generator's figures come from one measured window after a warm-up: what the
server counted over it and the generator process's own user + system CPU time,
so start-up costs are left out. Processes, ports and nginx come from
``tests/support/servers.py``, the same helpers the tests use.
"""
import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from queue import Empty

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import servers  # noqa: E402
from tests.support.servers import free_port, wait_for_port  # noqa: E402,F401 - for the benchmarks

CONNECTIONS = 50
SERVER_CORE = "0"
CLIENT_CORE = "1"
BODY = "x" * 600                        # about the size of nginx's default index page


# -- a measurement in a process of its own ------------------------------------------

def in_process(target, *args, timeout_s=900):
    """``target(*args, queue)`` in a fresh process (its RSS and CPU time its own): what it put
    in the queue. A process that dies first, or outlasts ``timeout_s``, stops the benchmark."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return queue.get(timeout=1)
            except Empty:
                if not process.is_alive():
                    raise SystemExit(f"{target.__name__} exited with {process.exitcode} before its result") from None
                if time.monotonic() > deadline:
                    raise SystemExit(f"{target.__name__} took over {timeout_s} s") from None
    finally:
        process.join(60)
        if process.is_alive():
            process.kill()


def device_process():
    """Set up this process as a worker process is for its devices (every descriptor the hard
    limit allows, the allocator's settings); returns its ``psutil.Process`` for RSS and CPU."""
    import resource

    import psutil

    from stressgrid.runtime.allocator import keep_large_buffers_on_heap

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    keep_large_buffers_on_heap()
    return psutil.Process()


async def warm_up(engine, address, script, settle_s):
    """Run 10 devices of ``script`` for ``settle_s`` and stop them, so what is measured next
    has the script compiled, its protocol imported and the allocator's paths touched; their
    metrics are dropped."""
    import asyncio
    import gc

    from stressgrid.plan import Opts

    await engine.start_cohort("warm", [(script, {}, 10)], [address], Opts())
    await asyncio.sleep(settle_s)
    await engine.stop_cohort("warm")
    engine.snapshot()
    gc.collect()


# -- the command line -------------------------------------------------------------

def arguments(doc):
    """The benchmarks' command line: ``--rounds``, ``--warmup`` and ``--window``; add the rest."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before each window")
    parser.add_argument("--window", type=float, default=5.0, help="measured seconds per run")
    return parser


def lifetime(warmup, window):
    """Seconds a generator is told to run: past its window (it is stopped after the window)."""
    return warmup + window + 30


def need_two_cores(roles):
    """Exit unless there are two cores: ``roles`` says who takes them."""
    if (os.cpu_count() or 1) < 2:
        sys.exit(f"needs two cores: {roles}")


def require(binary, requirements):
    """Path of ``binary``, or exit naming the file that lists what to install."""
    try:
        return servers.require(binary)
    except RuntimeError:
        sys.exit(f"{binary} is not installed (see {requirements})")


# -- the server: nginx ----------------------------------------------------------------

@contextlib.contextmanager
def pinned_nginx(directory, requirements, listen="", tls=False):
    """nginx with one worker on the server core answering every request with ``BODY``.

    ``listen`` adds parameters to the load port's ``listen`` (``" http2"`` for h2c);
    ``tls`` serves the load port over TLS with a fresh self-signed certificate.
    Yields ``(port, status_port)``; ``served(status_port)`` counts the requests.
    """
    require("nginx", requirements)      # exits with the benchmark's hint where nginx() would raise
    port, status_port = free_port(), free_port()
    certificate = ""
    if tls:
        key, cert = servers.self_signed_certificate(directory)
        listen += " ssl"
        certificate = f"ssl_certificate {cert}; ssl_certificate_key {key};"
    # keepalive_* here rather than in http {}: that block is the tests' and keeps their values.
    blocks = f"""
    server {{
        listen 127.0.0.1:{port}{listen} backlog=8192;
        {certificate}
        keepalive_requests 100000000;
        keepalive_timeout 120s;
        location / {{ default_type text/html; return 200 "{BODY}"; }}
    }}
    server {{
        listen 127.0.0.1:{status_port};
        location / {{ stub_status; }}
    }}
"""
    with servers.nginx(directory, blocks, cpu_core=SERVER_CORE, directives=["worker_rlimit_nofile 65536;"]):
        yield port, status_port


def served(status_port):
    """Requests nginx has handled so far (this status request included)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/", timeout=5) as reply:
        text = reply.read().decode()
    return int(re.search(r"\n\s*\d+\s+\d+\s+(\d+)", text).group(1))


# -- the generators ---------------------------------------------------------------

def pinned(command, core=CLIENT_CORE):
    """``command`` run by ``taskset`` on ``core``."""
    return ["taskset", "-c", core, *command]


def run_devices(name, port, protocol, script, seconds, params=None, file=None):
    """Our side: a worker (``run_local``) of ``CONNECTIONS`` devices running ``script``
    for ``seconds``; error counters, if any, are printed as ``errors: ...`` to ``file``."""
    from stressgrid.runtime.local import run_local
    from tests.support.plans import error_counters, plan
    result = run_local(plan(port, script, size=CONNECTIONS, protocol=protocol, params=params, name=name),
                       seconds)
    if result.peak_active_devices < CONNECTIONS:  # the figure is of fewer devices than it claims
        print(f"only {result.peak_active_devices} of {CONNECTIONS} devices were active at once "
              f"({result.started_devices} started)", file=file or sys.stdout, flush=True)
    errors = error_counters(result)
    if errors:
        print("errors:", errors, result.errors, file=file or sys.stdout, flush=True)


@dataclasses.dataclass
class Window:
    """What one measured window saw: seconds, the server's count, the client's CPU seconds,
    the server core's busy share (0 to 1: at 1 the server, not the client, holds the rate)."""
    seconds: float
    count: int
    user: float
    system: float
    output: bytes
    server_busy: float = 0.0

    @property
    def cpu(self):
        return self.user + self.system

    @property
    def cpu_percent(self):
        """The generator's share of its core over the window."""
        return 100 * self.cpu / self.seconds

    def show_errors(self):
        """Print the end of the generator's output if it reported errors."""
        if self.output and b"errors:" in self.output:
            print(self.output.decode()[-2000:], flush=True)


def measure_window(name, command, count, warmup, window, what="requests"):
    """Run ``command`` pinned to the client core and measure one window.

    The window opens once ``count()`` (the server's tally) has grown by 1000 and
    ``warmup`` seconds have passed; it lasts ``window`` seconds. The generator
    is stopped after it and its output (stdout and stderr) kept.
    """
    import psutil
    process = psutil.Popen(pinned(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        start = count()
        deadline = time.monotonic() + 60
        while count() - start < 1000:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} does not send {what}: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.05)
        time.sleep(warmup)
        cpu_0, count_0, t_0 = process.cpu_times(), count(), time.monotonic()
        server_0 = psutil.cpu_times(percpu=True)[int(SERVER_CORE)]
        time.sleep(window)
        cpu_1, count_1, t_1 = process.cpu_times(), count(), time.monotonic()
        server_1 = psutil.cpu_times(percpu=True)[int(SERVER_CORE)]
        if process.poll() is not None:
            raise RuntimeError(f"{name} ended inside the measured window")
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    return Window(t_1 - t_0, count_1 - count_0, cpu_1.user - cpu_0.user, cpu_1.system - cpu_0.system, output,
                  _busy_share(server_0, server_1))


def _busy_share(before, after):
    """A core's busy share between two of its ``psutil.cpu_times`` samples."""
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 1 - idle / total if total > 0 else 0.0


# -- rounds and results -------------------------------------------------------------

def interleaved(rounds, names, measure):
    """``measure(name)`` for each of ``names`` in turn, round after round; ``{name: [results]}``."""
    results = {name: [] for name in names}
    for round_number in range(rounds):
        print(f"-- round {round_number + 1}", flush=True)
        for name in names:
            results[name].append(measure(name))
    return results


def report_medians(results, line):
    """Print the medians over the rounds of each name's two figures as ``line(name, a, b)``; return them."""
    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for name, runs in results.items()}
    print("-- medians")
    for name, (first, second) in medians.items():
        print(line(name, first, second))
    return medians


def requests_line(name, rps, cpu_us):
    """The HTTP benchmarks' figures for one generator."""
    return f"{name:7s} {rps:10.0f} req/s  {cpu_us:6.2f} CPU-us/request"


def median(medians, name, figure, spec):
    """``name``'s median of one figure (0 or 1) formatted with ``spec``; None if it did not run."""
    return format(medians[name][figure], spec) if name in medians else None


def versus(medians, peer, figure, spec):
    """Ours' median of one figure over ``peer``'s, formatted; None unless both ran."""
    if "ours" not in medians or peer not in medians:
        return None
    return format(medians["ours"][figure] / medians[peer][figure], spec)


def print_result(fields):
    """The last line: ``RESULT name=value ...`` for the fields that have a value."""
    print(" ".join(["RESULT", *(f"{name}={value}" for name, value in fields.items() if value is not None)]))
