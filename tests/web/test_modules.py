"""Unit tests of the website's pure modules, run in the Chromium the other website tests use.

The modules are the files a real coordinator serves, and ``meta`` is its real answer to
GET /api/meta, so the page's arithmetic and checks are tested against the Python rules
they must agree with. The page is an empty document on the coordinator's origin: nothing
runs in it but the function under test, called from here; the result is asserted here.
"""
import json
import math

import pytest

from coordinator_app.overview import group_order, metric_group
from stressgrid.metrics import is_error
from stressgrid.plan import api as script_api, check_script, constants, model
from stressgrid.plan.script import SCRIPT_ARGUMENTS
from tests.coordinator.support import coordinator_process

# An argument the page replaces by the coordinator's GET /api/meta.
META = {"$meta": True}
BLANK_PAGE = "<!doctype html><meta charset='utf-8'><title>Module tests</title>"
RUN = """async ([module, args]) => {
  const exports = await import(`/assets/js/${module}`);
  const result = await (SOURCE)(exports, ...args.map((arg) => (arg && arg.$meta ? window.meta : arg)));
  return result instanceof Set ? [...result].sort() : result;
}"""


class Modules:
    """Calls into the website's modules in one page."""

    def __init__(self, page):
        self.page = page

    def run(self, module, source, *args):
        """``source``, a JS function of (the module's exports, *args), run in the page."""
        return self.page.evaluate(RUN.replace("SOURCE", source), [module, list(args)])

    def call(self, module, function, *args):
        """``module``'s exported ``function`` called with ``args`` (``META``: the meta)."""
        return self.run(module, f"(m, ...args) => m.{function}(...args)", *args)


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    with coordinator_process(tmp_path_factory.mktemp("web-modules")) as coordinator:
        yield coordinator


@pytest.fixture(scope="module")
def modules(browser, coordinator):
    context = browser.new_context(timezone_id="UTC")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    url = coordinator.api.base_url + "/module-tests"
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=BLANK_PAGE))
    page.goto(url)
    page.evaluate("async () => { window.meta = await (await fetch('/api/meta')).json(); }")
    yield Modules(page)
    context.close()
    assert not errors, errors


def form_values(**changes):
    values = {"name": "x", "protocol": "http", "hosts": "a, b", "port": "80", "rampup": "60",
              "sustain": "300", "rampdown": "30", "cooldown": "5", "report_interval": "60",
              "timeout": "5000", "tls_verify": False, "tls_ca_file": "",
              "blocks": [{"script": 'await get("/")', "params": "{}", "size": "1000"},
                         {"script": 'await get("/x")', "params": '{"a": 1}', "size": "259"}]}
    values.update(changes)
    return values


def fields(errors):
    return [error["field"] for error in errors]


# -- format.js ----------------------------------------------------------------------

@pytest.mark.parametrize("function, value, shown", [
    ("integer", 1234567.4, "1,234,567"),
    ("compact", 950, "950"),
    ("compact", 12345, "12.3k"),
    ("compact", 123456, "123k"),
    ("compact", 1234567, "1.23M"),
    ("compact", 1.2e10, "12G"),
    ("compact", 1.234, "1.23"),
    ("micros", 850, "850 µs"),
    ("micros", 1234, "1.23 ms"),
    ("micros", 123456, "123 ms"),
    ("micros", 12.34e6, "12.3 s"),
    ("bytes", 999, "999 B"),
    ("bytes", 1500, "1.5 kB"),
    ("bytes", 7e15, "7000 TB"),
    ("percent", 93, "93%"),
    ("percent", 4.26, "4.3%"),
    ("duration", 3723000, "1h 02m"),
    ("duration", 245000, "4m 05s"),
    ("duration", -5, "0s"),
    ("shortDuration", 450, "450 ms"),
    ("shortDuration", 1500, "1.5s"),
    ("shortDuration", 65000, "1m 05s"),
    ("timestamp", 86400 + 3723, "1970-01-02 01:02:03"),
    ("clock", 3723, "01:02:03"),
])
def test_format_shows_numbers_units_and_times(modules, function, value, shown):
    assert modules.call("format.js", function, value) == shown


