"""Nothing outlives the agent: not a worker whose loop a device holds, not the agent's socket directory."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import psutil
import pytest

from stressgrid.generator.socket_dir import PREFIX, owner_is_gone, process_start, remove_stale
from tests.support.servers import redis_server

from .conftest import Redis, script_cohort, wait_for

SPIN = "spins = 0\nwhile True:\n    spins += 1\n"


def socket_dirs(base):
    return sorted(path.name for path in base.iterdir() if path.name.startswith(PREFIX))


@pytest.fixture
def temp():
    """A short temporary directory for the agent (a socket path has at most 107 characters)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="sg"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_worker_whose_loop_a_device_holds_dies_with_its_killed_agent(coordinator, start_agent, tmp_path, temp):
    agent = start_agent(coordinator.url, workers=1, environment={"TMPDIR": str(temp)})
    coordinator.register()
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        coordinator.send(script_cohort(port, SPIN, 1))
        coordinator.wait_for_state(lambda: redis.device_connections() == 1, 15, "the device connected")
        [worker] = [psutil.Process(pid) for pid in agent.worker_pids()]
        # The device holds the worker's loop: it burns CPU and answers nothing.
        assert wait_for(lambda: worker.cpu_times().user > 0.5, timeout=15)
        assert socket_dirs(temp) == [d for d in socket_dirs(temp) if d.startswith(f"{PREFIX}{agent.pid}-")]
        agent.signal(signal.SIGKILL)
        agent.process.wait(5)
        _, alive = psutil.wait_procs([worker], timeout=10)
        assert not alive, "the spinning worker outlived its agent"
        assert wait_for(lambda: redis.device_connections() == 0, timeout=5)
        redis.close()
    # The killed agent could not remove its directory; the next agent does.
    [stale] = socket_dirs(temp)
    assert stale.startswith(f"{PREFIX}{agent.pid}-")
    successor = start_agent(coordinator.url, workers=1, environment={"TMPDIR": str(temp)})
    coordinator.register()
    [current] = socket_dirs(temp)
    assert current.startswith(f"{PREFIX}{successor.pid}-")
    assert f"removed {temp / stale}" in successor.log()
    # And a clean stop leaves nothing.
    successor.signal(signal.SIGTERM)
    assert successor.process.wait(20) == 0
    assert socket_dirs(temp) == []


def test_a_directory_is_stale_only_when_its_owner_is_provably_gone(tmp_path):
    me = os.getpid()
    started = process_start(me)
    assert started and not owner_is_gone(me, started)
    assert owner_is_gone(me, started + 1)  # the pid was reused by a later process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start(child.pid) is None and owner_is_gone(child.pid, 1)

    live = tmp_path / f"{PREFIX}{me}-{started}-abc"
    dead = tmp_path / f"{PREFIX}{child.pid}-1-def"
    unnamed = tmp_path / f"{PREFIX}x9k2"  # not ours to judge
    for path in (live, dead, unnamed):
        path.mkdir()
    (dead / "workers").write_text("")
    assert remove_stale(tmp_path) == [str(dead)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unnamed.name])
