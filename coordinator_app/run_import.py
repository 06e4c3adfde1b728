"""A finished run brought into the history from what its archive holds, to compare with.

``POST /api/runs/import`` takes ``{"id", "plan", "summary", "histograms"}``:
the run's id, ``plan.json``, ``summary.json`` and ``histograms.json`` of its
results archive (the CLI reads them from the file, so a run of another
coordinator, or of an earlier ``--local`` run, can be a baseline). Everything
is checked before anything is stored: ``imported`` returns the fields of the
run's record or raises ``ImportProblem`` naming the field.
"""
import dataclasses
import math
import re

from stressgrid.metrics import decode_histograms
from stressgrid.plan.constants import FINAL_STATES
from stressgrid.plan.model import MAX_NAME_LENGTH, MAX_RUN_ID_LENGTH

from .validate import METRIC_NAME

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
MAX_METRICS = 10_000
IMPORTED_NOTE = "imported from its results archive"


class ImportProblem(ValueError):
    """A bad import; ``field`` names where (``summary.summary.histograms``)."""

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class ImportedRun:
    """A finished run as the store records it."""

    run_id: str
    name: str
    state: str
    started_at: float
    finished_at: float
    devices: int
    plan: dict
    summary: dict
    histograms: dict  # stressgrid.metrics.encode_histograms' form, or None
    note: str


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _figures(value, field):
    """``{metric: {figure: number}}`` (a summary's histograms or counters)."""
    if not isinstance(value, dict) or len(value) > MAX_METRICS:
        raise ImportProblem(field, f"must be an object of at most {MAX_METRICS:,} metrics")
    for name, figures in value.items():
        if not METRIC_NAME.fullmatch(name) or not isinstance(figures, dict) \
                or not all(isinstance(key, str) and (_number(number) or number is None)
                           for key, number in figures.items()):
            raise ImportProblem(f"{field}.{name}"[:200], "must be an object of numbers")


def _summary(value):
    if not isinstance(value, dict):
        raise ImportProblem("summary", "must be the run's summary.json object")
    if value.get("state") not in FINAL_STATES:
        raise ImportProblem("summary.state", f"must be one of {', '.join(FINAL_STATES)}: a finished run")
    for key in ("started_at", "finished_at"):
        if not _number(value.get(key)):
            raise ImportProblem(f"summary.{key}", "must be a number (seconds since the epoch)")
    numbers = value.get("summary")
    if numbers is not None:
        if not isinstance(numbers, dict):
            raise ImportProblem("summary.summary", "must be an object")
        _figures(numbers.get("histograms", {}), "summary.summary.histograms")
        _figures(numbers.get("counters", {}), "summary.summary.counters")
        if not _number(numbers.get("error_rate_percent", 0)):
            raise ImportProblem("summary.summary.error_rate_percent", "must be a number")
    devices = value.get("devices_requested", 0)
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 0:
        raise ImportProblem("summary.devices_requested", "must be a whole number")
    return value


def _histograms(value):
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METRICS:
        raise ImportProblem("histograms", f"must be histograms.json's object of at most {MAX_METRICS:,}")
    for name, encoded in value.items():
        if not METRIC_NAME.fullmatch(name) or not isinstance(encoded, list) or len(encoded) != 2 \
                or not isinstance(encoded[0], str) or not isinstance(encoded[1], int):
            raise ImportProblem(f"histograms.{name}"[:200], "must be [base64 text, clamped count]")
    try:
        decode_histograms(value)
    except ValueError as exc:  # bad base64, a truncated or out-of-range encoding
        raise ImportProblem("histograms", f"a histogram does not decode: {exc}") from None
    return value


def imported(data):
    """The ``ImportedRun`` of an import request's JSON ``data``; raises ``ImportProblem``."""
    if not isinstance(data, dict):
        raise ImportProblem("import", "must be an object: {id, plan, summary, histograms}")
    unknown = set(data) - {"id", "plan", "summary", "histograms"}
    if unknown:
        raise ImportProblem(sorted(unknown)[0], "unknown field")
    run_id = data.get("id")
    if not isinstance(run_id, str) or len(run_id) > MAX_RUN_ID_LENGTH or not RUN_ID.fullmatch(run_id):
        raise ImportProblem("id", "must be a run id (letters, digits and -)")
    plan = data.get("plan")
    if not isinstance(plan, dict) or not isinstance(plan.get("name"), str) \
            or not 0 < len(plan["name"]) <= MAX_NAME_LENGTH:
        raise ImportProblem("plan", "must be the run's plan.json object, with its name")
    blocks = plan.get("blocks", [])
    if not isinstance(blocks, list) or not all(isinstance(block, dict) for block in blocks):
        raise ImportProblem("plan.blocks", "must be a list of script blocks (objects)")
    summary = _summary(data.get("summary"))
    note = summary.get("note") if isinstance(summary.get("note"), str) else ""
    return ImportedRun(run_id=run_id, name=plan["name"], state=summary["state"],
                       started_at=float(summary["started_at"]), finished_at=float(summary["finished_at"]),
                       devices=summary.get("devices_requested", 0), plan=plan, summary=summary,
                       histograms=_histograms(data.get("histograms")),
                       note=f"{IMPORTED_NOTE}; {note}" if note else IMPORTED_NOTE)
