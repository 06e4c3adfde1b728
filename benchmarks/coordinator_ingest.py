"""Coordinator ingest at fleet scale: 1,000 generators, each reporting every second.

    python benchmarks/coordinator_ingest.py [--generators 1000] [--seconds 20]

Starts a real coordinator (``python -m coordinator_app``) and a few helper
processes that together hold one ZeroMQ DEALER per simulated generator.
Each generator connects over CurveZMQ with the fleet's join token (as real
generators do: every message is encrypted), registers, heartbeats every second and sends one telemetry
message a second with 20 histograms (a few hundred distinct latency buckets
each, the shape a busy generator's second has) and 20 counters, at its own
offset within the second. With every generator registered and a run in
progress (so per-second, per-interval and run-total aggregates and the
writers are all working), the coordinator process's CPU time is measured
over the window. Afterwards the number of telemetry messages the
coordinator merged must equal the number sent: nothing dropped.

The budget is 50% of one core. The last line is ``RESULT ...``; the exit
status is 0 when the run is within budget and exact.
"""
import argparse
import json
import os
import pathlib
import random
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HISTOGRAMS = 20
COUNTERS = 20
BUDGET_PERCENT = 50.0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- helper process: a slice of the fleet ------------------------------------------


def telemetry_payloads(seed, run_id, variants=8):
    """Pre-encoded telemetry messages (the coordinator's work does not depend on who encodes)."""
    from stressgrid import wire
    from stressgrid._core.metrics import Recorder
    rng = random.Random(seed)
    payloads = []
    for _ in range(variants):
        recorder = Recorder()
        for h in range(HISTOGRAMS):
            name = f"bench_{h}_us"
            for _ in range(400):
                recorder.record(name, int(rng.lognormvariate(8, 1.2)))
        for c in range(COUNTERS):
            recorder.inc(f"bench_{c}_count", rng.randint(1, 1000))
        payloads.append(wire.encode(wire.Telemetry(run_id=run_id, metrics=recorder.snapshot(),
                                                   active_device_number=1, errors={})))
    return payloads


