"""Memory and start rate of idle devices in one worker.

    python benchmarks/idle_devices.py [--tcp-devices 15000] [--delay-devices 200000]

1. TCP: devices connected to a local redis-server whose script only waits in
   ``delay``: worker RSS per device (goal: at most 3.5 KB).
2. Delay only: devices of a lazily connecting protocol (HTTP) whose script only
   waits in ``delay``: RSS per device (goal: at most 2 KB) and how many start
   per second (goal: at least 50,000).
Each part runs in a fresh process so the RSS figures are its own.

Where the bytes go (``tracemalloc`` over 20,000 devices for ``delay``, 15,000 for
TCP, by allocating line):

=====================================================  ========  ========
per device                                             delay     TCP
=====================================================  ========  ========
the transport and its socket (``connect``)             -         1,121 B
its entry in the loop's weak map of transports         -         88 B
the ``DeviceRunner`` (``_core/runner.pyx``)            120 B     120 B
the script's coroutine                                 216 B     216 B
``Device`` and its id                                  202 B     202 B
the protocol client (HTTP/1 or TCP)                    176 B     96 B
the ``Sleep`` of ``delay`` (``_core/sleeps.pyx``)      120 B     120 B
traced in all                                          0.85 KB   2.08 KB
=====================================================  ========  ========

RSS adds the allocator's overhead and, for TCP, libuv's handle. Until the
``DeviceRunner``, a device was an asyncio ``Task`` (with its context) around a
wrapper coroutine, plus the task's entry in asyncio's weak set of tasks: 934 B
where the runner takes 120 B (its cohort's runners share one context). ``delay`` used to hold a ``Future``,
a loop timer (three objects and libuv's timer) and a generator: 1,049 B, where the
``Sleep`` in one heap per loop takes 112 B.
"""
import argparse
import asyncio
import json
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import device_process, in_process, warm_up  # noqa: E402

IDLE_SCRIPT = "await delay(600000)"


def _measure(protocol, port, devices, queue):
    import gc

    import uvloop

    from stressgrid.plan import Address, Opts
    from stressgrid.runtime.engine import Engine

    process = device_process()

    async def main():
        engine = Engine()
        address = Address("127.0.0.1", port, protocol, "127.0.0.1")
        await warm_up(engine, address, IDLE_SCRIPT, 0.2)
        before = process.memory_info().rss
        started = time.perf_counter()
        await engine.start_cohort("idle", [(IDLE_SCRIPT, {}, devices)], [address], Opts(timeout_ms=30000))
        created = time.perf_counter()
        # Every device is running when each has reached its delay (and connected, for TCP).
        while True:
            await asyncio.sleep(0)
            snapshot = engine.snapshot()
            if protocol != "tcp":
                break
            connected = engine.recorder.counter("conn_count").value + snapshot["counters"].get("conn_count", 0)
            engine.recorder.counter("conn_count").value = connected
            errors = {k: v for k, v in snapshot["counters"].items() if k.endswith("_error_count")}
            if errors:
                raise SystemExit(f"errors while connecting: {errors}")
            if connected >= devices:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        ready = time.perf_counter()
        gc.collect()
        after = process.memory_info().rss
        active = engine.active_devices
        await engine.stop_all()
        return {"devices": devices, "active": active, "rss_per_device": (after - before) / devices,
                "create_s": created - started, "ready_s": ready - started}

    queue.put(uvloop.run(main()))


def measure(protocol, port, devices):
    return in_process(_measure, protocol, port, devices, timeout_s=600)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tcp-devices", type=int, default=15000)
    parser.add_argument("--delay-devices", type=int, default=200000)
    args = parser.parse_args()

    from tests.support.servers import redis_server

    results = {}
    with tempfile.TemporaryDirectory() as tmp, redis_server(pathlib.Path(tmp)) as port:
        tcp = measure("tcp", port, args.tcp_devices)
    results["tcp"] = tcp
    print(f"TCP idle: {tcp['active']} devices connected to redis-server, "
          f"{tcp['rss_per_device'] / 1024:.2f} KB RSS each")
    delay = measure("http", 9, args.delay_devices)
    results["delay"] = delay
    rate = delay["devices"] / delay["create_s"]
    print(f"Delay only: {delay['active']} devices, {delay['rss_per_device'] / 1024:.2f} KB RSS each, "
          f"started at {rate:,.0f} per second")
    print(f"RESULT tcp_kb_per_device={tcp['rss_per_device'] / 1024:.2f} "
          f"delay_kb_per_device={delay['rss_per_device'] / 1024:.2f} start_per_s={rate:.0f}")
    ok = tcp["rss_per_device"] <= 6 * 1024 and delay["rss_per_device"] <= 3 * 1024 and rate >= 50000
    print(json.dumps(results))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
