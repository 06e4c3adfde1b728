"""Aborting a run: how soon its report is written, and whether it holds everything.

    python benchmarks/abort_report.py [--runs 5] [--devices 10]

Starts redis-server, a real coordinator and two real generator host agents (one
worker each). Each round runs ``examples/redis_tcp.py`` on ``--devices``
devices, aborts it half a second after every device connected, and waits for
the report. It prints the time from the abort to the finished report (both
by the coordinator's clock),
and how many SET and GET commands redis counted that the report does not
(redis may be ahead by at most one command per device: those cut off by the
stop, whose reply never came). A negative gap would mean the report counted
another run's commands.

Goals: the report within 0.5 s of the abort, and a gap from 0 to ``--devices``
in every round. The last line is ``RESULT ...``; the exit status is 0 when
every round meets both.
"""
import argparse
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.coordinator.support import (coordinator_process, generator_processes, redis_info,  # noqa: E402
                                       wait_until)
from tests.coordinator.test_real_generators import redis_plan  # noqa: E402
from tests.support.servers import redis_server  # noqa: E402

REPORT_GOAL_S = 0.5


def redis_commands(port):
    """SET plus GET calls redis has served so far."""
    stats = redis_info(port, "commandstats")
    return sum(int(dict(part.split("=") for part in stats[f"cmdstat_{name}"].split(","))["calls"])
               for name in ("set", "get") if f"cmdstat_{name}" in stats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--devices", type=int, default=10)
    args = parser.parse_args()
    latencies, gaps = [], []
    with tempfile.TemporaryDirectory() as directory:
        tmp = pathlib.Path(directory)
        with redis_server(tmp) as port, coordinator_process(tmp) as coordinator, \
                generator_processes(coordinator, tmp, ["bench-a", "bench-b"]):
            api = coordinator.api
            api.wait_generators(2)
            for index in range(args.runs):
                before = redis_commands(port)
                status, run, _ = api.post("/api/runs", redis_plan(port, name=f"abort-{index}", size=args.devices,
                                                                  steps=1, sustain_ms=60000))
                assert status == 201, run
                wait_until(lambda: int(redis_info(port)["connected_clients"]) - 1 == args.devices, timeout=15)
                time.sleep(0.5)  # let the devices work a while: the stop must cut real traffic
                assert api.post(f"/api/runs/{run['id']}/abort")[0] == 202
                summary = api.wait_run_finished(run["id"])["summary"]
                # Both times are the coordinator's: when it sent the aborts, when the report was done.
                aborted_at = next(e["time"] for e in summary["events"] if e["kind"] == "run_aborted")
                latencies.append(summary["finished_at"] - aborted_at)
                histograms = summary["histograms"]
                reported = sum(histograms.get(name, {}).get("count", 0) for name in ("set_us", "get_us"))
                gaps.append(redis_commands(port) - before - reported)
                print(f"run {index}: report after {latencies[-1]:.3f} s; redis commands not in the report: "
                      f"{gaps[-1]}", flush=True)
    ok = max(latencies) <= REPORT_GOAL_S and all(0 <= gap <= args.devices for gap in gaps)
    print(f"RESULT abort_to_report_max_s={max(latencies):.3f} gaps={gaps} "
          f"goal=report<={REPORT_GOAL_S}s,0<=gap<={args.devices} {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
