"""``/metrics`` scraped during a real run (a coordinator, a real generator, the demo HTTP
target) and read with prometheus-client's own parser."""
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import EXAMPLES
from tests.coordinator.support import coordinator_process, generator_processes, wait_until
from tests.support.servers import free_port, running

TOKEN = "scrape-secret"


def scrape(coordinator, token=None):
    status, body, headers = coordinator.api.get("/metrics", token=token)
    return status, body, headers


def samples(text):
    """``{(name, frozenset(labels)): value}`` of every sample."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found, name, **labels):
    matches = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


@pytest.fixture(scope="module")
def demo_port():
    port = free_port()
    with running([sys.executable, "-m", "stressgrid.targets.demo", "--port", str(port)], port):
        yield port


def test_metrics_during_a_run_follow_the_state_and_the_token_rules(tmp_path, demo_port):
    with coordinator_process(tmp_path, token=TOKEN) as coordinator, \
            generator_processes(coordinator, tmp_path, ["prom-gen"]):
        coordinator.api.wait_generators(1)
        assert scrape(coordinator, token="wrong")[0] == 401
        plan = {"name": "scraped",
                "addresses": [{"host": "127.0.0.1", "port": demo_port, "protocol": "http"}],
                "blocks": [{"script": (EXAMPLES / "demo_http.py").read_text(), "params": {}, "size": 10}],
                "opts": {"ramp_steps": 1, "rampup_step_ms": 200, "sustain_ms": 60000,
                         "rampdown_step_ms": 200, "cooldown_ms": 0},
                "thresholds": ["headers_us p99 < 60s", "headers_us max < 1us"]}
        status, run, _ = coordinator.api.post("/api/runs", plan)
        assert status == 201, run

        def scraped_with_responses():
            status, body, headers = scrape(coordinator)
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            found = samples(body.decode())
            totals = [v for (n, ls), v in found.items()
                      if n == "stressgrid_counter_total" and ("counter", "response") in ls]
            thresholds = [v for (n, _), v in found.items() if n == "stressgrid_threshold_passing"]
            return totals and totals[0] > 0 and len(thresholds) == 2 and found

        found = wait_until(scraped_with_responses, timeout=30, interval=0.2,
                           message="a scrape with responses and both thresholds judged")
        state = coordinator.api.state()
        run_id = run["id"]
        assert value(found, "stressgrid_run_active", run=run_id) == 1
        assert value(found, "stressgrid_generators") == 1
        assert value(found, "stressgrid_generator_active_devices", generator="prom-gen") >= 0
        assert value(found, "stressgrid_generator_cpu_percent", generator="prom-gen") >= 0
        p99 = value(found, "stressgrid_histogram_quantile", run=run_id, histogram="headers_us",
                    quantile="0.99", window="run")
        peak = value(found, "stressgrid_histogram_quantile", run=run_id, histogram="headers_us",
                     quantile="1", window="run")
        assert 0 < p99 <= peak
        assert value(found, "stressgrid_histogram_count", run=run_id, histogram="headers_us",
                     window="run") > 0
        assert value(found, "stressgrid_threshold_passing", run=run_id,
                     threshold="headers_us p99 < 60s") == 1
        assert value(found, "stressgrid_threshold_passing", run=run_id,
                     threshold="headers_us max < 1us") == 0
        assert value(found, "stressgrid_error_rate_percent", run=run_id) == 0
        assert state["run"]["verdict"]["outcome"] == "failed"
        coordinator.api.post(f"/api/runs/{run_id}/abort")
        coordinator.api.wait_run_finished(run_id)
        wait_until(lambda: coordinator.api.state()["run"] is None, message="the run released")
        status, body, _ = scrape(coordinator)
        assert not [n for (n, _) in samples(body.decode()) if n.startswith("stressgrid_run_")]


def test_metrics_can_be_open_to_loopback_only(tmp_path):
    with coordinator_process(tmp_path, token=TOKEN, args=["--metrics-open-on-loopback"]) as coordinator:
        status, body, _ = coordinator.api.get("/metrics", token="")
        assert status == 200
        assert value(samples(body.decode()), "stressgrid_generators") == 0
        # The API itself still needs the token.
        assert coordinator.api.get("/api/state", token="wrong")[0] == 401
    with coordinator_process(tmp_path, token=TOKEN) as coordinator:
        assert coordinator.api.get("/metrics", token="")[0] == 401
