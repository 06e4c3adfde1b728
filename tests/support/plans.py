"""Plans for one block of devices against one address, and what their runs counted."""
from stressgrid.runtime.local import run_local

LINGER = "\nawait delay(60000)\n"  # hold the device (and its connection) until the run stops


def plan(port, script, size=1, protocol="http", params=None, host="127.0.0.1", name="test", **opts):
    """A plan dict: ``size`` devices running ``script`` against ``host:port``; 5 s timeouts
    unless ``opts`` say otherwise."""
    return {"name": name,
            "addresses": [{"host": host, "port": port, "protocol": protocol}],
            "blocks": [{"script": script, "params": params or {}, "size": size}],
            "opts": {"timeout_ms": 5000, **opts}}


def run_until(plan_dict, counter, value, duration):
    """Run ``plan_dict`` locally until ``counter`` reaches ``value`` (at most ``duration`` s)."""
    result = run_local(plan_dict, duration, until=lambda agg: agg.counters.get(counter, 0) >= value)
    assert result.counters.get(counter, 0) >= value, (result.counters, result.errors)
    return result


def error_counters(result):
    """The ``*_error_count`` counters of a run's result."""
    return {name: value for name, value in result.counters.items() if name.endswith("_error_count")}
