"""The JSON API (DESIGN.md section 8), used by the website and the CLI alike.

Errors are ``{"error": {"message": ..., ...}}``: plan errors add ``field``
(``blocks[0].size``) and, for scripts, ``line`` and ``column``; conflicts add
a ``code`` (``run_active``, ``no_generators``, ``not_active``).
"""
import json

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from stressgrid import metrics
from stressgrid.comparison import DEFAULT_TOLERANCE_PERCENT, compare, comparison_tables
from stressgrid.plan import Plan, PlanError, api as script_api, constants, feeder, model, script
from stressgrid.plan.resolve import resolve_addresses
from stressgrid.summary_tables import summary_tables

from . import baseline, json_body, overview, run_import
from .auth import protect
from .service import Conflict
from .writers.archive import report_name

blueprint = protect(Blueprint("api", __name__, url_prefix="/api"))

STREAM_KEEPALIVE_S = 15.0


def coordinator():
    """The ``Coordinator`` this app serves."""
    return current_app.extensions["stressgrid"]


def error(status, message, **fields):
    """A JSON error response."""
    response = jsonify(error={"message": message, **fields})
    response.status_code = status
    return response


def _plan_from_request():
    """``(Plan, resolved addresses)`` from the request body; raises ``PlanError``."""
    try:
        data = json_body.parse(request.get_data(cache=True))
    except json_body.BodyError as exc:
        raise PlanError("plan", str(exc)) from None
    if not isinstance(data, dict):
        raise PlanError("plan", "the body must be a plan as a JSON object")
    plan = baseline.with_baseline(Plan.from_dict(data), coordinator().store)
    return plan, resolve_addresses(plan.addresses)


MICRO = "\u00b5s"


def run_json(row, detail=False):
    """The API form of a stored run (``detail`` adds its plan and summary)."""
    result = {key: row.get(key) for key in ("id", "name", "state", "created_at", "finished_at",
                                             "devices", "note")}
    archive = row.get("archive")
    # passed, failed, finished_with_errors or aborted (stressgrid.plan.result); None until it ends
    result["result"] = (row.get("summary") or {}).get("result")
    result["result_url"] = url_for("results.download", filename=archive) if archive else None
    report = report_name(row["id"])
    result["report_url"] = url_for("results.download", filename=report) \
        if archive and (coordinator().results_dir / report).is_file() else None
    if detail:
        result["plan"] = row.get("plan")
        result["summary"] = row.get("summary")
        numbers = (result["summary"] or {}).get("summary")
        # The tables every view of the run shows (the website renders these; the CLI and the
        # HTML report lay out the same ones).
        result["summary_tables"] = [table.to_dict() for table in summary_tables(numbers, MICRO)] if numbers else []
    return result


def _active_run():
    """The live state of the active run, or ``None``."""
    return (coordinator().state() or {}).get("run")


def _live(run_id):
    run = _active_run()
    return run if run and run["id"] == run_id else None


@blueprint.errorhandler(PlanError)
def plan_error(exc):
    """A bad plan: 400 naming the field (and line/column for scripts)."""
    return error(400, exc.message, **{k: v for k, v in exc.to_dict().items() if k != "message"})


@blueprint.errorhandler(Conflict)
def conflict(exc):
    """Not possible right now (a run is active, no generators...): 409 with a code."""
    return error(409, exc.message, code=exc.code)


@blueprint.post("/runs")
def create_run():
    """Start a run of the plan in the body; 201 with the run, 409 if one is active."""
    plan, addresses = _plan_from_request()
    run = coordinator().submit(plan, addresses)
    response = jsonify(run)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_run", run_id=run["id"])
    return response


@blueprint.get("/runs")
def list_runs():
    """Every run in the history, newest first."""
    active = _active_run()
    runs = []
    for row in coordinator().store.list():
        item = run_json(row)
        if active and active["id"] == row["id"]:
            item["live"] = active
        runs.append(item)
    return jsonify(runs=runs)


@blueprint.post("/runs/import")
def import_run():
    """Add a finished run to the history from what its archive holds (``{id, plan, summary,
    histograms}``, run_import), so later runs can be compared with it: 201 with its id, 409
    (``run_exists``) when the history has a run with that id, 400 naming a bad field."""
    try:
        run = run_import.imported(json_body.parse(request.get_data(cache=False)))
    except json_body.BodyError as exc:
        return error(400, str(exc), field="import")
    except run_import.ImportProblem as exc:
        return error(400, exc.message, field=exc.field)
    if not coordinator().store.add_finished(run):
        return error(409, f"the history has a run {run.run_id} already", code="run_exists")
    response = jsonify(id=run.run_id)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_run", run_id=run.run_id)
    return response