def test_format_shows_a_dash_for_what_is_not_a_number(modules):
    shown = modules.run("format.js", """(m) => [m.integer(NaN), m.compact(undefined), m.micros(Infinity),
        m.bytes(null), m.percent(NaN), m.duration(NaN), m.shortDuration(NaN), m.timestamp(NaN)]""")
    assert shown == ["—"] * 8


def test_format_reads_a_metric_by_its_name(modules):
    kinds = modules.run("format.js", """(m) => ["cpu_percent", "headers_us", "network_rx_bytes",
        "send_count"].map(m.metricKind)""")
    assert kinds == ["percent", "micros", "bytes", "count"]
    shown = modules.run("format.js", """(m) => [m.formatterFor("network_rx_bytes", true)(1500),
        m.formatterFor("send_count", true)(12345), m.formatterFor("conn_us")(1234),
        m.formatterFor("send_count")(950)]""")
    assert shown == ["1.5 kB/s", "12.3k/s", "1.23 ms", "950"]
    labels = modules.run("format.js", """(m) => ["conn_refused_error_count", "set_us",
        "active_device_number", "network_rx_bytes"].map(m.metricLabel)""")
    assert labels == ["conn refused error", "set", "active device", "network rx bytes"]


# -- rules.js: the coordinator's rules, read from GET /api/meta ----------------------

def test_ramp_steps_count_the_devices_per_generator_step_of_the_coordinator(modules):
    step = constants.DEVICES_PER_GENERATOR_STEP
    assert modules.call("rules.js", "rampStepSize", 3, META) == 3 * step
    assert modules.call("rules.js", "rampStepSize", 0, META) == step  # none yet counts as one
    for desired, generators in ((1259, 3), (29, 3), (105, 0), (10, 1)):
        assert modules.call("rules.js", "effectiveDevices", desired, generators, META) == \
            constants.effective_devices(desired, generators)
    assert modules.call("rules.js", "effectiveDevices", "many", 1, META) == 0
    assert modules.call("rules.js", "effectiveDevices", -20, 1, META) == 0


def test_the_page_tells_errors_from_host_warnings_as_the_coordinator_does(modules):
    names = ["timeout_error_count", "conn_refused_error", "response_count", "set_us",
             "network_tcp_retransmit_error_count", "network_tcp_retransmit_error"]
    errors = modules.run("rules.js", "(m, meta, names) => names.map((n) => m.isErrorCounter(n, meta))",
                         META, names)
    warnings = modules.run("rules.js", "(m, meta, names) => names.map((n) => m.isHostWarning(n, meta))",
                           META, names)
    assert warnings == [False, False, False, False, True, True]
    assert errors == [is_error(name) and not warning for name, warning in zip(names, warnings, strict=True)]
    limit = constants.CPU_WARNING_PERCENT
    assert modules.run("rules.js", "(m, meta, limit) => [m.isCpuOverWarning(limit, meta), "
                       "m.isCpuOverWarning(limit + 0.5, meta), m.isCpuOverWarning(undefined, meta)]",
                       META, limit) == [False, True, False]


def test_the_page_folds_metrics_in_the_coordinators_groups_and_order(modules):
    names = ["request_get_response_headers_us", "request_index_response_count", "request_index_response_4xx",
             "request_a_intended_headers_us", "request__headers_us", "request_count", "check_x_pass_count",
             "response_2xx_count", "network_rx_bytes", "timeout_error_count", "cpu_percent", "worker_loop_lag_us",
             "headers_us", "network_tcp_retransmit_error", "set_us"]
    groups = modules.run("rules.js", "(m, meta, names) => names.map((n) => m.metricGroup(n, meta))", META, names)
    assert groups == [metric_group(name) for name in names]
    assert groups[:5] == ["request get_response", "request index", "request index", "request a", "main"]
    ordered = modules.run("rules.js", "(m, meta, groups) => [...groups].sort((a, b) => "
                          "m.groupOrder(a, meta) < m.groupOrder(b, meta) ? -1 : 1)", META, sorted(set(groups)))
    assert ordered == sorted(set(groups), key=group_order)


@pytest.mark.parametrize("protocol", script_api.PROTOCOLS)
def test_each_protocol_has_the_script_functions_and_port_of_the_coordinator(modules, protocol):
    functions = modules.call("rules.js", "scriptFunctions", protocol, META)
    assert functions == sorted(script_api.protocol_functions(protocol))
    assert modules.call("rules.js", "defaultPort", protocol, META) == str(constants.DEFAULT_PORTS[protocol])


