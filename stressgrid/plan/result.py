"""A finished run's result, decided once: the coordinator writes it into the run's summary
(``summary.json`` and the API), and the website's badge and the CLI's exit code read it.

``passed``
    the run ended as planned, its thresholds (if any) passed and it counted no error
    that decides the result;
``failed``
    a threshold failed (the CLI exits 99);
``finished_with_errors``
    the load generation itself failed somewhere (a generator lost, a worker crashed or
    killed, a device cancelled by its own script or not placed: ``FLEET_ERRORS``), or the
    target's errors were counted, or an arrival-rate run dropped iterations (no device of
    its pool was free), and no threshold judges them (the CLI exits 1);
``aborted``
    the run was stopped before its end (the CLI exits 1).

Host metrics named like errors (``HOST_WARNING_METRICS``) are warnings, never errors of
the run.
"""
import enum

from .arrivals import DROPPED_ITERATION_COUNTER
from .constants import FLEET_ERRORS, HOST_WARNING_METRICS


class RunResult(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    FINISHED_WITH_ERRORS = "finished_with_errors"
    ABORTED = "aborted"


def error_name(name):
    """``timeout_error_count`` -> ``timeout_error``."""
    return name[:-len("_count")] if name.endswith("_count") else name


def is_host_error(name):
    """True for a host metric named like an error (TCP retransmits of the whole generator
    machine, other traffic included): a warning, not an error of the run."""
    return error_name(name) in HOST_WARNING_METRICS


def dropped_iterations(summary):
    """The iterations an arrival-rate run's summary says it dropped (0 for other runs)."""
    return (summary.get("totals") or {}).get(DROPPED_ITERATION_COUNTER, 0)


def run_errors(errors):
    """The errors of a run's summary (``{name: {"count", "line"}}``) that are the run's own."""
    return {name: error for name, error in (errors or {}).items()
            if error.get("count") and not is_host_error(name)}


def run_result(state, outcome, errors, dropped_iterations=0):
    """The ``RunResult`` of a run that ended in ``state`` (``done`` or ``aborted``) with the
    thresholds' ``outcome`` (``passed``, ``failed`` or ``None`` without thresholds), its
    summary's ``errors`` and its ``dropped_iteration_count``."""
    if outcome == "failed":
        return RunResult.FAILED
    if state != "done":
        return RunResult.ABORTED
    counted = run_errors(errors)
    fleet_failed = any(error_name(name) in FLEET_ERRORS for name in counted)
    if fleet_failed or ((counted or dropped_iterations) and outcome is None):
        return RunResult.FINISHED_WITH_ERRORS
    return RunResult.PASSED
