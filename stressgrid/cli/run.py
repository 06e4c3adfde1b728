"""The ``run`` command: submit the plan, follow the run, report, print the archive's place."""
import http.client
import os
import pathlib
import signal
import sys
import time
import urllib.parse

from stressgrid.plan.constants import FINAL_STATES, plural
from stressgrid.plan.result import RunResult, dropped_iterations, error_name, run_errors

from .api_client import Api, ApiError
from .archive_baseline import import_baseline, is_archive, read_archive
from .display import BOLD, YELLOW, Display
from .exits import (EXIT_BUSY, EXIT_COORDINATOR, EXIT_INTERRUPTED, EXIT_NO_GENERATORS, EXIT_OK,
                    EXIT_RUN_ERRORS, EXIT_THRESHOLDS, EXIT_USAGE, CliError)
from .local import LocalGrid
from .options import DEFAULT_COORDINATOR, argument_parser, coordinator_url
from .plan_spec import PlanSpec
from .summary_table import show_comparison, show_summary

RECONNECT_WINDOW_S = 20.0  # how long a lost coordinator may stay away during a run


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def follow(api, run_id, display, grid=None):
    """Show the run's telemetry from the event stream until the run is no longer active.

    A dropped stream is reconnected; a coordinator gone for longer than
    ``RECONNECT_WINDOW_S`` (or, in local mode, a child process that died) ends
    the command.
    """
    lost_since = None
    while True:
        try:
            for state in api.states():
                lost_since = None
                if not _show(state, run_id, display, grid):
                    return
            problem = "the coordinator closed the event stream"
        except ApiError as exc:
            # A coordinator without an event stream, or with every stream slot taken.
            if exc.status in (404, 503):
                return poll(api, run_id, display, grid)
            problem = f"the event stream failed: {exc}"
        except CliError as exc:
            if exc.code != EXIT_COORDINATOR:
                raise
            problem = exc.message
        except (OSError, ValueError, http.client.HTTPException) as exc:  # dropped, broken event
            problem = f"the event stream broke: {exc}"
        _check_children(grid)
        now = time.monotonic()
        if lost_since is None:
            lost_since = now
            display.message(f"{problem}; reconnecting", YELLOW)
        elif now - lost_since > RECONNECT_WINDOW_S:
            raise CliError(EXIT_COORDINATOR, f"lost the coordinator at {api.base_url} during run "
                                             f"{run_id}: {problem}")
        time.sleep(1.0)


def poll(api, run_id, display, grid=None):
    """``follow`` for coordinators without an event stream: ``/api/state`` once a second."""
    while _show(api.state(), run_id, display, grid):
        time.sleep(1.0)


def _show(state, run_id, display, grid):
    """Show one published state; false once ``run_id`` is no longer the active run."""
    run = state.get("run")
    if not run or run.get("id") != run_id:
        return False
    display.update(state, run_id)
    _check_children(grid)
    return True


def _check_children(grid):
    """In local mode, end the command when a child process has died."""
    if grid is not None and (failure := grid.died()):
        raise CliError(EXIT_COORDINATOR, failure)


def wait_finished(api, run_id):
    """The run's detail once it is done or aborted and its report written."""
    deadline = time.monotonic() + 600
    while True:
        try:
            detail = api.call("GET", f"/api/runs/{urllib.parse.quote(run_id)}")
        except ApiError as exc:
            raise CliError(EXIT_COORDINATOR, f"cannot read run {run_id}: {exc}") from None
        if detail.get("state") in FINAL_STATES and "live" not in detail:
            return detail
        if time.monotonic() > deadline:
            raise CliError(EXIT_COORDINATOR, f"run {run_id} did not finish in time")
        time.sleep(0.2)


def submit(api, spec, display):
    """Check the coordinator, build and submit the plan; returns the run's API answer."""
    state = api.state()
    generators = len(state.get("generators") or ())
    if not generators:
        raise CliError(EXIT_NO_GENERATORS, f"no generator is registered with the coordinator at "
                                           f"{api.base_url}; start one with 'COORDINATOR_URL="
                                           f"{_generator_url(api, state)} python -m "
                                           f"stressgrid.generator'")
    active = state.get("run")
    if active:
        raise CliError(EXIT_BUSY, f"run {active.get('id')} is in progress on {api.base_url}; "
                                  f"wait for it or abort it")
    plan = spec.plan(generators)
    spec.check(plan)
    try:
        run = api.call("POST", "/api/runs", plan)
    except ApiError as exc:
        if exc.status == 409 and exc.code == "no_generators":
            raise CliError(EXIT_NO_GENERATORS, f"the coordinator has no generator: {exc.message}") \
                from None
        if exc.status == 409:
            raise CliError(EXIT_BUSY, f"the coordinator refused the run: {exc.message}") from None
        if 400 <= exc.status < 500:
            if exc.error.get("field"):
                raise CliError(EXIT_USAGE, "the coordinator rejected the plan: "
                               + spec.describe_error(exc.error)) from None
            raise CliError(EXIT_USAGE, f"the coordinator rejected the plan: {exc.message}") from None
        raise CliError(EXIT_COORDINATOR, f"the coordinator failed to start the run: {exc}") from None
    display.message(_run_line(run["id"], plan, spec, generators), BOLD)
    return run


