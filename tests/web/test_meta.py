"""GET /api/meta: the rules the website takes from the coordinator instead of copying them."""
import types

import pytest

from coordinator_app.app import create_app
from coordinator_app.config import Config
from stressgrid.plan import Plan, PlanError, api as script_api
from stressgrid.plan.script import SCRIPT_ARGUMENTS

pytestmark = pytest.mark.unit

TOKEN = "t0ken"


@pytest.fixture
def client():
    app = create_app(Config(token=TOKEN), coordinator=types.SimpleNamespace())
    return app.test_client()


@pytest.fixture
def meta(client):
    response = client.get("/api/meta", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_meta_needs_the_token_like_the_rest_of_the_api(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.get("/api/meta", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_meta_lists_every_protocol_with_its_script_functions(meta):
    assert [p["name"] for p in meta["protocols"]] == list(script_api.PROTOCOLS)
    for protocol in meta["protocols"]:
        assert set(protocol["script_functions"]) == script_api.protocol_functions(protocol["name"])
        assert protocol["label"] and 0 < protocol["default_port"] < 65536
    assert meta["script_arguments"] == list(SCRIPT_ARGUMENTS)
    assert meta["default_protocol"] in script_api.PROTOCOLS
    assert {"devices_per_generator_step", "cpu_warning_percent", "host_warning_metrics",
            "error_suffixes", "default_opts", "limits"} <= set(meta)


def plan(name="meta", size=10, **opts):
    return {"name": name, "addresses": [{"host": "127.0.0.1", "port": 80, "protocol": "http"}],
            "blocks": [{"script": "await get('/')", "params": {}, "size": size}], "opts": opts}


def test_the_published_limits_are_where_the_plan_model_draws_its_lines(meta):
    limits = meta["limits"]
    cases = [
        ("name", lambda n: plan(name="n" * n), limits["name_length"], +1),
        ("opts.ramp_steps", lambda n: plan(ramp_steps=n), limits["ramp_steps"], +1),
        ("opts.timeout_ms", lambda n: plan(timeout_ms=n), limits["timeout_ms"], +1),
        ("opts.report_interval_ms", lambda n: plan(report_interval_ms=n), limits["report_interval_ms"], -1),
        ("opts.sustain_ms", lambda n: plan(sustain_ms=n), limits["duration_ms"], +1),
        ("blocks[0].size", lambda n: plan(size=n), limits["block_size"], +1),
    ]
    for field, make, limit, outside in cases:
        Plan.from_dict(make(limit), check_scripts=False)
        with pytest.raises(PlanError) as raised:
            Plan.from_dict(make(limit + outside), check_scripts=False)
        assert raised.value.field == field


def test_the_published_defaults_are_the_plan_models(meta):
    opts = Plan.from_dict(plan(), check_scripts=False).opts
    assert meta["default_opts"] == {key: getattr(opts, key) for key in meta["default_opts"]}