def test_script_names_are_every_protocols_functions_and_the_script_arguments(modules):
    everything = set(SCRIPT_ARGUMENTS).union(*map(script_api.protocol_functions, script_api.PROTOCOLS))
    assert modules.call("rules.js", "scriptNames", META) == sorted(everything)
    assert modules.call("rules.js", "scriptFunctions", "gopher", META) == []
    assert modules.call("rules.js", "defaultPort", "gopher", META) == ""


# -- plan.js: parse, derive, validate, build ------------------------------------------

def test_parse_reads_the_inputs_as_numbers_lists_and_json(modules):
    parsed = modules.call("plan.js", "parseValues", form_values(
        name="  spaced  ", hosts=" a, b ,a,, c", port="", timeout="2.5", tls_ca_file=" /ca.pem ",
        tls_verify=True))
    assert parsed["name"] == "spaced" and parsed["hosts"] == ["a", "b", "c"]
    assert math.isnan(parsed["port"])  # empty is not zero
    assert parsed["timeout"] == 2.5 and parsed["seconds"] == {"rampup": 60, "sustain": 300,
                                                             "rampdown": 30, "cooldown": 5}
    assert parsed["tlsVerify"] is True and parsed["tlsCaFile"] == "/ca.pem"
    assert [b["desired"] for b in parsed["blocks"]] == [1000, 259]
    assert [b["params"] for b in parsed["blocks"]] == [{}, {"a": 1}]
    assert [b["paramsError"] for b in parsed["blocks"]] == [None, None]


@pytest.mark.parametrize("text, params, error", [
    ("", {}, None),
    ("  ", {}, None),
    ('{"delay_ms": 5}', {"delay_ms": 5}, None),
    ("[1, 2]", {}, {"message": 'Params must be a JSON object, like {"delay_ms": 100}.'}),
    ("null", {}, {"message": 'Params must be a JSON object, like {"delay_ms": 100}.'}),
    ('{\n  "a": 1,\n}', {}, {"message": "Not JSON: Expected double-quoted property name",
                             "line": 3, "column": 1}),
])
def test_params_must_be_a_json_object(modules, text, params, error):
    parsed = modules.call("plan.js", "parseParams", text)
    assert parsed["params"] == params
    if error is None:
        assert parsed["error"] is None
    else:
        assert parsed["error"]["message"].startswith(error["message"])
        assert {k: v for k, v in parsed["error"].items() if k != "message"} == \
            {k: v for k, v in error.items() if k != "message"}


def test_derive_rounds_each_block_to_ramp_steps_of_all_generators(modules):
    derived = modules.run("plan.js", "(m, values, meta) => m.derivePlan(m.parseValues(values), 3, meta)",
                          form_values(), META)
    assert derived["generators"] == 3 and derived["step"] == 30
    assert derived["sizes"] == [990, 240] and derived["total"] == 1230
    assert derived["rampSteps"] == 41  # 1230 / 30
    assert derived["rampupStepMs"] == round(60000 / 41) and derived["rampdownStepMs"] == round(30000 / 41)
    assert derived["sustainMs"] == 300000 and derived["cooldownMs"] == 5000
    assert derived["totalMs"] == 41 * (round(60000 / 41) + round(30000 / 41)) + 305000
    # No devices: no ramp steps, and no division by zero.
    empty = modules.run("plan.js", "(m, values, meta) => m.derivePlan(m.parseValues(values), 1, meta)",
                        form_values(blocks=[{"script": "x", "params": "", "size": "5"}]), META)
    assert empty["rampSteps"] == 0 and empty["rampupStepMs"] == 0 and empty["totalMs"] == 305000


def test_build_makes_the_plan_the_coordinator_takes(modules):
    result = modules.call("plan.js", "buildPlan", form_values(tls_verify=True, tls_ca_file="/ca.pem"), 3, META)
    assert result["errors"] == []
    plan = model.Plan.from_dict(result["plan"])
    assert [block.size for block in plan.blocks] == [990, 240]
    assert [a.host for a in plan.addresses] == ["a", "b"] and plan.addresses[0].port == 80
    assert plan.opts.ramp_steps == 41 and plan.opts.rampup_step_ms == round(60000 / 41)
    assert plan.opts.report_interval_ms == 60000 and plan.opts.timeout_ms == 5000
    assert plan.opts.tls_verify is True and plan.opts.tls_ca_file == "/ca.pem"
    assert result["plan"]["blocks"][1]["params"] == {"a": 1}


