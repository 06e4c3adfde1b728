"""Arrival-rate runs against a real nginx: the schedule counted at the target, and a frozen
target seen from when each iteration should have started."""
import contextlib
import os
import signal
import threading

import psutil
import pytest

from stressgrid.runtime.local import run_local
from tests.support.plans import error_counters, plan
from tests.support.servers import logging_nginx, requests_logged

VISIT = "await get('/')"


@pytest.fixture
def counted_nginx(tmp_path):
    with logging_nginx(tmp_path) as server:
        yield server


def served(root):
    return len(requests_logged(root))


def nginx_processes(root):
    master = psutil.Process(int((root / "nginx.pid").read_text()))
    return [master, *master.children()]


@contextlib.contextmanager
def frozen_for(root, seconds, after):
    """Stop every nginx process ``after`` s from now, for ``seconds``, from a thread."""
    processes = nginx_processes(root)
    thawed = threading.Event()

    def freeze():
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


def test_500_iterations_a_second_for_4_s_reach_nginx_every_one(counted_nginx):
    # What rate one worker sustains is a figure for benchmarks/, not for a test that shares the
    # machine with the rest of the suite: this one is light, with a pool deep enough for a busy
    # machine (a device is created when no other is free).
    port, root = counted_nginx
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


def test_a_frozen_target_is_measured_from_each_iterations_scheduled_start(counted_nginx):
    port, root = counted_nginx
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


def test_the_closed_model_sees_the_same_freeze_in_a_few_samples_only(counted_nginx):
    port, root = counted_nginx
    closed = plan(port, "while True:\n    await get('/')\n    await delay(5)\n", size=4)
    with frozen_for(root, 1.0, after=1.5):
        result = run_local(closed, 4.0)
    headers = result.histograms["headers_us"]
    # Each of the 4 devices waited once, through the whole freeze ...
    assert headers.max >= 900_000
    # ... and that is all the freeze left in its latencies: under 1% of the samples.
    assert headers.total_count > 400
    assert headers.value_at_percentile(99.0) < 500_000
