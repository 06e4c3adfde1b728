"""How the command line becomes a plan: defaults, ramp steps, plan files, errors, addresses."""
import json

import pytest

from stressgrid.cli.display import format_bytes, format_duration, format_us
from stressgrid.cli.exits import EXIT_USAGE, CliError
from stressgrid.cli.options import argument_parser, coordinator_url
from stressgrid.cli.plan_spec import PlanSpec, ramp_steps_for
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.unit

SCRIPT = EXAMPLES / "demo_http.py"


def spec(*args):
    return PlanSpec(argument_parser().parse_args(["run", *map(str, args)]))


@pytest.mark.parametrize("given, url", [
    ("localhost", "http://localhost:8000"),
    ("10.0.0.5:9000", "http://10.0.0.5:9000"),
    ("coordinator.internal", "http://coordinator.internal:8000"),
    ("[::1]", "http://[::1]:8000"),
    ("http://sg.example.com", "http://sg.example.com"),
    ("https://sg.example.com/stressgrid/", "https://sg.example.com/stressgrid"),
    (" http://127.0.0.1:8123 ", "http://127.0.0.1:8123"),
])
def test_coordinator_urls(given, url):
    assert coordinator_url(given) == url


@pytest.mark.parametrize("given", ["", "ftp://host", "host:notaport", "host/path"])
def test_bad_coordinator_urls(given):
    with pytest.raises(CliError) as caught:
        coordinator_url(given)
    assert caught.value.code == EXIT_USAGE


@pytest.mark.parametrize("size, generators, up_ms, down_ms, steps", [
    (10, 1, 10000, 10000, 1),
    (100, 1, 10000, 10000, 10),
    (105, 1, 10000, 10000, 10),  # devices are never rounded away: the last steps carry more
    (100, 3, 10000, 10000, 3),
    (5, 4, 10000, 10000, 1),
    (1_000_000, 10, 900_000, 900_000, 1000),  # at most 1000 steps
    (10000, 1, 2000, 0, 20),  # no step shorter than 100 ms
    (10000, 1, 0, 0, 1),  # no ramp at all: one step
])
def test_ramp_steps(size, generators, up_ms, down_ms, steps):
    assert ramp_steps_for(size, generators, up_ms, down_ms) == steps


def test_defaults_match_the_documented_ones():
    plan = spec("web", SCRIPT).plan(generators=1)
    assert plan["name"] == "web"
    assert plan["addresses"] == [{"host": "localhost", "port": 5000, "protocol": "http"}]
    assert plan["blocks"] == [{"script": SCRIPT.read_text(), "params": {}, "size": 10}]
    assert plan["opts"] == {"ramp_steps": 1, "rampup_step_ms": 10000, "sustain_ms": 60000,
                            "rampdown_step_ms": 10000, "cooldown_ms": 5000,
                            "report_interval_ms": 60000, "timeout_ms": 5000}


def test_flags_set_every_field_and_the_ramp_is_spread_over_the_steps():
    plan = spec("web", SCRIPT, "-t", "a.internal, b.internal", "--target-port", 8443,
                "--target-protocol", "https", "-s", 1000, "--script-params", '{"delay_ms": 5}',
                "--rampup", 30, "--sustain", 120.5, "--rampdown", 15, "--cooldown", 2,
                "--report-interval", 10, "--timeout", 0.25).plan(generators=4)
    assert plan["addresses"] == [{"host": "a.internal", "port": 8443, "protocol": "https"},
                                 {"host": "b.internal", "port": 8443, "protocol": "https"}]
    assert plan["blocks"][0]["params"] == {"delay_ms": 5} and plan["blocks"][0]["size"] == 1000
    # 1000 devices on 4 generators: 25 steps of 40 devices.
    assert plan["opts"] == {"ramp_steps": 25, "rampup_step_ms": 1200, "sustain_ms": 120500,
                            "rampdown_step_ms": 600, "cooldown_ms": 2000,
                            "report_interval_ms": 10000, "timeout_ms": 250}


def test_explicit_ramp_steps_win():
    plan = spec("web", SCRIPT, "-s", 1000, "--ramp-steps", 4, "--rampup", 2).plan(generators=1)
    assert (plan["opts"]["ramp_steps"], plan["opts"]["rampup_step_ms"]) == (4, 500)


