"""The plan a run command asks for: flags over a plan file (JSON or TOML) over defaults."""
import json
import os
import pathlib
import re

from stressgrid.plan import Plan, PlanError
from stressgrid.plan.api import MQTT_PROTOCOLS
from stressgrid.plan.arrivals import ARRIVAL_RATE
from stressgrid.plan.feeder import FeederError, check_size, format_of, parse_rows
from stressgrid.plan.constants import DEVICES_PER_GENERATOR_STEP
from stressgrid.plan.thresholds import ThresholdError, parse

from .exits import EXIT_USAGE, CliError
from .options import (DEFAULT_COOLDOWN_S, DEFAULT_PROTOCOL, DEFAULT_RAMPDOWN_S, DEFAULT_RAMPUP_S,
                      DEFAULT_REPORT_INTERVAL_S, DEFAULT_SIZE, DEFAULT_SUSTAIN_S,
                      DEFAULT_TARGET_HOSTS, DEFAULT_TARGET_PORT, DEFAULT_TIMEOUT_S)

# Ramp steps: each step starts (or stops) DEVICES_PER_GENERATOR_STEP devices on every
# generator; never more than MAX_RAMP_STEPS steps, nor steps shorter than MIN_STEP_MS.
MAX_RAMP_STEPS = 1000
MIN_STEP_MS = 100


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
            if isinstance(block, dict) and "data_file" in block:
                if "data" in block:
                    raise CliError(EXIT_USAGE, f"plan file {path}: blocks[{i}] has both data and data_file")
                block["data"] = read_feeder_file(base / str(block.pop("data_file")),
                                                 f"plan file {path}: blocks[{i}].data_file")
    return data


