"""MQTT devices: memory of idle ones, and publishes per CPU-second beside paho-mqtt.

    python benchmarks/mqtt.py [--idle-devices 15000] [--publishes 200000] [--devices 50]

Against a mosquitto started here (MQTT 5), each part in a fresh process of its own:

1. Idle: devices connected, subscribed to a topic of their own, keep-alive 60 s, whose
   script then waits in ``delay``: worker RSS per device (goal: at most 4 KB). One worker
   process, as in ``idle_devices.py``; one mosquitto holds at most 20,000 connections here
   (the open-file limit per process), so that is the most this part asks for.
2. Publishing: ``--devices`` devices publish a 64-byte payload on their own topic in a loop
   until ``--publishes`` are done, at QoS 0 and then at QoS 1 (each waiting for its PUBACK);
   publishes per CPU-second of the worker (user and system time). Beside it, in the same
   run, paho-mqtt as fast as it goes: ``--paho-clients`` clients, each with its network
   thread, the main thread publishing round-robin without waiting (QoS 1 with 1,000
   messages in flight per client), until every PUBACK came back; its process's CPU time
   likewise. The ratio is ours to paho's (goal: at least 3). Four clients is paho's best
   we measured: per CPU-second, 12,240 (QoS 0) and 2,329 (QoS 1) with 4 clients, 5,516 and
   2,361 with 10, 4,285 and 2,031 with 50; one client ran out of its queue at QoS 1.

Measured (2026-12-07, this 2-core machine): idle 3.85 and 3.86 KB per device over two runs;
QoS 0 70,922 publishes per CPU-second, 5.39x paho-mqtt's 13,149 (4 clients); QoS 1 35,651,
15.88x paho-mqtt's 2,245.

More devices than one worker and one mosquitto hold (100,000 on this machine) are
``benchmarks/connections.py --protocol mqtt``'s part: several workers, several brokers.

Needs ``mosquitto`` (Debian package) and ``paho-mqtt`` (``pip install paho-mqtt``) for the
peer. The last line is ``RESULT idle_kb_per_device=... qos0_per_cpu_s=... qos0_vs_paho=...
qos1_per_cpu_s=... qos1_vs_paho=...``.
"""
import argparse
import asyncio
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import device_process, in_process, warm_up  # noqa: E402

PAYLOAD = b"x" * 64
IDLE_SCRIPT = """
await mqtt_connect(keepalive=60)
await subscribe("idle/" + device_id, qos=1)
inc_counter("ready")
await delay(600000)
"""
PUBLISH_SCRIPT = """
await mqtt_connect(keepalive=60)
topic = "bench/" + device_id
payload = params["payload"].encode()
qos = params["qos"]
for _ in range(params["count"]):
    await publish(topic, payload, qos=qos)
inc_counter("finished")
await delay(600000)
"""


def _engine_run(port, script, params, devices, wait_counter, timeout_s, queue):
    """In a fresh process: run ``devices`` devices of ``script`` until ``wait_counter`` reaches
    ``devices``; the RSS growth and the CPU time it took."""
    import gc

    import uvloop

    from stressgrid.plan import Address, Opts
    from stressgrid.runtime.engine import Engine

    process = device_process()

    async def main():
        engine = Engine()
        address = Address("127.0.0.1", port, "mqtt", "127.0.0.1")
        await warm_up(engine, address, IDLE_SCRIPT, 0.5)
        rss_before = process.memory_info().rss
        cpu_before = process.cpu_times()
        started = time.perf_counter()
        await engine.start_cohort("run", [(script, params, devices)], [address], Opts(timeout_ms=30000))
        counted = 0
        errors = {}
        while counted < devices and time.perf_counter() - started < timeout_s:
            await asyncio.sleep(0.05)
            counters = engine.snapshot()["counters"]
            counted += counters.get(wait_counter, 0)
            for name, value in counters.items():
                if name.endswith("_error_count"):
                    errors[name] = errors.get(name, 0) + value
            if errors:
                break
        elapsed = time.perf_counter() - started
        cpu_after = process.cpu_times()
        gc.collect()
        rss_after = process.memory_info().rss
        active = engine.active_devices
        await engine.stop_all()
        return {"devices": devices, "active": active, "done": counted, "errors": errors,
                "rss_per_device": (rss_after - rss_before) / devices, "elapsed_s": elapsed,
                "cpu_s": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)}

    queue.put(uvloop.run(main()))


