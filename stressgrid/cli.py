"""``python -m stressgrid.cli run``: run a plan on a coordinator from the command line.

The CLI speaks to a coordinator only through its JSON API (``/api/...``), in
local mode too: ``--local`` starts a coordinator and a generator on this
machine as child processes, runs the plan through the same API, downloads the
results archive and stops both.

While a run goes on, its telemetry is drawn on stderr (redrawn in place on a
terminal, one line a second otherwise). When it ends, the results archive's
URL (or, with ``--local``, the downloaded file's path) is the only line on
stdout, so ``wget $(python -m stressgrid.cli run ...)`` fetches it.
"""
import argparse
import contextlib
import http.client
import importlib.machinery
import json
import math
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from stressgrid.plan import Plan, PlanError
from stressgrid.plan.api import PROTOCOLS

# -- exit codes ------------------------------------------------------------------

EXIT_OK = 0
EXIT_RUN_ERRORS = 1  # devices counted errors during the run, or someone else aborted it
EXIT_USAGE = 2  # bad flags, missing/unreadable file, invalid plan or script, plan rejected
EXIT_COORDINATOR = 3  # coordinator unreachable, token refused, local processes failed
EXIT_NO_GENERATORS = 4  # no generator registered (or the local one failed)
EXIT_BUSY = 5  # another run is in progress on the coordinator
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: the run was aborted; its archive is still printed

EXIT_CODES_HELP = """\
exit codes:
  0    the run completed and no errors were counted
  1    the run ended, but devices counted errors (connection failures,
       timeouts, script exceptions; see the summary on stderr) or it was
       aborted by something other than this command; the archive location is
       still printed. network_tcp_retransmit_error, a host metric, is shown as
       a warning only
  2    usage error: bad option, missing script or plan file, invalid plan,
       script error (with its line and column), plan rejected by the coordinator
  3    the coordinator cannot be used: unreachable, token refused, unexpected
       answer, or (--local) the coordinator or demo target failed to start
  4    no generator is registered (or, --local, the generator failed to start)
  5    another run is in progress on the coordinator
  130  interrupted (Ctrl-C or SIGTERM): the run was aborted, and its archive
       location is still printed once the coordinator has written it
"""

# -- defaults --------------------------------------------------------------------

DEFAULT_COORDINATOR = "http://localhost:8000"
DEFAULT_MANAGEMENT_PORT = 8000
DEFAULT_TARGET_HOSTS = "localhost"
DEFAULT_TARGET_PORT = 5000  # the original sgcli's default, and the demo target's
DEFAULT_PROTOCOL = "http"
DEFAULT_SIZE = 10
DEFAULT_RAMPUP_S = 10.0
DEFAULT_SUSTAIN_S = 60.0
DEFAULT_RAMPDOWN_S = 10.0
DEFAULT_COOLDOWN_S = 5.0
DEFAULT_REPORT_INTERVAL_S = 60.0
DEFAULT_TIMEOUT_S = 5.0

# Ramp steps: each step starts (or stops) this many devices on every generator, as in the
# original; never more than MAX_RAMP_STEPS steps, nor steps shorter than MIN_STEP_MS.
DEVICES_PER_GENERATOR_STEP = 10
MAX_RAMP_STEPS = 1000
MIN_STEP_MS = 100

HTTP_TIMEOUT_S = 15.0
STREAM_TIMEOUT_S = 40.0  # the coordinator sends a keep-alive every 15 s at worst
RECONNECT_WINDOW_S = 20.0  # how long a lost coordinator may stay away during a run
FINAL_STATES = ("done", "aborted")
LOCAL_START_TIMEOUT_S = 60.0


class CliError(Exception):
    """Ends the command with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# -- argument parsing --------------------------------------------------------------


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, not {text}")
    return value


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535, not {text}")
    return value


def _prog():
    name = os.path.basename(sys.argv[0] or "")
    if name in ("cli.py", "__main__.py", "-m", "-c", ""):
        return "python -m stressgrid.cli"
    return name


RUN_DESCRIPTION = """\
Run a load test: NAME names the run, SCRIPT_FILE is the device script (Python,
the body of an async function). Each device runs the script with its own
connection to one of the target hosts (round-robin).

Devices start and stop in ramp steps of 10 per generator, as in the original
Stressgrid: the number of steps is the size divided by 10 x the generators
registered (at most 1000, and no step shorter than 100 ms), and --rampup /
--rampdown are spread over them. All durations are in seconds (fractions
allowed).

--plan FILE reads a plan as JSON or TOML (.toml) in the API's shape (name,
addresses, blocks, opts in milliseconds); a block may give "script_file" (a
path relative to the plan file) instead of "script". Options given on the
command line override the plan file's values.

While the run goes on, its telemetry is shown on stderr. Ctrl-C aborts the run;
the command then waits for its report. The results archive's URL is printed as
the only line on stdout, so this works:
  wget $(%(prog)s run NAME SCRIPT_FILE ...)
(with a token, pass it to wget as a header too).

--local runs everything on this machine: a coordinator and a generator (one
worker per core) start as child processes on free loopback ports, the archive
is downloaded into the current directory and its path printed; both processes
stop when the command ends. --demo-target also starts the bundled demo HTTP
server (python -m stressgrid.demo_target) and points the plan at it:
  %(prog)s run demo examples/demo_http.py --local --demo-target -s 100 --sustain 20
