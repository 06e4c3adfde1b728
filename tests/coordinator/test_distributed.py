"""End to end across machines: coordinator, two generator hosts and redis in separate network namespaces.

The test builds its own network: one namespace per "machine", each with a
veth link to a bridge that lives in a namespace of its own, addresses from
10.200.0.0/24 inside the namespaces only. The test process itself stays in
its namespace and reaches the others from short-lived threads that enter a
namespace with setns(2). Everything is removed in teardown.
"""
import contextlib
import csv
import ctypes
import functools
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import uuid

import pytest

from tests.conftest import example
from tests.coordinator.support import ROOT, Api, coordinator_env, device_errors, redis_bulk, redis_info, wait_until
from tests.support.servers import require, wait_for_port

CLONE_NEWNET = 0x40000000
SUBNET = "10.200.0"
COORDINATOR_IP, GENERATOR_IPS, TARGET_IP = f"{SUBNET}.1", (f"{SUBNET}.2", f"{SUBNET}.3"), f"{SUBNET}.4"
TOKEN = "distributed-test-token"


def _ip(*args):
    subprocess.run([require("ip"), *args], check=True, capture_output=True, text=True)


def in_netns(namespace, function, *args):
    """Run ``function(*args)`` on a thread inside network namespace ``namespace``."""
    outcome = {}

    def target():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(fd)
        try:
            outcome["value"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class NamespacedApi(Api):
    """The API client, each request made from inside the coordinator's namespace."""

    def __init__(self, namespace, base_url, token):
        super().__init__(base_url, token)
        self.namespace = namespace

    def request(self, *args, **kwargs):
        return in_netns(self.namespace, functools.partial(super().request, *args, **kwargs))


class Network:
    """Namespaces joined by veth pairs to a bridge; ``names`` maps role -> namespace."""

    def __init__(self, roles):
        tag = uuid.uuid4().hex[:6]
        self.bridge = f"sgbr-{tag}"
        self.names = {role: f"sg{role[:4]}-{tag}" for role in roles}
        self.created = []
        self.etc_dirs = []

    def build(self, addresses):
        _ip("netns", "add", self.bridge)
        self.created.append(self.bridge)
        _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge, "link", "set", "br0", "up")
        for index, (role, namespace) in enumerate(self.names.items()):
            _ip("netns", "add", namespace)
            self.created.append(namespace)
            port = f"port{index}"
            _ip("link", "add", port, "netns", self.bridge, "type", "veth", "peer", "name", "eth0",
                "netns", namespace)
            _ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "addr", "add", f"{addresses[role]}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")

    def hosts_file(self, role, lines):
        """An /etc/hosts for processes started in ``role``'s namespace (``ip netns exec`` mounts it)."""
        if not os.path.isdir("/etc/netns"):
            os.mkdir("/etc/netns")
            self.etc_dirs.append("/etc/netns")  # ours: removed last
        directory = f"/etc/netns/{self.names[role]}"
        os.mkdir(directory)
        self.etc_dirs.insert(0, directory)
        with open(f"{directory}/hosts", "w") as handle:
            handle.write("127.0.0.1 localhost\n" + "".join(f"{line}\n" for line in lines))

    def popen(self, role, args, log_path, env=None):
        with open(log_path, "w") as log:
            return subprocess.Popen([require("ip"), "netns", "exec", self.names[role], *args], cwd=ROOT,
                                    env=env, stdout=subprocess.DEVNULL, stderr=log)

    def destroy(self):
        for namespace in reversed(self.created):
            subprocess.run([require("ip"), "netns", "del", namespace], capture_output=True)
        for directory in self.etc_dirs:
            if directory == "/etc/netns":
                with contextlib.suppress(OSError):
                    os.rmdir(directory)  # only if nothing else put a file there meanwhile
            else:
                shutil.rmtree(directory, ignore_errors=True)


