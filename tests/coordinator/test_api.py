"""The JSON API of a real coordinator process, with generators played over real sockets."""
import io
import json
import re
import subprocess
import sys
import tarfile
import time
import urllib.request

import pytest

from stressgrid import wire
from tests.coordinator.support import (ROOT, Api, FakeGenerator, coordinator_env, coordinator_process,
                                       snapshot, wait_until)
from tests.support.servers import free_port, wait_for_port

SCRIPT = "await send(b'PING\\r\\n')\nawait recv()\n"


def plan(name="api test", size=4, steps=1, sustain_ms=60000, **opts):
    return {"name": name,
            "addresses": [{"host": "127.0.0.1", "port": 6379, "protocol": "tcp"}],
            "blocks": [{"script": SCRIPT, "params": {}, "size": size}],
            "opts": {"ramp_steps": steps, "rampup_step_ms": 100, "sustain_ms": sustain_ms,
                     "rampdown_step_ms": 100, "cooldown_ms": 100, "report_interval_ms": 1000, **opts}}


@pytest.fixture
def coordinator(tmp_path):
    with coordinator_process(tmp_path) as running:
        yield running


@pytest.fixture
def generator(coordinator):
    fake = FakeGenerator(coordinator, "gen-a")
    coordinator.api.wait_generators(1)
    yield fake
    fake.close()


def test_submitting_without_generators_is_a_clear_conflict(coordinator):
    status, body, _ = coordinator.api.post("/api/runs", plan())
    assert status == 409
    assert body["error"]["code"] == "no_generators"
    assert "no generator" in body["error"]["message"]
    status, body, _ = coordinator.api.get("/api/runs")
    assert status == 200 and body["runs"] == []


@pytest.mark.parametrize("mutate,field,words", [
    (lambda p: p.update(name=7), "name", "string"),
    (lambda p: p["blocks"][0].update(size=-5), "blocks[0].size", "integer"),
    (lambda p: p["blocks"][0].update(size="10"), "blocks[0].size", "integer"),
    (lambda p: p["addresses"][0].update(protocol="gopher"), "addresses[0].protocol", "one of"),
    (lambda p: p["addresses"][0].update(port=70000), "addresses[0].port", "65535"),
    (lambda p: p["opts"].update(ramp_steps=0), "opts.ramp_steps", "from 1"),
    (lambda p: p["opts"].update(sustain_ms=-1), "opts.sustain_ms", "from 0"),
    (lambda p: p["opts"].update(bogus=1), "opts.bogus", "unknown"),
    (lambda p: p.update(blocks=[]), "blocks", "non-empty"),
    (lambda p: p["addresses"][0].update(host="no-such-host.invalid"), "addresses[0].host", "resolve"),
])
def test_bad_plans_get_400_naming_the_field(coordinator, generator, mutate, field, words):
    body = plan()
    mutate(body)
    for path in ("/api/runs", "/api/plans/check"):
        status, answer, _ = coordinator.api.post(path, body)
        assert status == 400, answer
        assert answer["error"]["field"] == field
        assert words in answer["error"]["message"]
    assert coordinator.api.get("/api/runs")[1]["runs"] == []


def test_script_errors_carry_line_and_column(coordinator, generator):
    body = plan()
    body["blocks"][0]["script"] = "x = 1\nawait send(b'a')\nget('/')\n"
    status, answer, _ = coordinator.api.post("/api/runs", body)
    assert status == 400
    error = answer["error"]
    assert error["field"] == "blocks[0].script"
    assert error["line"] == 3 and isinstance(error["column"], int)
    body["blocks"][0]["script"] = "def broken(:\n"
    status, answer, _ = coordinator.api.post("/api/plans/check", body)
    assert status == 400 and answer["error"]["line"] == 1