def test_validate_names_each_bad_field_as_the_api_does(modules):
    values = form_values(name=" ", protocol="gopher", hosts="a b", port="70000", rampup="-1",
                         sustain="x", report_interval="0.5", timeout="1.5",
                         blocks=[{"script": " ", "params": "[]", "size": "5"},
                                 {"script": "x", "params": "{", "size": "2.5"}])
    errors = modules.call("plan.js", "buildPlan", values, 1, META)["errors"]
    assert fields(errors) == [
        "name", "addresses[0].protocol", "addresses[0].host", "addresses[0].port",
        "opts.rampup_step_ms", "opts.sustain_ms", "opts.report_interval_ms", "opts.timeout_ms",
        "blocks[0].script", "blocks[0].params", "blocks[0].size", "blocks[1].params", "blocks[1].size"]
    messages = {error["field"]: error["message"] for error in errors}
    assert messages["addresses[0].host"] == '"a b" is not a host name: separate hosts with commas.'
    assert messages["blocks[0].size"] == "At least 10 devices: ramps go in steps of 10 (10 × 1 generator)."
    assert messages["blocks[1].size"] == "A whole number of devices."
    assert messages["opts.report_interval_ms"] == "At least 1 second."
    assert messages["opts.timeout_ms"] == f"Milliseconds, from 1 to {model.MAX_TIMEOUT_MS}."
    assert fields(modules.call("plan.js", "buildPlan", form_values(blocks=[]), 1, META)["errors"]) == ["blocks"]


def test_validate_takes_its_limits_from_the_coordinator(modules):
    long_name = "n" * (model.MAX_NAME_LENGTH + 1)
    errors = modules.call("plan.js", "buildPlan", form_values(name=long_name), 1, META)["errors"]
    assert errors == [{"field": "name", "message": f"At most {model.MAX_NAME_LENGTH} characters."}]
    assert modules.call("plan.js", "buildPlan", form_values(name=long_name[1:]), 1, META)["errors"] == []
    too_many = str((model.MAX_RAMP_STEPS + 1) * constants.DEVICES_PER_GENERATOR_STEP)
    errors = modules.call("plan.js", "buildPlan", form_values(
        blocks=[{"script": "x", "params": "", "size": too_many}]), 1, META)["errors"]
    assert errors == [{"field": "blocks[0].size",
                       "message": f"That is {model.MAX_RAMP_STEPS + 1} ramp steps; at most {model.MAX_RAMP_STEPS}."}]


def test_a_plan_loads_back_into_the_form_values_it_came_from(modules):
    values = form_values(tls_verify=True, tls_ca_file="/ca.pem")
    values["blocks"][0]["size"] = "990"
    values["blocks"][1]["size"] = "240"
    loaded = modules.run("plan.js", """(m, values, meta) => m.planToValues(
        m.buildPlan(values, 3, meta).plan, meta)""", values, META)
    assert loaded["warnings"] == []
    back = loaded["values"]
    assert [b["size"] for b in back["blocks"]] == ["990", "240"]
    assert [json.loads(b["params"]) for b in back["blocks"]] == [{}, {"a": 1}]
    for key in ("name", "protocol", "hosts", "port", "sustain", "cooldown", "report_interval", "timeout",
                "tls_verify", "tls_ca_file"):
        assert back[key] == values[key], key
    assert round(float(back["rampup"])) == 60 and round(float(back["rampdown"])) == 30


