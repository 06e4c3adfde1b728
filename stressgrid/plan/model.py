"""The plan: what to run, against what, for how long (DESIGN.md section 3).

``Plan.from_dict`` validates a plan given as JSON-like data and raises
``PlanError`` naming the offending field (``blocks[0].size``) on bad input.
"""
import dataclasses
import json
import re
from typing import Any

from . import api
from .arrivals import ARRIVAL_RATE, DEVICES, EXECUTORS, MAX_TOTAL_WEIGHT, ArrivalError, check_arrival_opts
from .constants import DEFAULT_MQTT_VERSION, MQTT_VERSIONS
from .script import ScriptError, check_script
from .thresholds import ThresholdError, parse_plan_thresholds

DEFAULT_OPTS = {
    "ramp_steps": 1,
    "rampup_step_ms": 1000,
    "sustain_ms": 60000,
    "rampdown_step_ms": 1000,
    "cooldown_ms": 5000,
    "report_interval_ms": 60000,
    "timeout_ms": 5000,
}
MAX_NAME_LENGTH = 200
# A run id: the plan's name (its non-alphanumerics as -), '-' and a 14-digit UTC time.
MAX_RUN_ID_LENGTH = MAX_NAME_LENGTH + 16
# A plan's baseline that means the newest run whose result is passed.
LAST_PASSED = "last-passed"
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
MAX_RAMP_STEPS = 100000
MAX_BLOCK_SIZE = 100_000_000
MIN_REPORT_INTERVAL_MS = 1000
MAX_TIMEOUT_MS = 3_600_000
# Feeder rows (``blocks[i].data``), over all blocks of a plan: their JSON size and count.
MAX_DATA_BYTES = 8 * 1024 * 1024
MAX_DATA_ROWS = 1_000_000


class PlanError(ValueError):
    """A plan field with a bad value; ``field`` is a path like ``blocks[0].size``.

    For a script, ``line`` and ``column`` are those of its first problem, and ``problems``
    lists every problem (``{message, line, column}``) in line order.
    """

    def __init__(self, field, message, line=None, column=None, problems=()):
        self.field = field
        self.message = message
        self.line = line
        self.column = column
        self.problems = list(problems)
        super().__init__(f"{field}: {message}")

    def to_dict(self):
        result = {"field": self.field, "message": self.message}
        if self.line is not None:
            result["line"] = self.line
        if self.line is not None or self.column is not None:
            result["column"] = self.column
        if self.problems:
            result["problems"] = self.problems
        return result


@dataclasses.dataclass(frozen=True)
class Address:
    """One target: ``host`` as given, resolved ``ip`` (filled by the coordinator)."""

    host: str
    port: int
    protocol: str
    ip: str = ""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(host=data["host"], port=int(data["port"]), protocol=data["protocol"],
                   ip=data.get("ip", ""))

    @property
    def connect_host(self):
        return self.ip or self.host


@dataclasses.dataclass(frozen=True)
class Block:
    script: str
    params: Any
    size: int
    data: list | None = None  # feeder rows: device k of the block sees data[k % len(data)] as ``row``

    def to_dict(self):
        result = {"script": self.script, "params": self.params, "size": self.size}
        if self.data is not None:
            result["data"] = self.data
        return result


