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

with medians over the rounds. Once both generators are under about 90% of their core,
nginx's one core is what holds the rate (each window prints how busy it was: 99-100% behind
both, today): then CPU per request is the figure that compares them. Loopback only; every run stops by itself.

Where ours spends its CPU (``perf record -g`` on ours, 3 s): the kernel 56% of samples;
libnghttp2 15.8% (h2load runs on the same library); libpython 11.5%; libc 4.4% (much of it
nghttp2's allocations); uvloop 4.0%; our HTTP/2 core 2.1%; the compiled request path
(``_core/http2_client.pyx``) 2.0%; the device runner 1.1%. With the connection's request path
in Python, libpython took 23% (its interpreter loop 6.7%).
"""
import argparse
import pathlib
import sys
import tempfile

from common import (CLIENT_CORE, CONNECTIONS, SERVER_CORE, arguments, interleaved, lifetime, measure_window,
                    median, need_two_cores, pinned_nginx, print_result, report_medians, require,
                    requests_line, run_devices, served, versus)

REQUIREMENTS = "tests/http2/REQUIREMENTS.txt"

OUR_SCRIPT = """
while True:
    await get("/")
"""


def measure(name, command, status_port, warmup, window):
    """Run ``command`` pinned to the client core; req/s and CPU us/request over the window."""
    run = measure_window(name, command, lambda: served(status_port), warmup, window)
    if name == "ours":
        run.show_errors()
    requests = run.count - 1          # our own status request
    rps = requests / run.seconds
    cpu_us = run.cpu * 1e6 / requests
    print(f"{requests_line(name, rps, cpu_us)}  (client CPU {run.cpu_percent:.0f}%, "
          f"nginx's core busy {100 * run.server_busy:.0f}%)", flush=True)
    return rps, cpu_us


def run_ours(port, seconds):
    """The worker side: 50 http2 devices looping on GET, for ``seconds``."""
    run_devices("bench-http2", port, "http2", OUR_SCRIPT, seconds)


def main():
    parser = arguments(__doc__)
    parser.add_argument("--only", choices=["ours", "h2load"], action="append")
    parser.add_argument("--run-ours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_ours:
        return run_ours(args.run_ours, args.seconds)
    need_two_cores("nginx on one, the load generator on the other")

    generators = args.only or ["ours", "h2load"]
    seconds = lifetime(args.warmup, args.window)
    with tempfile.TemporaryDirectory(prefix="sg-bench-http2-") as directory:
        with pinned_nginx(pathlib.Path(directory), REQUIREMENTS, listen=" http2") as (port, status_port):
            commands = {
                "ours": [sys.executable, __file__, "--run-ours", str(port), "--seconds", str(seconds)],
                "h2load": [require("h2load", REQUIREMENTS), "-t1", f"-c{CONNECTIONS}", "-m1",
                           "-D", str(int(seconds)), f"http://127.0.0.1:{port}/"],
            }
            print(f"nginx (h2c) on core {SERVER_CORE}, generators on core {CLIENT_CORE}, "
                  f"{CONNECTIONS} connections x 1 stream, {args.window:.0f} s windows", flush=True)
            results = interleaved(args.rounds, generators, lambda name: measure(
                name, commands[name], status_port, args.warmup, args.window))

    medians = report_medians(results, requests_line)
    print_result({"rps": median(medians, "ours", 0, ".0f"),
                  "rps_vs_h2load": versus(medians, "h2load", 0, ".2f"),
                  "cpu_per_req_vs_h2load": versus(medians, "h2load", 1, ".2f")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