"""


def argument_parser():
    prog = _prog()
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stressgrid command line: run load tests on a Stressgrid coordinator.",
        epilog=f"Run '{prog} run --help' for the run command's options.\n\n{EXIT_CODES_HELP}")
    from stressgrid import __version__
    parser.add_argument("--version", action="version", version=f"stressgrid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run", help="run a plan and follow its telemetry until it ends",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=RUN_DESCRIPTION % {"prog": prog}, epilog=EXIT_CODES_HELP)
    run.add_argument("name", nargs="?", metavar="NAME",
                     help="run name, e.g. 10k-browsing-photos (or the plan file's)")
    run.add_argument("script_file", nargs="?", metavar="SCRIPT_FILE",
                     help="device script file (or the plan file's)")

    where = run.add_argument_group("coordinator")
    where.add_argument("-c", "--coordinator", metavar="URL",
                       help="coordinator URL or host; a bare host means http://HOST:8000 "
                            "(env STRESSGRID_COORDINATOR, default http://localhost:8000)")
    where.add_argument("--token", help="bearer token for the coordinator (env STRESSGRID_TOKEN)")
    where.add_argument("--local", action="store_true",
                       help="start a coordinator and a generator on this machine for this run")
    where.add_argument("--demo-target", action="store_true",
                       help="with --local: also start the bundled demo HTTP server and "
                            "target it")
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="with --local: generator worker processes (default one per core)")

    target = run.add_argument_group("target")
    target.add_argument("-t", "--target-hosts", metavar="HOSTS",
                        help=f"target hosts, comma separated (default {DEFAULT_TARGET_HOSTS})")
    target.add_argument("--target-port", type=_port, metavar="PORT",
                        help=f"target port (default {DEFAULT_TARGET_PORT})")
    target.add_argument("--target-protocol", choices=PROTOCOLS, metavar="PROTOCOL",
                        help=f"one of {', '.join(PROTOCOLS)} (default {DEFAULT_PROTOCOL})")

    plan = run.add_argument_group("plan")
    plan.add_argument("--plan", metavar="FILE", help="plan file, JSON or TOML (.toml)")
    plan.add_argument("-s", "--size", type=_positive_int, metavar="DEVICES",
                      help=f"number of devices (default {DEFAULT_SIZE})")
    plan.add_argument("--script-params", metavar="JSON",
                      help="script params as a JSON object, or @FILE to read them from a file "
                           "(default {})")
    plan.add_argument("--rampup", type=_seconds, metavar="S",
                      help=f"ramp-up seconds (default {DEFAULT_RAMPUP_S:g})")
    plan.add_argument("--sustain", type=_seconds, metavar="S",
                      help=f"sustain seconds (default {DEFAULT_SUSTAIN_S:g})")
    plan.add_argument("--rampdown", type=_seconds, metavar="S",
                      help=f"ramp-down seconds (default {DEFAULT_RAMPDOWN_S:g})")
    plan.add_argument("--cooldown", type=_seconds, metavar="S",
                      help=f"seconds after ramp-down before the report "
                           f"(default {DEFAULT_COOLDOWN_S:g})")
    plan.add_argument("--ramp-steps", type=_positive_int, metavar="N",
                      help="number of ramp steps (default: computed, see above)")
    plan.add_argument("--report-interval", type=_seconds, metavar="S",
                      help=f"seconds between CSV rows / CloudWatch writes "
                           f"(default {DEFAULT_REPORT_INTERVAL_S:g}, at least 1)")
    plan.add_argument("--timeout", type=_seconds, metavar="S",
                      help=f"default timeout of each request/receive in the scripts "
                           f"(default {DEFAULT_TIMEOUT_S:g})")

    output = run.add_argument_group("output")
    output.add_argument("-q", "--quiet", action="store_true",
                        help="no live telemetry, only the start, the summary and errors")
    output.add_argument("--no-color", action="store_true",
                        help="no colors on the terminal (also: env NO_COLOR)")
    return parser


# -- coordinator address ------------------------------------------------------------


def coordinator_url(text):
    """The base URL of a coordinator given as a URL or a bare host (``host[:port]``)."""
    text = (text or "").strip()
    if not text:
        raise CliError(EXIT_USAGE, "--coordinator is empty")
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(EXIT_USAGE, f"--coordinator {text!r} is not an http(s) URL or a host")
    else:
        parts = urllib.parse.urlsplit("http://" + text)
        if not parts.hostname or parts.path not in ("", "/"):
            raise CliError(EXIT_USAGE, f"--coordinator {text!r} is not a host or host:port")
    try:
        port = parts.port
    except ValueError:
        raise CliError(EXIT_USAGE, f"--coordinator {text!r} has a bad port") from None
    netloc = parts.netloc
    if port is None and "://" not in text:
        netloc = f"{netloc}:{DEFAULT_MANAGEMENT_PORT}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


# -- the plan ---------------------------------------------------------------------


def _read_text(path, what):
    try:
        return pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(EXIT_USAGE, f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise CliError(EXIT_USAGE, f"{what} {path} is a directory") from None
    except UnicodeDecodeError:
        raise CliError(EXIT_USAGE, f"{what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot read {what} {path}: {exc.strerror}") from None


def load_plan_file(path):
    """The plan in a JSON or TOML file as a dict; ``script_file`` entries are read in."""
    text = _read_text(path, "plan file")
    if str(path).endswith(".toml"):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise CliError(EXIT_USAGE, "TOML plan files need Python 3.11+ (or the tomli "
                                           "package); use JSON instead") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CliError(EXIT_USAGE, f"plan file {path} is not valid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(EXIT_USAGE, f"plan file {path} is not valid JSON: {exc.msg} at line "
                                       f"{exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict):
        raise CliError(EXIT_USAGE, f"plan file {path} must hold an object (name, addresses, "
                                   f"blocks, opts)")
    blocks = data.get("blocks")
    if isinstance(blocks, list):
        base = pathlib.Path(path).parent
        for i, block in enumerate(blocks):
            if isinstance(block, dict) and "script_file" in block:
                if "script" in block:
                    raise CliError(EXIT_USAGE, f"plan file {path}: blocks[{i}] has both script "
                                               f"and script_file")
                script_path = base / str(block.pop("script_file"))
                block["script"] = _read_text(script_path, "script file")
                block["_script_file"] = str(script_path)
    return data


def _script_params(text):
    if text is None:
        return None
    if text.startswith("@"):
        text = _read_text(text[1:], "script params file")
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(EXIT_USAGE, f"--script-params is not valid JSON: {exc.msg}") from None
    if not isinstance(params, dict):
        raise CliError(EXIT_USAGE, "--script-params must be a JSON object, e.g. '{\"path\": \"/\"}'")
    return params


def _ms(seconds):
    return int(round(seconds * 1000))


def ramp_steps_for(size, generators, rampup_ms, rampdown_ms):
    """Ramp steps for ``size`` devices: 10 per generator and step, within sane bounds."""
    steps = size // (DEVICES_PER_GENERATOR_STEP * max(1, generators))
    steps = min(steps, MAX_RAMP_STEPS, max(rampup_ms, rampdown_ms) // MIN_STEP_MS)
    return max(1, steps)


class PlanSpec:
    """What the command line and plan file say; ``plan(generators)`` makes the API plan.

    The number of ramp steps depends on how many generators are registered,
    so the final plan is built only once the coordinator was asked.
    """

    def __init__(self, args, target=None):
        """``target``: ``(host, port, protocol)`` forced by ``--demo-target``."""
        data = load_plan_file(args.plan) if args.plan else {}
        self.plan_file = args.plan
        self.name = args.name if args.name is not None else data.get("name")
        if self.name is None:
            raise CliError(EXIT_USAGE, "NAME is required (or a plan file with a name)")
        # Blocks.
        blocks = data.get("blocks")
        params = _script_params(args.script_params)
        if args.script_file is not None:
            script = _read_text(args.script_file, "script file")
        if blocks is None:
            if args.script_file is None:
                raise CliError(EXIT_USAGE, "SCRIPT_FILE is required (or a plan file with blocks)")
            blocks = [{"script": script, "params": params or {}, "size": args.size or DEFAULT_SIZE,
                       "_script_file": args.script_file}]
        else:
            if not isinstance(blocks, list):
                raise CliError(EXIT_USAGE, f"plan file {args.plan}: blocks must be a list")
            overrides = [flag for flag, value in (("SCRIPT_FILE", args.script_file),
                                                  ("--size", args.size),
                                                  ("--script-params", params)) if value is not None]
            if overrides and len(blocks) != 1:
                raise CliError(EXIT_USAGE, f"{' and '.join(overrides)} cannot be applied to a plan "
                                           f"with {len(blocks)} blocks; set them in the plan file")
            if overrides:
                block = dict(blocks[0]) if isinstance(blocks[0], dict) else {}
                if args.script_file is not None:
                    block["script"] = script
                    block["_script_file"] = args.script_file
                if args.size is not None:
                    block["size"] = args.size
                if params is not None:
                    block["params"] = params
                blocks = [block]
        self.script_files = [b.pop("_script_file", None) if isinstance(b, dict) else None
                             for b in blocks]
        self.blocks = blocks
        # Addresses.
        self.addresses = self._addresses(args, data.get("addresses"), target)
        # Options: the plan file's, flags over them; ramp durations kept as totals.
        opts = data.get("opts", {})
        if not isinstance(opts, dict):
            raise CliError(EXIT_USAGE, f"plan file {args.plan}: opts must be an object")
        self.opts = dict(opts)
        self.ramp_steps = args.ramp_steps or opts.get("ramp_steps")
        self.rampup_ms = _ms(args.rampup) if args.rampup is not None else None
        self.rampdown_ms = _ms(args.rampdown) if args.rampdown is not None else None
        for key, value, default in (("sustain_ms", args.sustain, DEFAULT_SUSTAIN_S),
                                    ("cooldown_ms", args.cooldown, DEFAULT_COOLDOWN_S),
                                    ("report_interval_ms", args.report_interval,
                                     DEFAULT_REPORT_INTERVAL_S),
                                    ("timeout_ms", args.timeout, DEFAULT_TIMEOUT_S)):
            if value is not None:
                self.opts[key] = _ms(value)
            else:
                self.opts.setdefault(key, _ms(default))
        if args.timeout is not None and self.opts["timeout_ms"] < 1:
            raise CliError(EXIT_USAGE, "--timeout must be at least 0.001 seconds")

    @staticmethod
    def _addresses(args, planned, target):
        if target is not None:
            host, port, protocol = target
            return [{"host": host, "port": port, "protocol": protocol}]
        if args.target_hosts is not None or not planned:
            hosts = [h.strip() for h in (args.target_hosts or DEFAULT_TARGET_HOSTS).split(",")]
            if not all(hosts):
                raise CliError(EXIT_USAGE, f"--target-hosts {args.target_hosts!r} has an empty host")
            first = planned[0] if isinstance(planned, list) and planned and \
                isinstance(planned[0], dict) else {}
            port = args.target_port or first.get("port") or DEFAULT_TARGET_PORT
            protocol = args.target_protocol or first.get("protocol") or DEFAULT_PROTOCOL
            return [{"host": host, "port": port, "protocol": protocol} for host in hosts]
        if not isinstance(planned, list):
            return planned  # the plan check names the field
        addresses = []
        for address in planned:
            if isinstance(address, dict):
                address = dict(address)
                if args.target_port is not None:
                    address["port"] = args.target_port
                if args.target_protocol is not None:
                    address["protocol"] = args.target_protocol
            addresses.append(address)
        return addresses

    @property
    def size(self):
        return sum(b["size"] for b in self.blocks
                   if isinstance(b, dict) and isinstance(b.get("size"), int))

    def _ramp_total(self, flag_ms, key):
        """A ramp's total length: the flag's, else the plan file's steps x step length, else
        the default; ``None`` when the plan file's value is not a number (the check says so)."""
        if flag_ms is not None:
            return flag_ms
        if key in self.opts:
            step_ms, steps = self.opts[key], self.opts.get("ramp_steps", 1)
            if not isinstance(step_ms, int) or not isinstance(steps, int):
                return None
            return step_ms * steps
        return _ms(DEFAULT_RAMPUP_S if key == "rampup_step_ms" else DEFAULT_RAMPDOWN_S)

    def plan(self, generators):
        """The plan as the API takes it, ramped for ``generators`` generators.

        Ramp-up and ramp-down are totals spread over the ramp steps; the steps
        are ``--ramp-steps``, else the plan file's, else ``ramp_steps_for``.
        """
        opts = dict(self.opts)
        total_up = self._ramp_total(self.rampup_ms, "rampup_step_ms")
        total_down = self._ramp_total(self.rampdown_ms, "rampdown_step_ms")
        steps = self.ramp_steps
        if steps is None:
            steps = ramp_steps_for(self.size, generators, total_up or 0, total_down or 0)
        opts["ramp_steps"] = steps
        if isinstance(steps, int) and steps > 0:
            if total_up is not None:
                opts["rampup_step_ms"] = int(round(total_up / steps))
            if total_down is not None:
                opts["rampdown_step_ms"] = int(round(total_down / steps))
        return {"name": self.name, "addresses": self.addresses, "blocks": self.blocks,
                "opts": opts}

    def check(self, plan):
        """Validate ``plan`` locally (scripts included); raises ``CliError`` like the API would."""
        try:
            Plan.from_dict(plan)
        except PlanError as exc:
            raise CliError(EXIT_USAGE, self.describe_error(exc.field, exc.message, exc.line,
                                                           exc.column)) from None

    def describe_error(self, field, message, line=None, column=None):
        """A one-line error: ``script.py:3:5: message`` for scripts, else the field named."""
        match = re.fullmatch(r"blocks\[(\d+)\]\.script", field or "")
        if match and line is not None:
            index = int(match.group(1))
            source = self.script_files[index] if index < len(self.script_files) else None
            message = re.sub(r"^(block \d+, )?line \d+(, column \d+)?: ", "", message or "")
            where = source or (f"{self.plan_file} {field}" if self.plan_file else field)
            return f"script error: {where}:{line}:{column or 1}: {message}"
        origin = f" (in {self.plan_file})" if self.plan_file else ""
        return f"invalid plan: {field}: {message}{origin}"


