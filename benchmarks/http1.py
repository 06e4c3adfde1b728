"""HTTP/1.1 load generation side by side: our worker, wrk and Locust against one nginx.

    python benchmarks/http1.py [--rounds 3] [--window 5] [--idle-devices 5000] [--tls]

nginx runs pinned to core 0 and each load generator in turn pinned to core 1,
with 50 kept-alive connections each, interleaved round after round:

- ours: a worker (``run_local``) of 50 devices whose script times every GET
  with start_timing/stop_timing;
- ``wrk -t1 -c50``;
- Locust's ``FastHttpUser``, one process, headless, 50 users, no wait;
- with ``--only untimed``: ours without the script's start/stop_timing, to
  tell the HTTP path's cost from the timing's; with ``--only named``: ours with
  every GET given ``name=`` (its request group's metrics), untimed.

With ``--tls`` nginx serves over TLS (a fresh self-signed certificate, TLS 1.3) and
ours (``https`` devices) and ``wrk`` (an ``https://`` URL) are compared there, each on
kept-alive connections, so the handshakes stay out of the window (Locust with
``--only locust``); the idle devices below are then ``https`` devices too (about 53 KiB
each, OpenSSL's per-connection state most of it; 60 KiB over the loop's own TLS, before
``stressgrid._core.tls``).

Requests are counted by nginx itself (stub_status) over the same measured
window for all three, and CPU time is the generator process's user + system
time over that window, so start-up costs are left out of every figure.

Where ours spends its CPU (``perf record --call-graph dwarf`` on the worker of ``--only
untimed``, 50 devices against the same pinned nginx, 3 s, after the header fields were packed
raw): the kernel 70% of samples (its loopback TCP, as wrk's; the write of a request, which
delivers it to nginx's socket, 57% inclusive); libpython 7.8% (the script's frame, calls,
allocation); our HTTP/1 core 6.6% (llhttp 2.8%); uvloop 4.8%; libc 3.7%; the HTTP/1 client,
the device runner and the ``Pending`` 4.1% together. Before, the header callbacks took 3.3%
(a bytes object per name and value) and then 2.9% (a decoded pair per field). Before the
runner stepped scripts inside ``data_received``, a ``Future``, a ``call_soon`` handle and a
task-style wakeup per request made libpython 12.3% and uvloop 5.0%. Each window also shows
how busy nginx's core was: at 90-100% it, not the generator, holds the rate, and CPU per
request is the figure that compares generators.

Then the memory of idle kept-alive devices: ``--idle-devices`` devices each do
one GET and wait in ``delay(60000)``; the worker's RSS growth per device, once
their request timers have lapsed (a fresh worker process, devices started the
way a cohort starts them, so the connect storm's peak is included).

Where the bytes of such a device go (``tracemalloc``, 5,000 devices, by allocating line):

=====================================================  ========
the transport and its socket                           1,125 B
the ``DeviceRunner``                                   120 B
``Http1Core``, llhttp's parser inside it               296 B
the script's coroutine                                 265 B
``Device`` and its id                                  202 B
the HTTP/1 client (``Http1Client``)                    176 B
the connection (``_Connection``)                       112 B
the ``Sleep`` of ``delay``                             104 B
its entry in the loop's weak map of transports         118 B
traced in all                                          2.52 KB
=====================================================  ========

RSS is about 2 KB more: the connect storm's transient objects (the connect's
coroutines and futures, the request's deadline, the response) leave free room
in the allocators' pools and arenas that the process keeps (about 1.3 KB with
pymalloc, 0.6 KB with malloc: ``sys._debugmallocstats`` and ``mallinfo2``), and
libuv's handle. Before this breakdown was written the device also held an
asyncio task, a loop timer per deadline and an httptools parser object: 6.15 KiB.

The last line is ``RESULT rps=... cpu_per_req_vs_wrk=... rps_vs_locust=...
idle_device_kib=...`` (medians over the rounds). Targets: CPU per request at
most 1.5x wrk's, at least 10x Locust's requests per second, at most 4.5 KB per
idle device. Everything runs on loopback and ends on its own.
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

from common import (CLIENT_CORE, CONNECTIONS, SERVER_CORE, arguments, device_process, interleaved, lifetime,
                    measure_window, median, need_two_cores, pinned, pinned_nginx, print_result, report_medians,
                    require, requests_line, run_devices, served, versus)

REQUIREMENTS = "tests/http1/REQUIREMENTS.txt"

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
# Untimed, every GET named: what a request group costs.
NAMED_SCRIPT = """
while True:
    await get("/", name="home")
"""
SCRIPTS = {"ours": OUR_SCRIPT, "untimed": UNTIMED_SCRIPT, "named": NAMED_SCRIPT}

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


def measure(name, command, status_port, warmup, window):
    """Run ``command`` pinned to the client core; req/s and CPU us/request over the window."""
    run = measure_window(name, command, lambda: served(status_port), warmup, window)
    requests = run.count - 1          # our own status request
    rps = requests / run.seconds
    user_us = run.user * 1e6 / requests
    system_us = run.system * 1e6 / requests
    cpu_us = user_us + system_us
    print(f"{requests_line(name, rps, cpu_us)} (user {user_us:5.2f}, system {system_us:5.2f}; "
          f"client CPU {run.cpu_percent:.0f}%, nginx's core busy {100 * run.server_busy:.0f}%)", flush=True)
    return rps, cpu_us


def ours_command(port, seconds, variant="ours", tls=False):
    return [sys.executable, __file__, "--run-ours", str(port), "--seconds", str(seconds), "--variant", variant,
            *(["--tls"] if tls else [])]


def run_ours(port, seconds, variant, tls):
    """The worker side: 50 devices running the ``variant``'s GET loop, for ``seconds``."""
    run_devices("bench-http1", port, "https" if tls else "http", SCRIPTS[variant], seconds, file=sys.stderr)