def sender(url, first, count, seed, token_path):
    """Run ``count`` generators until stdin closes; print how many telemetry messages went out."""
    import zmq

    from stressgrid import __version__, wire
    from stressgrid.generator.coordinator_link import secure
    from stressgrid.join_token import read_token_file
    token = read_token_file(token_path)
    context = zmq.Context()
    context.set(zmq.MAX_SOCKETS, count + 64)
    sockets = []
    for i in range(first, first + count):
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, f"bench-{i:05d}".encode())
        dealer.setsockopt(zmq.LINGER, 2000)
        secure(dealer, token)  # CurveZMQ with the fleet's join token, as real generators connect
        dealer.connect(url)
        dealer.send(wire.encode(wire.Register(generator_id=f"bench-{i:05d}", version=__version__,
                                              cores=4, workers=4, capacity=100000)))
        sockets.append(dealer)
    poller = zmq.Poller()
    for dealer in sockets:
        poller.register(dealer, zmq.POLLIN)
    def wait_for_every(kind, timeout_s=60):
        """The messages of ``kind`` received, one per generator (or fewer on timeout)."""
        received = {}
        deadline = time.monotonic() + timeout_s
        while len(received) < count and time.monotonic() < deadline:
            for dealer, _ in poller.poll(100):
                while True:
                    try:
                        message = wire.decode(dealer.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    if isinstance(message, kind):
                        received[dealer] = message
        return received

    print(json.dumps({"registered": len(wait_for_every(wire.Registered))}), flush=True)
    # Telemetry carries the run id: every generator's comes once its cohort has arrived.
    starts = wait_for_every(wire.StartCohort)
    print(json.dumps({"started": len(starts)}), flush=True)
    run_ids = {start.run_id for start in starts.values()}
    payloads = telemetry_payloads(seed, run_ids.pop() if len(run_ids) == 1 else "")
    heartbeat = wire.encode(wire.Heartbeat(sent_at=0.0))
    sent = 0
    rng = random.Random(seed)
    offsets = sorted((rng.random(), i) for i in range(count))  # each generator's moment in the second
    start = time.monotonic()
    second = 0
    position = 0
    stdin = sys.stdin.fileno()
    while True:
        if position == count:
            position = 0
            second += 1
        offset, index = offsets[position]
        due = start + second + offset
        wait_s = max(0.0, due - time.monotonic())
        readable, _, _ = select.select([stdin], [], [], wait_s)
        if readable:
            break
        dealer = sockets[index]
        dealer.send(heartbeat)
        dealer.send(payloads[(index + second) % len(payloads)])
        sent += 1
        position += 1
        for _ in range(4):  # drain the coordinator's heartbeats
            try:
                dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
    for dealer in sockets:
        dealer.close()
    context.term()  # linger: everything sent reaches the coordinator first
    print(json.dumps({"sent": sent}), flush=True)


# -- orchestrator -------------------------------------------------------------------


def api(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def wait_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit("coordinator exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("coordinator did not start")
            time.sleep(0.05)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", type=int, default=1000)
    parser.add_argument("--helpers", type=int, default=4, help="helper processes holding the DEALERs")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--sender", nargs=5, metavar=("URL", "FIRST", "COUNT", "SEED", "TOKEN_FILE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        url, first, count, seed, token_path = args.sender
        return sender(url, int(first), int(count), int(seed), token_path)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    data_dir = tempfile.mkdtemp(prefix="sg-ingest-")
    management, generators_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STRESSGRID_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "coordinator_app", "--management-port", str(management),
         "--generator-port", str(generators_port), "--data-dir", data_dir, "--log-level", "WARNING",
         "--generator-timeout", "10"], cwd=ROOT, env=env)
    helpers = []
    try:
        wait_port(management, coordinator)
        base = f"http://127.0.0.1:{management}"
        url = f"tcp://127.0.0.1:{generators_port}"
        share = [args.generators // args.helpers + (1 if i < args.generators % args.helpers else 0)
                 for i in range(args.helpers)]
        first = 0
        for i, count in enumerate(share):
            helpers.append(subprocess.Popen(
                [sys.executable, __file__, "--sender", url, str(first), str(count), str(i),
                 os.path.join(data_dir, "join-token")],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            first += count
        for helper in helpers:
            registered = json.loads(helper.stdout.readline())["registered"]
            if registered == 0:
                raise SystemExit("a helper could not register its generators")
        deadline = time.monotonic() + 60
        while len(api(base, "GET", "/api/state")["generators"]) < args.generators:
            if time.monotonic() > deadline:
                raise SystemExit("not every generator registered")
            time.sleep(0.5)
        plan = {"name": "ingest benchmark",
                "addresses": [{"host": "127.0.0.1", "port": 9, "protocol": "udp"}],
                "blocks": [{"script": "await send(b'x')", "params": {}, "size": args.generators}],
                "opts": {"ramp_steps": 1, "rampup_step_ms": 1000, "sustain_ms": 3_600_000,
                         "rampdown_step_ms": 1000, "cooldown_ms": 1000, "report_interval_ms": 5000}}
        run = api(base, "POST", "/api/runs", plan)
        for helper, count in zip(helpers, share):
            if json.loads(helper.stdout.readline())["started"] != count:
                raise SystemExit("not every generator received its cohort")
        time.sleep(args.warmup)
        cpu_before, wall_before = cpu_seconds(coordinator.pid), time.monotonic()
        before = api(base, "GET", "/api/state")["ingest"]
        time.sleep(args.seconds)
        during = api(base, "GET", "/api/state")
        after = during["ingest"]
        cpu_after, wall_after = cpu_seconds(coordinator.pid), time.monotonic()
        # Stop the fleet and check that every message sent was merged.
        sent = 0
        for helper in helpers:
            helper.stdin.close()
        for helper in helpers:
            sent += json.loads(helper.stdout.readline())["sent"]
            helper.wait(60)
        time.sleep(1.5)
        final = api(base, "GET", "/api/state")
        ingested = final["ingest"]["messages"]
        rejected = final["ingest"]["rejected"]
        telemetry = during["telemetry"]
        api(base, "POST", f"/api/runs/{run['id']}/abort")
        cpu_percent = 100.0 * (cpu_after - cpu_before) / (wall_after - wall_before)
        rate = (after["messages"] - before["messages"]) / (wall_after - wall_before)
        print(f"generators={len(during['generators'])} telemetry/s={rate:.0f} "
              f"coordinator cpu={cpu_percent:.1f}% of one core (budget {BUDGET_PERCENT:.0f}%)")
        print(f"histograms in the last second: {len(telemetry['histograms'])}, "
              f"counters: {len(telemetry['counters'])}")
        exact = ingested == sent and rejected == 0
        ok = exact and cpu_percent <= BUDGET_PERCENT and rate >= 0.95 * args.generators
        print(f"RESULT coordinator_ingest generators={args.generators} histograms={HISTOGRAMS} "
              f"counters={COUNTERS} telemetry_per_s={rate:.0f} cpu_percent_one_core={cpu_percent:.1f} "
              f"budget_percent={BUDGET_PERCENT:.0f} sent={sent} ingested={ingested} rejected={rejected} "
              f"{'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        for helper in helpers:
            if helper.poll() is None:
                helper.kill()
                helper.wait()
        coordinator.terminate()
        try:
            coordinator.wait(60)
        except subprocess.TimeoutExpired:
            coordinator.kill()
            coordinator.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
