"""A run compared with a baseline run, end to end: the CLI against a real coordinator,
generator and the demo target, whose ``/slow`` answers as late as asked."""
import json
import pathlib
import tarfile

from tests.cli.support import run_cli
from tests.cli.test_run import DEMO_SCRIPT, coordinator_flag, run_detail, target_flags
from tests.cli.test_verdicts import SHORT


def slow_run(grid, demo_target, tmp_path, name, slow_ms, *flags):
    """The demo script with its named ``slow`` request answered after ``slow_ms``."""
    return run_cli(["run", name, DEMO_SCRIPT, *coordinator_flag(grid), *target_flags(demo_target), "-s", 10,
                    "--script-params", json.dumps({"slow_ms": slow_ms, "delay_ms": 20}), *SHORT, "-q",
                    *flags], tmp_path, timeout=120)


def test_a_slowed_target_fails_a_baseline_threshold_and_its_comparison_marks_it(grid, demo_target, tmp_path):
    code, out, err = slow_run(grid, demo_target, tmp_path, "baseline fast", 1)
    assert code == 0, err
    fast = run_detail(grid, out)
    # The medians, 1 ms against 150 ms: wide apart even on a machine busy enough to put a
    # 1 ms answer's p99 at 40 ms.
    threshold = "request_slow_headers_us p50 < baseline * 2"
    code, out, err = slow_run(grid, demo_target, tmp_path, "baseline slow", 150, "--baseline", "last-passed",
                              "--threshold", threshold, "--threshold", "error_rate <= baseline")
    assert code == 99, err
    slow = run_detail(grid, out)
    assert slow["plan"]["baseline"] == fast["id"]
    assert f"run {slow['id']} failed 1 threshold: {threshold}" in err.splitlines()[-1]
    results = slow["summary"]["verdict"]["thresholds"]
    fast_p50 = fast["summary"]["summary"]["histograms"]["request_slow_headers_us"]["p50"]
    assert results[0]["baseline"] == fast_p50 and results[0]["actual"] > 150_000 > results[0]["limit"]
    assert results[1]["state"] == "passed"
    # The threshold's line says what the baseline measured and the limit it gave.
    line = next(line for line in err.splitlines() if threshold in line)
    assert "FAIL" in line and "limit" in line and "the baseline's" in line
    # The comparison follows the summary: the slowed request is worse.
    head = next(line for line in err.splitlines() if line.startswith(f"compared with run {fast['id']}: "))
    assert "worse: " in head
    # Its tables show whole names: the slowed request's row, its median more than doubled.
    row = next(line for line in err.splitlines() if line.startswith("  request_slow_headers_us "))
    p50 = row.split()[1:3]
    assert p50[0].endswith("ms") and float(p50[1].rstrip("%")) > 100, row
    status, answer, _ = grid.api.get(f"/api/runs/{slow['id']}/compare/{fast['id']}")
    assert status == 200
    assert "request_slow_headers_us" in answer["tables"][0]["warnings"]
    assert "request_slow_headers_us p50" in answer["comparison"]["worse"]
    # The other way round, the slowed request is the one that got better.
    status, answer, _ = grid.api.get(f"/api/runs/{fast['id']}/compare/{slow['id']}")
    assert status == 200
    assert not any(name.startswith("request_slow_headers_us") for name in answer["comparison"]["worse"])


def test_a_local_run_compares_with_the_archive_an_earlier_local_run_left(tmp_path):
    """``--local`` keeps no history; the archive it saved is the baseline of the next one."""
    local = ["--local", "--demo-target", "-s", 10, *SHORT, "-q"]
    code, out, err = run_cli(["run", "local fast", DEMO_SCRIPT, *local, "--script-params",
                              json.dumps({"slow_ms": 1, "delay_ms": 20})], tmp_path, timeout=120)
    assert code == 0, err
    archive = pathlib.Path(out)
    with tarfile.open(archive) as opened:
        names = opened.getnames()
    run_id = archive.name[:-len(".tar.gz")]
    assert f"{run_id}/histograms.json" in names  # the whole run's histograms, exactly
    threshold = "request_slow_headers_us p50 < baseline * 2"
    code, out, err = run_cli(["run", "local slow", DEMO_SCRIPT, *local, "--script-params",
                              json.dumps({"slow_ms": 150, "delay_ms": 20}), "--baseline", str(archive),
                              "--threshold", threshold], tmp_path, timeout=120)
    assert code == 99, err
    assert f"baseline: run {run_id}, from {archive}" in err
    assert err.splitlines()[-1].endswith(f"failed 1 threshold: {threshold}")
    assert any(line.startswith(f"compared with run {run_id}: ") for line in err.splitlines()), err
    with tarfile.open(out) as opened:
        slow = json.loads(opened.extractfile(f"{pathlib.Path(out).name[:-len('.tar.gz')]}/summary.json").read())
    result = slow["verdict"]["thresholds"][0]
    assert result["state"] == "failed" and result["limit"] == result["baseline"] * 2


def test_bad_baselines_are_usage_errors(grid, demo_target, tmp_path):
    not_archive = tmp_path / "notes.tar.gz"
    not_archive.write_bytes(b"not gzip")
    for flags, words in ((["--local", "--demo-target", "--baseline", "last-passed"], "results archive (.tar.gz)"),
                         (["--local", "--demo-target", "--baseline", tmp_path / "gone.tar.gz"], "no such file"),
                         (["--local", "--demo-target", "--baseline", not_archive], "not a results archive")):
        code, out, err = run_cli(["run", "bad baseline", DEMO_SCRIPT, *flags], tmp_path, timeout=60)
        assert code == 2 and out == "" and words in err, err
    # A plan file's baseline that is not a run id is named, not a crash.
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"baseline": 5}))
    code, out, err = slow_run(grid, demo_target, tmp_path, "numeric baseline", 1, "--plan", plan_file)
    assert code == 2 and "invalid plan: baseline: must be a run id or last-passed" in err, err
    code, out, err = slow_run(grid, demo_target, tmp_path, "unknown baseline", 1, "--baseline", "nope")
    assert code == 2 and out == ""
    assert "invalid plan: baseline: no run nope" in err
    code, out, err = slow_run(grid, demo_target, tmp_path, "no baseline", 1, "--threshold",
                              "headers_us p99 < baseline * 2")
    assert code == 2 and "baseline" in err