@pytest.mark.parametrize("protocol", ["mqtt", "mqtts"])
def test_an_mqtt_plan_carries_the_version_chosen_and_loads_back_with_it(modules, protocol):
    assert modules.run("plan.js", "(m, meta) => meta.mqtt_versions", META) == ["5.0", "3.1.1"]
    for version in ("3.1.1", "5.0"):
        values = form_values(protocol=protocol, mqtt_version=version,
                             blocks=[{"script": "await mqtt_connect()", "params": "{}", "size": "1000"}])
        result = modules.call("plan.js", "buildPlan", values, 1, META)
        assert result["errors"] == []
        assert model.Plan.from_dict(result["plan"]).opts.mqtt_version == version
        loaded = modules.run("plan.js", "(m, values, meta) => m.planToValues(m.buildPlan(values, 1, meta).plan, meta)",
                             values, META)
        assert loaded["values"]["mqtt_version"] == version
    # Another protocol's plan has no MQTT version, whatever the hidden field holds.
    plan = modules.call("plan.js", "buildPlan", form_values(mqtt_version="3.1.1"), 1, META)["plan"]
    assert "mqtt_version" not in plan["opts"]
    # A plan that does not say loads the coordinator's default.
    assert modules.run("plan.js", "(m, meta) => m.planToValues({}, meta).values.mqtt_version", META) == "5.0"


def test_the_open_model_builds_a_plan_the_coordinator_takes_and_loads_back(modules):
    values = form_values(executor="arrival_rate", rate="250.5", max_devices="40", pre_allocated="8",
                         arrivals="poisson", sustain="20")
    result = modules.call("plan.js", "buildPlan", values, 3, META)
    assert result["errors"] == []
    plan = model.Plan.from_dict(result["plan"])
    assert plan.opts.open_model and plan.opts.rate == 250.5 and plan.opts.arrivals == "poisson"
    assert plan.opts.sustain_ms == 20000 and plan.size == 40 and plan.opts.pre_allocated_devices == 8
    assert [block.size for block in plan.blocks] == [1000, 259]  # weights, not rounded to ramp steps
    back = modules.run("plan.js", "(m, plan, meta) => m.planToValues(plan, meta)", result["plan"], META)["values"]
    for key in ("executor", "rate", "max_devices", "pre_allocated", "arrivals", "sustain"):
        assert back[key] == values[key], key
    stepped = form_values(executor="arrival_rate", rate="", rate_steps="10:100, 50:100, 2.5:0")
    plan = model.Plan.from_dict(modules.call("plan.js", "buildPlan", stepped, 1, META)["plan"])
    assert plan.opts.rate_steps == ((10000, 100), (50000, 100), (2500, 0)) and plan.opts.sustain_ms == 62500
    assert plan.size == 1259  # the pool defaults to the blocks' sizes together


@pytest.mark.parametrize("changes, field", [
    ({"rate": ""}, "opts.rate"),
    ({"rate": "-5"}, "opts.rate"),
    ({"rate": "5", "rate_steps": "10:5"}, "opts.rate"),
    ({"rate": "", "rate_steps": "10:0"}, "opts.rate_steps"),
    ({"rate": "", "rate_steps": "ten:5"}, "opts.rate_steps"),
    ({"max_devices": "0"}, "opts.max_devices"),
    ({"max_devices": "4", "pre_allocated": "5"}, "opts.pre_allocated_devices"),
    ({"sustain": "0"}, "opts.sustain_ms"),
])
def test_the_open_models_nonsense_is_named_as_the_api_names_it(modules, changes, field):
    values = form_values(**{"executor": "arrival_rate", "rate": "10", **changes})
    assert fields(modules.call("plan.js", "buildPlan", values, 1, META)["errors"]) == [field]
    plan = modules.call("plan.js", "buildPlan", values, 1, META)["plan"]
    if field != "opts.rate_steps" or "ten" not in changes.get("rate_steps", ""):
        with pytest.raises(model.PlanError) as caught:  # the coordinator refuses it as well, naming the same field
            model.Plan.from_dict(plan)
        assert caught.value.field == field or caught.value.field.startswith(field), caught.value


def test_a_plan_without_opts_loads_the_coordinators_defaults(modules):
    loaded = modules.call("plan.js", "planToValues", {"addresses": [{"host": "h", "port": 1, "protocol": "tcp"},
                                                                    {"host": "h", "port": 2, "protocol": "tcp"}]},
                          META)
    defaults = model.DEFAULT_OPTS
    values = loaded["values"]
    assert values["cooldown"] == f"{defaults['cooldown_ms'] / 1000:g}"
    assert values["report_interval"] == f"{defaults['report_interval_ms'] / 1000:g}"
    assert values["timeout"] == str(defaults["timeout_ms"])
    assert values["sustain"] == f"{defaults['sustain_ms'] / 1000:g}"
    assert values["port"] == "1" and values["hosts"] == "h" and values["protocol"] == "tcp"
    assert modules.call("plan.js", "planToValues", {}, META)["values"]["protocol"] == constants.DEFAULT_PROTOCOL
    assert loaded["warnings"] == ["The plan's addresses use several ports; the form keeps the first."]


