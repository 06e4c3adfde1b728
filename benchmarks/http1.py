"""HTTP/1.1 load generation side by side: our worker, wrk and Locust against one nginx.

    python benchmarks/http1.py [--rounds 3] [--window 5] [--idle-devices 5000]

nginx runs pinned to core 0 and each load generator in turn pinned to core 1,
with 50 kept-alive connections each, interleaved round after round:

- ours: a worker (``run_local``) of 50 devices whose script times every GET
  with start_timing/stop_timing;
- ``wrk -t1 -c50``;
- Locust's ``FastHttpUser``, one process, headless, 50 users, no wait;
- with ``--only untimed``: ours without the script's start/stop_timing, to
  tell the HTTP path's cost from the timing's.

Requests are counted by nginx itself (stub_status) over the same measured
window for all three, and CPU time is the generator process's user + system
time over that window, so start-up costs are left out of every figure.

Then the memory of idle kept-alive devices: ``--idle-devices`` devices each do
one GET and wait in ``delay(60000)``; the worker's RSS growth per device, once
their request timers have lapsed (a fresh worker process, devices started the
way a cohort starts them, so the connect storm's peak is included).

The last line is ``RESULT rps=... cpu_per_req_vs_wrk=... rps_vs_locust=...
idle_device_kib=...`` (medians over the rounds). Targets: CPU per request at
most 1.5x wrk's, at least 10x Locust's requests per second, at most 6 KB per
idle device. Everything runs on loopback and ends on its own.
"""
import argparse
import contextlib
import os
import pathlib
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONNECTIONS = 50
SERVER_CORE = "0"
CLIENT_CORE = "1"
BODY = "x" * 600                        # about the size of nginx's default index page

OUR_SCRIPT = """
while True:
    start_timing("get")
    await get("/")
    stop_timing("get")
"""
# The same without the script's own timing: what the HTTP path alone costs.
UNTIMED_SCRIPT = """
while True:
    await get("/")
"""

LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Get(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self):
        self.client.get("/")
"""

IDLE_SCRIPT = """
await get("/")
await delay(60000)
"""


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=15.0):
    import socket
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def which(binary):
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        sys.exit(f"{binary} is not installed (see tests/http1/REQUIREMENTS.txt)")
    return path


@contextlib.contextmanager
def pinned_nginx(directory):
    """nginx with one worker on core 0; yields (port, status_port)."""
    port, status_port = free_port(), free_port()
    for sub in ("logs", "tmp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    config = f"""
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {directory}/tmp/body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        location / {{ default_type text/html; return 200 "{BODY}"; }}
    }}
    server {{
        listen 127.0.0.1:{status_port};
        location / {{ stub_status; }}
    }}
}}
"""
    (directory / "nginx.conf").write_text(config)
    process = subprocess.Popen(["taskset", "-c", SERVER_CORE, which("nginx"), "-c",
                                str(directory / "nginx.conf"), "-p", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        wait_for_port(status_port)
        yield port, status_port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def served(status_port):
    """Requests nginx has handled so far (this status request included)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/", timeout=5) as reply:
        text = reply.read().decode()
    return int(re.search(r"\n\s*\d+\s+\d+\s+(\d+)", text).group(1))


def cpu_seconds(process):
    """User and system CPU seconds of ``process`` so far."""
    times = process.cpu_times()
    return times.user, times.system


def measure(name, command, status_port, warmup, window, env=None):
    """Run ``command`` pinned to the client core; req/s and CPU us/request over the window."""
    import psutil
    process = psutil.Popen(["taskset", "-c", CLIENT_CORE, *command], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env)
    try:
        # The window opens once requests flow and the warm-up has passed.
        start = served(status_port)
        deadline = time.monotonic() + 60
        while served(status_port) - start < 1000:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} does not send requests: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.05)
        time.sleep(warmup)
        cpu_0, requests_0, t_0 = cpu_seconds(process), served(status_port), time.monotonic()
        time.sleep(window)
        cpu_1, requests_1, t_1 = cpu_seconds(process), served(status_port), time.monotonic()
        if process.poll() is not None:
            raise RuntimeError(f"{name} ended inside the measured window")
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(15)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait()
    requests = requests_1 - requests_0 - 1          # our own status request
    rps = requests / (t_1 - t_0)
    user_us = (cpu_1[0] - cpu_0[0]) * 1e6 / requests
    system_us = (cpu_1[1] - cpu_0[1]) * 1e6 / requests
    cpu_us = user_us + system_us
    print(f"{name:7s} {rps:10.0f} req/s  {cpu_us:6.2f} CPU-us/request "
          f"(user {user_us:5.2f}, system {system_us:5.2f}; client CPU {rps * cpu_us / 1e4:.0f}%)", flush=True)
    return rps, cpu_us


def ours_command(port, seconds, untimed=False):
    return [sys.executable, __file__, "--run-ours", str(port), "--seconds", str(seconds)] + \
        (["--untimed"] if untimed else [])


