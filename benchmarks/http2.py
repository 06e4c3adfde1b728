"""HTTP/2 (h2c) load generation side by side: our worker and h2load against one nginx.

    python benchmarks/http2.py [--rounds 3] [--warmup 1.5] [--window 5]

nginx runs with one worker pinned to core 0; each generator in turn runs
pinned to core 1 with 50 connections and one request in flight on each:

- ours: a worker (``run_local``) of 50 ``http2`` devices, each a loop of ``get("/")``;
- ``h2load -c50 -m1 -t1``.

Requests are counted by nginx itself (stub_status) over the same measured
window for both, after a warm-up; CPU time is the generator's user + system
time over that window. The last line is

    RESULT rps=<ours> rps_vs_h2load=<ours / h2load> cpu_per_req_vs_h2load=<ours / h2load>

with medians over the rounds. The target is at least 0.5x h2load's requests
per second on the one core. Loopback only; every run stops by itself.
"""
import argparse
import contextlib
import os
import pathlib
import re
import shutil
import socket
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
    await get("/")
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=15.0):
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
        sys.exit(f"{binary} is not installed (see tests/http2/REQUIREMENTS.txt)")
    return path


@contextlib.contextmanager
def pinned_nginx(directory):
    """nginx (h2c) with one worker on core 0; yields (port, status_port)."""
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
        listen 127.0.0.1:{port} http2 backlog=8192;
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
    times = process.cpu_times()
    return times.user + times.system


def measure(name, command, status_port, warmup, window):
    """Run ``command`` pinned to the client core; req/s and CPU us/request over the window."""
    import psutil
    process = psutil.Popen(["taskset", "-c", CLIENT_CORE, *command], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
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
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    if name == "ours" and output and b"errors:" in output:
        print(output.decode()[-2000:], flush=True)
    requests = requests_1 - requests_0 - 1          # our own status request
    rps = requests / (t_1 - t_0)
    cpu_us = (cpu_1 - cpu_0) * 1e6 / requests
    print(f"{name:7s} {rps:10.0f} req/s  {cpu_us:6.2f} CPU-us/request  "
          f"(client CPU {100 * (cpu_1 - cpu_0) / (t_1 - t_0):.0f}%)", flush=True)
    return rps, cpu_us


def run_ours(port, seconds):
    """The worker side: 50 http2 devices looping on GET, for ``seconds``."""
    from stressgrid.runtime.local import run_local
    plan = {"name": "bench-http2",
            "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "http2"}],
            "blocks": [{"script": OUR_SCRIPT, "params": {}, "size": CONNECTIONS}],
            "opts": {"timeout_ms": 5000}}
    result = run_local(plan, seconds)
    errors = {k: v for k, v in result.counters.items() if k.endswith("_error_count")}
    if errors:
        print("errors:", errors, result.errors, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before each window")
    parser.add_argument("--window", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--only", choices=["ours", "h2load"], action="append")
    parser.add_argument("--run-ours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_ours:
        return run_ours(args.run_ours, args.seconds)
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: nginx on one, the load generator on the other")

    generators = args.only or ["ours", "h2load"]
    seconds = args.warmup + args.window + 30           # generators are stopped after the window
    results = {name: [] for name in generators}
    with tempfile.TemporaryDirectory(prefix="sg-bench-http2-") as directory:
        with pinned_nginx(pathlib.Path(directory)) as (port, status_port):
            commands = {
                "ours": [sys.executable, __file__, "--run-ours", str(port), "--seconds", str(seconds)],
                "h2load": [which("h2load"), "-t1", f"-c{CONNECTIONS}", "-m1", "-D", str(int(seconds)),
                           f"http://127.0.0.1:{port}/"],
            }
            print(f"nginx (h2c) on core {SERVER_CORE}, generators on core {CLIENT_CORE}, "
                  f"{CONNECTIONS} connections x 1 stream, {args.window:.0f} s windows", flush=True)
            for round_number in range(args.rounds):
                print(f"-- round {round_number + 1}", flush=True)
                for name in generators:
                    results[name].append(measure(name, commands[name], status_port, args.warmup, args.window))

    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for name, runs in results.items()}
    print("-- medians")
    for name, (rps, cpu_us) in medians.items():
        print(f"{name:7s} {rps:10.0f} req/s  {cpu_us:6.2f} CPU-us/request")
    line = ["RESULT"]
    if "ours" in medians:
        line.append(f"rps={medians['ours'][0]:.0f}")
        if "h2load" in medians:
            line.append(f"rps_vs_h2load={medians['ours'][0] / medians['h2load'][0]:.2f}")
            line.append(f"cpu_per_req_vs_h2load={medians['ours'][1] / medians['h2load'][1]:.2f}")
    print(" ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
