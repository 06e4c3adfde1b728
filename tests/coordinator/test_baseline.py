"""Comparing runs through the API of a real coordinator process: the comparison endpoint,
thresholds against a baseline run resolved at submit, their errors, and the history's
whole-run histograms kept across the store's schema change."""
import base64
import io
import json
import sqlite3
import tarfile

import pytest

from coordinator_app.store import RunStore
from stressgrid import wire
from stressgrid._core.metrics import Histogram
from stressgrid.metrics import encode_histograms
from tests.coordinator.support import FakeGenerator, coordinator_process, snapshot, wait_until
from tests.coordinator.test_api import plan


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A coordinator with two finished runs: ``fast`` (passed; conn_us 1 ms, 100 responses) and
    ``slow`` (conn_us 2-4 ms, 50 responses and 3 timeouts). Yields ``(coordinator, generator,
    {name: run id})``."""
    with coordinator_process(tmp_path_factory.mktemp("baseline")) as coordinator:
        generator = FakeGenerator(coordinator, "gen-a")
        try:
            coordinator.api.wait_generators(1)
            ids = {"fast": finished_run(coordinator, generator, "fast", {"conn_us": [1000] * 100},
                                        {"response_count": 100}),
                   "slow": finished_run(coordinator, generator, "slow",
                                        {"conn_us": [2000] * 50 + [4000] * 50},
                                        {"response_count": 50, "timeout_error_count": 3})}
            yield coordinator, generator, ids
        finally:
            generator.close()


def finished_run(coordinator, generator, name, histograms, counters, **fields):
    """Submit a run, send it one second of ``histograms`` and ``counters``, wait until the
    coordinator has them, abort it or let it end; returns its id (or the run's detail when
    ``fields`` has thresholds, after it ended by itself)."""
    status, run, _ = coordinator.api.post("/api/runs", {**plan(name, sustain_ms=60000), **fields})
    assert status == 201, run
    generator.wait_for(wire.StartCohort, lambda m: m.run_id == run["id"])
    generator.telemetry(snapshot(histograms, counters), active=4)
    total = sum(counters.values())

    def counted():
        summary = (coordinator.api.state()["run"] or {}).get("summary") or {}
        return sum(c["total"] for c in (summary.get("counters") or {}).values())
    wait_until(lambda: counted() == total, message="the telemetry counted")
    status, _, _ = coordinator.api.post(f"/api/runs/{run['id']}/abort")
    assert status == 202
    detail = coordinator.api.wait_run_finished(run["id"])
    return detail if fields else run["id"]


def test_the_comparison_marks_what_got_worse_and_draws_its_tables(history):
    coordinator, _, ids = history
    status, answer, _ = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/{ids['fast']}")
    assert status == 200, answer
    assert (answer["run"], answer["baseline"], answer["same_scripts"]) == (ids["slow"], ids["fast"], True)
    comparison = answer["comparison"]
    p50 = comparison["histograms"]["conn_us"]["p50"]
    assert p50["baseline"] < 1100 and p50["run"] > 1900 and p50["worse"]
    assert comparison["counters"]["timeout_error"]["total"] == {"run": 3, "baseline": 0, "change_percent": None,
                                                                 "worse": True}
    assert comparison["counters"]["response"]["total"]["run"] == 50
    # (Its rates are over the sustain phase, which began after the telemetry: the total is worse.)
    assert {"conn_us p50", "conn_us p99", "timeout_error total", "error rate"} <= set(comparison["worse"])
    kinds = [table["kind"] for table in answer["tables"]]
    assert kinds == ["comparison_histograms", "comparison_counters"]
    assert "conn_us" in answer["tables"][0]["warnings"]
    # The other way round the slow run's latencies are the baseline: nothing of them is worse.
    status, answer, _ = coordinator.api.get(f"/api/runs/{ids['fast']}/compare/{ids['slow']}")
    assert status == 200 and not any(name.startswith("conn_us") for name in answer["comparison"]["worse"])
    # A wide tolerance lets a doubling pass.
    status, answer, _ = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/{ids['fast']}?tolerance=400")
    assert status == 200 and not any(name.startswith("conn_us") for name in answer["comparison"]["worse"])


def test_bad_comparisons_are_named(history):
    coordinator, generator, ids = history
    assert coordinator.api.get(f"/api/runs/nope/compare/{ids['fast']}")[0] == 404
    status, answer, _ = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/nope")
    assert status == 404 and answer["error"]["message"] == "no run nope"
    for tolerance in ("abc", "-1", "5000", "nan"):
        status, answer, _ = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/{ids['fast']}"
                                                f"?tolerance={tolerance}")
        assert status == 400 and answer["error"]["field"] == "tolerance", tolerance
    # Neither run passed (both were aborted): there is no last passed run to compare with.
    status, answer, _ = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/last-passed")
    assert status == 404 and "passed" in answer["error"]["message"]
    status, run, _ = coordinator.api.post("/api/runs", plan("live"))
    assert status == 201
    try:
        status, answer, _ = coordinator.api.get(f"/api/runs/{run['id']}/compare/{ids['fast']}")
        assert status == 409 and answer["error"]["code"] == "no_summary"
    finally:
        coordinator.api.post(f"/api/runs/{run['id']}/abort")
        coordinator.api.wait_run_finished(run["id"])


def test_baseline_thresholds_take_their_limits_from_the_baseline_runs_exact_histograms(history):
    coordinator, generator, ids = history
    detail = finished_run(coordinator, generator, "regressed", {"conn_us": [1500] * 100}, {"response_count": 100},
                          baseline=ids["fast"],
                          thresholds=["conn_us p95 < baseline * 1.10", "response count >= baseline * 0.9",
                                      "error_rate <= baseline"])
    assert detail["plan"]["baseline"] == ids["fast"]
    baseline = Histogram("conn_us")
    baseline.record_many([1000] * 100)
    results = detail["summary"]["verdict"]["thresholds"]
    # p95 is not in any summary: it comes from the baseline's whole-run histogram.
    assert results[0]["baseline"] == baseline.value_at_percentile(95)
    assert results[0]["limit"] == pytest.approx(baseline.value_at_percentile(95) * 1.1, abs=0.001)
    assert results[0]["state"] == "failed" and results[0]["actual"] > results[0]["limit"]
    assert (results[1]["baseline"], results[1]["state"]) == (100, "passed")
    assert (results[2]["baseline"], results[2]["limit"], results[2]["state"]) == (0, 0, "passed")
    assert detail["summary"]["verdict"]["outcome"] == "failed"
    # The HTML report compares the run with its baseline: the latency grew, marked.
    status, report, _ = coordinator.api.get(detail["report_url"])
    assert status == 200
    text = report.decode()
    assert f"<h2 id='comparison'>Compared with run {ids['fast']}</h2>" in text
    assert '<table class="comparison_histograms">' in text and '<span class="warn">conn_us</span>' in text
    assert "conn_us p50" in text.split("<h2 id='comparison'>")[1].split("</p>")[0]


@pytest.mark.parametrize("fields, field, words", [
    ({"thresholds": ["conn_us p99 < baseline * 1.1"]}, "baseline", "thresholds[0]"),
    ({"baseline": "nope"}, "baseline", "no run nope"),
    ({"baseline": "last-passed"}, "baseline", "no run has passed yet"),
    ({"baseline": "FAST", "thresholds": ["error_rate < 1%", "body_us p99 < baseline"]}, "thresholds[1]",
     "no values of body_us"),
    ({"baseline": "FAST", "thresholds": ["receive count > baseline * 0.5"]}, "thresholds[0]",
     "no counter receive"),
])
def test_a_baseline_that_cannot_answer_is_a_400_naming_the_field(history, fields, field, words):
    coordinator, _, ids = history
    if fields.get("baseline") == "FAST":
        fields = {**fields, "baseline": ids["fast"]}
    for path in ("/api/plans/check", "/api/runs"):
        status, answer, _ = coordinator.api.post(path, {**plan("refused"), **fields})
        assert status == 400, answer
        assert answer["error"]["field"] == field and words in answer["error"]["message"], answer


def test_last_passed_is_the_newest_passed_run(history):
    coordinator, generator, ids = history
    status, run, _ = coordinator.api.post("/api/runs", plan("passes", sustain_ms=300))
    assert status == 201
    generator.wait_for(wire.StartCohort, lambda m: m.run_id == run["id"])
    generator.telemetry(snapshot({"conn_us": [900] * 10}, {"response_count": 10}), active=4)
    detail = coordinator.api.wait_run_finished(run["id"])
    assert detail["summary"]["result"] == "passed", detail["summary"]
    status, checked, _ = coordinator.api.post("/api/plans/check", {
        **plan("next"), "baseline": "last-passed", "thresholds": ["conn_us p99 <= baseline"]})
    assert status == 200 and checked["plan"]["baseline"] == run["id"], checked
    status, answer, _ = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/last-passed")
    # The slow run is older than the passed one: none passed before it.
    assert status == 404
    status, answer, _ = coordinator.api.get(f"/api/runs/{run['id']}/compare/last-passed")
    assert status == 404  # and it is not its own baseline


def test_the_store_keeps_histograms_and_opens_a_file_from_before_they_were_kept(tmp_path):
    path = tmp_path / "runs.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, "
                       "created_at REAL NOT NULL, finished_at REAL, devices INTEGER NOT NULL, plan TEXT NOT NULL, "
                       "archive TEXT, summary TEXT, note TEXT NOT NULL DEFAULT '');")
    conn.execute("INSERT INTO runs VALUES ('old', 'old', 'done', 1.0, 2.0, 1, '{}', NULL, ?, '')",
                 (json.dumps({"result": "passed", "summary": {}}),))
    conn.commit()
    conn.close()
    store = RunStore(path)
    assert store.get("old")["summary"]["result"] == "passed" and store.histograms("old") is None
    assert store.last_passed()["id"] == "old"
    histogram = Histogram("conn_us")
    histogram.record_many([1, 100, 10_000, 10**12])
    store.insert("new", "new", "done", 3.0, 1, {})
    store.finish("new", "done", 4.0, None, {"result": "failed"}, histograms=encode_histograms({"conn_us": histogram}))
    kept = store.histograms("new")["conn_us"]
    assert kept.total_count == 4 and kept.clamped_count == histogram.clamped_count
    assert [kept.value_at_percentile(p) for p in (25, 50, 75, 100)] == \
        [histogram.value_at_percentile(p) for p in (25, 50, 75, 100)]
    assert "histograms" not in store.get("new")
    assert store.last_passed()["id"] == "old" and store.last_passed(before="old") is None


def exported(coordinator, run_id):
    """What the CLI sends to import run ``run_id``: its plan, summary and whole-run histograms
    as its archive holds them."""
    status, detail, _ = coordinator.api.get(f"/api/runs/{run_id}")
    assert status == 200
    status, data, _ = coordinator.api.get(detail["result_url"])
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        def member(name):
            return json.loads(archive.extractfile(f"{run_id}/{name}").read())
        return {"id": run_id, "plan": member("plan.json"), "summary": member("summary.json"),
                "histograms": member("histograms.json")}


def test_an_imported_run_compares_as_the_run_it_came_from(history):
    coordinator, _, ids = history
    body = exported(coordinator, ids["fast"])
    status, answer, _ = coordinator.api.post("/api/runs/import", body)
    assert status == 409 and answer["error"]["code"] == "run_exists"
    copy = "fast-copy-20260101000000"
    status, answer, headers = coordinator.api.post("/api/runs/import", {**body, "id": copy})
    assert status == 201 and answer == {"id": copy} and headers["Location"] == f"/api/runs/{copy}"
    status, detail, _ = coordinator.api.get(f"/api/runs/{copy}")
    assert detail["state"] == "aborted" and detail["note"].startswith("imported from its results archive")
    assert detail["summary"] == body["summary"] and detail["result_url"] is None
    original = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/{ids['fast']}")[1]
    imported = coordinator.api.get(f"/api/runs/{ids['slow']}/compare/{copy}")[1]
    assert imported["comparison"] == original["comparison"]
    # Its exact histograms came along: a percentile no summary holds is a limit.
    status, checked, _ = coordinator.api.post("/api/plans/check", {
        **plan("against the copy"), "baseline": copy, "thresholds": ["conn_us p95 <= baseline"]})
    assert status == 200 and checked["plan"]["baseline"] == copy


def test_an_imported_run_keeps_the_metric_names_a_generator_may_send(history):
    # A script's key may start with a digit (inc_counter("2fa") is counter 2fa_count): what
    # the coordinator took from its generators, it takes back from the run's archive.
    coordinator, _, ids = history
    body = exported(coordinator, ids["fast"])
    numbers = body["summary"]["summary"]
    numbers["counters"]["2fa"] = {"total": 3, "rate": 1.5, "peak": 2}
    numbers["histograms"]["2fa_us"] = numbers["histograms"]["conn_us"]
    body["histograms"]["2fa_us"] = body["histograms"]["conn_us"]
    copy = "digits-20260101000002"
    status, answer, _ = coordinator.api.post("/api/runs/import", {**body, "id": copy})
    assert status == 201, answer
    detail = coordinator.api.get(f"/api/runs/{copy}")[1]
    assert detail["summary"]["summary"]["counters"]["2fa"]["total"] == 3
    assert "2fa_us" in detail["summary"]["summary"]["histograms"]


def _bad(body, **changes):
    return {**body, **changes}


@pytest.mark.parametrize("change, field", [
    (lambda b: _bad(b, id="../etc"), "id"),
    (lambda b: _bad(b, extra=1), "extra"),
    (lambda b: _bad(b, plan=[]), "plan"),
    (lambda b: _bad(b, plan={**b["plan"], "blocks": [5]}), "plan.blocks"),
    (lambda b: _bad(b, summary={**b["summary"], "state": "sustain"}), "summary.state"),
    (lambda b: _bad(b, summary={**b["summary"], "finished_at": "later"}), "summary.finished_at"),
    (lambda b: _bad(b, summary={**b["summary"], "summary": {**b["summary"]["summary"], "histograms": {"conn_us": 5}}}),
     "summary.summary.histograms.conn_us"),
    (lambda b: _bad(b, histograms={"conn_us": ["!!!!", 0]}), "histograms"),
    (lambda b: _bad(b, histograms={"conn_us": [base64.b64encode(b"\xff\xff\xff").decode(), 0]}), "histograms"),
    (lambda b: _bad(b, histograms={"conn_us": "AAA="}), "histograms.conn_us"),
    (lambda b: _bad(b, histograms={**b["histograms"], "Conn_us": b["histograms"]["conn_us"]}), "histograms.Conn_us"),
])
def test_a_bad_import_is_a_400_naming_its_field_and_stores_nothing(history, change, field):
    coordinator, _, ids = history
    body = change({**exported(coordinator, ids["fast"]), "id": "never-20260101000001"})
    status, answer, _ = coordinator.api.post("/api/runs/import", body)
    assert status == 400 and answer["error"]["field"] == field, answer
    assert coordinator.api.get("/api/runs/never-20260101000001")[0] == 404