@dataclasses.dataclass(frozen=True)
class Opts:
    ramp_steps: int = DEFAULT_OPTS["ramp_steps"]
    rampup_step_ms: int = DEFAULT_OPTS["rampup_step_ms"]
    sustain_ms: int = DEFAULT_OPTS["sustain_ms"]
    rampdown_step_ms: int = DEFAULT_OPTS["rampdown_step_ms"]
    cooldown_ms: int = DEFAULT_OPTS["cooldown_ms"]
    report_interval_ms: int = DEFAULT_OPTS["report_interval_ms"]
    timeout_ms: int = DEFAULT_OPTS["timeout_ms"]
    tls_verify: bool = False
    tls_ca_file: str = ""
    # The load model (``stressgrid.plan.arrivals``): ``devices`` holds a population of
    # devices; ``arrival_rate`` starts iterations at a rate. The fields below are those of
    # an arrival-rate run (``sustain_ms`` is then its schedule's length).
    # The MQTT version of mqtt and mqtts devices: "5.0" or "3.1.1".
    mqtt_version: str = DEFAULT_MQTT_VERSION
    executor: str = DEVICES
    rate: float = 0
    rate_steps: tuple = ()
    arrivals: str = "uniform"
    max_devices: int = 0
    pre_allocated_devices: int = 0

    def to_dict(self):
        result = dataclasses.asdict(self)
        if self.mqtt_version == DEFAULT_MQTT_VERSION:
            del result["mqtt_version"]
        if self.executor == DEVICES:
            for name in _ARRIVAL_FIELDS:
                del result[name]
        elif self.rate_steps and not self.rate:
            result["rate_steps"] = [list(step) for step in self.rate_steps]
            del result["rate"]
        else:
            del result["rate_steps"]
        return result

    @property
    def open_model(self):
        """True for an arrival-rate run."""
        return self.executor == ARRIVAL_RATE

    @property
    def total_ms(self):
        """Ramp-up + sustain + ramp-down, cooldown excluded. An arrival-rate run has no
        ramp-up (its rate steps are its ramp) and one ramp-down step, in which the
        iterations still running may end."""
        if self.open_model:
            return self.sustain_ms + self.rampdown_step_ms
        return (self.ramp_steps * self.rampup_step_ms + self.sustain_ms
                + self.ramp_steps * self.rampdown_step_ms)


_ARRIVAL_FIELDS = ("rate", "rate_steps", "arrivals", "max_devices", "pre_allocated_devices")


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    addresses: tuple
    blocks: tuple
    opts: Opts
    thresholds: tuple = ()  # thresholds.Threshold, in the plan's order
    baseline: str = None  # the run it is compared with: a run id, or LAST_PASSED

    def to_dict(self):
        result = {"name": self.name,
                  "addresses": [a.to_dict() for a in self.addresses],
                  "blocks": [b.to_dict() for b in self.blocks],
                  "opts": self.opts.to_dict(),
                  "thresholds": [t.to_dict() for t in self.thresholds]}
        if self.baseline is not None:
            result["baseline"] = self.baseline
        return result

    @property
    def size(self):
        """The devices the plan needs: its blocks' sizes, or an arrival-rate run's pool."""
        if self.opts.open_model:
            return self.opts.max_devices
        return sum(block.size for block in self.blocks)

    @property
    def protocol(self):
        return self.addresses[0].protocol

    @classmethod
    def from_dict(cls, data, check_scripts=True):
        """Validate ``data`` and build a plan; raises ``PlanError``."""
        if not isinstance(data, dict):
            raise PlanError("plan", "must be a JSON object")
        unknown = set(data) - {"name", "addresses", "blocks", "opts", "thresholds", "baseline"}
        if unknown:
            raise PlanError(sorted(unknown)[0], "unknown field")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise PlanError("name", "must be a non-empty string")
        if len(name) > MAX_NAME_LENGTH:
            raise PlanError("name", f"must be at most {MAX_NAME_LENGTH} characters")
        addresses = _addresses(data.get("addresses"))
        protocols = {address.protocol for address in addresses}
        if len(protocols) > 1:
            raise PlanError("addresses", "every address must use the same protocol")
        blocks = _blocks(data.get("blocks"), addresses[0].protocol, check_scripts)
        opts = _opts(data.get("opts", {}), sum(block.size for block in blocks))
        try:
            thresholds = parse_plan_thresholds(data.get("thresholds"))
        except ThresholdError as exc:
            where = f"column {exc.column}: " if exc.column else ""
            raise PlanError(exc.field, where + exc.message, column=exc.column) from None
        baseline = _baseline(data.get("baseline"), thresholds)
        return cls(name=name.strip(), addresses=addresses, blocks=blocks, opts=opts,
                   thresholds=thresholds, baseline=baseline)


