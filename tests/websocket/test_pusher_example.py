"""``examples/pusher_ws.py`` as shipped, against a Pusher-protocol server on ``websockets``."""
from stressgrid.runtime.local import run_local
from tests.conftest import example
from tests.websocket.servers import PusherServer, running


def pusher_plan(port, size, **params):
    return {"name": "pusher",
            "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "http"}],
            "blocks": [{"script": example("pusher_ws.py"), "params": params, "size": size}],
            "opts": {"timeout_ms": 5000}}


def test_pusher_example_subscribes_triggers_and_consumes():
    devices, iterations = 12, 20
    with running(PusherServer()) as server:
        # Two channels for twelve devices: every event has listeners.
        # Until the server has taken every event the devices were to trigger: one written to a
        # connection that the stop then aborts may never be read (seen: 238 of 240 on a busy
        # machine, when the run stopped on the devices' own count).
        result = run_local(pusher_plan(server.port, devices, channel_bits=1, iterations=iterations,
                                       delay_ms=20), 60,
                           until=lambda agg: min(server.stats["client_events"], agg.counters.get("trigger_count", 0))
                           >= devices * iterations)
        server.wait_all_closed()
        stats = dict(server.stats)
    errors = {name: value for name, value in result.counters.items() if name.endswith("_error_count")}
    assert errors == {} and result.errors == {}
    triggers = result.counters["trigger_count"]
    assert triggers >= devices * iterations
    assert stats["auth_failures"] == 0 and stats["errors"] == 0
    # A device that finished its iterations runs the script again on a new
    # connection; the stop can catch it between the upgrade and the
    # subscription, so at most one connection per device goes unsubscribed.
    upgrades = result.histograms["ws_upgrade_us"].total_count
    assert devices <= stats["subscriptions"] <= upgrades <= stats["connections"]
    assert stats["connections"] - stats["subscriptions"] <= devices
    # The server saw every event sent before the run stopped, and fanned each out.
    # (A device stopped while its send waits on a full buffer has sent an event it
    # has not counted yet: at most one per device.)
    assert devices * iterations <= stats["client_events"] <= triggers + devices
    consumed = result.counters["consume_count"]
    assert 0 < consumed <= stats["deliveries"]
    assert result.counters.get("ws_dropped_frame_count", 0) == 0


def test_pusher_example_with_the_wrong_secret_fails_its_subscription():
    with running(PusherServer(secret="the real secret")) as server:
        result = run_local(pusher_plan(server.port, 2, iterations=1), 10,
                           until=lambda agg: agg.counters.get("assertion_error_count", 0) >= 2)
        stats = dict(server.stats)
    assert result.counters["assertion_error_count"] >= 2
    assert "subscription_succeeded" in result.errors["assertion_error_count"]
    assert stats["auth_failures"] >= 2 and stats["subscriptions"] == 0
    assert "trigger_count" not in result.counters