def _run_line(run_id, plan, spec, generators):
    """The line that says what the run started does."""
    opts = plan["opts"]
    targets = ", ".join(f"{a['host']}:{a['port']}" for a in plan["addresses"])
    where = f"on {plural(generators, 'generator')} -> {targets} ({plan['addresses'][0]['protocol']})"
    if spec.open_model:
        rate = (f"{opts['rate']:g} iterations/s for {opts['sustain_ms'] / 1000:g} s" if opts.get("rate")
                else "rate steps " + ", ".join(f"{ms / 1000:g} s to {rate:g}/s" for ms, rate in opts["rate_steps"]))
        pool = opts.get("max_devices") or spec.size
        return (f"run {run_id}: {rate} ({opts.get('arrivals', 'uniform')}) on a pool of {pool:,} devices "
                f"{where}; cooldown {opts['cooldown_ms'] / 1000:g} s")
    return (f"run {run_id}: {spec.size:,} devices {where}; ramp-up "
            f"{opts['ramp_steps'] * opts['rampup_step_ms'] / 1000:g} s in "
            f"{plural(opts['ramp_steps'], 'step')}, sustain {opts['sustain_ms'] / 1000:g} s, "
            f"ramp-down {opts['ramp_steps'] * opts['rampdown_step_ms'] / 1000:g} s, cooldown "
            f"{opts['cooldown_ms'] / 1000:g} s")


def _generator_url(api, state):
    """Where generators reach the coordinator: its host as this command reaches it, and the
    port of the endpoint it bound for generators (as its published state says)."""
    endpoint = (state.get("coordinator") or {}).get("generator_endpoint") or ""
    port = endpoint.rsplit(":", 1)[-1] if endpoint.startswith("tcp://") else ""
    host = urllib.parse.urlsplit(api.base_url).hostname or "<coordinator>"
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port if port.isdigit() else '<its --generator-port>'}"


def run_and_report(api, spec, display, grid=None):
    """Submit, follow (Ctrl-C aborts); returns ``(exit code, reason or None, detail)``."""
    if spec.baseline is not None and is_archive(spec.baseline):
        archive = spec.baseline
        spec.baseline = import_baseline(api, archive)
        display.message(f"baseline: run {spec.baseline}, from {archive}")
    run = submit(api, spec, display)
    run_id = run["id"]
    interrupted = False
    while True:
        try:
            follow(api, run_id, display, grid)
            break
        except KeyboardInterrupt:
            if interrupted:
                display.close()
                raise CliError(EXIT_INTERRUPTED, f"interrupted again: stopped waiting for the "
                                                 f"report of run {run_id}") from None
            interrupted = True
            display.message(f"interrupted: aborting run {run_id} and waiting for its report "
                            f"(Ctrl-C again to stop waiting)", YELLOW)
            try:
                api.call("POST", f"/api/runs/{urllib.parse.quote(run_id)}/abort")
            except ApiError as exc:
                if exc.status != 409:  # 409: it is finishing already
                    raise CliError(EXIT_COORDINATOR, f"could not abort run {run_id}: {exc}") from None
    while True:
        try:
            detail = wait_finished(api, run_id)
            break
        except KeyboardInterrupt:
            if interrupted:
                raise CliError(EXIT_INTERRUPTED, f"interrupted again: stopped waiting for the "
                                                 f"report of run {run_id}") from None
            interrupted = True
    show_summary(display, detail)
    compared = (detail.get("plan") or {}).get("baseline")
    if compared:
        try:
            show_comparison(display, api.call("GET", f"/api/runs/{urllib.parse.quote(run_id)}/compare/"
                                                     f"{urllib.parse.quote(compared)}"))
        except ApiError as exc:
            display.error(f"stressgrid: cannot compare run {run_id} with run {compared}: {exc}")
    return (*verdict(detail, interrupted), detail)


