"""TCP and UDP devices end to end against a real redis-server and a real dnsmasq."""
import socket

import pytest

from stressgrid.runtime.local import run_local
from tests.conftest import example
from tests.support.servers import dnsmasq, free_port, redis_server


def tcp_plan(script, port, size=1, params=None, protocol="tcp", **opts):
    return {"name": "t", "addresses": [{"host": "127.0.0.1", "port": port, "protocol": protocol}],
            "blocks": [{"script": script, "params": params or {}, "size": size}], "opts": opts}


def errors(result):
    return {name: value for name, value in result.counters.items() if name.endswith("_error_count")}


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


def test_redis_example(redis_port):
    script = example("redis_tcp.py")
    result = run_local(tcp_plan(script, redis_port, size=10, params={"iterations": 20, "delay_ms": 1}), 20,
                       until=lambda agg: agg.histogram("get_us").total_count >= 400)
    assert errors(result) == {}
    assert result.counters["conn_count"] >= 10
    gets = result.histograms["get_us"].summary()["count"]
    sets = result.histograms["set_us"].summary()["count"]
    assert gets >= 400 and sets >= gets
    assert result.counters["send_count"] >= sets + gets
    assert result.counters["receive_count"] >= sets + gets
    assert result.histograms["conn_us"].summary()["count"] == result.counters["conn_count"]


def test_tcp_recv_timeout_is_counted(redis_port):
    # Redis answers nothing until a command ends with CRLF.
    script = "await send(b'PING')\nawait recv(timeout=50)"
    result = run_local(tcp_plan(script, redis_port), 5,
                       until=lambda agg: agg.counter("timeout_error_count") >= 1)
    assert result.counters["timeout_error_count"] >= 1
    assert "TimeoutError" in result.errors["timeout_error_count"]


def test_tcp_closed_by_target_is_counted(redis_port):
    script = "await send(b'QUIT\\r\\n')\nassert await recv() == b'+OK\\r\\n'\nawait recv()"
    result = run_local(tcp_plan(script, redis_port), 5,
                       until=lambda agg: agg.counter("closed_error_count") >= 1)
    assert result.counters["closed_error_count"] >= 1


def test_tcp_dead_target_counts_conn_refused():
    result = run_local(tcp_plan("await send(b'x')", free_port(), size=3), 5,
                       until=lambda agg: agg.counter("conn_refused_error_count") >= 6)
    assert result.counters["conn_refused_error_count"] >= 6
    assert "conn_count" not in result.counters


def test_dns_example_against_dnsmasq():
    with dnsmasq({"stressgrid.test": "127.0.0.42"}) as port:
        script = example("dns_udp.py")
        result = run_local(tcp_plan(script, port, size=5, protocol="udp",
                                    params={"iterations": 50, "delay_ms": 1}), 20,
                           until=lambda agg: agg.counter("resolved_count") >= 200)
    assert errors(result) == {}
    assert result.counters["resolved_count"] >= 200
    assert result.histograms["resolve_us"].summary()["count"] >= 200
    assert result.counters["send_count"] >= 200 and result.counters["receive_count"] >= 200


def test_udp_recv_timeout_and_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        result = run_local(tcp_plan("await send(b'x')\nawait recv(timeout=20)", silent.getsockname()[1],
                                    protocol="udp"), 5,
                           until=lambda agg: agg.counter("timeout_error_count") >= 1)
    assert result.counters["timeout_error_count"] >= 1
    # Nothing bound: the kernel answers with ICMP port unreachable.
    result = run_local(tcp_plan("await send(b'x')\nawait recv(timeout=2000)", free_port(socket.SOCK_DGRAM),
                                protocol="udp"), 5,
                       until=lambda agg: agg.counter("conn_refused_error_count") >= 1)
    assert result.counters["conn_refused_error_count"] >= 1