def _namespaces_available():
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None and not os.path.exists("/usr/sbin/ip"):
        return "iproute2 (ip) is not installed"
    probe = f"sgprobe-{uuid.uuid4().hex[:6]}"
    result = subprocess.run([require("ip"), "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot create a network namespace here: {result.stderr.strip()}"
    subprocess.run([require("ip"), "netns", "del", probe], capture_output=True)
    return None


@contextlib.contextmanager
def stopping(processes):
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def network():
    reason = _namespaces_available()
    if reason:
        pytest.skip(reason)
    net = Network(["coordinator", "gen1", "gen2", "target"])
    try:
        net.build({"coordinator": COORDINATOR_IP, "gen1": GENERATOR_IPS[0], "gen2": GENERATOR_IPS[1],
                   "target": TARGET_IP})
        yield net
    finally:
        net.destroy()


def client_addresses(port):
    """``ip -> connections`` of redis clients (this CLIENT LIST connection left out)."""
    counts = {}
    for line in redis_bulk(port, "CLIENT LIST", TARGET_IP).splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if fields.get("cmd") == "client|list" or fields.get("cmd") == "client":
            continue
        if "addr" in fields:
            ip = fields["addr"].rsplit(":", 1)[0]
            counts[ip] = counts.get(ip, 0) + 1
    return counts


def test_coordinator_two_generator_hosts_and_redis_on_separate_machines(network, tmp_path):
    redis_port, management_port, generator_port = 6379, 8000, 9696
    network.hosts_file("coordinator", [f"{TARGET_IP} redis.target.test"])
    env = coordinator_env()
    processes = [network.popen("target", [require("redis-server"), "--bind", TARGET_IP, "--port", str(redis_port),
                                          "--save", "", "--appendonly", "no", "--protected-mode", "no",
                                          "--dir", str(tmp_path)], tmp_path / "redis.log", env)]
    with stopping(processes):
        processes.append(network.popen(
            "coordinator", [sys.executable, "-m", "coordinator_app", "--bind", COORDINATOR_IP,
                            "--data-dir", str(tmp_path / "data"), "--generator-timeout", "3"],
            tmp_path / "coordinator.log", coordinator_env({"STRESSGRID_TOKEN": TOKEN})))
        coordinator_ns = network.names["coordinator"]
        in_netns(coordinator_ns, wait_for_port, management_port, COORDINATOR_IP, 15.0, processes[-1])
        in_netns(coordinator_ns, wait_for_port, redis_port, TARGET_IP, 15.0, processes[0])
        # Each generator host gets the join token the coordinator made, as an operator copies it.
        token = (tmp_path / "data" / "join-token").read_text().strip()
        for role, generator_id in (("gen1", "host-one"), ("gen2", "host-two")):
            processes.append(network.popen(
                role, [sys.executable, "-m", "stressgrid.generator", "--workers", "1"],
                tmp_path / f"{generator_id}.log",
                coordinator_env({"COORDINATOR_URL": f"tcp://{COORDINATOR_IP}:{generator_port}",
                                 "GENERATOR_ID": generator_id, "STRESSGRID_JOIN_TOKEN": token})))
        api = NamespacedApi(coordinator_ns, f"http://{COORDINATOR_IP}:{management_port}", TOKEN)
        assert api.get("/api/state", token="wrong")[0] == 401
        api.wait_generators(2, timeout=30)

        plan = {"name": "distributed redis",
                "addresses": [{"host": "redis.target.test", "port": redis_port, "protocol": "tcp"}],
                "blocks": [{"script": example("redis_tcp.py"), "params": {"delay_ms": 100}, "size": 40}],
                "opts": {"ramp_steps": 2, "rampup_step_ms": 700, "sustain_ms": 3000,
                         "rampdown_step_ms": 300, "cooldown_ms": 1500, "report_interval_ms": 1000}}
        status, run, _ = api.post("/api/runs", plan)
        assert status == 201, run

        state = wait_until(lambda: (s := api.state())["run"] and s["run"]["state"] == "sustain"
                           and s["telemetry"]["active_device_number"] == 40 and s, timeout=15)
        assert sorted(g["active_device_number"] for g in state["generators"]) == [20, 20]
        # Redis sees 20 connections from each generator host's own address.
        clients = in_netns(coordinator_ns, client_addresses, redis_port)
        assert clients == {GENERATOR_IPS[0]: 20, GENERATOR_IPS[1]: 20}

        detail = api.wait_run_finished(run["id"], timeout=40)
        assert detail["state"] == "done"
        summary = detail["summary"]
        assert summary["devices_requested"] == summary["devices_started"] == 40
        assert summary["generators"] == {"host-one": 20, "host-two": 20}
        assert summary["maxima"]["active_device_number"] == 40
        assert device_errors(summary) == {}
        assert detail["plan"]["addresses"][0]["host"] == "redis.target.test"
        assert in_netns(coordinator_ns, lambda: int(redis_info(redis_port, host=TARGET_IP)["connected_clients"])) == 1

        status, data, _ = api.get(detail["result_url"])
        assert status == 200
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            names = set(archive.getnames())
            assert {f"{run['id']}/results.csv", f"{run['id']}/plan.json", f"{run['id']}/summary.json",
                    f"{run['id']}/hdr/set_us.hlog", f"{run['id']}/hdr/get_us.hlog"} <= names
            text = archive.extractfile(f"{run['id']}/results.csv").read().decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) >= 5
        assert max(int(r["active_device_number"]) for r in rows) == 40
        assert int(rows[-1]["send_count"]) == summary["totals"]["send_count"] > 200
        assert int(rows[-1]["receive_count"]) == summary["totals"]["receive_count"]
        assert all(float(r["set_us_pc99"]) > 0 for r in rows if r["set_us_pc99"])
        assert {"set_us_stddev", "cpu_percent_max", "network_rx_bytes_per_second"} <= set(rows[0])