def run_ours(port, seconds, untimed=False):
    """The worker side: 50 devices timing every GET, for ``seconds``."""
    from stressgrid.runtime.local import run_local
    plan = {"name": "bench-http1",
            "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "http"}],
            "blocks": [{"script": UNTIMED_SCRIPT if untimed else OUR_SCRIPT, "params": {},
                        "size": CONNECTIONS}],
            "opts": {"timeout_ms": 5000}}
    result = run_local(plan, seconds)
    errors = {k: v for k, v in result.counters.items() if k.endswith("_error_count")}
    if errors:
        print("errors:", errors, result.errors, file=sys.stderr)


def run_idle(port, devices, queue_path, script=IDLE_SCRIPT):
    """A fresh worker: ``devices`` devices each GET once then wait; RSS growth per device."""
    import asyncio
    import gc

    import psutil
    import uvloop

    from stressgrid.plan import Address, Opts
    from stressgrid.runtime.engine import Engine

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    process = psutil.Process()
    expected = devices if "get(" in script else 0

    async def main():
        engine = Engine()
        address = Address("127.0.0.1", port, "http", "127.0.0.1")
        responses = engine.recorder.counter("response_count")
        await engine.start_cohort("warm", [(IDLE_SCRIPT, {}, 20)], [address], Opts())
        while responses.value < 20:
            await asyncio.sleep(0.01)
        await engine.stop_cohort("warm")
        gc.collect()
        await asyncio.sleep(0.2)
        before = process.memory_info().rss
        base = responses.value
        await engine.start_cohort("idle", [(script, {}, devices)], [address], Opts(timeout_ms=1000))
        deadline = time.monotonic() + 60
        while responses.value - base < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        done = responses.value - base
        await asyncio.sleep(1.5)      # the request timers lapse: the devices are idle now
        gc.collect()
        after = process.memory_info().rss
        errors = {k: v for k, v in engine.snapshot()["counters"].items() if k.endswith("_error_count")}
        await engine.stop_all()
        pathlib.Path(queue_path).write_text(f"{done} {after - before} {errors}")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def idle_memory(port, devices):
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["taskset", "-c", CLIENT_CORE, sys.executable, __file__, "--run-idle", str(port),
                        "--devices", str(devices), "--out", out.name], check=True, timeout=180)
        done, grown, errors = out.read().split(" ", 2)
    done, grown = int(done), int(grown)
    per_device = grown / max(done, 1)
    print(f"idle    {done} kept-alive devices after one GET: {grown / 2**20:.1f} MiB RSS, "
          f"{per_device / 1024:.2f} KiB per device  errors {errors}", flush=True)
    return per_device


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before each window")
    parser.add_argument("--window", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--idle-devices", type=int, default=5000)
    parser.add_argument("--only", choices=["ours", "untimed", "wrk", "locust"], action="append",
                        help="run only these (repeatable); 'untimed' is ours without the script's timing")
    parser.add_argument("--run-ours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-idle", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--untimed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_ours:
        return run_ours(args.run_ours, args.seconds, args.untimed)
    if args.run_idle:
        return run_idle(args.run_idle, args.devices, args.out)
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: nginx on one, the load generator on the other")

    generators = args.only or ["ours", "wrk", "locust"]
    seconds = args.warmup + args.window + 30           # generators are stopped after the window
    results = {name: [] for name in generators}
    with tempfile.TemporaryDirectory(prefix="sg-bench-http1-") as directory:
        directory = pathlib.Path(directory)
        locustfile = directory / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        with pinned_nginx(directory / "nginx") as (port, status_port):
            url = f"http://127.0.0.1:{port}/"
            commands = {
                "ours": ours_command(port, seconds),
                "untimed": ours_command(port, seconds, untimed=True),
                "wrk": [which("wrk"), "-t1", f"-c{CONNECTIONS}", f"-d{int(seconds)}s", url],
                "locust": [which("locust"), "-f", str(locustfile), "--headless", "-u", str(CONNECTIONS),
                           "-r", str(CONNECTIONS), "-t", f"{int(seconds)}s", "--host", url.rstrip("/"),
                           "--only-summary", "--loglevel", "ERROR"],
            }
            print(f"nginx on core {SERVER_CORE}, generators on core {CLIENT_CORE}, "
                  f"{CONNECTIONS} connections, {args.window:.0f} s windows", flush=True)
            for round_number in range(args.rounds):
                print(f"-- round {round_number + 1}", flush=True)
                for name in generators:
                    results[name].append(measure(name, commands[name], status_port, args.warmup, args.window))
            per_device = idle_memory(port, args.idle_devices) if args.idle_devices else None

    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for name, runs in results.items()}
    print("-- medians")
    for name, (rps, cpu_us) in medians.items():
        print(f"{name:7s} {rps:10.0f} req/s  {cpu_us:6.2f} CPU-us/request")
    line = ["RESULT"]
    if "ours" in medians:
        line.append(f"rps={medians['ours'][0]:.0f}")
        if "wrk" in medians:
            line.append(f"cpu_per_req_vs_wrk={medians['ours'][1] / medians['wrk'][1]:.2f}")
        if "locust" in medians:
            line.append(f"rps_vs_locust={medians['ours'][0] / medians['locust'][0]:.1f}")
    if per_device is not None:
        line.append(f"idle_device_kib={per_device / 1024:.2f}")
    print(" ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
