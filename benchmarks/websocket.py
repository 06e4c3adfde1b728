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

Where ours spends its CPU (``perf record -g`` on ours, 3 s): the kernel 76% of samples;
libpython 10.7% (the script's frame and calls); uvloop 4.3%; the compiled message path
(``_core/ws_client.pyx``) 2.2%; the device runner 1.6%; the frame codec 1.3%; the
``Pending`` 1.0%. While the connection's message path was Python, libpython took 25% (its
interpreter loop alone 10%).

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
import sys

from common import (CLIENT_CORE, CONNECTIONS, SERVER_CORE, arguments, free_port, interleaved, lifetime,
                    measure_window, median, need_two_cores, print_result, report_medians, run_devices, versus,
                    wait_for_port)


# -- the echo server ------------------------------------------------------------

def serve(port, counter):
    """picows echo server on core 0; ``counter`` (shared memory) counts echoes."""
    import uvloop
    from picows import WSListener, WSMsgType, ws_create_server

    os.sched_setaffinity(0, {int(SERVER_CORE)})

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
    run_devices("bench-websocket", port, "http", OUR_SCRIPT, seconds, params={"size": size})


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
    seconds = lifetime(warmup, window)
    command = [sys.executable, __file__, "--client", name, "--port", str(port), "--seconds", str(seconds),
               "--size", str(size)]
    run = measure_window(name, command, lambda: counter.value, warmup, window, what="messages")
    run.show_errors()
    rate = run.count / run.seconds
    per_core = run.count / max(run.cpu, 1e-9)
    print(f"{rate_line(name, rate, per_core)}  (client CPU {run.cpu_percent:.0f}%, "
          f"the server's core busy {100 * run.server_busy:.0f}%)", flush=True)
    return rate, per_core


def rate_line(name, rate, per_core):
    return f"{name:10s} {rate:9.0f} round trips/s  {per_core:9.0f} per CPU-second"


def main():
    parser = arguments(__doc__)
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--only", choices=sorted(CLIENTS), action="append")
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return CLIENTS[args.client](args.port, args.seconds, args.size)
    need_two_cores("the echo server on one, the client on the other")

    names = args.only or ["ours", "websockets", "picows"]
    port = free_port()
    context = multiprocessing.get_context("fork")
    counter = context.Value("Q", 0, lock=False)
    server = context.Process(target=serve, args=(port, counter), daemon=True)
    server.start()
    try:
        wait_for_port(port)
        print(f"picows echo server on core {SERVER_CORE}, clients on core {CLIENT_CORE}, "
              f"{CONNECTIONS} connections, {args.size}-byte text messages, {args.window:.0f} s windows",
              flush=True)
        results = interleaved(args.rounds, names, lambda name: measure(
            name, port, counter, args.warmup, args.window, args.size))
    finally:
        server.terminate()
        server.join(5)

    medians = report_medians(results, rate_line)
    print_result({"round_trips_per_s": median(medians, "ours", 0, ".0f"),
                  "per_core": median(medians, "ours", 1, ".0f"),
                  **{f"per_core_vs_{peer}": versus(medians, peer, 1, ".2f") for peer in ("websockets", "picows")}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
