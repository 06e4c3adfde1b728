import sys

import pytest

from tests.coordinator.support import coordinator_process, generator_processes
from tests.support.servers import free_port, running


@pytest.fixture(scope="module")
def demo_target():
    """The bundled demo HTTP server on a free loopback port; yields the port."""
    port = free_port()
    with running([sys.executable, "-m", "stressgrid.targets.demo", "--port", str(port)], port):
        yield port


@pytest.fixture(scope="module")
def grid(tmp_path_factory, demo_target):
    """A real coordinator with one real generator (one worker); yields the coordinator."""
    tmp_path = tmp_path_factory.mktemp("grid")
    with coordinator_process(tmp_path) as coordinator, \
            generator_processes(coordinator, tmp_path, ["cli-generator"]):
        coordinator.api.wait_generators(1)
        yield coordinator
