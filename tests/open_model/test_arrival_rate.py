"""Arrival-rate runs against a real nginx: the schedule counted at the target, and a frozen
target seen from when each iteration should have started; every step of a late iteration, or
of a paced device's late tick, measured from when it should have started."""
import asyncio
import contextlib
import os
import signal
import threading
import time

import psutil
import pytest
import uvloop

from stressgrid.metrics import MetricsAggregate
from stressgrid.plan import Plan
from stressgrid.plan.resolve import resolve_addresses
from stressgrid.runtime.engine import ArrivalShare, Engine
from stressgrid.runtime.local import run_local
from tests.support.plans import error_counters, plan, run_until
from tests.support.servers import requests_logged

VISIT = "await get('/')"


def served(root):
    return len(requests_logged(root))


def nginx_processes(root):
    master = psutil.Process(int((root / "nginx.pid").read_text()))
    return [master, *master.children()]


@contextlib.contextmanager
def frozen_for(root, seconds, after):
    """Stop every nginx process ``after`` s after it served the run's first request, for
    ``seconds``, from a thread (counted from the first request, not from the call: a busy
    machine may take seconds to start the run, and the freeze must fall inside it)."""
    processes = nginx_processes(root)
    thawed = threading.Event()

    def freeze():
        while not served(root):
            if thawed.wait(0.01):
                return
        if thawed.wait(after):
            return
        for process in processes:
            os.kill(process.pid, signal.SIGSTOP)
        try:
            thawed.wait(seconds)
        finally:
            for process in processes:
                os.kill(process.pid, signal.SIGCONT)

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thawed.set()
        thread.join(10)


def open_plan(port, rate, seconds, max_devices, pre_allocated=None, script=VISIT):
    return plan(port, script, size=1, executor="arrival_rate", rate=rate, sustain_ms=seconds * 1000,
                max_devices=max_devices, pre_allocated_devices=min(max_devices, pre_allocated or max_devices))


def test_500_iterations_a_second_for_4_s_reach_nginx_every_one(logged_nginx):
    # What rate one worker sustains is a figure for benchmarks/, not for a test that shares the
    # machine with the rest of the suite: this one is light, with a pool deep enough for a busy
    # machine (a device is created when no other is free).
    port, root = logged_nginx
    result = run_local(open_plan(port, 500, 4, max_devices=2000, pre_allocated=50), 5.5)
    assert not error_counters(result), (result.counters, result.errors)
    assert result.counters.get("dropped_iteration_count", 0) == 0
    started = result.counters["iteration_count"]
    assert started == 2000  # the schedule, to the iteration
    assert served(root) == result.counters["response_count"] == started
    # Devices keep their connections between iterations: fewer connections than iterations.
    assert result.counters["conn_count"] < started
    assert result.histograms["iteration_us"].total_count == started
    assert result.histograms["intended_iteration_us"].total_count == started


def test_a_frozen_target_is_measured_from_each_iterations_scheduled_start(logged_nginx):
    port, root = logged_nginx
    with frozen_for(root, 1.0, after=1.5):
        result = run_local(open_plan(port, 200, 4, max_devices=1000, pre_allocated=100), 6.0)
    assert result.counters.get("dropped_iteration_count", 0) == 0
    assert result.counters["iteration_count"] == 800
    assert served(root) == 800
    intended = result.histograms["intended_iteration_us"]
    # The iterations due during the freeze waited for its end: up to the whole second.
    assert 900_000 <= intended.max < 2_500_000
    assert intended.value_at_percentile(99.0) >= 500_000
    # About a fifth of the iterations met the freeze; the median did not.
    assert intended.value_at_percentile(50.0) < 500_000


def test_the_closed_model_sees_the_same_freeze_in_a_few_samples_only(logged_nginx):
    port, root = logged_nginx
    closed = plan(port, "while True:\n    await get('/')\n    await delay(5)\n", size=4)
    with frozen_for(root, 1.0, after=1.5):
        result = run_local(closed, 4.0)
    headers = result.histograms["headers_us"]
    # Each of the 4 devices waited once, through the whole freeze ...
    assert headers.max >= 900_000
    # ... and that is all the freeze left in its latencies: under 1% of the samples.
    assert headers.total_count > 400
    assert headers.value_at_percentile(99.0) < 500_000


def run_share(plan_dict, share, drive):
    """Start ``plan_dict``'s schedule as ``share`` on an engine of this process, let
    ``drive(executor)`` (a coroutine function) run it, stop it; the merged metrics."""
    parsed = Plan.from_dict(plan_dict)

    async def main():
        engine = Engine()
        await engine.start_cohort("0", parsed.blocks, resolve_addresses(parsed.addresses), parsed.opts,
                                  share=share)
        executor = engine.cohorts["0"].executor
        try:
            await drive(executor)
        finally:
            await engine.stop_all()
        metrics = MetricsAggregate()
        metrics.add_snapshot(engine.snapshot())
        return metrics, executor.schedule

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def until(condition):
    """Let the loop run until ``condition()`` holds (checked every 10 ms)."""
    while not condition():
        await asyncio.sleep(0.01)


def run_out(executor):
    """Until ``executor``'s schedule is over and its last iterations have ended."""
    return until(lambda: executor.schedule.over and not executor.running)


