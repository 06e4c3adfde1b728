"""The run at a glance through the API of a real coordinator process: each second's point in
the telemetry, the run's points so far while it runs, and the same points kept once it ended."""
from stressgrid import wire
from tests.coordinator.support import FakeGenerator, coordinator_process, snapshot, wait_until
from tests.coordinator.test_api import plan


def test_the_overview_follows_the_run_and_stays_with_it(tmp_path):
    with coordinator_process(tmp_path) as coordinator:
        generator = FakeGenerator(coordinator, "gen-a")
        try:
            coordinator.api.wait_generators(1)
            status, run, _ = coordinator.api.post("/api/runs", plan("overview"))
            assert status == 201, run
            generator.wait_for(wire.StartCohort, lambda m: m.run_id == run["id"])
            path = f"/api/runs/{run['id']}/overview"

            def overview():
                status, body, _ = coordinator.api.get(path)
                assert status == 200, body
                return body

            # Seconds with responses and their latency, until the overview has points with them.
            def points_with_responses():
                generator.telemetry(snapshot({"headers_us": [1000] * 9 + [8000]}, {"response_count": 10}), active=4)
                return [p for p in overview()["points"] if p[3]]
            wait_until(lambda: len(points_with_responses()) >= 2, timeout=20, interval=0.5,
                       message="two seconds with responses")
            live = overview()
            assert live["names"] == {"rate": "response", "latency": "headers_us"}
            assert live["fields"] == ["t", "phase", "devices", "rate", "p50", "p90", "p99", "errors"]
            times = [p[0] for p in live["points"]]
            assert times == sorted(times) and times[0] >= 0
            answered = [p for p in live["points"] if p[3]]
            assert all(p[1] in ("rampup", "sustain") and p[2] == 4 for p in answered)
            assert all(p[4] < 1100 and p[6] > 7000 for p in answered if p[4] is not None)
            # The published telemetry carries the same second's point.
            telemetry = coordinator.api.state()["telemetry"]
            assert telemetry["overview"]["names"] == live["names"] and len(telemetry["overview"]["point"]) == 8
            coordinator.api.post(f"/api/runs/{run['id']}/abort")
            coordinator.api.wait_run_finished(run["id"])
            kept = overview()
            assert kept["names"] == live["names"]
            assert kept["points"][:len(live["points"])] == live["points"]
            assert coordinator.api.get("/api/runs/nope/overview")[0] == 404
        finally:
            generator.close()