def test_a_body_that_is_not_a_json_object_is_rejected(coordinator, generator):
    for raw, words in ((b"not json", "not valid JSON: Expecting value: line 1 column 1"),
                       (b"[1, 2]", "a JSON object"), (b"", "empty"), (b"\xff\xfe{}", "not UTF-8"),
                       (b"[" * 100_000, "deeper than 64 levels"), (b'{"a": ' * 65 + b"1" + b"}" * 65, "deeper"),
                       (b'{"name": "x", "blocks": [', "not valid JSON")):
        for path in ("/api/runs", "/api/plans/check"):
            status, answer, _ = coordinator.api.request("POST", path, raw_body=raw)
            assert status == 400, (raw[:40], status, answer)
            assert answer["error"]["field"] == "plan" and words in answer["error"]["message"], answer
    # Brackets inside strings are text, not nesting.
    body = plan()
    body["blocks"][0]["script"] = "x = '" + "[" * 200 + "'\nawait send(b'x')\n"
    assert coordinator.api.post("/api/plans/check", body)[0] == 200


def test_plan_check_validates_without_running(coordinator, generator):
    status, answer, _ = coordinator.api.post("/api/plans/check", plan(size=57))
    assert status == 200
    assert answer["ok"] is True and answer["devices"] == 57
    assert answer["effective_devices"] == 50 and answer["generators"] == 1
    assert answer["addresses"][0]["ip"] == "127.0.0.1"
    assert coordinator.api.get("/api/runs")[1]["runs"] == []
    assert not generator.messages(wire.StartCohort)


def test_a_feeder_file_becomes_rows_or_a_400_with_its_line(coordinator):
    api = coordinator.api
    status, answer, _ = api.post("/api/feeder-rows?name=users.csv", raw_body="user,n\nann,1\nbob,2\n".encode())
    assert status == 200 and answer == {"rows": [{"user": "ann", "n": "1"}, {"user": "bob", "n": "2"}],
                                        "count": 2, "bytes": len('[{"user":"ann","n":"1"},{"user":"bob","n":"2"}]')}
    status, answer, _ = api.post("/api/feeder-rows?format=jsonl", raw_body=b'{"id": 1}\n{"id": 2}\n')
    assert status == 200 and answer["rows"] == [{"id": 1}, {"id": 2}]
    status, answer, _ = api.post("/api/feeder-rows?name=users.jsonl", raw_body=b'{"id": 1}\n[2]\n')
    assert status == 400 and answer["error"] == {"message": "line 2: must be a JSON object", "field": "data", "line": 2}
    status, answer, _ = api.post("/api/feeder-rows?name=users.csv", raw_body=b"user\n\xff\n")
    assert status == 400 and answer["error"]["message"] == "a feeder file must be UTF-8 text"
    status, answer, _ = api.post("/api/feeder-rows?name=users.xls", raw_body=b"user\nann\n")
    assert status == 400 and answer["error"]["field"] == "data"
    # The rows a plan carries are checked when it is submitted.
    bad = plan()
    bad["blocks"][0]["data"] = [{"id": 1}, []]
    status, answer, _ = api.post("/api/plans/check", bad)
    assert status == 400 and answer["error"]["field"] == "blocks[0].data[1]"