def test_a_share_that_starts_behind_its_clock_starts_what_fell_due_at_once_and_ends_on_time(logged_nginx):
    # A worker that was not ready when its cohort came starts 1 s behind the cohort's clock:
    # the 200 iterations due by then start at once, late, and the schedule still ends 2 s
    # after the cohort's start, not 3 s.
    port, root = logged_nginx
    due_at_start = []

    async def drive(executor):
        due_at_start.append(len(executor.running))  # started by start_cohort, none run yet
        await run_out(executor)

    metrics, _ = run_share(open_plan(port, 200, 2, max_devices=1000),
                           ArrivalShare(max_devices=1000, pre_allocated_devices=100, behind_ms=1000), drive)
    assert due_at_start[0] == 201  # iterations 0 to 200, due at 0 ms to 1000 ms
    assert metrics.counters["iteration_count"] == 400
    assert metrics.counters.get("dropped_iteration_count", 0) == 0
    assert served(root) == 400
    delays = metrics.histograms["iteration_start_delay_us"]
    assert delays.max >= 990_000  # the first one, due 1 s before the share started
    # Half were due in that second, evenly: the latest quarter of the delays from about 0.5 s up.
    assert delays.value_at_percentile(75.0) >= 400_000


def test_a_stop_counts_the_iterations_due_and_not_started_as_dropped(logged_nginx):
    port, _ = logged_nginx

    async def drive(executor):
        await until(lambda: executor.schedule.next_k >= 40)  # mid-run
        time.sleep(0.5)  # the loop is held: the release timer cannot run before the stop
        executor.stop()

    metrics, schedule = run_share(open_plan(port, 200, 10, max_devices=1000),
                                  ArrivalShare(max_devices=1000, pre_allocated_devices=100), drive)
    started = metrics.counters["iteration_count"]
    dropped = metrics.counters["dropped_iteration_count"]
    assert started + dropped == schedule.next_k  # every iteration due by the stop, once
    assert 95 <= dropped <= 105  # the half second the loop was held, at 200 a second
    assert not schedule.over


THREE_STEPS = """
await get('/a', name='a')
await get('/b', name='b')
start_timing('c')
await get('/c', name='c')
stop_timing('c')
"""


def test_every_step_of_a_late_iteration_carries_its_start_delay(logged_nginx):
    # A share 1 s behind its clock: half its iterations start late, by up to a second. Each
    # of their steps (two named requests, a timed third) is measured again from when the
    # iteration should have started: the same latency plus the iteration's start delay.
    port, root = logged_nginx

    metrics, _ = run_share(open_plan(port, 100, 2, max_devices=1000, script=THREE_STEPS),
                           ArrivalShare(max_devices=1000, pre_allocated_devices=100, behind_ms=1000), run_out)
    histograms = metrics.histograms
    assert metrics.counters["iteration_count"] == 200 and served(root) == 600
    delay = histograms["iteration_start_delay_us"]
    for name in ("request_a_headers_us", "request_b_headers_us", "c_us"):
        actual, intended = histograms[name], histograms[name.replace("request_a_", "request_a_intended_")
                                                          .replace("request_b_", "request_b_intended_")
                                                          .replace("c_us", "intended_c_us")]
        assert intended.total_count == actual.total_count == 200, name
        # The twin's mean is the step's mean plus the start delays' mean (to the histograms'
        # three significant digits).
        assert intended.mean == pytest.approx(actual.mean + delay.mean, rel=2e-3), name
        assert intended.max >= 990_000 > actual.max, name
    assert histograms["intended_headers_us"].total_count == histograms["headers_us"].total_count == 600


PACED = """
await pace(100)
time.sleep(0.25)  # the device holds the loop past its ticks at 100 and 200 ms
await pace(100)   # tick 1 passed 150 ms ago: on at once, 150 ms late; tick 2 is missed
await get('/late', name='late')
start_timing('step')
stop_timing('step')
inc_counter('done')
await delay(60000)
"""


def test_a_paced_device_measures_its_steps_from_their_tick_and_counts_missed_ticks(logged_nginx):
    port, root = logged_nginx
    result = run_until(plan(port, "import time\n" + PACED, size=1), "done_count", 1, duration=10)
    histograms = result.histograms
    assert requests_logged(root) == ["/late"]
    assert result.counters["missed_tick_count"] == 1
    late = histograms["request_late_intended_headers_us"]
    assert late.total_count == 1
    assert late.min >= 150_000 + histograms["request_late_headers_us"].min - 1000
    assert 150_000 <= histograms["intended_step_us"].min < 400_000
    assert histograms["step_us"].max < 150_000


def test_the_closed_model_with_pace_shows_the_freeze_too(logged_nginx):
    # The closed-model run of the freeze test again, each device paced at a request every
    # 20 ms: after the freeze, each device's next step is measured from its tick, a second
    # late, and the ticks the freeze swallowed are counted.
    port, root = logged_nginx
    paced = plan(port, "while True:\n    await pace(20)\n    await get('/')\n", size=4)
    with frozen_for(root, 1.0, after=1.5):
        result = run_local(paced, 4.0)
    intended = result.histograms["intended_headers_us"]
    assert intended.total_count == result.histograms["headers_us"].total_count
    # nginx served those, and at most one more a device: a request in flight at the stop.
    assert 0 <= served(root) - intended.total_count <= 4
    # Each device's request after the thaw started about a second after its tick.
    # (At least the 4 highest of them are over 0.8 s: the value ranked 4th from the top.)
    assert intended.value_at_percentile(100.0 * (intended.total_count - 3) / intended.total_count) >= 800_000
    # About 50 ticks of each device fell in the freeze (not made up, counted).
    assert result.counters["missed_tick_count"] >= 4 * 40