@pytest.mark.parametrize("field, target", [
    ("blocks[1].script", {"target": "script", "block": 1}),
    ("blocks[0].params", {"target": "params", "block": 0}),
    ("blocks", {"target": "size", "block": 0}),
    ("addresses[2].host", {"target": "hosts"}),
    ("addresses[0].port", {"target": "port"}),
    ("addresses", {"target": "hosts"}),
    ("opts.ramp_steps", {"target": "size", "block": 0}),
    ("opts.rampdown_step_ms", {"target": "rampdown"}),
    ("opts.tls_ca_file", {"target": "tls_ca_file"}),
    ("opts.mqtt_version", {"target": "mqtt_version"}),
    ("name", {"target": "name"}),
    ("plan", {"target": None}),
])
def test_an_api_field_is_shown_at_its_form_field(modules, field, target):
    assert modules.call("plan.js", "formTarget", field) == target


def test_script_error_messages_lose_the_position_the_editor_shows(modules):
    assert modules.call("plan.js", "bareMessage", "block 1, line 2, column 1: get() must be awaited") == \
        "get() must be awaited"
    assert modules.call("plan.js", "bareMessage", "line 3: bad") == "bad"
    assert modules.call("plan.js", "bareMessage", "no position") == "no position"
    assert modules.call("plan.js", "lineColumn", "ab\ncd", 4) == {"line": 2, "column": 2}
    assert modules.call("plan.js", "lineColumn", "", 0) == {"line": 1, "column": 1}


@pytest.mark.parametrize("protocol", script_api.PROTOCOLS)
def test_the_example_script_of_each_protocol_passes_the_coordinators_checker(modules, protocol):
    script = modules.call("plan.js", "exampleScript", protocol)
    params = json.loads(modules.call("plan.js", "exampleParams", protocol))
    check_script(script, protocol)
    assert isinstance(params, dict)


# -- highlight.js, chart.js, live.js, history.js ---------------------------------------

def test_the_script_highlighter_marks_the_coordinators_names(modules):
    html = modules.run("highlight.js", """async (m, meta, text) => {
        const rules = await import("/assets/js/rules.js");
        return m.pythonHighlighter(rules.scriptNames(meta))(text);
    }""", META, "x = await get(params.get('/<a>')) # done\nif 1 < 2: send(b'')")
    assert '<span class="tok-keyword">await</span> <span class="tok-api">get</span>(' in html
    assert '<span class="tok-api">params</span>.get(' in html  # a method, not the get() function
    assert "<span class=\"tok-string\">'/&lt;a&gt;'</span>" in html
    assert '<span class="tok-comment"># done</span>' in html
    assert '<span class="tok-number">1</span> &lt; <span class="tok-number">2</span>' in html
    assert '<span class="tok-api">send</span>(<span class="tok-string">b\'\'</span>)' in html
    json_html = modules.call("highlight.js", "highlightJson", '{"a": 1.5, "b": [true, null, "<"]}')
    assert json_html == ('{<span class="tok-key">"a"</span>: <span class="tok-number">1.5</span>, '
                         '<span class="tok-key">"b"</span>: [<span class="tok-keyword">true</span>, '
                         '<span class="tok-keyword">null</span>, <span class="tok-string">"&lt;"</span>]}')


@pytest.mark.parametrize("maximum, ticks", [
    (100, [0, 25, 50, 75, 100]),
    (7, [0, 2, 4, 6, 8]),
    (0.3, [0, 0.1, 0.2, 0.3]),
    (0, [0, 1]),
])
def test_chart_ticks_are_round(modules, maximum, ticks):
    assert modules.call("chart.js", "niceTicks", maximum) == ticks


def test_metric_cards_go_errors_first_and_host_metrics_last(modules):
    keys = ["rate:cpu_percent", "hist:set_us", "rate:timeout_error_count", "hist:conn_us",
            "rate:network_tcp_retransmit_error_count", "rate:response_count"]
    ordered = modules.run("live.js", """(m, meta, keys) => [...keys].sort((a, b) =>
        m.metricOrder(a, meta) < m.metricOrder(b, meta) ? -1 : 1)""", META, keys)
    assert ordered == ["rate:timeout_error_count", "rate:response_count", "hist:conn_us", "hist:set_us",
                       "rate:network_tcp_retransmit_error_count", "rate:cpu_percent"]


