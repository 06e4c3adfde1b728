"""The command line's flags, their defaults, and the coordinator's address."""
import argparse
import os
import sys
import urllib.parse

from stressgrid import argtypes
from stressgrid.plan.api import MQTT_PROTOCOLS, PROTOCOLS
from stressgrid.plan.arrivals import ARRIVALS
from stressgrid.plan.constants import DEFAULT_MQTT_VERSION, DEFAULT_PROTOCOL, MQTT_VERSION_NAMES

from .exits import EXIT_CODES_HELP, EXIT_USAGE, CliError

DEFAULT_COORDINATOR = "http://localhost:8000"
DEFAULT_MANAGEMENT_PORT = 8000
DEFAULT_TARGET_HOSTS = "localhost"
DEFAULT_TARGET_PORT = 5000  # the original sgcli's default, and the demo target's
DEFAULT_SIZE = 10
DEFAULT_RAMPUP_S = 10.0
DEFAULT_SUSTAIN_S = 60.0
DEFAULT_RAMPDOWN_S = 10.0
DEFAULT_COOLDOWN_S = 5.0
DEFAULT_REPORT_INTERVAL_S = 60.0
DEFAULT_TIMEOUT_S = 5.0


def _prog():
    name = os.path.basename(sys.argv[0] or "")
    if name in ("cli", "__main__.py", "-m", "-c", ""):
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

--rate R (or --rate-steps) makes the run open-model: iterations of the script
start at R a second across the whole fleet for --sustain seconds, each on a free
device of a pool of --size devices (--max-devices, of which --pre-allocated
start at once); the devices keep their connections between iterations. When
every device is busy an iteration is dropped and counted. Latencies are then
also measured from each iteration's scheduled start (intended_iteration_us).

While the run goes on, its telemetry is shown on stderr. Ctrl-C aborts the run;
the command then waits for its report. The results archive's URL is printed as
the only line on stdout, so this works:
  wget $(%(prog)s run NAME SCRIPT_FILE ...)
(with a token, pass it to wget as a header too).

--local runs everything on this machine: a coordinator and a generator (one
worker per core) start as child processes on free loopback ports, the archive
is downloaded into the current directory and its path printed; both processes
stop when the command ends. --demo-target also starts the bundled demo HTTP
server (python -m stressgrid.targets.demo) and points the plan at it:
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
    where.add_argument("--workers", type=argtypes.positive_int, metavar="N",
                       help="with --local: generator worker processes (default one per core)")
    where.add_argument("--source-addresses", metavar="POOL",
                       help="with --local: local addresses the devices connect from, round-robin "
                            "(127.0.0.2-127.0.0.9, 10.0.0.0/28, a list, or 'auto'): more connections "
                            "to one target than one address's ephemeral ports allow")

    target = run.add_argument_group("target")
    target.add_argument("-t", "--target-hosts", metavar="HOSTS",
                        help=f"target hosts, comma separated (default {DEFAULT_TARGET_HOSTS})")
    target.add_argument("--target-port", type=argtypes.port, metavar="PORT",
                        help=f"target port (default {DEFAULT_TARGET_PORT})")
    target.add_argument("--target-protocol", choices=PROTOCOLS, metavar="PROTOCOL",
                        help=f"one of {', '.join(PROTOCOLS)} (default {DEFAULT_PROTOCOL})")
    target.add_argument("--mqtt-version", choices=MQTT_VERSION_NAMES, metavar="VERSION",
                        help=f"the version {' and '.join(sorted(MQTT_PROTOCOLS))} devices speak: "
                             f"{' or '.join(MQTT_VERSION_NAMES)} (default {DEFAULT_MQTT_VERSION})")

    plan = run.add_argument_group("plan")
    plan.add_argument("--plan", metavar="FILE", help="plan file, JSON or TOML (.toml)")
    plan.add_argument("-s", "--size", type=argtypes.positive_int, metavar="DEVICES",
                      help=f"number of devices (default {DEFAULT_SIZE})")
    plan.add_argument("--script-params", metavar="JSON",
                      help="script params as a JSON object, or @FILE to read them from a file "
                           "(default {})")
    plan.add_argument("--data", metavar="FILE",
                      help="feeder rows for the script's devices: a .csv file (first line names the "
                           "columns), .jsonl (one JSON object per line) or .json (a list of objects); "
                           "device i of the fleet gets row i (cycling) as `row`")
    plan.add_argument("--rampup", type=argtypes.seconds, metavar="S",
                      help=f"ramp-up seconds (default {DEFAULT_RAMPUP_S:g})")
    plan.add_argument("--sustain", type=argtypes.seconds, metavar="S",
                      help=f"sustain seconds (default {DEFAULT_SUSTAIN_S:g})")
    plan.add_argument("--rampdown", type=argtypes.seconds, metavar="S",
                      help=f"ramp-down seconds (default {DEFAULT_RAMPDOWN_S:g})")
    plan.add_argument("--cooldown", type=argtypes.seconds, metavar="S",
                      help=f"seconds after ramp-down before the report "
                           f"(default {DEFAULT_COOLDOWN_S:g})")
    plan.add_argument("--ramp-steps", type=argtypes.positive_int, metavar="N",
                      help="number of ramp steps (default: computed, see above)")
    plan.add_argument("--report-interval", type=argtypes.seconds, metavar="S",
                      help=f"seconds between CSV rows / CloudWatch writes "
                           f"(default {DEFAULT_REPORT_INTERVAL_S:g}, at least 1)")
    plan.add_argument("--timeout", type=argtypes.seconds, metavar="S",
                      help=f"default timeout of each request/receive in the scripts "
                           f"(default {DEFAULT_TIMEOUT_S:g})")

    arrivals = run.add_argument_group("open model (arrival rate)")
    arrivals.add_argument("--rate", type=argtypes.positive_float, metavar="R",
                          help="iterations a second across the fleet, for --sustain seconds")
    arrivals.add_argument("--rate-steps", type=argtypes.rate_steps, metavar="STEPS",
                          help="a ramping rate instead: SECONDS:RATE,... each step going in a "
                               "straight line to its RATE, e.g. 10:100,60:100,10:1000")
    arrivals.add_argument("--max-devices", type=argtypes.positive_int, metavar="N",
                          help="the pool's ceiling (default --size)")
    arrivals.add_argument("--pre-allocated", type=argtypes.non_negative_int,
                          metavar="N", help="devices of the pool created at the start "
                                            "(default all of them)")
    arrivals.add_argument("--arrivals", choices=ARRIVALS,
                          help="uniform (default): evenly spaced starts; poisson: random, at the "
                               "same average rate")

    plan.add_argument("--threshold", action="append", metavar="EXPR",
                      help="a pass/fail condition over the whole run, e.g. 'headers_us p99 < "
                           "200ms' or 'error_rate < 1%%' (repeatable; added to the plan file's); "
                           "any failing one makes the exit code 99")
    plan.add_argument("--baseline", metavar="RUN",
                      help="compare the run with an earlier one: a run of the coordinator's history (its "
                           "id, or last-passed: the newest run that passed) or a results archive "
                           "(.tar.gz, e.g. one --local saved); the comparison is printed after the "
                           "summary, and thresholds may use it ('headers_us p99 < baseline * 1.10')")

    output = run.add_argument_group("output")
    output.add_argument("-q", "--quiet", action="store_true",
                        help="no live telemetry, only the start, the summary and errors")
    output.add_argument("--no-color", action="store_true",
                        help="no colors on the terminal (also: env NO_COLOR)")
    return parser


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
