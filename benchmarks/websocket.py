"""WebSocket echo round trips per core: our devices against Python peer clients.

    python benchmarks/websocket.py [--rounds 3] [--warmup 1.5] [--window 5] [--size 64]

One echo server (picows, the fastest Python WebSocket server at hand) runs
pinned to core 0 and counts the messages it echoes. Each client in turn runs
pinned to core 1 with 50 connections, one message in flight on each:

- ours: a worker (``run_local``) of 50 ``http`` devices doing ``ws_upgrade`` then
  ``ws_send_text`` / ``ws_receive_text`` in a loop;
- websockets: 50 asyncio tasks doing ``send`` / ``recv`` (the same await-per-message
  shape as a device script);
- picows: 50 connections driven from picows' frame callback (no await at all: the
  lower bound of what Python can spend per round trip).

Round trips are counted by the server over the same window after a warm-up;
CPU time is the client process's user + system time over that window. The last
line is

    RESULT round_trips_per_s=<ours> per_core_vs_websockets=<x> per_core_vs_picows=<x>

where "per core" is round trips per CPU-second of the client, medians over the
rounds. Loopback only; every run stops by itself.
"""
import argparse
import asyncio
import multiprocessing
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONNECTIONS = 50
SERVER_CORE = 0
CLIENT_CORE = "1"


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


# -- the echo server ------------------------------------------------------------

def serve(port, counter):
    """picows echo server on core 0; ``counter`` (shared memory) counts echoes."""
    import uvloop
    from picows import WSListener, WSMsgType, ws_create_server

    os.sched_setaffinity(0, {SERVER_CORE})

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame):
            kind = frame.msg_type
            if kind == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            elif kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
                transport.send(kind, frame.get_payload_as_bytes())
                counter.value += 1

    async def main():
        server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# -- the clients ----------------------------------------------------------------

OUR_SCRIPT = """
message = "x" * params["size"]
status, _, _ = await ws_upgrade("/")
assert status == 101, status
while True:
    await ws_send_text(message)
    await ws_receive_text()
"""


def client_ours(port, seconds, size):
    from stressgrid.runtime.local import run_local
    plan = {"name": "bench-websocket",
            "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "http"}],
            "blocks": [{"script": OUR_SCRIPT, "params": {"size": size}, "size": CONNECTIONS}],
            "opts": {"timeout_ms": 5000}}
    result = run_local(plan, seconds)
    errors = {k: v for k, v in result.counters.items() if k.endswith("_error_count")}
    if errors:
        print("errors:", errors, result.errors, flush=True)


def client_websockets(port, seconds, size):
    import uvloop
    from websockets.asyncio.client import connect

    message = "x" * size

    async def one():
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=None) as ws:
            while True:
                await ws.send(message)
                await ws.recv()

    async def main():
        tasks = [asyncio.ensure_future(one()) for _ in range(CONNECTIONS)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()

    uvloop.run(main())


def client_picows(port, seconds, size):
    import uvloop
    from picows import WSListener, WSMsgType, ws_connect

    message = b"x" * size

    class Loop(WSListener):
        def on_ws_connected(self, transport):
            transport.send(WSMsgType.TEXT, message)

        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.TEXT:
                transport.send(WSMsgType.TEXT, message)

    async def main():
        for _ in range(CONNECTIONS):
            await ws_connect(Loop, f"ws://127.0.0.1:{port}/")
        await asyncio.sleep(seconds)

    uvloop.run(main())


CLIENTS = {"ours": client_ours, "websockets": client_websockets, "picows": client_picows}


# -- measuring ------------------------------------------------------------------

def measure(name, port, counter, warmup, window, size):
    import psutil
    seconds = warmup + window + 30
    command = ["taskset", "-c", CLIENT_CORE, sys.executable, __file__, "--client", name,
               "--port", str(port), "--seconds", str(seconds), "--size", str(size)]
    process = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        start = counter.value
        deadline = time.monotonic() + 60
        while counter.value - start < 1000:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} does not send messages: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.05)
        time.sleep(warmup)
        times = process.cpu_times()
        cpu_0, count_0, t_0 = times.user + times.system, counter.value, time.monotonic()
        time.sleep(window)
        times = process.cpu_times()
        cpu_1, count_1, t_1 = times.user + times.system, counter.value, time.monotonic()
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
    if output and b"errors:" in output:
        print(output.decode()[-2000:], flush=True)
    round_trips = count_1 - count_0
    rate = round_trips / (t_1 - t_0)
    per_core = round_trips / max(cpu_1 - cpu_0, 1e-9)
    print(f"{name:10s} {rate:9.0f} round trips/s  {per_core:9.0f} per CPU-second  "
          f"(client CPU {100 * (cpu_1 - cpu_0) / (t_1 - t_0):.0f}%)", flush=True)
    return rate, per_core


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before each window")
    parser.add_argument("--window", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--only", choices=sorted(CLIENTS), action="append")
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return CLIENTS[args.client](args.port, args.seconds, args.size)
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: the echo server on one, the client on the other")

    names = args.only or ["ours", "websockets", "picows"]
    port = free_port()
    context = multiprocessing.get_context("fork")
    counter = context.Value("Q", 0, lock=False)
    server = context.Process(target=serve, args=(port, counter), daemon=True)
    server.start()
    results = {name: [] for name in names}
    try:
        wait_for_port(port)
        print(f"picows echo server on core {SERVER_CORE}, clients on core {CLIENT_CORE}, "
              f"{CONNECTIONS} connections, {args.size}-byte text messages, {args.window:.0f} s windows",
              flush=True)
        for round_number in range(args.rounds):
            print(f"-- round {round_number + 1}", flush=True)
            for name in names:
                results[name].append(measure(name, port, counter, args.warmup, args.window, args.size))
    finally:
        server.terminate()
        server.join(5)

    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for name, runs in results.items()}
    print("-- medians")
    for name, (rate, per_core) in medians.items():
        print(f"{name:10s} {rate:9.0f} round trips/s  {per_core:9.0f} per CPU-second")
    line = ["RESULT"]
    if "ours" in medians:
        line.append(f"round_trips_per_s={medians['ours'][0]:.0f}")
        line.append(f"per_core={medians['ours'][1]:.0f}")
        for peer in ("websockets", "picows"):
            if peer in medians:
                line.append(f"per_core_vs_{peer}={medians['ours'][1] / medians[peer][1]:.2f}")
    print(" ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
