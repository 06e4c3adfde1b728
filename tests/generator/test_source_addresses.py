"""Source-address pools: parsing, capacity, and devices of a real agent connecting from every
address of the pool (seen at the target), over TCP and HTTP; a pool address the machine does
not have is answered by the kernel with EADDRNOTAVAIL at the bind, counted and reported."""
import collections
import ipaddress
import socket
import subprocess
import time

import msgpack
import pytest
import zmq

from stressgrid import wire
from stressgrid.errors import ADDR_NOT_AVAIL_ADVICE
from stressgrid.generator.config import config_from
from stressgrid.join_token import ENV as JOIN_TOKEN_ENV
from stressgrid.join_token import JoinToken
from stressgrid.generator.limits import OpenFileLimit, device_capacity
from stressgrid.protocols import source
from stressgrid.protocols.source import SourcePoolError, parse_pool
from stressgrid.runtime.local import run_local
from tests.support.servers import free_port, nginx, redis_server

from .conftest import Redis, error_lines_since, merged, script_cohort

POOL = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
IDLE = "await delay(60000)\n"
TOKEN_ENV = {JOIN_TOKEN_ENV: JoinToken.new(zmq.curve_keypair()[0]).encode()}
DEVICES = 12  # 6 per worker: 2 per address in each


def addresses(pool):
    return [str(address) for address in pool.addresses]


# -- the specification ------------------------------------------------------------------

def test_a_pool_is_a_list_of_addresses_ranges_and_networks():
    pool = parse_pool("127.0.0.2, 127.0.0.5-127.0.0.7,10.1.0.0/30,::1")
    assert addresses(pool) == ["127.0.0.2", "127.0.0.5", "127.0.0.6", "127.0.0.7", "10.1.0.1", "10.1.0.2", "::1"]
    assert pool.size == 7
    assert addresses(parse_pool("192.0.2.7/32")) == ["192.0.2.7"]
    assert not parse_pool("") and not parse_pool("  ")
    assert parse_pool("auto").auto


@pytest.mark.parametrize("text, named", [
    ("127.0.0.2,nonsense", "'nonsense'"),
    ("127.0.0.300", "'127.0.0.300'"),
    ("127.0.0.9-127.0.0.2", "range '127.0.0.9-127.0.0.2' ends before it starts"),
    ("127.0.0.1-::1", "range '127.0.0.1-::1' mixes IPv4 and IPv6"),
    ("10.0.0.1/24", "'10.0.0.1/24'"),  # host bits set: a typo for 10.0.0.0/24
    ("10.0.0.0/8", "network '10.0.0.0/8' has no host addresses or too many"),
    ("10.0.0.0-10.2.0.0", "more than 65536 addresses"),
    ("auto,127.0.0.2", "'auto' stands alone"),
    ("127.0.0.2,,127.0.0.3", "an empty item"),
    ("127.0.0.2,127.0.0.1-127.0.0.3", "1 address(es) given more than once"),
])
def test_a_bad_pool_is_refused_naming_the_bad_item(text, named):
    with pytest.raises(SourcePoolError) as raised:
        parse_pool(text)
    assert named in str(raised.value)


def test_the_agent_refuses_a_bad_pool_from_the_flag_or_the_environment():
    with pytest.raises(SystemExit) as raised:
        config_from(["--source-addresses", "127.0.0.2,bad"], environ=TOKEN_ENV)
    assert str(raised.value).startswith("--source-addresses: not an address, range or network: 'bad'")
    with pytest.raises(SystemExit) as raised:
        config_from([], environ={**TOKEN_ENV, "STRESSGRID_SOURCE_ADDRESSES": "127.0.0.3-127.0.0.2"})
    assert str(raised.value).startswith("STRESSGRID_SOURCE_ADDRESSES: range")
    assert config_from([], environ={**TOKEN_ENV, "STRESSGRID_SOURCE_ADDRESSES": " 127.0.0.2 , 127.0.0.3"}).source_addresses \
        == "127.0.0.2,127.0.0.3"
    assert config_from(["--source-addresses", "auto"], environ=TOKEN_ENV).source_addresses == "auto"


