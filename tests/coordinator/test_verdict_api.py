"""Thresholds through the API of a real coordinator process: a bad one is rejected naming
its field and column; live states each second; the final verdict in the run."""
from stressgrid import wire
from tests.coordinator.support import FakeGenerator, coordinator_process, snapshot, wait_until
from tests.coordinator.test_api import plan


def test_a_bad_threshold_is_a_400_naming_the_field_and_column(tmp_path):
    with coordinator_process(tmp_path) as coordinator:
        body = plan()
        body["thresholds"] = ["error_rate < 1%", "conn_us p99 < 1 ms"]
        status, answer, _ = coordinator.api.post("/api/plans/check", body)
        assert status == 400
        assert answer["error"] == {"field": "thresholds[1]", "column": 17,
                                   "message": "column 17: unexpected text after the value"}


def test_thresholds_are_passing_then_failing_live_and_failed_in_the_run(tmp_path):
    with coordinator_process(tmp_path) as coordinator:
        generator = FakeGenerator(coordinator, "gen-a")
        try:
            coordinator.api.wait_generators(1)
            body = plan(sustain_ms=60000)
            body["thresholds"] = ["conn_us p99 < 10ms", "response count < 100",
                                  {"expr": "timeout_error count == 0", "abort_on_fail": False}]
            status, run, _ = coordinator.api.post("/api/runs", body)
            assert status == 201, run
            generator.wait_for(wire.StartCohort)

            def live_states():
                live = coordinator.api.state()["run"]
                return [t["state"] for t in live["verdict"]["thresholds"]], live

            generator.telemetry(snapshot({"conn_us": [500, 700]}, {"response_count": 40}), active=4)
            states, live = wait_until(lambda: (s := live_states())[0] == ["passing"] * 3 and s,
                                      message="all thresholds passing")
            assert live["verdict"]["outcome"] == "passed" and live["verdict"]["final"] is False
            assert live["summary"]["histograms"]["conn_us"]["count"] == 2
            assert live["summary"]["counters"]["response"]["total"] == 40
            generator.telemetry(snapshot({"conn_us": [50_000] * 10},
                                         {"response_count": 70, "timeout_error_count": 1}), active=4)
            wait_until(lambda: live_states()[0] == ["failing"] * 3, message="all thresholds failing")
            coordinator.api.post(f"/api/runs/{run['id']}/abort")
            generator.wait_for(wire.Abort)
            generator.send(wire.RunStopped(run_id=run["id"]))
            detail = coordinator.api.wait_run_finished(run["id"])
            verdict = detail["summary"]["verdict"]
            assert verdict["outcome"] == "failed" and verdict["final"] is True
            assert [(t["state"], t["actual"]) for t in verdict["thresholds"]] == [
                ("failed", detail["summary"]["summary"]["histograms"]["conn_us"]["p99"]),
                ("failed", 110), ("failed", 1)]
            # 1 error of 110 responses + 1 error.
            assert detail["summary"]["summary"]["error_rate_percent"] == round(100 / 111, 4)
        finally:
            generator.close()


def test_the_report_is_served_under_the_token_rules_and_deleted_with_the_run(tmp_path):
    with coordinator_process(tmp_path, token="secret") as coordinator:
        generator = FakeGenerator(coordinator, "gen-a")
        try:
            coordinator.api.wait_generators(1)
            status, run, _ = coordinator.api.post("/api/runs", plan(sustain_ms=200))
            assert status == 201, run
            detail = coordinator.api.wait_run_finished(run["id"])
            url = detail["report_url"]
            assert url == f"/results/{run['id']}.html"
            status, _, _ = coordinator.api.get(url, token="wrong")
            assert status == 401
            status, text, headers = coordinator.api.get(url)
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            assert b"<title>api test - Stressgrid report</title>" in text
            assert (coordinator.data_dir / "results" / f"{run['id']}.html").is_file()
            status, _, _ = coordinator.api.delete(f"/api/runs/{run['id']}")
            assert status == 204
            assert not (coordinator.data_dir / "results" / f"{run['id']}.html").exists()
            assert coordinator.api.get(url)[0] == 404
        finally:
            generator.close()