def test_a_json_plan_file_with_flags_over_it(tmp_path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({
        "name": "from-file",
        "addresses": [{"host": "t1", "port": 80, "protocol": "http"},
                      {"host": "t2", "port": 80, "protocol": "http"}],
        "blocks": [{"script": "await delay(10)\n", "params": {"a": 1}, "size": 50}],
        "opts": {"ramp_steps": 5, "rampup_step_ms": 2000, "sustain_ms": 1000,
                 "rampdown_step_ms": 1000, "tls_verify": True}}))
    # No flags: the file as it is (plus the documented defaults for what it leaves out).
    plan = spec("--plan", plan_file).plan(generators=3)
    assert plan["name"] == "from-file" and [a["host"] for a in plan["addresses"]] == ["t1", "t2"]
    assert plan["opts"] == {"ramp_steps": 5, "rampup_step_ms": 2000, "sustain_ms": 1000,
                            "rampdown_step_ms": 1000, "tls_verify": True, "cooldown_ms": 5000,
                            "report_interval_ms": 60000, "timeout_ms": 5000}
    # Flags override: the name, the script, the size, the port of every address, the ramp total.
    plan = spec("renamed", SCRIPT, "--plan", plan_file, "-s", 70, "--target-port", 8080,
                "--rampup", 1).plan(generators=3)
    assert plan["name"] == "renamed"
    assert plan["blocks"] == [{"script": SCRIPT.read_text(), "params": {"a": 1}, "size": 70}]
    assert [(a["host"], a["port"]) for a in plan["addresses"]] == [("t1", 8080), ("t2", 8080)]
    assert (plan["opts"]["ramp_steps"], plan["opts"]["rampup_step_ms"]) == (5, 200)
    # -t replaces the file's targets and keeps their port and protocol.
    plan = spec("--plan", plan_file, "-t", "t9").plan(generators=1)
    assert plan["addresses"] == [{"host": "t9", "port": 80, "protocol": "http"}]


def test_a_plan_file_without_ramp_steps_gets_them_computed(tmp_path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"name": "p", "blocks": [{"script_file": "../s.py", "size": 400}],
                                     "opts": {"rampup_step_ms": 4000}}))
    (tmp_path.parent / "s.py").write_text("await delay(1)\n")
    plan = spec("--plan", plan_file).plan(generators=2)
    # 400 devices on 2 generators: 20 steps over the file's 4 s of ramp-up.
    assert plan["opts"]["ramp_steps"] == 20 and plan["opts"]["rampup_step_ms"] == 200
    assert plan["blocks"][0]["script"] == "await delay(1)\n"


def test_a_plan_error_names_the_field_or_the_script_line(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("x = 1\n\nsend(b'x')\n")
    bad = spec("n", script, "--target-protocol", "tcp")
    with pytest.raises(CliError) as caught:
        bad.check(bad.plan(1))
    assert caught.value.code == EXIT_USAGE
    assert caught.value.message.startswith(f"script error: {script}:3:1: ")
    wrong = spec("n", SCRIPT, "--target-protocol", "udp")  # HTTP calls on a UDP target
    with pytest.raises(CliError) as caught:
        wrong.check(wrong.plan(1))
    assert caught.value.message.startswith(f"script error: {SCRIPT}:")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"name": "p", "blocks": [{"script": "pass\n", "size": 1}],
                                     "opts": {"sustain_ms": "long"}}))
    with pytest.raises(CliError) as caught:
        bad = spec("--plan", plan_file)
        bad.check(bad.plan(1))
    assert caught.value.message == f"invalid plan: opts.sustain_ms: must be an integer (in {plan_file})"


@pytest.mark.parametrize("content, message", [
    ("name = [", "is not valid TOML"),
    ('name = "x"\nblocks = 3\n', "blocks must be a list"),
])
def test_bad_toml_plan_files(tmp_path, content, message):
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(content)
    with pytest.raises(CliError) as caught:
        spec("--plan", plan_file)
    assert caught.value.code == EXIT_USAGE and message in caught.value.message


def test_script_params_from_a_file(tmp_path):
    params = tmp_path / "params.json"
    params.write_text('{"path": "/json"}')
    assert spec("n", SCRIPT, "--script-params", f"@{params}").blocks[0]["params"] == {"path": "/json"}


def test_the_display_formats_units():
    assert [format_us(v) for v in (0, 999, 1500, 123456, 2_500_000)] == \
        ["0us", "999us", "1.5ms", "123ms", "2.50s"]
    assert [format_duration(ms) for ms in (0, 61_000, 3_723_000)] == ["0:00", "1:01", "1:02:03"]
    assert format_bytes(1_234_567) == "1.2MB"
