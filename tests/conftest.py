import os
import pathlib
import socket
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Set by 'tox -e installed': these tests are a copy outside the source tree, and test the
# stressgrid installed in this environment's site-packages.
TESTING_INSTALLED = os.environ.get("STRESSGRID_TEST_INSTALLED") == "1"


def example(name):
    """The text of ``examples/<name>``: examples are run exactly as shipped."""
    return (EXAMPLES / name).read_text()


def installed_package_directories():
    """The site-packages directories of this environment."""
    paths = sysconfig.get_paths()
    return {pathlib.Path(paths[key]).resolve() for key in ("purelib", "platlib")}


if TESTING_INSTALLED:
    import stressgrid

    _imported_from = pathlib.Path(stressgrid.__file__).resolve().parent
    if _imported_from.parent not in installed_package_directories():
        raise RuntimeError(f"STRESSGRID_TEST_INSTALLED=1, but stressgrid was imported from "
                           f"{_imported_from}, not from this environment's site-packages")
else:
    sys.path.insert(0, str(ROOT))



# -- tiers -------------------------------------------------------------------------------
# Every test has exactly one tier (markers registered in pyproject.toml):
#   browser      drives the website in Chromium (uses the ``browser`` fixture);
#   deploy       the deployment artefacts (tests/deploy);
#   unit         in-process: no server, no subprocess, no network. A module says so with
#                ``pytestmark = pytest.mark.unit``; while such a test runs, starting a process
#                or connecting or binding a socket fails it, so the tier stays honest;
#   integration  everything else: real servers and processes.
TIERS = ("unit", "integration", "browser", "deploy")
_UNIT_GUARD = pytest.StashKey()


def _tier(item):
    if "browser" in item.fixturenames:
        return "browser"
    if pathlib.Path(str(item.path)).resolve().relative_to(ROOT / "tests").parts[0] == "deploy":
        return "deploy"
    return "unit" if item.get_closest_marker("unit") else "integration"


def pytest_collection_modifyitems(items):
    for item in items:
        tier = _tier(item)
        declared = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
        if declared - {tier}:
            raise pytest.UsageError(f"{item.nodeid}: marked {sorted(declared)} but its tier is {tier}")
        item.add_marker(tier)


def _refuse(what):
    def refused(*args, **kwargs):
        raise AssertionError(f"a unit-tier test {what}: it belongs to the integration tier")
    return refused


def pytest_runtest_setup(item):
    if not item.get_closest_marker("unit"):
        return
    guard = item.stash[_UNIT_GUARD] = pytest.MonkeyPatch()
    guard.setattr(subprocess.Popen, "__init__", _refuse("started a process"))
    for method in ("connect", "connect_ex", "bind"):
        guard.setattr(socket.socket, method, _refuse(f"called socket.{method}"))


def pytest_runtest_teardown(item):
    guard = item.stash.get(_UNIT_GUARD, None)
    if guard is not None:
        guard.undo()


@pytest.fixture
def logged_nginx(tmp_path):
    """A real nginx that answers 200 to every request and logs each one's path: ``(port,
    root)``; ``tests.support.servers.requests_logged(root)`` reads what it served."""
    from tests.support.servers import logging_nginx
    with logging_nginx(tmp_path) as server:
        yield server
