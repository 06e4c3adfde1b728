"""Coordinator configuration: command-line flags over environment over defaults.

Environment variables read:

``MANAGEMENT_PORT``      HTTP port of the website and JSON API (default 8000)
``GENERATORS_PORT``      ZeroMQ port generators connect to (default 9696)
``STRESSGRID_BIND``      address both ports listen on (default 127.0.0.1)
``STRESSGRID_DATA_DIR``  run history and results archives (default ./stressgrid-data)
``STRESSGRID_TOKEN``     when set, every management request needs ``Authorization: Bearer <token>``
``STRESSGRID_METRICS_OPEN_ON_LOOPBACK``  ``1``: ``/metrics`` needs no token from a loopback address
``AWS_REGION`` / ``AWS_DEFAULT_REGION``  turn the CloudWatch writer on in that region
"""
import argparse
import dataclasses
import ipaddress
import os

from stressgrid.argtypes import listen_port, positive_float, positive_int

DEFAULT_MANAGEMENT_PORT = 8000
DEFAULT_GENERATOR_PORT = 9696
DEFAULT_BIND = "127.0.0.1"
DEFAULT_DATA_DIR = "./stressgrid-data"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the coordinator needs to start.

    ``generator_timeout_s``: a registered generator silent this long is dropped
    (and, during a run, the drop is recorded as a run event).
    ``heartbeat_interval_s``: how often the coordinator heartbeats every
    registered generator (generators re-register when it stays silent).
    ``cloudwatch_region``: empty turns the CloudWatch writer off.
    ``cloudwatch_endpoint``: a custom endpoint URL (tests point it at a local mock).
    """

    management_port: int = DEFAULT_MANAGEMENT_PORT
    generator_port: int = DEFAULT_GENERATOR_PORT
    bind: str = DEFAULT_BIND
    data_dir: str = DEFAULT_DATA_DIR
    token: str = ""
    cloudwatch_region: str = ""
    cloudwatch_endpoint: str = ""
    generator_timeout_s: float = 5.0
    heartbeat_interval_s: float = 1.0
    http_threads: int = 16
    log_level: str = "INFO"
    metrics_open_on_loopback: bool = False

    @property
    def generator_url(self):
        """The ZeroMQ endpoint the generator ROUTER binds."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"tcp://{host}:{self.generator_port}"

    @property
    def is_loopback(self):
        """True when both ports are reachable from this machine only."""
        if self.bind == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            return False


def argument_parser(environ=None):
    """The ``python -m coordinator_app`` argument parser (defaults from ``environ``)."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="python -m coordinator_app",
        description="Stressgrid coordinator: generator registry, run scheduler, results and the "
                    "management website/API.")
    parser.add_argument("--management-port", type=listen_port,
                        default=listen_port(env.get("MANAGEMENT_PORT", DEFAULT_MANAGEMENT_PORT)),
                        help="HTTP port of the website and JSON API (env MANAGEMENT_PORT, default 8000)")
    parser.add_argument("--generator-port", type=listen_port,
                        default=listen_port(env.get("GENERATORS_PORT", DEFAULT_GENERATOR_PORT)),
                        help="ZeroMQ port generators connect to (env GENERATORS_PORT, default 9696)")
    parser.add_argument("--bind", default=env.get("STRESSGRID_BIND", DEFAULT_BIND),
                        help="address both ports listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--data-dir", default=env.get("STRESSGRID_DATA_DIR", DEFAULT_DATA_DIR),
                        help="run history (SQLite) and results archives (default ./stressgrid-data)")
    parser.add_argument("--cloudwatch-region",
                        default=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "",
                        help="write metrics to Amazon CloudWatch in this region "
                             "(env AWS_REGION / AWS_DEFAULT_REGION; off when no region is found)")
    parser.add_argument("--cloudwatch-endpoint", default=env.get("STRESSGRID_CLOUDWATCH_ENDPOINT", ""),
                        help="CloudWatch endpoint URL (for a local mock)")
    parser.add_argument("--generator-timeout", type=positive_float, default=5.0,
                        help="seconds of silence after which a generator is dropped (default 5)")
    parser.add_argument("--http-threads", type=positive_int, default=16,
                        help="HTTP worker threads; each open event stream holds one (default 16)")
    parser.add_argument("--metrics-open-on-loopback", action="store_true",
                        default=env.get("STRESSGRID_METRICS_OPEN_ON_LOOPBACK") == "1",
                        help="serve /metrics without the token to requests from a loopback address, "
                             "for a Prometheus on this machine (env STRESSGRID_METRICS_OPEN_ON_LOOPBACK=1)")
    parser.add_argument("--log-level", default=env.get("STRESSGRID_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def config_from_args(argv=None, environ=None):
    """A ``Config`` from command-line ``argv`` and ``environ`` (defaults: the process's own)."""
    env = os.environ if environ is None else environ
    args = argument_parser(env).parse_args(argv)
    region = args.cloudwatch_region or _configured_region()
    return Config(management_port=args.management_port, generator_port=args.generator_port,
                  bind=args.bind, data_dir=args.data_dir, token=env.get("STRESSGRID_TOKEN", ""),
                  cloudwatch_region=region, cloudwatch_endpoint=args.cloudwatch_endpoint,
                  generator_timeout_s=args.generator_timeout, http_threads=args.http_threads,
                  log_level=args.log_level, metrics_open_on_loopback=args.metrics_open_on_loopback)


def _configured_region():
    """The region of the AWS shared config (``~/.aws/config``), if any; no network lookup."""
    try:
        import boto3
        return boto3.session.Session().region_name or ""
    except Exception:  # noqa: BLE001 - a broken AWS config must not stop the coordinator
        return ""