def _paho_run(port, clients, publishes, qos, queue):
    """In a fresh process: paho-mqtt publishing ``publishes`` messages over ``clients`` clients."""
    import psutil
    from paho.mqtt import client as paho

    process = psutil.Process()
    connected = []
    for index in range(clients):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"paho-{index}", protocol=paho.MQTTv5)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port, keepalive=60)
        client.loop_start()
        connected.append(client)
    time.sleep(0.5)
    cpu_before = process.cpu_times()
    started = time.perf_counter()
    infos = []
    for n in range(publishes):
        client = connected[n % clients]
        info = client.publish(f"bench/paho-{n % clients}", PAYLOAD, qos=qos)
        if qos:
            infos.append(info)
    for info in infos:
        info.wait_for_publish(timeout=60)
    if not qos:  # QoS 0 is done once written: wait until each client's queue drained
        for client in connected:
            deadline = time.monotonic() + 60
            while client.want_write() and time.monotonic() < deadline:
                time.sleep(0.001)
    elapsed = time.perf_counter() - started
    cpu_after = process.cpu_times()
    for client in connected:
        client.disconnect()
        client.loop_stop()
    queue.put({"done": publishes if not qos else sum(1 for info in infos if info.is_published()),
               "elapsed_s": elapsed,
               "cpu_s": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-devices", type=int, default=15000)
    parser.add_argument("--publishes", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=50, help="publishing devices")
    parser.add_argument("--paho-clients", type=int, default=4, help="paho-mqtt clients (its best: see above)")
    args = parser.parse_args()
    if args.idle_devices > 19_000:
        raise SystemExit("one mosquitto holds at most about 19,000 connections here (20,000 open files)")
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        raise SystemExit("the peer needs paho-mqtt: pip install paho-mqtt") from None

    from tests.mqtt.broker import mosquitto

    with tempfile.TemporaryDirectory() as tmp, mosquitto(pathlib.Path(tmp)) as broker:
        idle = in_process(_engine_run, broker.port, IDLE_SCRIPT, {}, args.idle_devices, "ready_count", 300)
        if idle["errors"] or idle["done"] < args.idle_devices:
            raise SystemExit(f"idle devices: {idle['done']:,} of {args.idle_devices:,} ready; errors {idle['errors']}")
        print(f"idle: {idle['active']:,} MQTT devices connected and subscribed, "
              f"{idle['rss_per_device'] / 1024:.2f} KB RSS each (ready in {idle['elapsed_s']:.1f} s)", flush=True)
        rows = {}
        for qos in (0, 1):
            count = args.publishes // args.devices
            params = {"payload": PAYLOAD.decode(), "qos": qos, "count": count}
            ours = in_process(_engine_run, broker.port, PUBLISH_SCRIPT, params, args.devices, "finished_count", 600)
            if ours["errors"] or ours["done"] < args.devices:
                raise SystemExit(f"QoS {qos}: {ours['done']} of {args.devices} devices finished; "
                                 f"errors {ours['errors']}")
            published = count * args.devices
            paho = in_process(_paho_run, broker.port, args.paho_clients, published, qos)
            ours_rate = published / ours["cpu_s"]
            paho_rate = paho["done"] / paho["cpu_s"]
            rows[qos] = (ours_rate, paho_rate)
            print(f"QoS {qos}: ours {published:,} publishes in {ours['elapsed_s']:.2f} s, "
                  f"{ours_rate:,.0f} per CPU-second; paho-mqtt {paho['done']:,} in {paho['elapsed_s']:.2f} s, "
                  f"{paho_rate:,.0f} per CPU-second; {ours_rate / paho_rate:.2f}x", flush=True)
    print(f"RESULT idle_kb_per_device={idle['rss_per_device'] / 1024:.2f} "
          f"qos0_per_cpu_s={rows[0][0]:.0f} qos0_vs_paho={rows[0][0] / rows[0][1]:.2f} "
          f"qos1_per_cpu_s={rows[1][0]:.0f} qos1_vs_paho={rows[1][0] / rows[1][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