def verdict(detail, interrupted=False):
    """``(exit code, one-line reason or None)`` for a finished run's detail, from its
    ``result`` (``stressgrid.plan.result``)."""
    run_id = detail.get("id")
    summary = detail.get("summary") or {}
    if interrupted:
        return EXIT_INTERRUPTED, f"run {run_id} was aborted on request (interrupted)"
    result = summary.get("result")
    if result == RunResult.PASSED:
        return EXIT_OK, None
    if result == RunResult.FAILED:
        judged = summary.get("verdict") or {}
        failed = [r["expr"] for r in judged.get("thresholds") or () if r.get("state") == "failed"]
        return EXIT_THRESHOLDS, f"run {run_id} failed {plural(len(failed), 'threshold')}: " \
            + "; ".join(failed)
    if result == RunResult.FINISHED_WITH_ERRORS:
        errors = run_errors(summary.get("errors"))
        total = sum(e["count"] for e in errors.values())
        dropped = dropped_iterations(summary)
        said = [f"counted {total:,} errors: " + ", ".join(
            f"{error_name(n)} {e['count']:,}" for n, e in sorted(errors.items()))] if errors else []
        if dropped:
            said.append(f"dropped {dropped:,} iterations (every device of the pool was busy)")
        return EXIT_RUN_ERRORS, f"run {run_id} " + "; ".join(said)
    note = summary.get("note") or detail.get("note") or "no reason given"
    if result == RunResult.ABORTED:
        return EXIT_RUN_ERRORS, f"run {run_id} was aborted: {note}"
    # No result: the coordinator could not write the run's summary.
    return EXIT_RUN_ERRORS, f"run {run_id} ended {detail.get('state')} without a result: {note}"


def _archive_destination(filename):
    path = pathlib.Path.cwd() / filename
    stem = filename[:-len(".tar.gz")] if filename.endswith(".tar.gz") else filename
    n = 2
    while path.exists():
        path = pathlib.Path.cwd() / f"{stem}-{n}.tar.gz"
        n += 1
    return path


def command_run(args, display):
    if args.demo_target and not args.local:
        raise CliError(EXIT_USAGE, "--demo-target needs --local (it starts the target on this machine)")
    if args.workers and not args.local:
        raise CliError(EXIT_USAGE, "--workers needs --local (it sizes the local generator)")
    if args.source_addresses is not None and not args.local:
        raise CliError(EXIT_USAGE, "--source-addresses needs --local (a remote generator takes its own "
                                   "--source-addresses)")
    if args.source_addresses is not None:
        # The generator's parser, imported only here: the coordinator loads this module too,
        # and never the generator side.
        from stressgrid.protocols.source import SourcePoolError, parse_pool
        try:
            parse_pool(args.source_addresses)
        except SourcePoolError as exc:
            raise CliError(EXIT_USAGE, f"--source-addresses: {exc}") from None
    if args.local and args.coordinator:
        raise CliError(EXIT_USAGE, "--local starts its own coordinator: drop --coordinator")
    if args.demo_target and (args.target_hosts or args.target_port or args.target_protocol):
        raise CliError(EXIT_USAGE, "--demo-target sets the target: drop --target-hosts, "
                                   "--target-port and --target-protocol")
    demo = ("127.0.0.1", 1, "http") if args.demo_target else None
    spec = PlanSpec(args, demo)
    if spec.baseline is not None and is_archive(spec.baseline):
        read_archive(spec.baseline)  # a bad file is said before anything starts
    elif args.local and spec.baseline is not None:
        raise CliError(EXIT_USAGE, "--local starts a new coordinator with no history: give the baseline "
                                   "as the results archive (.tar.gz) of the run to compare with")
    # Everything that can be checked before contacting anyone: the plan and its scripts.
    spec.check(spec.plan(1))
    if not args.local:
        base = coordinator_url(args.coordinator or os.environ.get("STRESSGRID_COORDINATOR")
                               or DEFAULT_COORDINATOR)
        api = Api(base, args.token or os.environ.get("STRESSGRID_TOKEN"))
        code, reason, detail = run_and_report(api, spec, display)
        location = base + _result_url(detail, code, reason)
    else:
        with LocalGrid(display, args.workers, args.demo_target, args.source_addresses) as grid:
            if grid.target:
                spec.addresses = [{"host": grid.target[0], "port": grid.target[1],
                                   "protocol": grid.target[2]}]
            api = Api(grid.base_url, grid.token)
            code, reason, detail = run_and_report(api, spec, display, grid)
            url = _result_url(detail, code, reason)
            destination = _archive_destination(url.rsplit("/", 1)[-1])
            try:
                api.download(url, destination)
            except OSError as exc:
                raise CliError(EXIT_RUN_ERRORS, f"cannot save the archive as {destination}: "
                                                f"{exc.strerror or exc}") from None
            location = str(destination)
    display.message(f"results: {location}")
    if reason:
        display.error(f"stressgrid: {reason}")
    print(location, flush=True)
    return code


def _result_url(detail, code, reason):
    url = detail.get("result_url")
    if not url:
        raise CliError(code or EXIT_RUN_ERRORS, (f"{reason}; " if reason else "")
                       + f"the coordinator wrote no archive for run {detail.get('id')}")
    return url


def main(argv=None):
    """The ``stressgrid`` console script and ``python -m stressgrid.cli``."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    display = Display(sys.stderr, quiet=args.quiet, color=False if args.no_color else None)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return command_run(args, display)
    except CliError as exc:
        display.close()
        print("\n".join(f"stressgrid: {line}" for line in exc.message.splitlines()),
              file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        display.close()
        print("stressgrid: interrupted before the run started", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)

