"""The CLI's exit code for a finished run's detail, as the API returns it."""
import pytest

from stressgrid.cli.exits import EXIT_OK, EXIT_RUN_ERRORS, EXIT_THRESHOLDS
from stressgrid.cli.run import verdict


def detail(errors=None, outcome=None, state="done"):
    summary = {"errors": {name: {"count": count, "line": ""} for name, count in (errors or {}).items()}}
    if outcome:
        summary["verdict"] = {"outcome": outcome, "thresholds": [
            {"expr": "error_rate < 1%", "state": "failed" if outcome == "failed" else "passed"}]}
    return {"id": "run-1", "state": state, "summary": summary}


@pytest.mark.parametrize("errors,outcome,code", [
    ({}, None, EXIT_OK),
    ({"conn_refused_error_count": 3}, None, EXIT_RUN_ERRORS),
    ({"network_tcp_retransmit_error_count": 3}, None, EXIT_OK),
    # Thresholds judge the target's errors...
    ({"conn_refused_error_count": 3}, "passed", EXIT_OK),
    ({"conn_refused_error_count": 3}, "failed", EXIT_THRESHOLDS),
    # ...but not the fleet's own failures: the planned load was not made.
    ({"worker_killed_error_count": 1}, "passed", EXIT_RUN_ERRORS),
    ({"worker_crashed_error_count": 1}, "passed", EXIT_RUN_ERRORS),
    ({"device_cancelled_error_count": 2}, "passed", EXIT_RUN_ERRORS),
    ({"device_unplaced_error_count": 5}, "passed", EXIT_RUN_ERRORS),
    ({"generator_lost_error_count": 1}, "passed", EXIT_RUN_ERRORS),
    ({"generator_lost_error_count": 1}, None, EXIT_RUN_ERRORS),
    ({"device_unplaced_error_count": 5}, "failed", EXIT_THRESHOLDS),
])
def test_exit_code(errors, outcome, code):
    assert verdict(detail(errors, outcome))[0] == code


def test_fleet_failure_names_the_error():
    code, reason = verdict(detail({"worker_crashed_error_count": 2}, "passed"))
    assert code == EXIT_RUN_ERRORS and "worker_crashed_error 2" in reason
