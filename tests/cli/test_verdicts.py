"""Thresholds and the end-of-run table, end to end: the CLI against a real coordinator,
generator and demo target."""
import json
import re

import pytest

from tests.cli.support import run_cli
from tests.cli.test_run import DEMO_SCRIPT, archive_of, coordinator_flag, run_detail, target_flags
from tests.coordinator.support import wait_until

SHORT = ["--rampup", "0.5", "--sustain", "2", "--rampdown", "0.5", "--cooldown", "0"]


def run_with(grid, demo_target, tmp_path, *flags):
    return run_cli(["run", "verdict", DEMO_SCRIPT, *coordinator_flag(grid), *target_flags(demo_target),
                    "-s", 20, *SHORT, "-q", *flags], tmp_path, timeout=120)


def table_row(err, name):
    """The cells of the end-of-run table's row for ``name``."""
    line = next(line for line in err.splitlines() if re.match(rf"^  {re.escape(name)}\s", line))
    return line.split()[1:]


def test_a_failing_threshold_exits_99_and_the_table_shows_the_summary_json_numbers(
        grid, demo_target, tmp_path):
    code, out, err = run_with(grid, demo_target, tmp_path, "--threshold", "headers_us p99 < 1us",
                              "--threshold", "error_rate < 1%", "--threshold", "response rate > 1")
    assert code == 99, err
    assert re.search(r"thresholds: 2 of 3 passed -> FAILED", err), err
    assert "failed 1 threshold: headers_us p99 < 1us" in err.splitlines()[-1]
    detail = run_detail(grid, out)
    run_id = detail["id"]
    files = archive_of(grid, out)
    archived = json.loads(files[f"{run_id}/summary.json"])
    # The archive holds the HTML report, the same file the coordinator serves.
    assert files[f"{run_id}/report.html"] == grid.api.get(detail["report_url"])[1]
    # The archive's summary.json and the API's run hold the same report.
    assert archived == detail["summary"]
    summary = archived["summary"]
    verdict = archived["verdict"]
    assert verdict["outcome"] == "failed" and verdict["final"] is True
    assert [r["state"] for r in verdict["thresholds"]] == ["failed", "passed", "passed"]
    # The failing threshold's measured value is the whole run's p99, which the table shows.
    headers = summary["histograms"]["headers_us"]
    assert verdict["thresholds"][0]["actual"] == headers["p99"] > 1
    from stressgrid.cli.display import format_rate, format_us
    assert table_row(err, "headers_us") == [f"{headers['count']:,}"] + [
        format_us(headers[key], "\u00b5s") for key in ("mean", "p50", "p90", "p99", "p99_9", "max")]
    response = summary["counters"]["response"]
    assert response["total"] == archived["totals"]["response_count"] > 0
    assert table_row(err, "response") == [f"{response['total']:,}", format_rate(response["rate"]),
                                          format_rate(response["peak"])]
    # Rates are over the sustain phase: about its 2 s, not the whole run.
    assert summary["rate_window"]["phase"] == "sustain"
    assert 1.5 < summary["rate_window"]["seconds"] < 3.5
    assert summary["error_rate_percent"] == 0


def test_passing_thresholds_exit_0(grid, demo_target, tmp_path):
    code, out, err = run_with(grid, demo_target, tmp_path, "--threshold", "headers_us p99 < 10s",
                              "--threshold", "response count > 0")
    assert code == 0, err
    assert "thresholds: 2 of 2 passed -> PASSED" in err
    assert run_detail(grid, out)["summary"]["verdict"]["outcome"] == "passed"


@pytest.mark.parametrize("expr, column", [("headers_us p99 << 1ms", 17), ("response p99 < 1", 10)])
def test_a_bad_threshold_is_a_usage_error_with_its_column(grid, demo_target, tmp_path, expr, column):
    code, out, err = run_with(grid, demo_target, tmp_path, "--threshold", expr)
    assert code == 2 and out == ""
    assert f"--threshold {expr!r}: column {column}:" in err
    # The caret points at the column (every line of the message has the same prefix).
    lines = err.splitlines()
    prefix = "stressgrid:   "
    assert lines[-2] == prefix + expr and lines[-1].index("^") - len(prefix) == column - 1


def test_abort_on_fail_ends_the_run_early_with_its_report(grid, demo_target, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"thresholds": [{"expr": "headers_us max < 1us", "abort_on_fail": True}]}))
    code, out, err = run_cli(["run", "abort on fail", DEMO_SCRIPT, "--plan", plan, *coordinator_flag(grid),
                              *target_flags(demo_target), "-s", 20, "--rampup", "0.5",
                              "--sustain", "60", "--rampdown", "0.5", "--cooldown", "0", "-q"],
                             tmp_path, timeout=120)
    assert code == 99, err
    detail = run_detail(grid, out)
    assert detail["state"] == "aborted"
    assert detail["summary"]["note"] == "threshold failed: headers_us max < 1us"
    assert detail["summary"]["duration_s"] < 30
    assert detail["summary"]["verdict"]["thresholds"][0]["state"] == "failed"
    wait_until(lambda: grid.api.state()["run"] is None, message="the run to be released")