@blueprint.get("/runs/<run_id>")
def get_run(run_id):
    """One run with its plan, summary and (while active) live state."""
    row = coordinator().store.get(run_id)
    if row is None:
        return error(404, f"no run {run_id}")
    result = run_json(row, detail=True)
    live = _live(run_id)
    if live is not None:
        result["live"] = live
    return jsonify(result)


@blueprint.get("/runs/<run_id>/overview")
def run_overview(run_id):
    """The run at a glance, one point a second (downsampled for long runs): ``{"names":
    {"rate", "latency"}, "fields": [...], "points": [[t, phase, devices, rate, p50, p90, p99,
    errors], ...]}``; the active run's so far. 404 for an unknown run or one without points."""
    if not coordinator().store.exists(run_id):
        return error(404, f"no run {run_id}")
    found = coordinator().overview(run_id)
    if found is None:
        return error(404, f"run {run_id} has no overview (it kept no per-second data)")
    return jsonify(found)


MAX_TOLERANCE_PERCENT = 1000.0


@blueprint.get("/runs/<run_id>/compare/<baseline_id>")
def compare_runs(run_id, baseline_id):
    """Run ``run_id`` against ``baseline_id`` (a run id, or ``last-passed``: the newest passed
    run before it): every histogram percentile and counter rate of both with the change, those
    worse by more than ``tolerance`` percent (default 10) listed, and the tables every view
    draws. 404 for an unknown run, 409 (``no_summary``) for one without a summary yet."""
    store = coordinator().store
    row = store.get(run_id)
    if row is None:
        return error(404, f"no run {run_id}")
    try:
        base = baseline.find(store, baseline_id, before=run_id)
    except baseline.BaselineMissing as exc:
        return error(404, str(exc))
    text = request.args.get("tolerance", str(DEFAULT_TOLERANCE_PERCENT))
    try:
        tolerance = float(text)
    except ValueError:
        tolerance = -1.0
    if not 0 <= tolerance <= MAX_TOLERANCE_PERCENT:
        return error(400, f"must be a percentage from 0 to {MAX_TOLERANCE_PERCENT:g}", field="tolerance")
    for run in (row, base):
        if baseline.figures(run) is None:
            return error(409, f"run {run['id']} has no summary to compare yet (it is {run['state']})",
                         code="no_summary")
    comparison = compare(baseline.figures(row), baseline.figures(base), tolerance)
    return jsonify(run=run_id, baseline=base["id"], comparison=comparison,
                   same_scripts=_scripts(row) == _scripts(base),
                   tables=[table.to_dict() for table in comparison_tables(comparison, base["id"], MICRO)])


def _scripts(run):
    return [block.get("script") for block in (run.get("plan") or {}).get("blocks") or ()]


@blueprint.post("/runs/<run_id>/abort")
def abort_run(run_id):
    """Abort the active run at once; its report and archive are still written."""
    if coordinator().store.get(run_id) is None:
        return error(404, f"no run {run_id}")
    run = coordinator().abort(run_id)
    response = jsonify(run)
    response.status_code = 202
    return response


@blueprint.delete("/runs/<run_id>")
def delete_run(run_id):
    """Forget a finished run and delete its archive."""
    if not coordinator().delete(run_id):
        return error(404, f"no run {run_id}")
    return Response(status=204)


@blueprint.get("/state")
def state():
    """Generators, the active run (state and remaining time) and the latest telemetry."""
    return jsonify(coordinator().state())