# -- the HTTP API client -------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error answer from the coordinator."""

    def __init__(self, status, body):
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        error = self.body.get("error") if isinstance(self.body.get("error"), dict) else {}
        self.error = error
        self.code = error.get("code")
        self.message = error.get("message") or (body if isinstance(body, str) else "") or \
            f"HTTP {status}"
        super().__init__(f"HTTP {status}: {self.message}")


class Api:
    """A small client for the coordinator's JSON API (stdlib only)."""

    def __init__(self, base_url, token=None):
        self.base_url = base_url.rstrip("/")
        self.token = token or None

    def _request(self, method, path, body=None, timeout=HTTP_TIMEOUT_S, accept="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", accept)
        request.add_header("User-Agent", "stressgrid-cli")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                decoded = json.loads(payload)
            except ValueError:
                decoded = payload.decode("utf-8", "replace").strip()[:200]
            if exc.code == 401:
                hint = "pass --token or set STRESSGRID_TOKEN" if not self.token else \
                    "check --token / STRESSGRID_TOKEN"
                raise CliError(EXIT_COORDINATOR, f"the coordinator at {self.base_url} refused "
                                                 f"the token (401): {hint}") from None
            raise ApiError(exc.code, decoded) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, OSError) and reason.strerror:
                reason = reason.strerror
            raise CliError(EXIT_COORDINATOR,
                           f"cannot reach the coordinator at {self.base_url}: {reason}") from None

    def call(self, method, path, body=None, timeout=HTTP_TIMEOUT_S):
        """The decoded JSON answer; raises ``ApiError`` or ``CliError``."""
        with self._request(method, path, body, timeout) as response:
            payload = response.read()
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise CliError(EXIT_COORDINATOR, f"{self.base_url}{path} did not answer JSON: is "
                                             f"this a Stressgrid coordinator?") from None

    def state(self):
        state = self.call("GET", "/api/state")
        if not isinstance(state, dict) or "generators" not in state:
            raise CliError(EXIT_COORDINATOR, f"{self.base_url}/api/state did not answer a "
                                             f"coordinator state: is this a Stressgrid coordinator?")
        return state

    def states(self):
        """Server-sent ``state`` events from ``/api/stream``, decoded, as they come."""
        with self._request("GET", "/api/stream", timeout=STREAM_TIMEOUT_S,
                           accept="text/event-stream") as response:
            event, data = "message", []
            for raw in response:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data and event == "state":
                        yield json.loads("\n".join(data))
                    event, data = "message", []
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)

    def download(self, path, destination):
        """Save the body of ``GET path`` to ``destination`` (a new file)."""
        with self._request("GET", path, timeout=60, accept="*/*") as response, \
                open(destination, "xb") as out:
            shutil.copyfileobj(response, out, 1 << 20)