def test_connections_take_the_pool_round_robin_from_the_workers_start_and_only_of_the_targets_family():
    pool = parse_pool("127.0.0.2-127.0.0.4,::1", start=1)
    assert [pool.next_for("127.0.0.1") for _ in range(4)] == ["127.0.0.3", "127.0.0.4", "127.0.0.2", "127.0.0.3"]
    # Every target has its own turn: a second one also gets every address.
    assert [pool.next_for("127.0.0.9") for _ in range(3)] == ["127.0.0.3", "127.0.0.4", "127.0.0.2"]
    assert pool.next_for("::1") == "::1"
    assert parse_pool("::1").next_for("127.0.0.1") is None  # no IPv4 address: the system chooses


def test_auto_takes_the_addresses_of_the_interface_routing_to_the_target():
    pool = parse_pool("auto")
    found = pool.addresses_for("127.0.0.1")
    assert found and found[0] == "127.0.0.1"
    assert all(ipaddress.ip_address(address).is_loopback for address in found)
    assert pool.size >= 1


def test_capacity_is_bounded_by_the_ports_of_every_source_address():
    many_files = OpenFileLimit(1_000_000, 1_000_000, 1_000_000)
    assert device_capacity(many_files, 8, system_file_max=10**9, ports=28_000) == 28_000
    assert device_capacity(many_files, 8, system_file_max=10**9, source_addresses=3, ports=28_000) == 84_000
    # Many workers add up their own file limits, up to what the ports allow.
    few_files = OpenFileLimit(20_000, 20_000, 20_000)
    per_worker = device_capacity(few_files, 1, system_file_max=10**9, source_addresses=10, ports=28_000)
    assert device_capacity(few_files, 6, system_file_max=10**9, source_addresses=10, ports=28_000) \
        == 6 * per_worker
    assert device_capacity(few_files, 6, system_file_max=10**9, source_addresses=2, ports=28_000) == 56_000


# -- a real agent --------------------------------------------------------------------------

def established_peers(port):
    """Source addresses of the connections established to ``port``, by count (from ``ss``)."""
    output = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                            capture_output=True, text=True, check=True).stdout
    return collections.Counter(line.split()[-1].rsplit(":", 1)[0] for line in output.splitlines())


