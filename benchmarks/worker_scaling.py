"""Throughput of one worker against two on the same host: does a second core add load?

    python benchmarks/worker_scaling.py [--devices 100] [--seconds 10]

For 1 and then 2 workers, starts a real host agent against the minimal
coordinator of ``agent_overhead.py`` and runs devices that send 64-byte UDP
datagrams as fast as they can to a loopback socket nobody reads (the kernel
drops what overflows its buffer), so the target costs nothing beyond the
sender's own system calls. Measured: datagrams sent per second, summed from
the agent's telemetry (``send_count``) over ``--seconds`` after a warm-up.

Caveat, stated in the output too: on a 2-core machine the second worker
shares the cores with the agent, this script and the kernel's loopback
delivery, so the ideal speedup of 2 is out of reach.
"""
import argparse
import os
import time

from agent_overhead import BenchCoordinator, agent_running, cpu_seconds, udp_cohort, udp_sink

SEND_SCRIPT = "payload = b'x' * 64\nfor _ in range(1000):\n    await send(payload)\n"


def datagrams_per_second(workers, devices, seconds, warmup_s=3.0):
    coordinator = BenchCoordinator()
    try:
        with udp_sink() as port, agent_running(coordinator, workers) as agent:
            coordinator.wait_registered()
            coordinator.send(udp_cohort(port, SEND_SCRIPT, devices))
            coordinator.wait_active(devices)
            coordinator.serve(warmup_s)
            processes = agent.children()
            started = time.monotonic()
            cpu_before = sum(cpu_seconds(process) for process in processes)
            coordinator.serve(seconds)
            worker_cores = (sum(cpu_seconds(process) for process in processes) - cpu_before) \
                / (time.monotonic() - started)
            merged, messages = coordinator.merged_since(started)
    finally:
        coordinator.close()
    errors = merged.errors()
    errors.pop("network_tcp_retransmit_error_count", None)
    if errors:
        raise RuntimeError(f"devices failed: {errors}")
    # Each telemetry message is one second of the host's deltas.
    return merged.counter("send_count") / max(1, len(messages)), worker_cores


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    one, one_cores = datagrams_per_second(1, args.devices, args.seconds)
    print(f"1 worker:  {one:,.0f} datagrams/s using {one_cores:.2f} cores "
          f"({one / one_cores:,.0f} per worker CPU second)", flush=True)
    two, two_cores = datagrams_per_second(2, args.devices, args.seconds)
    print(f"2 workers: {two:,.0f} datagrams/s using {two_cores:.2f} cores "
          f"({two / two_cores:,.0f} per worker CPU second)", flush=True)
    print(f"RESULT udp_datagrams_per_s_1_worker={one:.0f} udp_datagrams_per_s_2_workers={two:.0f} "
          f"speedup={two / one:.2f} worker_cores_1={one_cores:.2f} worker_cores_2={two_cores:.2f} "
          f"cores={os.cpu_count()} devices={args.devices} seconds={args.seconds:.0f} "
          f"target=unread_loopback_udp_socket", flush=True)


if __name__ == "__main__":
    main()