def test_one_run_at_a_time_then_abort_writes_report_and_archive(coordinator, generator):
    api = coordinator.api
    status, run, headers = api.post("/api/runs", plan(size=6, steps=2))
    assert status == 201, run
    assert headers["Location"].endswith(f"/api/runs/{run['id']}")
    assert run["state"] == "rampup" and run["devices"] == 6
    assert run["id"].startswith("api-test-") and len(run["id"]) == len("api-test-") + 14
    status, answer, _ = api.post("/api/runs", plan(name="second"))
    assert status == 409 and answer["error"]["code"] == "run_active"
    # Both cohorts reach the generator, then the run sits in sustain.
    starts = generator.wait_for(wire.StartCohort, count=2)
    assert sorted(m.cohort_id for m in starts) == ["0", "1"]
    generator.telemetry(snapshot({"conn_us": [150, 250]}, {"conn_count": 2}), active=6)
    state = wait_until(lambda: (s := api.state())["run"]["state"] == "sustain" and s)
    assert state["run"]["id"] == run["id"] and state["run"]["remaining_ms"] > 50000
    status, live, _ = api.get(f"/api/runs/{run['id']}")
    assert status == 200 and live["live"]["state"] == "sustain" and live["result_url"] is None

    status, answer, _ = api.post(f"/api/runs/{run['id']}/abort")
    assert status == 202
    aborts = generator.wait_for(wire.Abort, timeout=5)
    assert aborts[0].run_id == run["id"]
    detail = api.wait_run_finished(run["id"], timeout=15)
    assert detail["state"] == "aborted"
    summary = detail["summary"]
    assert summary["devices_started"] == 6 and summary["generators"] == {"gen-a": 6}
    assert summary["totals"] == {"conn_count": 2}
    assert any(e["kind"] == "run_aborted" for e in summary["events"])
    # This generator never answered the abort: the report waited the generator timeout, then said so.
    unanswered = [e for e in summary["events"] if e["kind"] == "abort_unanswered"]
    assert len(unanswered) == 1 and "gen-a did not confirm the abort" in unanswered[0]["message"]
    status, data, headers = api.get(detail["result_url"])
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = set(archive.getnames())
        assert {f"{run['id']}/results.csv", f"{run['id']}/plan.json", f"{run['id']}/summary.json",
                f"{run['id']}/events.jsonl", f"{run['id']}/hdr/conn_us.hlog"} <= names
        text = archive.extractfile(f"{run['id']}/results.csv").read().decode()
        assert json.load(archive.extractfile(f"{run['id']}/plan.json"))["name"] == "api test"
        first_event = json.loads(archive.extractfile(f"{run['id']}/events.jsonl").readline())
        assert first_event["message"] == "6 devices on 1 generator"
    header, *rows = text.strip().splitlines()
    assert header.startswith("clock,elapsed_s,active_device_number,conn_count,conn_per_second,conn_us,conn_us_min")
    assert rows and rows[-1].split(",")[3] == "2"
    # Once finished, a new run may start; aborting the old one again is a conflict.
    assert api.post(f"/api/runs/{run['id']}/abort")[0] == 409
    status, second, _ = api.post("/api/runs", plan(name="second"))
    assert status == 201
    assert api.post(f"/api/runs/{second['id']}/abort")[0] == 202
    api.wait_run_finished(second["id"])
    assert [r["id"] for r in api.get("/api/runs")[1]["runs"]] == [second["id"], run["id"]]


def test_an_aborted_run_reports_what_generators_flush_before_they_answer(tmp_path):
    # A generator timeout far longer than the test: only the answers can end the run.
    with coordinator_process(tmp_path, generator_timeout=30.0) as coordinator:
        api = coordinator.api
        gens = [FakeGenerator(coordinator, name) for name in ("gen-a", "gen-b")]
        try:
            api.wait_generators(2)
            status, run, _ = api.post("/api/runs", plan(size=4))
            assert status == 201, run
            for gen in gens:
                gen.wait_for(wire.StartCohort)
            assert api.post(f"/api/runs/{run['id']}/abort")[0] == 202
            for gen in gens:
                assert gen.wait_for(wire.Abort)[0].run_id == run["id"]
            ingested = api.state()["ingest"]["messages"]
            # The devices' last metrics, sent after the abort, then the answers.
            gens[1].telemetry(snapshot(counters={"late_count": 4}))
            gens[1].send(wire.RunStopped(run_id="not-this-run"))  # some other run's: does not count
            gens[1].telemetry()  # processed after the answer before it
            gens[0].telemetry(snapshot({"get_us": [700]}, {"late_count": 3}))
            gens[0].send(wire.RunStopped(run_id=run["id"]))
            state = wait_until(lambda: (s := api.state())["ingest"]["messages"] >= ingested + 3
                               and s["run"]["abort_unconfirmed"] == 1 and s)
            assert state["run"]["state"] == "aborting"
            assert api.get(f"/api/runs/{run['id']}")[1]["result_url"] is None  # still waiting on gen-b
            gens[1].send(wire.RunStopped(run_id=run["id"]))
            detail = api.wait_run_finished(run["id"], timeout=10)
        finally:
            for gen in gens:
                gen.close()
    summary = detail["summary"]
    assert detail["state"] == "aborted"
    assert summary["totals"]["late_count"] == 7
    assert summary["histograms"]["get_us"]["count"] == 1
    assert not any(e["kind"] == "abort_unanswered" for e in summary["events"])


