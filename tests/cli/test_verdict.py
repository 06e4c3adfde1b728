"""A finished run's result (``stressgrid.plan.result``) and the CLI's exit code for it."""
import pytest

from stressgrid.cli.exits import EXIT_OK, EXIT_RUN_ERRORS, EXIT_THRESHOLDS
from stressgrid.cli.run import verdict
from stressgrid.plan.result import RunResult, run_result

pytestmark = pytest.mark.unit


def detail(errors=None, outcome=None, state="done"):
    """A run's detail as the API returns it, its ``result`` decided as the coordinator does."""
    summary = {"errors": {name: {"count": count, "line": ""} for name, count in (errors or {}).items()},
               "note": "aborted on request" if state != "done" else ""}
    if outcome:
        summary["verdict"] = {"outcome": outcome, "thresholds": [
            {"expr": "error_rate < 1%", "state": "failed" if outcome == "failed" else "passed"}]}
    summary["result"] = run_result(state, outcome, summary["errors"]).value
    return {"id": "run-1", "state": state, "summary": summary}


@pytest.mark.parametrize("errors,outcome,state,result,code", [
    ({}, None, "done", RunResult.PASSED, EXIT_OK),
    ({"conn_refused_error_count": 3}, None, "done", RunResult.FINISHED_WITH_ERRORS, EXIT_RUN_ERRORS),
    ({"conn_refused_error_count": 0}, None, "done", RunResult.PASSED, EXIT_OK),
    ({"network_tcp_retransmit_error_count": 3}, None, "done", RunResult.PASSED, EXIT_OK),
    # Thresholds judge the target's errors...
    ({"conn_refused_error_count": 3}, "passed", "done", RunResult.PASSED, EXIT_OK),
    ({"conn_refused_error_count": 3}, "failed", "done", RunResult.FAILED, EXIT_THRESHOLDS),
    # ...but not the fleet's own failures: the planned load was not made.
    ({"worker_killed_error_count": 1}, "passed", "done", RunResult.FINISHED_WITH_ERRORS, EXIT_RUN_ERRORS),
    ({"worker_crashed_error_count": 1}, "passed", "done", RunResult.FINISHED_WITH_ERRORS, EXIT_RUN_ERRORS),
    ({"device_cancelled_error_count": 2}, "passed", "done", RunResult.FINISHED_WITH_ERRORS, EXIT_RUN_ERRORS),
    ({"device_unplaced_error_count": 5}, "passed", "done", RunResult.FINISHED_WITH_ERRORS, EXIT_RUN_ERRORS),
    ({"generator_lost_error_count": 1}, "passed", "done", RunResult.FINISHED_WITH_ERRORS, EXIT_RUN_ERRORS),
    ({"generator_lost_error_count": 1}, None, "done", RunResult.FINISHED_WITH_ERRORS, EXIT_RUN_ERRORS),
    ({"device_unplaced_error_count": 5}, "failed", "done", RunResult.FAILED, EXIT_THRESHOLDS),
    # An aborted run did not run its plan: never passed; a threshold that aborted it failed.
    ({}, None, "aborted", RunResult.ABORTED, EXIT_RUN_ERRORS),
    ({}, "passed", "aborted", RunResult.ABORTED, EXIT_RUN_ERRORS),
    ({}, "failed", "aborted", RunResult.FAILED, EXIT_THRESHOLDS),
])
def test_result_and_exit_code(errors, outcome, state, result, code):
    run = detail(errors, outcome, state)
    assert run["summary"]["result"] == result.value
    assert verdict(run)[0] == code


def test_fleet_failure_names_the_error():
    code, reason = verdict(detail({"worker_crashed_error_count": 2}, "passed"))
    assert code == EXIT_RUN_ERRORS and "worker_crashed_error 2" in reason


def test_an_abort_says_why_and_a_missing_result_is_never_a_pass():
    assert verdict(detail(state="aborted"))[1] == "run run-1 was aborted: aborted on request"
    code, reason = verdict({"id": "run-1", "state": "aborted", "summary": None, "note": "coordinator restarted"})
    assert code == EXIT_RUN_ERRORS and "without a result: coordinator restarted" in reason
