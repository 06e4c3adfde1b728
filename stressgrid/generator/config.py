"""Configuration of the host agent: command-line flags over environment over defaults."""
import argparse
import dataclasses
import logging
import os
import socket

from stressgrid.argtypes import positive_float, positive_int
from stressgrid.join_token import ENV as JOIN_TOKEN_ENV
from stressgrid.join_token import JoinToken, JoinTokenError, read_token_file
from stressgrid.protocols.source import SourcePoolError, parse_pool

DEFAULT_COORDINATOR_URL = "tcp://localhost:9696"
DEFAULT_GRACE_S = 10.0
GRACE_ENV = "STRESSGRID_COORDINATOR_GRACE_S"
JOIN_TOKEN_FILE_ENV = "STRESSGRID_JOIN_TOKEN_FILE"
DEFAULT_STOP_TIMEOUT_S = 3.0
STOP_TIMEOUT_ENV = "STRESSGRID_WORKER_STOP_TIMEOUT_S"
SOURCE_ADDRESSES_ENV = "STRESSGRID_SOURCE_ADDRESSES"


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Everything the host agent needs to know at start.

    ``coordinator_grace_s``: how long the coordinator may stay silent during a
    run before the agent stops every device (no orphaned load).
    ``silence_reregister_s``: how long the coordinator may stay silent before
    the agent registers again (the coordinator heartbeats every second).
    ``join_token``: the fleet's ``JoinToken``; the coordinator refuses a
    generator without it at the CurveZMQ handshake.
    ``worker_stop_timeout_s``: how long a worker may take to confirm a stop or
    an abort before the agent kills it and starts it again empty.
    ``source_addresses``: the source-address pool devices connect from
    (``stressgrid.protocols.source``; empty: the system's choice), checked.
    """

    coordinator_url: str = DEFAULT_COORDINATOR_URL
    generator_id: str = ""
    workers: int = 1
    coordinator_grace_s: float = DEFAULT_GRACE_S
    worker_stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S
    silence_reregister_s: float = 3.0
    heartbeat_interval_s: float = 1.0
    telemetry_interval_s: float = 1.0
    log_level: str = "INFO"
    source_addresses: str = ""
    join_token: JoinToken = None


def short_hostname():
    """The host name up to its first dot (the default generator id)."""
    return socket.gethostname().split(".", 1)[0] or "generator"


def default_workers():
    """One worker per core the process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not every platform has affinity
        return max(1, os.cpu_count() or 1)


def argument_parser():
    parser = argparse.ArgumentParser(
        prog="python -m stressgrid.generator",
        description="Stressgrid generator host agent: registers with a coordinator and "
                    "runs one worker process per core.")
    parser.add_argument("--coordinator", metavar="URL",
                        help=f"coordinator ZeroMQ address (env COORDINATOR_URL, "
                             f"default {DEFAULT_COORDINATOR_URL})")
    parser.add_argument("--id", dest="generator_id", metavar="ID",
                        help="generator id (env GENERATOR_ID, default the short host name)")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="worker processes (default one per core)")
    parser.add_argument("--coordinator-grace", type=positive_float, metavar="SECONDS",
                        help=f"stop every device after the coordinator was silent this long "
                             f"(env {GRACE_ENV}, default {DEFAULT_GRACE_S:g})")
    parser.add_argument("--join-token-file", metavar="PATH",
                        help=f"file holding the fleet's join token (env {JOIN_TOKEN_FILE_ENV}; the "
                             f"coordinator writes it to <data dir>/join-token; or set {JOIN_TOKEN_ENV} "
                             f"to the token itself)")
    parser.add_argument("--worker-stop-timeout", type=positive_float, metavar="SECONDS",
                        help=f"kill a worker that has not stopped its devices this long after a stop "
                             f"or an abort (env {STOP_TIMEOUT_ENV}, default {DEFAULT_STOP_TIMEOUT_S:g})")
    parser.add_argument("--source-addresses", metavar="POOL",
                        help=f"local addresses devices connect from, round-robin: addresses, ranges "
                             f"(127.0.0.2-127.0.0.9) and networks (10.0.0.0/28), comma-separated, or "
                             f"'auto' (every address of the interface routing to the target) "
                             f"(env {SOURCE_ADDRESSES_ENV}, default the system's choice)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper, help="log level (default INFO)")
    return parser


def config_from(argv=None, environ=None):
    """An ``AgentConfig`` from command-line ``argv`` and ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    args = argument_parser().parse_args(argv)
    grace = _seconds(args.coordinator_grace, environ, GRACE_ENV, DEFAULT_GRACE_S)
    stop_timeout = _seconds(args.worker_stop_timeout, environ, STOP_TIMEOUT_ENV, DEFAULT_STOP_TIMEOUT_S)
    return AgentConfig(
        join_token=_join_token(args.join_token_file or environ.get(JOIN_TOKEN_FILE_ENV), environ),
        coordinator_url=args.coordinator or environ.get("COORDINATOR_URL") or DEFAULT_COORDINATOR_URL,
        generator_id=args.generator_id or environ.get("GENERATOR_ID") or short_hostname(),
        workers=args.workers or default_workers(),
        coordinator_grace_s=grace,
        worker_stop_timeout_s=stop_timeout,
        log_level=args.log_level,
        source_addresses=_source_addresses(args.source_addresses, environ),
    )


def _source_addresses(flag, environ):
    """The pool specification from the flag or the environment, normalized; exits naming a bad item."""
    text = flag if flag is not None else environ.get(SOURCE_ADDRESSES_ENV, "")
    where = "--source-addresses" if flag is not None else SOURCE_ADDRESSES_ENV
    try:
        parse_pool(text)
    except SourcePoolError as exc:
        raise SystemExit(f"{where}: {exc}") from None
    return ",".join(item.strip() for item in text.split(",")) if text.strip() else ""


def _join_token(path, environ):
    """The join token from ``--join-token-file`` or the environment; exits saying what is wrong."""
    try:
        if path:
            return read_token_file(path)
        if environ.get(JOIN_TOKEN_ENV):
            return JoinToken.parse(environ[JOIN_TOKEN_ENV])
    except JoinTokenError as exc:
        source = path or JOIN_TOKEN_ENV
        raise SystemExit(f"the join token ({source}) cannot be used: {exc}") from None
    raise SystemExit(f"no join token: pass --join-token-file PATH or set {JOIN_TOKEN_ENV} (the coordinator "
                     f"writes the token to <data dir>/join-token and prints it with "
                     f"'python -m coordinator_app join-token')")


def _seconds(flag, environ, variable, default):
    """The flag's value, else the environment variable's (a positive number), else ``default``."""
    if flag is not None:
        return flag
    if not environ.get(variable):
        return default
    try:
        return positive_float(environ[variable])
    except argparse.ArgumentTypeError:
        raise SystemExit(f"{variable} must be a positive number of seconds, "
                         f"not {environ[variable]!r}") from None


def configure_logging(level, name):
    """Log lines to stderr as ``time level name: message``."""
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format=f"%(asctime)s %(levelname)s {name}: %(message)s")