def test_tcp_devices_connect_from_every_address_of_the_pool(coordinator, start_agent, tmp_path):
    start_agent(coordinator.url, workers=2, extra_args=["--source-addresses", ",".join(POOL)])
    register = coordinator.register()
    assert register.source_addresses == 3
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(script_cohort(port, IDLE, DEVICES))
        coordinator.expect(wire.Telemetry, timeout=15, where=lambda m: m.active_device_number == DEVICES)
        coordinator.wait_for_state(lambda: sum(redis.client_addresses().values()) == DEVICES, 15,
                               "every device connected")
        assert redis.client_addresses() == {address: DEVICES // 3 for address in POOL}
        redis.close()


def test_http_devices_connect_from_every_address_of_the_pool(coordinator, start_agent, tmp_path):
    start_agent(coordinator.url, workers=2, extra_args=["--source-addresses", "127.0.0.2-127.0.0.4"])
    coordinator.register()
    port = free_port()
    block = f"server {{ listen 127.0.0.1:{port}; keepalive_timeout 120s; location / {{ return 200 ok; }} }}"
    with nginx(tmp_path, block):
        cohort = script_cohort(port, "await get('/')\n" + IDLE, DEVICES)
        cohort = wire.StartCohort(**{**cohort.__dict__, "addresses": [
            {"host": "127.0.0.1", "ip": "127.0.0.1", "port": port, "protocol": "http"}]})
        since = time.monotonic()
        coordinator.send(cohort)
        coordinator.wait_for_state(lambda: merged(coordinator.telemetry_since(since)).counter("conn_count") == DEVICES,
                               15, "every device connected")
        coordinator.wait_for_state(lambda: sum(established_peers(port).values()) == DEVICES, 15,
                               "nginx holding every connection")
        assert established_peers(port) == {address: DEVICES // 3 for address in POOL}


def test_a_source_address_the_machine_does_not_have_counts_addr_not_avail_and_says_what_to_do(
        coordinator, start_agent, tmp_path):
    # 192.0.2.1 (TEST-NET-1) is on no interface: the bind fails at once, no packet is sent.
    start_agent(coordinator.url, workers=1, extra_args=["--source-addresses", "192.0.2.1"])
    coordinator.register()
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        since = time.monotonic()
        coordinator.send(script_cohort(port, IDLE, 2))
        event = coordinator.expect(wire.Event, timeout=15, where=lambda m: m.kind == "addr_not_avail")
        assert ADDR_NOT_AVAIL_ADVICE in event.message and "add source addresses" in event.message
        coordinator.wait_for_state(
            lambda: merged(coordinator.telemetry_since(since)).counter("addr_not_avail_error_count") >= 2,
            15, "both devices counted")
        assert "addr_not_avail_error_count" in error_lines_since(coordinator, since)
        assert redis.client_addresses() == {}
        redis.close()


def test_udp_devices_send_from_every_address_of_the_pool():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target:
        target.bind(("127.0.0.1", 0))
        port = target.getsockname()[1]
        plan = {"name": "udp", "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "udp"}],
                "blocks": [{"script": "await send(b'hi')\nawait delay(60000)", "params": {}, "size": 6}],
                "opts": {}}
        source.install(parse_pool(",".join(POOL)))
        try:
            result = run_local(plan, 10, until=lambda agg: agg.counter("send_count") >= 6)
        finally:
            source.install(parse_pool(""))
        assert result.counters["send_count"] == 6
        target.settimeout(5)
        senders = collections.Counter(target.recvfrom(16)[1][0] for _ in range(6))
    assert senders == {address: 2 for address in POOL}


def test_tcp_sockets_bind_without_taking_a_port():
    source.install(parse_pool("127.0.0.2"))
    try:
        sock = source.bound_socket(socket.SOCK_STREAM, "127.0.0.1")
    finally:
        source.install(parse_pool(""))
    with sock:
        assert sock.getsockopt(socket.IPPROTO_IP, source.IP_BIND_ADDRESS_NO_PORT) == 1
        assert sock.getsockname() == ("127.0.0.2", 0)  # the port is chosen at the connect


def test_a_register_without_the_pool_size_still_decodes():
    data = msgpack.packb({"t": "register", "v": wire.PROTOCOL_VERSION, "generator_id": "g", "version": "1",
                          "cores": 2, "workers": 2, "capacity": 10})
    assert wire.decode(data).source_addresses == 0
    with pytest.raises(wire.WireError, match="source_addresses"):
        wire.decode(wire.encode(wire.Register("g", "1", 2, 2, 10, source_addresses="three")))


def test_http2_devices_connect_from_every_address_of_the_pool(tmp_path):
    port = free_port()
    block = f"server {{ listen 127.0.0.1:{port} http2; location / {{ return 200 ok; }} }}"
    plan = {"name": "h2", "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "http2"}],
            "blocks": [{"script": "await get('/')\n" + IDLE, "params": {}, "size": 6}], "opts": {}}
    seen = []

    def every_device_connected(aggregate):
        if aggregate.counter("response_count") < 6:
            return False
        seen.append(established_peers(port))
        return True

    with nginx(tmp_path, block):
        source.install(parse_pool(",".join(POOL)))
        try:
            result = run_local(plan, 15, until=every_device_connected)
        finally:
            source.install(parse_pool(""))
    assert result.counters["response_count"] == 6
    assert seen == [{address: 2 for address in POOL}]