def test_a_state_shows_telemetry_of_its_own_run_only(modules):
    shown = modules.run("live.js", """(m) => [
        m.runTelemetry({run: {started_at: 100}, telemetry: {time: 99}}),
        m.runTelemetry({run: {started_at: 100}, telemetry: {time: 100}}),
        m.runTelemetry({run: null, telemetry: {time: 100}})]""")
    assert shown == [None, {"time": 100}, None]


def test_host_tcp_retransmits_are_a_warning_not_a_run_error(modules):
    summary = {"errors": {"network_tcp_retransmit_error_count": {"count": 7, "line": ""},
                          "timeout_error_count": {"count": 2, "line": "line 3: await recv() -> TimeoutError"}}}
    assert modules.call("history.js", "errorCount", summary, META) == 2
    assert modules.call("history.js", "retransmits", summary, META) == 7
    assert modules.call("history.js", "errorCount", {"errors": {}}, META) == 0
    assert modules.call("history.js", "retransmits", None, META) == 0


def test_the_cloudwatch_link_searches_the_runs_metrics(modules):
    url = modules.call("history.js", "cloudWatchUrl", "eu-west-1", "run-1")
    assert url == ("https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
                   "#metricsV2:graph=~();search=Stressgrid%20Run%3D%22run-1%22;namespace=Stressgrid;"
                   "dimensions=Run")


def test_the_dom_helper_builds_html_and_svg_elements(modules):
    built = modules.run("dom.js", """(m) => {
        const parent = m.svgElement("svg");
        const line = m.svgElement("line", {x1: 0, class: "grid"}, parent);
        return [m.element("span", "stat big", "<b>").outerHTML, m.element("td").outerHTML,
            m.element("dd", "", "").outerHTML, parent.outerHTML, line.namespaceURI];
    }""")
    assert built == ['<span class="stat big">&lt;b&gt;</span>', "<td></td>", "<dd></dd>",
                     '<svg><line x1="0" class="grid"></line></svg>', "http://www.w3.org/2000/svg"]


# -- run_summary.js --------------------------------------------------------------------

def test_the_summary_tables_are_drawn_as_the_coordinator_laid_them_out(modules):
    from coordinator_app.summary import summarize
    from stressgrid._core.metrics import Histogram
    from stressgrid.summary_tables import summary_tables
    headers = Histogram("request_login_headers_us")
    for value in (1000, 2000, 3000, 40_000):
        headers.record(value)
    totals = {"request_login_response_count": 4, "request_login_response_2xx_count": 3,
              "request_login_response_5xx_count": 1, "response_count": 4,
              "check_ok_pass_count": 3, "check_ok_fail_count": 1}
    summary = summarize({"request_login_headers_us": headers}, totals, {}, ("sustain", 2.0, totals))
    tables = [table.to_dict() for table in summary_tables(summary, "\u00b5s")]
    drawn = modules.run("run_summary.js", """(m, summary, tables) => {
        const root = m.summaryTables(summary, tables);
        const cells = (name) => [...root.querySelectorAll(`table.${name} tbody tr`)].map(
            (row) => [...row.children].map((cell) => cell.textContent));
        const warned = [...root.querySelectorAll("tr.warning-row")].map((row) => row.dataset.name);
        return {requests: cells("summary-requests"), checks: cells("summary-checks"),
                counters: cells("summary-counters"), warned,
                notes: [...root.querySelectorAll("p.muted")].map((p) => p.textContent)};
    }""", summary, tables)
    laid = {table["kind"]: table for table in tables}
    assert drawn["requests"] == laid["requests"]["rows"] == [["login", "4", "2", "2.0ms", "40.0ms", "40.0ms",
                                                              "40.0ms", "0", "1"]]
    assert drawn["checks"] == laid["checks"]["rows"] == [["ok", "75.00%", "3", "4"]]
    assert drawn["counters"] == laid["counters"]["rows"] == [["response", "4", "2", "0"]]
    assert drawn["warned"] == ["login", "ok"]
    assert drawn["notes"] == [f"{table['note']}." for table in tables if table["note"]]
