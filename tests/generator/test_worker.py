"""A worker process alone, driven over ipc:// by a ROUTER in the test, as the agent does."""
import os
import re
import signal
import socket
import subprocess
import sys

import msgpack
import pytest
import zmq

from stressgrid import wire
from stressgrid.generator.worker import watchdog_identity, worker_identity
from stressgrid.metrics import MetricsAggregate
from stressgrid.runtime.engine import START_BATCH
from tests.conftest import ROOT
from tests.support.mailbox import Mailbox


class WorkerUnderTest(Mailbox):
    def __init__(self, context, tmp_path, index=3):
        super().__init__()
        self.identity = worker_identity(index)
        self.watchdog_identity = watchdog_identity(index)
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        endpoint = f"ipc://{tmp_path}/worker.sock"
        self.router.bind(endpoint)
        environment = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stressgrid.generator.worker", "--index", str(index),
             "--endpoint", endpoint, "--parent-pid", str(os.getpid())],
            env=environment, stderr=subprocess.PIPE)

    def send(self, message):
        self.send_raw(wire.encode(message))

    def send_raw(self, data):
        """Send a command; message waits then look only at what arrives after it."""
        self.router.send_multipart([self.identity, data])
        self.mark()

    def _read(self, timeout):
        if not self.router.poll(max(1, int(timeout * 1000))):
            return None
        identity, data = self.router.recv_multipart()
        assert identity in (self.identity, self.watchdog_identity)
        return identity, wire.decode(data)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stderr.close()
        self.router.close()


@pytest.fixture
def worker(zmq_context, tmp_path):
    under_test = WorkerUnderTest(zmq_context, tmp_path)
    yield under_test
    under_test.stop()


def udp_cohort(port, size, cohort_id="1", script="inc_counter('tick')\nawait delay(20)"):
    return wire.StartCohort(run_id="r", cohort_id=cohort_id,
                            blocks=[{"script": script, "params": {}, "size": size}],
                            addresses=[{"host": "127.0.0.1", "port": port, "protocol": "udp"}],
                            opts={"timeout_ms": 1000, "a_future_option": True}, address_offset=0)


def test_ready_then_telemetry_every_second(worker):
    ready = worker.expect(wire.WorkerReady)
    assert ready.worker_index == 3 and ready.pid == worker.process.pid
    first = worker.expect(wire.Telemetry)
    assert first.active_device_number == 0 and first.errors == {}


def test_runs_a_cohort_and_reports_its_metrics(worker):
    worker.expect(wire.WorkerReady)
    worker.send(udp_cohort(9, 5))
    totals = MetricsAggregate()
    telemetry = worker.expect(wire.Telemetry, where=lambda m: m.active_device_number == 5)
    totals.add_snapshot(telemetry.metrics)
    worker.send(wire.StopCohort(run_id="r", cohort_id="1"))
    last = worker.expect(wire.Telemetry, where=lambda m: m.active_device_number == 0)
    totals.add_snapshot(last.metrics)
    assert totals.counter("tick_count") >= 5


@pytest.mark.parametrize("data", [
    b"\x00garbage",
    msgpack.packb({"t": "no_such_type", "v": wire.PROTOCOL_VERSION}),
    msgpack.packb({"t": "abort", "v": 0, "run_id": "r"}),
    wire.encode(wire.Heartbeat(sent_at=1.0)),
    wire.encode(wire.StartCohort(run_id="r", cohort_id="x", blocks=[{"script": "await delay(1)", "size": 1}],
                                 addresses=[{"nothing": 1}], opts={}, address_offset=0)),
], ids=["garbage", "unknown type", "wrong version", "unexpected type", "bad address"])
def test_bad_messages_are_answered_with_error(worker, data):
    worker.expect(wire.WorkerReady)
    worker.send_raw(data)
    error = worker.expect(wire.Error)
    assert error.message.startswith("worker 3: ")
    worker.expect(wire.Telemetry)
    assert worker.process.poll() is None


