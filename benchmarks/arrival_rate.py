"""The open model's cost and precision: one worker's arrival-rate executor, and Locust asked
for the same rate.

    python benchmarks/arrival_rate.py [--rounds 3] [--window 5] [--rates 10000,50000]
                                      [--trivial-rate 100000]

- **Scheduling overhead**: one worker pinned to core 1 runs a trivial script (``pass``, on
  UDP devices that send nothing) at ``--trivial-rate`` iterations a second, measured over
  ``--window`` seconds after ``--warmup``: its CPU time per iteration, the iterations started
  against those due, the dropped ones, and the start delay's p99 (scheduled -> actual start).
- **Against nginx**: nginx on core 0, the generator on core 1, at each of ``--rates``, one GET
  per iteration: the rate nginx counted over the measured window (stub_status), the
  generator's CPU time per iteration, and its start delay p99. The same for Locust, one
  process, headless, ``FastHttpUser`` users with ``constant_throughput(10)``: rate / 10 users,
  asked for the same rate, no more. And the closed model's cost per request in the same run:
  50 of our devices looping the same GET as fast as nginx answers.

The last line is ``RESULT trivial_us=... trivial_rate=... closed_us=... rate_<R>=...
us_<R>=... delay_p99_ms_<R>=... locust_rate_<R>=...`` (medians over the rounds). Targets: at least 100,000 trivial iterations a
second on one worker, each rate kept within 1% with a start delay p99 of at most 1 ms. Every
run is on loopback, bounded in time, and ends on its own.
"""
import argparse
import json
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from common import (CLIENT_CORE, SERVER_CORE, arguments, lifetime, measure_window, need_two_cores,
                    pinned, pinned_nginx, print_result, require, run_devices, served)

REQUIREMENTS = "tests/http1/REQUIREMENTS.txt"
PER_LOCUST_USER = 10  # iterations a second each Locust user is asked for

LOCUSTFILE = f"""
from locust import FastHttpUser, constant_throughput, task


class Get(FastHttpUser):
    wait_time = constant_throughput({PER_LOCUST_USER})

    @task
    def index(self):
        self.client.get("/")
"""


def open_plan(port, protocol, script, rate, seconds, devices):
    return {"name": "bench-arrivals", "addresses": [{"host": "127.0.0.1", "port": port, "protocol": protocol}],
            "blocks": [{"script": script, "params": {}, "size": 1}],
            "opts": {"timeout_ms": 5000, "executor": "arrival_rate", "rate": rate, "sustain_ms": int(seconds * 1000),
                     "max_devices": devices, "pre_allocated_devices": devices}}


def figures(result):
    delays = result.histograms.get("iteration_start_delay_us")
    return {"iterations": result.counters.get("iteration_count", 0),
            "dropped": result.counters.get("dropped_iteration_count", 0),
            "delay_p99_us": delays.value_at_percentile(99.0) if delays is not None else None,
            "errors": {k: v for k, v in result.counters.items() if k.endswith("_error_count")}}


def run_trivial(rate, warmup, window, out):
    """The worker side of the overhead figure: ``pass`` at ``rate``, measured over ``window``
    seconds once ``warmup`` seconds have passed (the pool's first iterations open its sockets)."""
    import asyncio

    import uvloop

    from stressgrid.metrics import MetricsAggregate
    from stressgrid.runtime.local import run_engine
    measured = MetricsAggregate()
    marks = {}

    def on_snapshot(snapshot):
        if marks:
            measured.add_snapshot(snapshot)
        elif time.monotonic() >= opened + warmup:
            marks.update(cpu=time.process_time(), at=time.monotonic())

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        plan = open_plan(sink.getsockname()[1], "udp", "pass", rate, warmup + window + 1, 500)
        opened = time.monotonic()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_engine(plan, warmup + window, until=lambda _: False, on_snapshot=on_snapshot))
        cpu = time.process_time() - marks["cpu"]
        seconds = time.monotonic() - marks["at"]
    pathlib.Path(out).write_text(json.dumps({**figures(measured), "cpu_s": cpu, "seconds": seconds}))