def _baseline(value, thresholds):
    """The plan's ``baseline`` (a run id or ``last-passed``); thresholds that refer to a
    baseline need one."""
    if value is None:
        for index, threshold in enumerate(thresholds):
            if threshold.needs_baseline:
                raise PlanError("baseline", f"thresholds[{index}] ({threshold.expr}) compares with a "
                                            f"baseline run: give the plan's baseline (a run id or "
                                            f"{LAST_PASSED})")
        return None
    if not isinstance(value, str) or not value.strip():
        raise PlanError("baseline", f"must be a run id or {LAST_PASSED}")
    if len(value) > MAX_RUN_ID_LENGTH:
        raise PlanError("baseline", f"must be at most {MAX_RUN_ID_LENGTH} characters")
    return value.strip()


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _addresses(value):
    if not isinstance(value, list) or not value:
        raise PlanError("addresses", "must be a non-empty list of {host, port, protocol}")
    result = []
    for i, item in enumerate(value):
        field = f"addresses[{i}]"
        if not isinstance(item, dict):
            raise PlanError(field, "must be an object with host, port and protocol")
        unknown = set(item) - {"host", "port", "protocol", "ip"}
        if unknown:
            raise PlanError(f"{field}.{sorted(unknown)[0]}", "unknown field")
        host = item.get("host")
        if not isinstance(host, str) or not host.strip() or re.search(r"\s", host.strip()):
            raise PlanError(f"{field}.host", "must be a host name or IP address")
        port = item.get("port")
        if not _is_int(port) or not 0 < port < 65536:
            raise PlanError(f"{field}.port", "must be an integer from 1 to 65535")
        protocol = item.get("protocol")
        if protocol not in api.PROTOCOLS:
            raise PlanError(f"{field}.protocol",
                            f"must be one of {', '.join(api.PROTOCOLS)}")
        ip = item.get("ip", "")
        if not isinstance(ip, str):
            raise PlanError(f"{field}.ip", "must be a string")
        result.append(Address(host=host.strip(), port=port, protocol=protocol, ip=ip))
    return tuple(result)


def _blocks(value, protocol, check_scripts):
    if not isinstance(value, list) or not value:
        raise PlanError("blocks", "must be a non-empty list of {script, params, size}")
    result = []
    for i, item in enumerate(value):
        field = f"blocks[{i}]"
        if not isinstance(item, dict):
            raise PlanError(field, "must be an object with script, params and size")
        unknown = set(item) - {"script", "params", "size", "data"}
        if unknown:
            raise PlanError(f"{field}.{sorted(unknown)[0]}", "unknown field")
        script = item.get("script")
        if not isinstance(script, str):
            raise PlanError(f"{field}.script", "must be a string")
        size = item.get("size")
        if not _is_int(size) or size < 1 or size > MAX_BLOCK_SIZE:
            raise PlanError(f"{field}.size", f"must be an integer from 1 to {MAX_BLOCK_SIZE}")
        params = item.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise PlanError(f"{field}.params", "must be a JSON object")
        if check_scripts:
            try:
                check_script(script, protocol)
            except ScriptError as exc:
                raise PlanError(f"{field}.script", str(exc), exc.line, exc.column,
                                [problem.to_dict() for problem in exc.problems]) from None
        result.append(Block(script=script, params=params, size=size, data=_data(item, field)))
    rows = sum(len(block.data) for block in result if block.data)
    if rows > MAX_DATA_ROWS:
        raise PlanError("blocks", f"feeder data has {rows} rows; at most {MAX_DATA_ROWS} are allowed")
    try:
        size = sum(data_bytes(block.data) for block in result if block.data)
    except (TypeError, ValueError) as exc:
        raise PlanError("blocks", f"feeder data must be JSON: {exc}") from None
    if size > MAX_DATA_BYTES:
        raise PlanError("blocks", f"feeder data is {size} bytes of JSON; at most {MAX_DATA_BYTES} are allowed")
    return tuple(result)


def data_bytes(rows):
    """The size of feeder ``rows`` as compact JSON, the measure of ``MAX_DATA_BYTES``."""
    return len(json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode())