def run_idle(port, devices, queue_path, script=IDLE_SCRIPT, tls=False):
    """A fresh worker: ``devices`` devices each GET once then wait; RSS growth per device."""
    import asyncio
    import gc

    import uvloop

    from stressgrid.plan import Address, Opts
    from stressgrid.runtime.engine import Engine

    process = device_process()
    expected = devices if "get(" in script else 0

    async def main():
        engine = Engine()
        address = Address("127.0.0.1", port, "https" if tls else "http", "127.0.0.1")
        responses = engine.recorder.counter("response_count")
        await engine.start_cohort("warm", [(IDLE_SCRIPT, {}, 20)], [address], Opts())
        while responses.value < 20:
            await asyncio.sleep(0.01)
        await engine.stop_cohort("warm")
        gc.collect()
        await asyncio.sleep(0.2)
        before = process.memory_info().rss
        base = responses.value
        # TLS handshakes of a storm of devices queue behind one another on one core: a longer timeout.
        timeout_s = 5 if tls else 1
        await engine.start_cohort("idle", [(script, {}, devices)], [address], Opts(timeout_ms=timeout_s * 1000))
        deadline = time.monotonic() + 60
        while responses.value - base < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        done = responses.value - base
        await asyncio.sleep(timeout_s + 0.5)      # the request timers lapse: the devices are idle now
        gc.collect()
        after = process.memory_info().rss
        errors = {k: v for k, v in engine.snapshot()["counters"].items() if k.endswith("_error_count")}
        await engine.stop_all()
        pathlib.Path(queue_path).write_text(f"{done} {after - before} {errors}")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def idle_memory(port, devices, tls):
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(pinned([sys.executable, __file__, "--run-idle", str(port), "--devices", str(devices),
                               "--out", out.name] + (["--tls"] if tls else [])), check=True, timeout=180)
        done, grown, errors = out.read().split(" ", 2)
    done, grown = int(done), int(grown)
    per_device = grown / max(done, 1)
    print(f"idle    {done} kept-alive devices after one GET: {grown / 2**20:.1f} MiB RSS, "
          f"{per_device / 1024:.2f} KiB per device  errors {errors}", flush=True)
    return per_device


def main():
    parser = arguments(__doc__)
    parser.add_argument("--idle-devices", type=int, default=5000)
    parser.add_argument("--only", choices=["ours", "untimed", "named", "wrk", "locust"], action="append",
                        help="run only these (repeatable); 'untimed' is ours without the script's timing, "
                             "'named' untimed with every GET named")
    parser.add_argument("--run-ours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-idle", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=sorted(SCRIPTS), default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help="everything over TLS: ours and wrk by default")
    args = parser.parse_args()
    if args.run_ours:
        return run_ours(args.run_ours, args.seconds, args.variant, args.tls)
    if args.run_idle:
        return run_idle(args.run_idle, args.devices, args.out, tls=args.tls)
    need_two_cores("nginx on one, the load generator on the other")

    generators = args.only or (["ours", "wrk"] if args.tls else ["ours", "wrk", "locust"])
    seconds = lifetime(args.warmup, args.window)
    with tempfile.TemporaryDirectory(prefix="sg-bench-http1-") as directory:
        directory = pathlib.Path(directory)
        locustfile = directory / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        with pinned_nginx(directory, REQUIREMENTS, tls=args.tls) as (port, status_port):
            url = f"{'https' if args.tls else 'http'}://127.0.0.1:{port}/"
            commands = {
                **{variant: ours_command(port, seconds, variant, args.tls) for variant in SCRIPTS},
                "wrk": [require("wrk", REQUIREMENTS), "-t1", f"-c{CONNECTIONS}", f"-d{int(seconds)}s", url],
                "locust": [require("locust", REQUIREMENTS), "-f", str(locustfile), "--headless",
                           "-u", str(CONNECTIONS), "-r", str(CONNECTIONS), "-t", f"{int(seconds)}s",
                           "--host", url.rstrip("/"), "--only-summary", "--loglevel", "ERROR"],
            }
            print(f"nginx{' over TLS' if args.tls else ''} on core {SERVER_CORE}, generators on core "
                  f"{CLIENT_CORE}, {CONNECTIONS} connections, {args.window:.0f} s windows", flush=True)
            results = interleaved(args.rounds, generators, lambda name: measure(
                name, commands[name], status_port, args.warmup, args.window))
            per_device = idle_memory(port, args.idle_devices, args.tls) if args.idle_devices else None

    medians = report_medians(results, requests_line)
    print_result({"rps": median(medians, "ours", 0, ".0f"),
                  "cpu_per_req_vs_wrk": versus(medians, "wrk", 1, ".2f"),
                  "rps_vs_locust": versus(medians, "locust", 0, ".1f"),
                  "idle_device_kib": None if per_device is None else f"{per_device / 1024:.2f}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