def test_an_abort_no_generator_can_receive_ends_the_run_with_every_event_written(coordinator):
    gone = FakeGenerator(coordinator, "gone")
    coordinator.api.wait_generators(1)
    status, run, _ = coordinator.api.post("/api/runs", plan(size=2))
    assert status == 201
    gone.wait_for(wire.StartCohort)
    gone.close()  # the Abort cannot be sent: the run ends at once, not after the generator timeout
    assert coordinator.api.post(f"/api/runs/{run['id']}/abort")[0] == 202
    detail = coordinator.api.wait_run_finished(run["id"], timeout=15)
    assert detail["state"] == "aborted" and "writer_errors" not in detail["summary"]
    status, data, _ = coordinator.api.get(detail["result_url"])
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        lines = archive.extractfile(f"{run['id']}/events.jsonl").read().decode().splitlines()
    # Every event is in the archive, run_aborted included. Under load the lost generator may be
    # noticed (generator_lost) while the run is ending, so the order of the last two may vary.
    # And ZeroMQ may not have seen the connection close when the Abort goes out (nothing outside
    # the coordinator can tell): the Abort is then queued, never answered, and said so.
    kinds = [json.loads(line)["kind"] for line in lines]
    assert "run_aborted" in kinds, kinds
    assert set(kinds[kinds.index("run_aborted") + 1:]) <= {"generator_lost", "abort_unanswered"}, kinds


def test_delete_forgets_a_run_and_its_archive(coordinator, generator):
    api = coordinator.api
    status, run, _ = api.post("/api/runs", plan(sustain_ms=60000))
    assert status == 201
    assert api.delete(f"/api/runs/{run['id']}")[0] == 409
    api.post(f"/api/runs/{run['id']}/abort")
    detail = api.wait_run_finished(run["id"])
    assert api.get(detail["result_url"])[0] == 200
    assert api.delete(f"/api/runs/{run['id']}")[0] == 204
    assert api.get(f"/api/runs/{run['id']}")[0] == 404
    assert api.get(detail["result_url"])[0] == 404
    assert api.delete(f"/api/runs/{run['id']}")[0] == 404
    assert api.post(f"/api/runs/{run['id']}/abort")[0] == 404


def test_unknown_paths_and_files_are_json_404s(coordinator):
    status, body, _ = coordinator.api.get("/api/nothing-here")
    assert status == 404 and "error" in body
    status, body, _ = coordinator.api.get("/results/../runs.db")
    assert status == 404
    status, body, _ = coordinator.api.get("/results/missing.tar.gz")
    assert status == 404
    status, body, _ = coordinator.api.request("PUT", "/api/state")
    assert status == 405 and "error" in body


def test_state_lists_generators_and_latest_telemetry(coordinator, generator):
    generator.telemetry(snapshot({"cpu_percent": [40, 95]}, {"network_rx_bytes": 1000}), active=0)
    state = wait_until(lambda: (s := coordinator.api.state())["telemetry"].get("max_cpu_percent") and s)
    assert state["generators"][0]["id"] == "gen-a"
    assert state["generators"][0]["cpu_warning"] is True
    assert state["telemetry"]["cpu_warning"] is True
    assert state["telemetry"]["counters"]["network_rx_bytes"]["total"] == 1000
    assert state["run"] is None
    assert coordinator.api.get("/")[0] == 200


def test_stream_sends_a_state_event_every_second(coordinator, generator):
    request = urllib.request.Request(coordinator.api.base_url + "/api/stream")
    events = []
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event = {}
        for raw in response:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in event:
                    events.append(event)
                event = {}
                if len(events) == 3:
                    break
                continue
            key, _, value = line.partition(": ")
            event[key] = value
    elapsed = time.monotonic() - started
    assert [e["event"] for e in events] == ["state"] * 3
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 3
    data = json.loads(events[-1]["data"])
    assert data["generators"][0]["id"] == "gen-a" and "telemetry" in data
    assert elapsed < 5


