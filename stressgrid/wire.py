"""The wire codec: small typed messages packed as msgpack maps (DESIGN.md section 6).

Every message is a map with its type (``t``), the protocol version (``v``) and
its fields. The same codec runs coordinator <-> host agent over TCP and
host agent <-> workers over ``ipc://``. ``decode`` raises ``WireError`` for
anything it does not understand; receivers answer that with an ``Error``
message instead of failing.
"""
import dataclasses
import enum

import msgpack

# 2: telemetry and event carry the run id their data belongs to.
# 3: a run's normal end is the end_run handshake, answered like abort.
PROTOCOL_VERSION = 3

# The text of the Error a coordinator sends to a generator it does not know;
# a generator that receives it registers again.
NOT_REGISTERED = "not registered: register first"


class WireError(ValueError):
    """A message that cannot be decoded: bad bytes, type, version or field."""


class MessageType(str, enum.Enum):
    REGISTER = "register"
    REGISTERED = "registered"
    HEARTBEAT = "heartbeat"
    TELEMETRY = "telemetry"
    EVENT = "event"
    START_COHORT = "start_cohort"
    STOP_COHORT = "stop_cohort"
    ABORT = "abort"
    END_RUN = "end_run"
    RUN_STOPPED = "run_stopped"
    ERROR = "error"
    WORKER_READY = "worker_ready"


_MESSAGES = {}


def message(kind):
    """Class decorator: a frozen dataclass message of type ``kind``."""
    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.type = kind
        cls._field_types = {f.name: f.type for f in dataclasses.fields(cls)}
        cls._required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        _MESSAGES[kind.value] = cls
        return cls
    return wrap


_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, (list, tuple)),
}


@message(MessageType.REGISTER)
class Register:
    generator_id: "str"
    version: "str"
    cores: "int"
    workers: "int"
    capacity: "int"
    source_addresses: "int" = 0  # the source-address pool's size (0: none); optional for older peers
    # Drawn by the agent when it starts: a Register with the instance the coordinator already
    # holds for this connection is the same agent registering again, not a restarted one.
    instance: "str" = ""  # optional for older peers


@message(MessageType.REGISTERED)
class Registered:
    """``known``: the coordinator still had this agent (same connection, same ``instance``:
    its link registered again after a silence) and kept its place and its share of the run:
    every cohort it runs is still the run's. Otherwise whatever it runs is no run's any more."""
    coordinator_version: "str"
    known: "bool" = False  # optional for older peers


@message(MessageType.HEARTBEAT)
class Heartbeat:
    sent_at: "float"


@message(MessageType.TELEMETRY)
class Telemetry:
    """One second of metric deltas of run ``run_id`` (``""``: of no run, a host at rest);
    ``metrics`` is a recorder snapshot."""
    run_id: "str"
    metrics: "dict"
    active_device_number: "int"
    errors: "dict"


@message(MessageType.EVENT)
class Event:
    """Something that happened on a generator, during run ``run_id`` (``""``: at rest)."""
    run_id: "str"
    kind: "str"
    message: "str"


@message(MessageType.START_COHORT)
class StartCohort:
    """Start ``sum(block sizes)`` devices; ``address_offset`` seeds the round-robin."""
    run_id: "str"
    cohort_id: "str"
    blocks: "list"
    addresses: "list"
    opts: "dict"
    address_offset: "int"


@message(MessageType.STOP_COHORT)
class StopCohort:
    run_id: "str"
    cohort_id: "str"


@message(MessageType.ABORT)
class Abort:
    """Stop every device of the run; answered with ``RunStopped``."""
    run_id: "str"


@message(MessageType.END_RUN)
class EndRun:
    """The run's timeline is over: stop what is left of it; answered with ``RunStopped``."""
    run_id: "str"


@message(MessageType.RUN_STOPPED)
class RunStopped:
    """The answer to ``Abort`` and ``EndRun``: the run's devices have stopped and the
    ``Telemetry`` sent just before it holds the last of their metrics."""
    run_id: "str"


@message(MessageType.ERROR)
class Error:
    """The answer to a message that could not be understood or carried out."""
    message: "str"


@message(MessageType.WORKER_READY)
class WorkerReady:
    worker_index: "int"
    pid: "int"


def encode(msg):
    """Bytes for a message object."""
    body = {name: getattr(msg, name) for name in msg._field_types}
    body["t"] = msg.type.value
    body["v"] = PROTOCOL_VERSION
    return msgpack.packb(body, use_bin_type=True)


def decode(data):
    """A message object from bytes; raises ``WireError`` on anything unexpected."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError(f"not a msgpack message: {exc}") from None
    if not isinstance(body, dict):
        raise WireError("a message must be a map")
    version = body.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {version!r}; this side speaks {PROTOCOL_VERSION}")
    kind = body.pop("t", None)
    cls = _MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"unknown message type {kind!r}")
    fields = cls._field_types
    missing = cls._required - set(body)
    if missing:
        raise WireError(f"{kind}: missing field {sorted(missing)[0]!r}")
    unknown = set(body) - set(fields)
    if unknown:
        raise WireError(f"{kind}: unknown field {sorted(unknown)[0]!r}")
    for name, type_name in fields.items():
        if name in body and not _CHECKS[type_name](body[name]):
            raise WireError(f"{kind}: field {name!r} must be {type_name}")
    return cls(**body)



__all__ = ["PROTOCOL_VERSION", "NOT_REGISTERED", "MessageType", "WireError", "encode", "decode", "Register",
           "Registered", "Heartbeat", "Telemetry", "Event", "StartCohort", "StopCohort",
           "Abort", "RunStopped", "Error", "WorkerReady"]