def read_feeder_file(path, what="feeder file"):
    """The rows of feeder file ``path`` (CSV, JSON lines or JSON, by its suffix)."""
    kind = format_of(str(path))
    if kind is None:
        raise CliError(EXIT_USAGE, f"{what} {path} must end in .csv, .jsonl, .ndjson or .json")
    try:
        check_size(os.stat(path).st_size)
        return parse_rows(_read_text(path, what), kind)
    except FileNotFoundError:
        raise CliError(EXIT_USAGE, f"{what} {path} does not exist") from None
    except FeederError as exc:
        raise CliError(EXIT_USAGE, f"{what} {path}: {exc}") from None


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
        rows = read_feeder_file(args.data) if args.data is not None else None
        if args.script_file is not None:
            script = _read_text(args.script_file, "script file")
        if blocks is None:
            if args.script_file is None:
                raise CliError(EXIT_USAGE, "SCRIPT_FILE is required (or a plan file with blocks)")
            blocks = [{"script": script, "params": params or {}, "size": args.size or DEFAULT_SIZE,
                       "_script_file": args.script_file}]
            if rows is not None:
                blocks[0]["data"] = rows
        else:
            if not isinstance(blocks, list):
                raise CliError(EXIT_USAGE, f"plan file {args.plan}: blocks must be a list")
            overrides = [flag for flag, value in (("SCRIPT_FILE", args.script_file),
                                                  ("--size", args.size),
                                                  ("--script-params", params),
                                                  ("--data", rows)) if value is not None]
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
                if rows is not None:
                    block["data"] = rows
                block.pop("data_file", None)
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
        self._arrival_flags(args)
        self.ramp_steps = args.ramp_steps or opts.get("ramp_steps")
        self.rampup_ms = _ms(args.rampup) if args.rampup is not None else None
        self.rampdown_ms = _ms(args.rampdown) if args.rampdown is not None else None
        if args.sustain is not None:
            self.opts["sustain_ms"] = _ms(args.sustain)
        elif "rate_steps" not in self.opts:  # (rate steps are their schedule's length)
            self.opts.setdefault("sustain_ms", _ms(DEFAULT_SUSTAIN_S))
        for key, value, default in (("cooldown_ms", args.cooldown, DEFAULT_COOLDOWN_S),
                                    ("report_interval_ms", args.report_interval,
                                     DEFAULT_REPORT_INTERVAL_S),
                                    ("timeout_ms", args.timeout, DEFAULT_TIMEOUT_S)):
            if value is not None:
                self.opts[key] = _ms(value)
            else:
                self.opts.setdefault(key, _ms(default))
        if args.timeout is not None and self.opts["timeout_ms"] < 1:
            raise CliError(EXIT_USAGE, "--timeout must be at least 0.001 seconds")
        if args.mqtt_version is not None:
            protocols = {a.get("protocol") for a in self.addresses if isinstance(a, dict)}
            if not protocols or not protocols <= MQTT_PROTOCOLS:
                raise CliError(EXIT_USAGE, f"--mqtt-version is for {' and '.join(sorted(MQTT_PROTOCOLS))} targets, "
                                           f"not {', '.join(sorted(map(str, protocols))) or 'none'}")
            self.opts["mqtt_version"] = args.mqtt_version
        # Thresholds: the plan file's, then every --threshold.
        planned = data.get("thresholds", [])
        for expr in args.threshold or ():
            try:
                parse(expr)
            except ThresholdError as exc:
                raise CliError(EXIT_USAGE, f"--threshold {expr!r}: column {exc.column}: "
                                           f"{exc.message}\n  {expr}\n  {' ' * (exc.column - 1)}^") \
                    from None
        if args.threshold and not isinstance(planned, list):
            raise CliError(EXIT_USAGE, f"plan file {args.plan}: thresholds must be a list")
        # (A plan file's bad value is left for the plan check to name.)
        self.thresholds = [*planned, *args.threshold] if args.threshold else planned
        self.baseline = args.baseline if args.baseline is not None else data.get("baseline")

    def _arrival_flags(self, args):
        """``--rate`` and its kin, over the plan file's opts: either makes the run open-model."""
        opts = self.opts
        if args.rate is not None and args.rate_steps is not None:
            raise CliError(EXIT_USAGE, "--rate and --rate-steps cannot both be given")
        if args.rate is not None:
            opts["rate"] = args.rate
            opts.pop("rate_steps", None)
        if args.rate_steps is not None:
            opts["rate_steps"] = args.rate_steps
            opts.pop("rate", None)
            opts.pop("sustain_ms", None)
        for key, value in (("max_devices", args.max_devices), ("pre_allocated_devices", args.pre_allocated),
                           ("arrivals", args.arrivals)):
            if value is not None:
                opts[key] = value
        if any(key in opts for key in ("rate", "rate_steps")):
            opts.setdefault("executor", ARRIVAL_RATE)
        elif any(value is not None for value in (args.max_devices, args.pre_allocated, args.arrivals)):
            raise CliError(EXIT_USAGE, "--max-devices, --pre-allocated and --arrivals are options of an "
                                       "open-model run: give --rate or --rate-steps too")

    @property
    def open_model(self):
        """True when the run starts iterations at a rate (``opts.executor``)."""
        return self.opts.get("executor") == ARRIVAL_RATE

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
        if self.open_model:
            # Its rate steps are its ramp; ramp-down is one step in which the iterations
            # still running may end (default: one request timeout).
            if self.rampdown_ms is not None:
                opts["rampdown_step_ms"] = self.rampdown_ms
            else:
                opts.setdefault("rampdown_step_ms", opts["timeout_ms"])
            return self._plan_dict(opts)
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
        return self._plan_dict(opts)

    def _plan_dict(self, opts):
        plan = {"name": self.name, "addresses": self.addresses, "blocks": self.blocks, "opts": opts,
                "thresholds": self.thresholds}
        if self.baseline is not None:
            plan["baseline"] = self.baseline
        return plan

    def check(self, plan):
        """Validate ``plan`` locally (scripts included); raises ``CliError`` like the API would."""
        try:
            Plan.from_dict(plan)
        except PlanError as exc:
            raise CliError(EXIT_USAGE, self.describe_error(exc.to_dict())) from None

    def describe_error(self, error):
        """An error of the plan (``PlanError.to_dict()``, or the API's error answer) for the
        terminal: ``script error: script.py:3:5: message``, one line per problem of a
        script, in line order; else one line naming the field."""
        field = error.get("field") or ""
        match = re.fullmatch(r"blocks\[(\d+)\]\.script", field)
        problems = error.get("problems") or (
            [{"message": error.get("message"), "line": error.get("line"),
              "column": error.get("column")}] if error.get("line") is not None else [])
        if match and problems:
            index = int(match.group(1))
            source = self.script_files[index] if index < len(self.script_files) else None
            where = source or (f"{self.plan_file} {field}" if self.plan_file else field)
            return "\n".join(
                f"script error: {where}:{problem.get('line') or 1}:{problem.get('column') or 1}: "
                + re.sub(r"^line \d+(, column \d+)?: ", "", problem.get("message") or "")
                for problem in problems)
        origin = f" (in {self.plan_file})" if self.plan_file else ""
        return f"invalid plan: {field}: {error.get('message', '')}{origin}"