def test_token_guards_every_management_endpoint(tmp_path):
    with coordinator_process(tmp_path, token="s3cret-token") as running:
        anonymous = Api(running.api.base_url)
        wrong = Api(running.api.base_url, "s3cret-tokeN")
        for client in (anonymous, wrong):
            for method, path in (("GET", "/api/state"), ("GET", "/api/runs"), ("POST", "/api/runs"),
                                 ("GET", "/api/stream"), ("POST", "/api/plans/check"),
                                 ("DELETE", "/api/runs/x"), ("POST", "/api/runs/x/abort"),
                                 ("GET", "/results/x.tar.gz"), ("GET", "/api/runs/x")):
                status, body, headers = client.request(method, path, body={} if method == "POST" else None)
                assert status == 401, (method, path)
                assert headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = anonymous.request("GET", "/api/state", headers={"Authorization": "Basic czNjcmV0"})
        assert status == 401
        assert running.api.get("/api/state")[0] == 200
        assert running.api.get("/api/runs/x")[0] == 404


def _start_coordinator(tmp_path, bind, token=None):
    port = free_port()
    env = {"STRESSGRID_TOKEN": token} if token else {}
    log = tmp_path / f"bind-{port}.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "coordinator_app", "--bind", bind, "--management-port", str(port),
             "--generator-port", str(free_port()), "--data-dir", str(tmp_path / f"d{port}")],
            cwd=ROOT, env=coordinator_env(env), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for_port(port, process=process)
    finally:
        process.terminate()
        process.wait(15)
    return log.read_text()


def test_open_bind_without_token_warns_loudly(tmp_path):
    warned = _start_coordinator(tmp_path, "0.0.0.0")
    assert "WITHOUT A TOKEN" in warned
    assert re.search(r"management port 0\.0\.0\.0:\d+ is reachable from other machines, NOT PROTECTED", warned)
    assert re.search(r"generator port 0\.0\.0\.0:\d+ is reachable from other machines, protected by "
                     r"the fleet's join token", warned)
    protected = _start_coordinator(tmp_path, "0.0.0.0", token="t")
    assert "WITHOUT A TOKEN" not in protected and "NOT PROTECTED" not in protected
    assert re.search(r"management port 0\.0\.0\.0:\d+ is reachable from other machines, protected by "
                     r"the management token", protected)
    assert "generator port 0.0.0.0" in protected
    local = _start_coordinator(tmp_path, "127.0.0.1")
    assert "WITHOUT A TOKEN" not in local and "reachable from other machines" not in local


def test_env_ports_are_used(tmp_path):
    management, generators = free_port(), free_port()
    env = coordinator_env({"MANAGEMENT_PORT": str(management), "GENERATORS_PORT": str(generators)})
    process = subprocess.Popen([sys.executable, "-m", "coordinator_app", "--data-dir", str(tmp_path / "d")],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(management, process=process)
        wait_for_port(generators, process=process)
    finally:
        process.terminate()
        assert process.wait(15) == 0


def test_the_coordinator_never_loads_the_worker_side():
    # DESIGN.md boundary: the coordinator shares only plan, wire and metrics with generators.
    code = ("import sys, coordinator_app.__main__, coordinator_app.app; "
            "print(','.join(sorted(m for m in sys.modules if m.startswith('stressgrid') or 'uvloop' in m)))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=coordinator_env(),
                            capture_output=True, text=True, check=True).stdout.strip().split(",")
    assert not [m for m in loaded if "uvloop" in m or m.startswith(("stressgrid.runtime",
                                                                    "stressgrid.protocols",
                                                                    "stressgrid.generator"))]
    assert "stressgrid._core.device" not in loaded and "stressgrid.wire" in loaded


def test_a_plan_beyond_the_fleets_capacity_is_a_400_naming_blocks(coordinator, generator):
    status, body, _ = coordinator.api.post("/api/runs", plan(size=1001))  # the fake holds 1,000
    assert status == 400
    assert body["error"]["field"] == "blocks"
    assert "1,001 devices" in body["error"]["message"] and "can hold 1,000" in body["error"]["message"]
    assert coordinator.api.state()["run"] is None