def test_script_errors_and_duplicate_cohorts_are_errors(worker):
    worker.expect(wire.WorkerReady)
    worker.send(udp_cohort(9, 1, cohort_id="broken", script="await (\n"))
    assert "did not start" in worker.expect(wire.Error).message
    worker.send(udp_cohort(9, 2, cohort_id="1"))
    worker.send(udp_cohort(9, 2, cohort_id="1"))
    assert "already running" in worker.expect(wire.Error).message
    worker.expect(wire.Telemetry, where=lambda m: m.active_device_number == 2)


def test_first_error_lines_come_once_per_run(worker):
    worker.expect(wire.WorkerReady)
    worker.send(udp_cohort(9, 3, script="raise KeyError('k')"))
    with_errors = worker.expect(wire.Telemetry, where=lambda m: m.errors)
    assert list(with_errors.errors) == ["key_error_count"]
    assert "KeyError" in with_errors.errors["key_error_count"]
    later = worker.expect(wire.Telemetry, where=lambda m: m.metrics["counters"].get("key_error_count"))
    assert later.errors == {}
    worker.send(wire.Abort(run_id="r"))
    assert worker.expect(wire.RunStopped).run_id == "r"
    # A new run reports the line again.
    worker.send(udp_cohort(9, 1, cohort_id="again", script="raise KeyError('k')"))
    assert "KeyError" in worker.expect(wire.Telemetry, where=lambda m: m.errors).errors["key_error_count"]


def test_abort_flushes_the_runs_last_metrics_then_answers_run_stopped(worker):
    worker.expect(wire.WorkerReady)
    first = len(worker.received)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        # Each device counts, then tells the sink, then waits for good.
        worker.send(udp_cohort(sink.getsockname()[1], 3,
                               script="inc_counter('once')\nawait send(b'x')\nawait delay(60000)"))
        for _ in range(3):
            sink.recv(16)
    # All three counts are recorded; the next periodic Telemetry is up to a second away.
    worker.send(wire.Abort(run_id="r"))
    assert worker.expect(wire.RunStopped).run_id == "r"
    reports = [m for _, _, m in worker.received[first:worker.received.index(worker.matched)]
               if isinstance(m, wire.Telemetry)]
    totals = MetricsAggregate()
    for report in reports:
        totals.add_snapshot(report.metrics)
    last = reports[-1]
    # Every count arrived before the answer, and no device runs on.
    assert totals.counter("once_count") == 3
    assert last.active_device_number == 0
    # An abort of a run this worker does not know is answered too.
    worker.send(wire.Abort(run_id="other"))
    assert worker.expect(wire.RunStopped).run_id == "other"


def test_sigterm_stops_devices_and_flushes_telemetry(worker):
    worker.expect(wire.WorkerReady)
    worker.send(udp_cohort(9, 4))
    worker.expect(wire.Telemetry, where=lambda m: m.active_device_number == 4)
    worker.process.send_signal(signal.SIGTERM)
    final = worker.expect(wire.Telemetry, where=lambda m: m.active_device_number == 0)
    assert final.metrics["gauges"]["active_device_number"] == 0
    assert worker.process.wait(10) == 0


def test_stops_are_confirmed_and_cut_short_cohorts_still_starting_or_waiting_to(worker):
    worker.expect(wire.WorkerReady)
    # Devices are created in batches and commands are carried out in order: the stops
    # right behind the starts are seen after the first batch at the latest.
    for cohort_id in ("1", "2"):
        worker.send(udp_cohort(9, 10 * START_BATCH, cohort_id=cohort_id, script="await delay(60000)"))
    for cohort_id in ("1", "2"):
        worker.send(wire.StopCohort(run_id="r", cohort_id=cohort_id))
    for cohort_id in ("1", "2"):
        confirmation = worker.expect(wire.StopCohort, timeout=20)
        assert (confirmation.run_id, confirmation.cohort_id) == ("r", cohort_id)
    assert worker.expect(wire.Telemetry).active_device_number == 0
    worker.process.send_signal(signal.SIGTERM)
    log = worker.process.communicate(timeout=10)[1].decode()
    started = [int(n) for n in re.findall(r"cohort \d of run r: (\d+) devices started", log)]
    assert sum(started) <= 2 * START_BATCH, log