# -- telemetry display -----------------------------------------------------------------

RED, YELLOW, BOLD, DIM, RESET = "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
QUIET_EVENTS = frozenset({"run_started", "run_done", "generator_registered"})
HOST_ERRORS = frozenset({"network_tcp_retransmit_error"})


def format_us(value, micro="us"):
    """A microsecond value for humans: ``850us``, ``12.3ms``, ``1.25s``."""
    if value is None:
        return "-"
    if value < 1000:
        return f"{value:.0f}{micro}"
    if value < 1_000_000:
        ms = value / 1000
        return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"
    return f"{value / 1_000_000:.2f}s"


def format_rate(value):
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"


def format_bytes(value):
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}TB"


def format_duration(ms):
    seconds = max(0, int(round((ms or 0) / 1000)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def error_name(name):
    """``timeout_error_count`` -> ``timeout_error``."""
    return name[:-len("_count")] if name.endswith("_count") else name


def is_host_error(name):
    """Host metrics named like errors (TCP retransmits of the whole generator machine, other
    traffic included): shown as warnings, not counted as errors of the run."""
    return error_name(name) in HOST_ERRORS


def counter_name(name):
    return name[:-len("_count")] if name.endswith("_count") else name


def _plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


class Display:
    """Live telemetry on stderr: redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, stream=None, quiet=False, color=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if color is None:
            color = self.tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.color = color
        self.quiet = quiet
        encoding = (getattr(self.stream, "encoding", "") or "").lower().replace("-", "")
        self.micro = "\u00b5s" if encoding == "utf8" else "us"
        self.drawn = 0  # lines of the live block currently on screen
        self.seen_events = set()
        self.last_line = None  # (telemetry time, phase) of the last plain line

    # -- output primitives -------------------------------------------------------------

    def _paint(self, text, style):
        return f"{style}{text}{RESET}" if self.color and style else text

    def _clear(self):
        if self.drawn:
            self.stream.write(f"\r\x1b[{self.drawn}A\x1b[J")
            self.drawn = 0

    def message(self, text, style=None):
        """A line that stays (above the live block on a terminal)."""
        self._clear()
        self.stream.write(self._paint(text, style) + "\n")
        self.stream.flush()

    def error(self, text):
        self.message(text, RED)

    def close(self):
        self._clear()
        self.stream.flush()

    # -- telemetry ---------------------------------------------------------------------

    def update(self, state, run_id):
        """Show one published coordinator state for run ``run_id``."""
        run = state.get("run") or {}
        if run.get("id") != run_id:
            return
        telemetry = state.get("telemetry") or {}
        if (telemetry.get("time") or 0) < (run.get("started_at") or 0):
            # The second before the run started: nothing of it belongs to this run.
            telemetry = {"time": telemetry.get("time"),
                         "generator_count": telemetry.get("generator_count", 0)}
        self._events(state, run)
        if self.quiet:
            return
        if self.tty:
            self._draw(self._block(run, telemetry, state))
            return
        # Plain lines: one per second of telemetry (a phase change alone is an event line).
        key = (telemetry.get("time"), self._phase(run) if run.get("finishing") else None)
        if key != self.last_line:
            self.last_line = key
            self.stream.write(self._line(run, telemetry) + "\n")
            self.stream.flush()

    def _events(self, state, run):
        started = run.get("started_at") or 0
        for event in state.get("events") or ():
            key = (event.get("time"), event.get("kind"), event.get("message"))
            if key in self.seen_events or (event.get("time") or 0) < started:
                continue
            self.seen_events.add(key)
            if event.get("kind") in QUIET_EVENTS or (self.quiet and event.get("kind") == "phase"):
                continue
            at = event.get("elapsed_s")
            when = f"[{format_duration(at * 1000)}] " if at is not None else ""
            style = YELLOW if event.get("kind") in ("generator_cpu_high",) else RED \
                if event.get("kind") in ("generator_lost", "cohort_skipped", "cohort_not_sent") \
                else None
            self.message(f"{when}{event.get('kind')}: {event.get('message')}", style)

    def _phase(self, run):
        if run.get("aborting"):
            return "aborting"
        if run.get("finishing"):
            return f"{run['finishing']}, writing the report"
        return run.get("state", "?")

    def _line(self, run, telemetry):
        parts = [f"[{format_duration(run.get('elapsed_ms'))}] {self._phase(run)}, "
                 f"{format_duration(run.get('remaining_ms'))} left",
                 f"generators {telemetry.get('generator_count', 0)}",
                 f"devices {telemetry.get('active_device_number', 0)}/{run.get('devices', '?')}",
                 f"cpu {telemetry.get('max_cpu_percent', 0):.0f}%"
                 + (" (over 80%: results suspect)" if telemetry.get("cpu_warning") else "")]
        rates = []
        for name, value in sorted((telemetry.get("counters") or {}).items()):
            if name.startswith("network_") or "_error" in name:
                continue
            rates.append(f"{counter_name(name)} {format_rate(value.get('per_second', 0))}/s")
        if rates:
            parts.append(" ".join(rates))
        for name, h in sorted((telemetry.get("histograms") or {}).items()):
            if name == "cpu_percent":
                continue
            parts.append(f"{name} p50 {format_us(h.get('p50'), self.micro)} "
                         f"p99 {format_us(h.get('p99'), self.micro)}")
        errors = sorted((telemetry.get("errors") or {}).items())
        device_errors = [(n, e) for n, e in errors if not is_host_error(n)]
        if device_errors:
            parts.append("errors " + " ".join(f"{error_name(n)}={e.get('count', 0)}"
                                              for n, e in device_errors))
        parts.extend(f"{error_name(n)} {e.get('count', 0)}" for n, e in errors if is_host_error(n))
        return " | ".join(parts)

    def _block(self, run, telemetry, state):
        lines = []
        head = (f"{run.get('id')}  {self._phase(run)}  {format_duration(run.get('remaining_ms'))} "
                f"left  (elapsed {format_duration(run.get('elapsed_ms'))})")
        lines.append((head, BOLD))
        counters = telemetry.get("counters") or {}
        rx = (counters.get("network_rx_bytes") or {}).get("per_second", 0)
        tx = (counters.get("network_tx_bytes") or {}).get("per_second", 0)
        cpu = telemetry.get("max_cpu_percent", 0)
        lines.append((f"generators {telemetry.get('generator_count', 0)}   devices "
                      f"{telemetry.get('active_device_number', 0):,}/{run.get('devices', 0):,}   "
                      f"network rx {format_bytes(rx)}/s tx {format_bytes(tx)}/s   "
                      f"generator cpu {cpu:.0f}%", None))
        if telemetry.get("cpu_warning"):
            lines.append(("  a generator is over 80% CPU: results may be limited by the generator",
                          YELLOW))
        rows = [(counter_name(name), value) for name, value in sorted(counters.items())
                if not name.startswith("network_") and "_error" not in name]
        if rows:
            lines.append((f"  {'counter':<24}{'per second':>12}{'total':>14}", DIM))
            for name, value in rows[:12]:
                lines.append((f"  {name:<24}{format_rate(value.get('per_second', 0)):>12}"
                              f"{value.get('total', 0):>14,}", None))
            if len(rows) > 12:
                lines.append((f"  ... {len(rows) - 12} more counters", DIM))
        histograms = [(n, h) for n, h in sorted((telemetry.get("histograms") or {}).items())
                      if n != "cpu_percent"]
        if histograms:
            lines.append((f"  {'histogram':<24}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}"
                          f"{'count/s':>10}", DIM))
            for name, h in histograms[:12]:
                lines.append((f"  {name:<24}" + "".join(
                    f"{format_us(h.get(k), self.micro):>10}" for k in ("p50", "p90", "p99", "max"))
                    + f"{h.get('count', 0):>10,}", None))
        errors = sorted((telemetry.get("errors") or {}).items())
        if errors:
            lines.append(("  errors", RED if any(not is_host_error(n) for n, _ in errors) else YELLOW))
            for name, e in errors:
                rate = (counters.get(name) or {}).get("per_second")
                rate = f" (+{format_rate(rate)}/s)" if rate else ""
                first = f"  {e['line']}" if e.get("line") else ""
                lines.append((f"  {error_name(name):<24}{e.get('count', 0):>12,}{rate}{first}",
                              YELLOW if is_host_error(name) else RED))
        return lines

    def _draw(self, lines):
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        out = []
        if self.drawn:
            out.append(f"\r\x1b[{self.drawn}A\x1b[J")
        for text, style in lines:
            out.append(self._paint(text[:width], style) + "\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(lines)

    # -- the end -------------------------------------------------------------------------

    def summary(self, detail):
        """The run's final report, briefly."""
        self._clear()
        summary = detail.get("summary") or {}
        state = detail.get("state") or summary.get("state")
        generators = summary.get("generators") or {}
        head = (f"run {detail.get('id')} {state} after {summary.get('duration_s', 0):.1f} s: "
                f"{summary.get('devices_started', 0):,} of {summary.get('devices_requested', 0):,} "
                f"devices started on {_plural(len(generators), 'generator')}")
        if summary.get("note"):
            head += f" ({summary['note']})"
        self.message(head, BOLD)
        totals = summary.get("totals") or {}
        maxima = summary.get("maxima") or {}
        for name, total in sorted(totals.items()):
            if name.startswith("network_") or "_error" in name:
                continue
            base = counter_name(name)
            peak = maxima.get(f"{base}_per_second")
            peak = f" (peak {format_rate(peak)}/s)" if peak else ""
            self.message(f"  {base:<24}{total:>14,}{peak}")
        if "network_rx_bytes" in totals or "network_tx_bytes" in totals:
            self.message(f"  {'network rx/tx':<24}{format_bytes(totals.get('network_rx_bytes', 0)):>14}"
                         f" / {format_bytes(totals.get('network_tx_bytes', 0))}")
        for name, h in sorted((summary.get("histograms") or {}).items()):
            if name == "cpu_percent":
                continue
            self.message(f"  {name:<24}p50 {format_us(h.get('median'), self.micro)}  "
                         f"p90 {format_us(h.get('pc90'), self.micro)}  "
                         f"p99 {format_us(h.get('pc99'), self.micro)}  "
                         f"max {format_us(h.get('max'), self.micro)}  ({h.get('count', 0):,})")
        cpu = maxima.get("max_cpu_percent")
        if cpu is not None:
            self.message(f"  {'peak generator cpu':<24}{cpu:>13.0f}%"
                         + ("  over 80%: results may be limited by the generator" if cpu > 80 else ""),
                         YELLOW if cpu > 80 else None)
        for name, e in sorted((summary.get("errors") or {}).items()):
            line = f"  {e['line']}" if e.get("line") else ""
            if is_host_error(name):
                line += "  (the generator hosts' TCP retransmits: a warning, not a run error)"
            self.message(f"  {error_name(name):<24}{e.get('count', 0):>14,}{line}",
                         YELLOW if is_host_error(name) else RED)
        for event in summary.get("events") or ():
            if event.get("kind") in ("generator_lost", "generator_cpu_high", "cohort_skipped",
                                     "cohort_not_sent"):
                key = (event.get("time"), event.get("kind"), event.get("message"))
                if key not in self.seen_events:
                    self.message(f"  {event.get('kind')}: {event.get('message')}", YELLOW)
        for failure in summary.get("writer_errors") or ():
            self.error(f"  writer {failure.get('writer')} failed in {failure.get('stage')}: "
                       f"{failure.get('error')}")


# -- local mode ------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    """Linux: the kernel sends SIGTERM to this child when the CLI dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _children_import_root():
    """The directory the local children import ``stressgrid`` and ``coordinator_app`` from.

    The one this CLI was imported from, when its Cython core is compiled there (an
    installation, or a source tree built in place); otherwise ``None``: the children then
    import the installed package (``pip install .`` run in a source tree, then the CLI
    started from that tree with ``python -m``).
    """
    root = pathlib.Path(__file__).resolve().parent.parent
    core = root / "stressgrid" / "_core"
    if any((core / f"metrics{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES):
        return str(root)
    return None


class LocalProcess:
    """A child process of local mode, with its output in a log file."""

    def __init__(self, name, args, env, log_path, cwd=None):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C at the terminal reaches only the CLI, which aborts
                # the run through the API and then stops this process itself.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def log_tail(self, lines=5):
        try:
            text = pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        result = " / ".join(line.strip() for line in tail)
        if "No module named 'stressgrid._core" in result:
            result += (" (the Cython core is not built: 'pip install .', or "
                       "'python setup.py build_ext --inplace' in a source tree)")
        return result

    def stop(self, timeout):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for_port(port, process, deadline):
    while time.monotonic() < deadline:
        if not process.alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class LocalGrid:
    """A coordinator, a generator and (optionally) the demo target on this machine.

    Used as a context manager: entering starts them and waits until the
    generator is registered; leaving stops them all, whatever happened.
    """

    def __init__(self, display, workers=None, demo_target=False):
        self.display = display
        self.workers = workers
        self.demo_target = demo_target
        self.processes = []
        self.directory = None
        self.token = secrets.token_urlsafe(24)
        self.base_url = None
        self.target = None

    def _environment(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STRESSGRID_", "AWS_")) and k not in (
                   "COORDINATOR_URL", "GENERATOR_ID", "MANAGEMENT_PORT", "GENERATORS_PORT")}
        root = _children_import_root()
        if root:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.update(extra)
        return env

    def _start(self, name, args, **env):
        # The children run in the temporary directory, so a source tree in the current
        # directory cannot shadow the installed (compiled) package.
        process = LocalProcess(name, [sys.executable, "-m", *args], self._environment(**env),
                               os.path.join(self.directory, f"{name.replace(' ', '-')}.log"),
                               cwd=self.directory)
        self.processes.append(process)
        return process

    def __enter__(self):
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _start_all(self):
        self.directory = tempfile.mkdtemp(prefix="stressgrid-local-")
        management_port = free_port()
        generator_port = free_port()
        while generator_port == management_port:
            generator_port = free_port()
        deadline = time.monotonic() + LOCAL_START_TIMEOUT_S
        coordinator = self._start(
            "coordinator",
            ["coordinator_app", "--management-port", str(management_port),
             "--generator-port", str(generator_port), "--bind", "127.0.0.1",
             "--data-dir", os.path.join(self.directory, "data"), "--log-level", "WARNING"],
            # A random token: other users of this machine cannot use this coordinator. No AWS
            # settings reach it, so local runs never write to CloudWatch.
            STRESSGRID_TOKEN=self.token, AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        if self.demo_target:
            target_port = free_port()
            target = self._start("demo target", ["stressgrid.demo_target", "--host", "127.0.0.1",
                                                 "--port", str(target_port)])
            self.target = ("127.0.0.1", target_port, "http")
        generator_args = ["stressgrid.generator", "--log-level", "WARNING"]
        if self.workers:
            generator_args += ["--workers", str(self.workers)]
        generator = self._start("generator", generator_args,
                                COORDINATOR_URL=f"tcp://127.0.0.1:{generator_port}",
                                GENERATOR_ID=f"local-{socket.gethostname().split('.')[0]}")
        self.base_url = f"http://127.0.0.1:{management_port}"
        self.display.message(f"local mode: coordinator on {self.base_url}, generator "
                             f"{'with ' + _plural(self.workers, 'worker') if self.workers else 'with a worker per core'}"
                             + (f", demo target on http://127.0.0.1:{self.target[1]}"
                                if self.target else ""))
        if not _wait_for_port(management_port, coordinator, deadline):
            raise CliError(EXIT_COORDINATOR, f"the local coordinator did not start: "
                                             f"{coordinator.log_tail() or 'no output'}")
        if self.target and not _wait_for_port(self.target[1], target, deadline):
            raise CliError(EXIT_COORDINATOR, f"the demo target did not start: "
                                             f"{target.log_tail() or 'no output'}")
        api = Api(self.base_url, self.token)
        while True:
            if not generator.alive():
                raise CliError(EXIT_NO_GENERATORS, f"the local generator exited: "
                                                   f"{generator.log_tail() or 'no output'}")
            if not coordinator.alive():
                raise CliError(EXIT_COORDINATOR, f"the local coordinator exited: "
                                                 f"{coordinator.log_tail() or 'no output'}")
            if api.state()["generators"]:
                return
            if time.monotonic() > deadline:
                raise CliError(EXIT_NO_GENERATORS, f"the local generator did not register within "
                                                   f"{LOCAL_START_TIMEOUT_S:g} s: "
                                                   f"{generator.log_tail() or 'no output'}")
            time.sleep(0.1)

    def died(self):
        """A description of any child that exited on its own, or ``None``."""
        for process in self.processes:
            if not process.alive():
                return f"the local {process.name} exited: {process.log_tail() or 'no output'}"
        return None

    def stop(self):
        """Stop every child (generator first, coordinator last) and remove the temp files.

        Ctrl-C and SIGTERM are held meanwhile: stopping must not be cut short.
        """
        order = {"generator": 0, "demo target": 1, "coordinator": 2}
        with _signals_held():
            for process in sorted(self.processes, key=lambda p: order.get(p.name, 1)):
                process.stop(30 if process.name == "coordinator" else 15)
            self.processes = []
            if self.directory:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None


@contextlib.contextmanager
def _signals_held():
    """Ignore Ctrl-C and SIGTERM for the duration of the block (main thread only)."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- the run command ------------------------------------------------------------------------


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
                run = state.get("run")
                if not run or run.get("id") != run_id:
                    return
                display.update(state, run_id)
                if grid is not None and (failure := grid.died()):
                    raise CliError(EXIT_COORDINATOR, failure)
            problem = "the coordinator closed the event stream"
        except ApiError as exc:
            if exc.status == 404:  # a coordinator without an event stream
                return poll(api, run_id, display, grid)
            problem = f"the event stream failed: {exc}"
        except CliError as exc:
            if exc.code != EXIT_COORDINATOR:
                raise
            problem = exc.message
        except (OSError, ValueError, http.client.HTTPException) as exc:  # dropped, broken event
            problem = f"the event stream broke: {exc}"
        if grid is not None and (failure := grid.died()):
            raise CliError(EXIT_COORDINATOR, failure)
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
    while True:
        state = api.state()
        run = state.get("run")
        if not run or run.get("id") != run_id:
            return
        display.update(state, run_id)
        if grid is not None and (failure := grid.died()):
            raise CliError(EXIT_COORDINATOR, failure)
        time.sleep(1.0)


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
                                           f"tcp://<coordinator>:9696 python -m stressgrid.generator'")
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
            error = exc.error
            if error.get("field"):
                raise CliError(EXIT_USAGE, "the coordinator rejected the plan: " + spec.describe_error(
                    error["field"], error.get("message", ""), error.get("line"),
                    error.get("column"))) from None
            raise CliError(EXIT_USAGE, f"the coordinator rejected the plan: {exc.message}") from None
        raise CliError(EXIT_COORDINATOR, f"the coordinator failed to start the run: {exc}") from None
    opts = plan["opts"]
    targets = ", ".join(f"{a['host']}:{a['port']}" for a in plan["addresses"])
    display.message(
        f"run {run['id']}: {spec.size:,} devices on {_plural(generators, 'generator')} -> "
        f"{targets} ({plan['addresses'][0]['protocol']}); ramp-up "
        f"{opts['ramp_steps'] * opts['rampup_step_ms'] / 1000:g} s in "
        f"{_plural(opts['ramp_steps'], 'step')}, sustain {opts['sustain_ms'] / 1000:g} s, "
        f"ramp-down {opts['ramp_steps'] * opts['rampdown_step_ms'] / 1000:g} s, cooldown "
        f"{opts['cooldown_ms'] / 1000:g} s", BOLD)
    return run


def run_and_report(api, spec, display, grid=None):
    """Submit, follow (Ctrl-C aborts); returns ``(exit code, reason or None, detail)``."""
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
    display.close()
    display.summary(detail)
    return (*verdict(detail, interrupted), detail)


def verdict(detail, interrupted=False):
    """``(exit code, one-line reason or None)`` for a finished run's detail."""
    run_id = detail.get("id")
    summary = detail.get("summary") or {}
    if interrupted:
        return EXIT_INTERRUPTED, f"run {run_id} was aborted on request (interrupted)"
    if detail.get("state") != "done":
        note = summary.get("note") or detail.get("note") or "no reason given"
        return EXIT_RUN_ERRORS, f"run {run_id} was aborted: {note}"
    errors = {n: e for n, e in (summary.get("errors") or {}).items()
              if e.get("count") and not is_host_error(n)}
    if errors:
        total = sum(e["count"] for e in errors.values())
        return EXIT_RUN_ERRORS, (f"run {run_id} counted {total:,} errors: " + ", ".join(
            f"{error_name(n)} {e['count']:,}" for n, e in sorted(errors.items())))
    return EXIT_OK, None


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
    if args.local and args.coordinator:
        raise CliError(EXIT_USAGE, "--local starts its own coordinator: drop --coordinator")
    if args.demo_target and (args.target_hosts or args.target_port or args.target_protocol):
        raise CliError(EXIT_USAGE, "--demo-target sets the target: drop --target-hosts, "
                                   "--target-port and --target-protocol")
    demo = ("127.0.0.1", 1, "http") if args.demo_target else None
    spec = PlanSpec(args, demo)
    # Everything that can be checked before contacting anyone: the plan and its scripts.
    spec.check(spec.plan(1))
    if not args.local:
        base = coordinator_url(args.coordinator or os.environ.get("STRESSGRID_COORDINATOR")
                               or DEFAULT_COORDINATOR)
        api = Api(base, args.token or os.environ.get("STRESSGRID_TOKEN"))
        code, reason, detail = run_and_report(api, spec, display)
        location = base + _result_url(detail, code, reason)
    else:
        with LocalGrid(display, args.workers, args.demo_target) as grid:
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
        print(f"stressgrid: {exc.message}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        display.close()
        print("stressgrid: interrupted before the run started", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