def _data(item, field):
    if "data" not in item:
        return None
    rows = item["data"]
    if not isinstance(rows, list) or not rows:
        raise PlanError(f"{field}.data", "must be a non-empty list of JSON objects, one per device")
    if len(rows) > MAX_DATA_ROWS:
        raise PlanError(f"{field}.data", f"has {len(rows)} rows; at most {MAX_DATA_ROWS} are allowed")
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PlanError(f"{field}.data[{k}]", "must be a JSON object")
    return rows


def _opts(value, plan_devices):
    if not isinstance(value, dict):
        raise PlanError("opts", "must be an object")
    known = {field.name for field in dataclasses.fields(Opts)}
    unknown = set(value) - known
    if unknown:
        raise PlanError(f"opts.{sorted(unknown)[0]}", "unknown option")
    values = {}
    for key, default in DEFAULT_OPTS.items():
        item = value.get(key, default)
        if not _is_int(item):
            raise PlanError(f"opts.{key}", "must be an integer")
        values[key] = item
    for key in ("rampup_step_ms", "sustain_ms", "rampdown_step_ms", "cooldown_ms"):
        if not 0 <= values[key] <= MAX_DURATION_MS:
            raise PlanError(f"opts.{key}", f"must be from 0 to {MAX_DURATION_MS}")
    if not 1 <= values["ramp_steps"] <= MAX_RAMP_STEPS:
        raise PlanError("opts.ramp_steps", f"must be from 1 to {MAX_RAMP_STEPS}")
    if not MIN_REPORT_INTERVAL_MS <= values["report_interval_ms"] <= MAX_DURATION_MS:
        raise PlanError("opts.report_interval_ms", f"must be at least {MIN_REPORT_INTERVAL_MS}")
    if not 1 <= values["timeout_ms"] <= MAX_TIMEOUT_MS:
        raise PlanError("opts.timeout_ms", f"must be from 1 to {MAX_TIMEOUT_MS}")
    tls_verify = value.get("tls_verify", False)
    if not isinstance(tls_verify, bool):
        raise PlanError("opts.tls_verify", "must be true or false")
    tls_ca_file = value.get("tls_ca_file", "")
    if not isinstance(tls_ca_file, str):
        raise PlanError("opts.tls_ca_file", "must be a path")
    mqtt_version = value.get("mqtt_version", DEFAULT_MQTT_VERSION)
    if isinstance(mqtt_version, bool) or not isinstance(mqtt_version, (str, int)) \
            or mqtt_version not in MQTT_VERSIONS:
        raise PlanError("opts.mqtt_version", 'must be "5.0" or "3.1.1"')
    mqtt_version = MQTT_VERSIONS[mqtt_version]
    executor = value.get("executor", DEVICES)
    if executor not in EXECUTORS:
        raise PlanError("opts.executor", f"must be one of {', '.join(EXECUTORS)}")
    if executor == DEVICES:
        given = [name for name in _ARRIVAL_FIELDS if name in value]
        if given:
            raise PlanError(f"opts.{given[0]}", f"is an option of the arrival-rate load model: "
                                                f"set opts.executor to {ARRIVAL_RATE!r}")
        return Opts(tls_verify=tls_verify, tls_ca_file=tls_ca_file, mqtt_version=mqtt_version, **values)
    if plan_devices > MAX_TOTAL_WEIGHT:
        raise PlanError("blocks", f"the sizes weigh the blocks of an arrival-rate run; together "
                                  f"they must be at most {MAX_TOTAL_WEIGHT}")
    try:
        arrival = check_arrival_opts(value, values["sustain_ms"], plan_devices, MAX_DURATION_MS,
                                     MAX_BLOCK_SIZE)
    except ArrivalError as exc:
        raise PlanError(f"opts.{exc.field}", exc.message) from None
    values["sustain_ms"] = sum(duration for duration, _ in arrival.rate_steps)
    return Opts(tls_verify=tls_verify, tls_ca_file=tls_ca_file, mqtt_version=mqtt_version, executor=executor,
                rate=arrival.rate, rate_steps=arrival.rate_steps if not arrival.rate else (),
                arrivals=arrival.arrivals, max_devices=arrival.max_devices,
                pre_allocated_devices=arrival.pre_allocated_devices, **values)
