"""The CloudWatch writer against a local CloudWatch mock (moto in server mode)."""
import datetime
import shutil
import subprocess

import pytest

from stressgrid import wire
from stressgrid._core.metrics import Histogram
from tests.coordinator.support import FakeGenerator, coordinator_process, snapshot
from tests.support.servers import free_port, wait_for_port

boto3 = pytest.importorskip("boto3")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def moto_endpoint(tmp_path):
    binary = shutil.which("moto_server")
    if binary is None:
        pytest.fail("moto_server is not installed: pip install 'moto[server]'")
    port = free_port()
    process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def plan(name):
    return {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": 9, "protocol": "udp"}],
            "blocks": [{"script": "await send(b'x')", "params": {}, "size": 2}],
            "opts": {"ramp_steps": 1, "rampup_step_ms": 100, "sustain_ms": 3500,
                     "rampdown_step_ms": 100, "cooldown_ms": 200, "report_interval_ms": 1000}}


def run_with_telemetry(coordinator, name):
    fake = FakeGenerator(coordinator, "cw")
    try:
        coordinator.api.wait_generators(1)
        status, run, _ = coordinator.api.post("/api/runs", plan(name))
        assert status == 201, run
        fake.wait_for(wire.StartCohort)
        expected = Histogram()
        for values in ([120, 130, 5000], [90, 60000], [77]):
            expected.record_many(values)
            fake.telemetry(snapshot({"conn_us": values, "cpu_percent": [35]},
                                    {"response_count": len(values), "network_rx_bytes": 1000}), active=2)
            fake.wait_for(wire.Heartbeat, count=len(fake.messages(wire.Heartbeat)) + 1)
        return coordinator.api.wait_run_finished(run["id"]), expected
    finally:
        fake.close()


def test_intervals_reach_cloudwatch_with_statistic_sets_and_units(tmp_path, moto_endpoint):
    with coordinator_process(tmp_path, env=CREDENTIALS,
                             args=("--cloudwatch-region", "us-east-1",
                                   "--cloudwatch-endpoint", moto_endpoint)) as coordinator:
        # The website links runs to the CloudWatch console of this region.
        assert coordinator.api.state()["coordinator"]["cloudwatch_region"] == "us-east-1"
        detail, expected = run_with_telemetry(coordinator, "cloud watched")
    assert "writer_errors" not in detail["summary"]
    assert detail["summary"]["histograms"]["conn_us"]["count"] == 6
    client = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    dimensions = [{"Name": "Run", "Value": detail["id"]}]
    names = {m["MetricName"] for m in client.list_metrics(Namespace="Stressgrid", Dimensions=dimensions)["Metrics"]}
    assert {"conn_us", "cpu_percent", "response_count", "response_per_second", "network_rx_bytes",
            "network_rx_bytes_per_second", "active_device_number"} <= names
    now = datetime.datetime.now(datetime.timezone.utc)
    window = {"StartTime": now - datetime.timedelta(minutes=10), "EndTime": now + datetime.timedelta(minutes=5),
              "Period": 3600, "Namespace": "Stressgrid", "Dimensions": dimensions}

    def stats(name, statistics):
        points = client.get_metric_statistics(MetricName=name, Statistics=statistics, **window)["Datapoints"]
        assert len(points) == 1, points
        return points[0]

    conn = stats("conn_us", ["SampleCount", "Sum", "Minimum", "Maximum"])
    assert conn["SampleCount"] == expected.total_count == 6
    assert conn["Minimum"] == expected.min and conn["Maximum"] == expected.max
    assert conn["Sum"] == pytest.approx(expected.mean * 6)
    assert conn["Unit"] == "Microseconds"
    assert stats("cpu_percent", ["Maximum"])["Unit"] == "Percent"
    responses = stats("response_count", ["Sum"])
    assert responses["Sum"] == 6 and responses["Unit"] == "Count"
    assert stats("response_per_second", ["Maximum"])["Unit"] == "Count/Second"
    assert stats("network_rx_bytes", ["Sum"])["Sum"] == 3000
    assert stats("network_rx_bytes_per_second", ["Maximum"])["Unit"] == "Bytes/Second"


def test_an_unreachable_cloudwatch_is_reported_and_the_archive_still_written(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    env = dict(CREDENTIALS, AWS_MAX_ATTEMPTS="1")
    with coordinator_process(tmp_path, env=env, args=("--cloudwatch-region", "us-east-1",
                                                      "--cloudwatch-endpoint", dead)) as coordinator:
        detail, _ = run_with_telemetry(coordinator, "no cloud")
        assert detail["state"] == "done"
        errors = detail["summary"]["writer_errors"]
        assert errors and all(e["writer"] == "cloudwatch" and e["stage"] == "interval" for e in errors)
        assert coordinator.api.get(detail["result_url"])[0] == 200