@blueprint.get("/meta")
def meta():
    """The rules and names the website shares with the coordinator, so it keeps no copies."""
    return jsonify(
        protocols=[{"name": protocol, "label": constants.PROTOCOL_LABELS[protocol],
                    "default_port": constants.DEFAULT_PORTS[protocol],
                    "script_functions": sorted(script_api.protocol_functions(protocol))}
                   for protocol in script_api.PROTOCOLS],
        default_protocol=constants.DEFAULT_PROTOCOL,
        mqtt_versions=list(constants.MQTT_VERSION_NAMES),
        default_mqtt_version=constants.DEFAULT_MQTT_VERSION,
        script_arguments=list(script.SCRIPT_ARGUMENTS),
        devices_per_generator_step=constants.DEVICES_PER_GENERATOR_STEP,
        cpu_warning_percent=constants.CPU_WARNING_PERCENT,
        loop_lag_histogram=constants.LOOP_LAG_HISTOGRAM,
        loop_lag_warning_us=constants.LOOP_LAG_WARNING_US,
        host_warning_metrics=sorted(constants.HOST_WARNING_METRICS),
        warning_status_counters=sorted(constants.WARNING_STATUS_COUNTERS),
        request_group={"prefix": constants.REQUEST_GROUP_PREFIX, "responses": constants.REQUEST_GROUP_RESPONSES},
        error_suffixes=list(metrics.ERROR_SUFFIXES),
        default_opts=model.DEFAULT_OPTS,
        limits={"name_length": model.MAX_NAME_LENGTH, "ramp_steps": model.MAX_RAMP_STEPS,
                "block_size": model.MAX_BLOCK_SIZE, "duration_ms": model.MAX_DURATION_MS,
                "report_interval_ms": model.MIN_REPORT_INTERVAL_MS,
                "timeout_ms": model.MAX_TIMEOUT_MS, "data_bytes": model.MAX_DATA_BYTES,
                "data_rows": model.MAX_DATA_ROWS},
        feeder_formats=list(feeder.FORMATS),
        metric_groups=overview.group_rules(),
    )


@blueprint.get("/stream")
def stream():
    """Server-sent events: one ``state`` event (as ``/api/state``) every second and on changes.

    A stream holds an HTTP thread while it is open, so only ``Config.stream_limit`` may be open
    at once; beyond that the answer is 503 with ``code: streams_busy`` at once, and the website
    and the CLI poll ``/api/state`` instead (the other threads stay free for requests).
    """
    engine = coordinator()
    slots = current_app.extensions["stressgrid.streams"]
    if not slots.acquire(blocking=False):
        response = error(503, "too many event streams are open; poll /api/state once a second",
                         code="streams_busy")
        response.headers["Retry-After"] = "30"
        return response

    def events():
        yield "retry: 2000\n\n"
        seq = -1
        while True:
            got = engine.wait_state(seq, STREAM_KEEPALIVE_S)
            if got is None:
                if engine.publisher.closed:
                    return
                yield ": keepalive\n\n"
                continue
            seq, value = got
            yield f"event: state\nid: {seq}\ndata: {json.dumps(value, separators=(',', ':'))}\n\n"

    response = Response(events(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # The slot goes back when the server closes the response, started or not; a client that
    # went away is noticed at the next write (a state each second, the keepalive at the latest).
    response.call_on_close(slots.release)
    return response


@blueprint.post("/feeder-rows")
def feeder_rows():
    """The rows of a feeder file (the body, UTF-8) for a block's ``data``: ``format`` is
    ``csv``, ``jsonl`` or ``json``, else the suffix of ``name``. A bad file is a 400
    naming its line."""
    kind = request.args.get("format") or feeder.format_of(request.args.get("name", ""))
    if kind not in feeder.FORMATS:
        return error(400, f"a feeder file must be {', '.join(feeder.FORMATS)} (.csv, .jsonl, .ndjson or "
                          f".json)", field="data")
    body = request.get_data(cache=False)
    try:
        feeder.check_size(len(body))
        rows = feeder.parse_rows(body.decode("utf-8"), kind)
    except UnicodeDecodeError:
        return error(400, "a feeder file must be UTF-8 text", field="data")
    except feeder.FeederError as exc:
        return error(400, str(exc), field="data", **({"line": exc.line} if exc.line is not None else {}))
    return jsonify(rows=rows, count=len(rows), bytes=model.data_bytes(rows))


@blueprint.post("/plans/check")
def check_plan():
    """Validate a plan (scripts and host names included) without running it."""
    plan, addresses = _plan_from_request()
    generators = len((coordinator().state() or {}).get("generators", []))
    opts = plan.opts
    return jsonify(ok=True, plan=plan.to_dict(), devices=plan.size, generators=generators,
                   effective_devices=constants.effective_devices(plan.size, generators),
                   addresses=[address.to_dict() for address in addresses],
                   duration_ms=opts.total_ms + opts.cooldown_ms)