def run_ours(port, rate, seconds):
    """The worker side against nginx: one GET per iteration at ``rate`` until stopped (SIGTERM)
    or ``seconds``; prints its figures as a ``FIGURES {json}`` line."""
    from stressgrid.runtime.local import run_local
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    devices = max(200, rate // 50)
    result = run_local(open_plan(port, "http", "await get('/')", rate, seconds, devices), seconds,
                       until=lambda _: bool(stopped))
    print("FIGURES", json.dumps(figures(result)), flush=True)


def run_closed(port, seconds):
    """The closed model's side: 50 devices looping one GET, for ``seconds``."""
    run_devices("bench-closed", port, "http", "while True:\n    await get('/')\n", seconds, file=sys.stderr)


def trivial(rate, warmup, window):
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(pinned([sys.executable, __file__, "--run-trivial", str(rate), "--warmup", str(warmup),
                               "--seconds", str(window), "--out", out.name]), check=True, timeout=window + 120)
        result = json.loads(out.read())
    due = round(rate * result["seconds"])
    per_iteration = result["cpu_s"] * 1e6 / max(result["iterations"], 1)
    print(f"trivial  {result['iterations']} started of about {due} due in {result['seconds']:.2f} s, "
          f"{result['dropped']} dropped, {per_iteration:.2f} CPU-us/iteration, start delay p99 "
          f"{result['delay_p99_us']} us errors {result['errors']}", flush=True)
    return per_iteration, result["iterations"] / result["seconds"]


def against_nginx(name, command, status_port, rate, warmup, window):
    """``command``'s rate as nginx counted it over the window, its CPU-us per request, and its
    start delay p99 (us) if it printed one; ``rate`` None for the closed model (no rate asked)."""
    run = measure_window(name, command, lambda: served(status_port), warmup, window)
    achieved = (run.count - 1) / run.seconds        # less our own status request
    cpu_us = run.cpu * 1e6 / max(run.count - 1, 1)
    line = run.output.decode(errors="replace").split("FIGURES ", 1)
    extra = json.loads(line[1].splitlines()[0]) if len(line) == 2 else {}
    delay = extra.get("delay_p99_us")
    asked = "closed model" if rate is None else f"asked {rate:6d}/s"
    kept = "" if rate is None else f" ({100 * achieved / rate:5.1f}%)"
    print(f"{name:7s} {asked}  got {achieved:9.1f}/s{kept}  {cpu_us:6.2f} CPU-us/request"
          + (f"  start delay p99 {delay} us, dropped {extra['dropped']}" if delay is not None else ""), flush=True)
    if extra.get("errors"):
        print(f"        errors {extra['errors']}", flush=True)
    return achieved, delay, cpu_us


def main():
    parser = arguments(__doc__)
    parser.add_argument("--rates", default="10000,50000", help="comma-separated iterations a second against nginx")
    parser.add_argument("--trivial-rate", type=int, default=100_000)
    parser.add_argument("--no-locust", action="store_true")
    parser.add_argument("--run-trivial", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-ours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-closed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_trivial:
        return run_trivial(args.run_trivial, args.warmup, args.seconds, args.out)
    if args.run_ours:
        return run_ours(args.run_ours, args.rate, args.seconds)
    if args.run_closed:
        return run_closed(args.run_closed, args.seconds)
    need_two_cores("nginx on one, the load generator on the other")
    rates = [int(rate) for rate in args.rates.split(",") if rate]
    seconds = lifetime(args.warmup, args.window)
    fields = {}
    results = {"trivial": [], "closed": []}
    print(f"one worker on core {CLIENT_CORE}; nginx on core {SERVER_CORE}; {args.window:.0f} s windows", flush=True)
    with tempfile.TemporaryDirectory(prefix="sg-bench-arrivals-") as directory:
        directory = pathlib.Path(directory)
        locustfile = directory / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        with pinned_nginx(directory, REQUIREMENTS) as (port, status_port):
            locust = None if args.no_locust else require("locust", REQUIREMENTS)
            for round_number in range(args.rounds):
                print(f"-- round {round_number + 1}", flush=True)
                results["trivial"].append(trivial(args.trivial_rate, args.warmup, args.window))
                closed = [sys.executable, __file__, "--run-closed", str(port), "--seconds", str(seconds)]
                results["closed"].append(against_nginx("closed", closed, status_port, None, args.warmup, args.window))
                for rate in rates:
                    ours = [sys.executable, __file__, "--run-ours", str(port), "--rate", str(rate),
                            "--seconds", str(seconds)]
                    results.setdefault(f"ours_{rate}", []).append(
                        against_nginx("ours", ours, status_port, rate, args.warmup, args.window))
                    if locust:
                        users = str(max(1, rate // PER_LOCUST_USER))
                        command = [locust, "-f", str(locustfile), "--headless", "-u", users, "-r", users,
                                   "-t", f"{int(seconds)}s", "--host", f"http://127.0.0.1:{port}",
                                   "--only-summary", "--loglevel", "ERROR"]
                        results.setdefault(f"locust_{rate}", []).append(
                            against_nginx("locust", command, status_port, rate, args.warmup, args.window))
    fields["trivial_us"] = f"{statistics.median(r[0] for r in results['trivial']):.2f}"
    fields["trivial_rate"] = f"{statistics.median(r[1] for r in results['trivial']):.0f}"
    fields["closed_us"] = f"{statistics.median(r[2] for r in results['closed']):.2f}"
    for rate in rates:
        fields[f"rate_{rate}"] = f"{statistics.median(r[0] for r in results[f'ours_{rate}']):.0f}"
        fields[f"us_{rate}"] = f"{statistics.median(r[2] for r in results[f'ours_{rate}']):.2f}"
        delays = [r[1] for r in results[f"ours_{rate}"] if r[1] is not None]
        if delays:
            fields[f"delay_p99_ms_{rate}"] = f"{statistics.median(delays) / 1000:.2f}"
        if f"locust_{rate}" in results:
            fields[f"locust_rate_{rate}"] = f"{statistics.median(r[0] for r in results[f'locust_{rate}']):.0f}"
    print_result(fields)
    return 0


if __name__ == "__main__":
    sys.exit(main())
