"""Where stressgrid is imported from, and what it says when its Cython modules are missing."""
import importlib
import importlib.machinery
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import coordinator_app
import stressgrid
from tests.conftest import ROOT, TESTING_INSTALLED, installed_package_directories

PACKAGE = pathlib.Path(stressgrid.__file__).resolve().parent
CORE_SOURCES = sorted(path.name for path in (PACKAGE / "_core").glob("*.pyx"))
# The commands of the README, each stopped at its first import.
COMMANDS = [["-c", "import stressgrid"], ["-m", "coordinator_app", "--help"],
            ["-m", "stressgrid.generator", "--help"],
            ["-m", "stressgrid.cli", "run", "demo", "examples/demo_http.py"]]


def tree_without_compiled_modules(directory, source_tree=True, keep=()):
    """A copy of the packages in ``directory`` with no extension module but those of
    ``keep`` (names); with ``source_tree``, a ``setup.py`` beside them as in a checkout."""
    def ignored(_folder, names):
        return [name for name in names if name == "__pycache__" or (
            name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
            and name.split(".")[0] not in keep)]

    shutil.copytree(PACKAGE, directory / "stressgrid", ignore=ignored)
    shutil.copytree(pathlib.Path(coordinator_app.__file__).parent, directory / "coordinator_app",
                    ignore=ignored)
    if source_tree:
        (directory / "setup.py").write_text("# the checkout's build script\n")
    return directory


def run_python(args, cwd):
    """``(exit code, last stderr line)`` of this interpreter run in ``cwd``, with no
    PYTHONPATH: it imports what ``cwd`` and site-packages hold."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=60)
    return result.returncode, (result.stderr.strip().splitlines() or [""])[-1]


def test_every_core_module_is_compiled_and_loads_from_the_package_under_test():
    assert CORE_SOURCES, PACKAGE
    for source in CORE_SOURCES:
        module = importlib.import_module(f"stressgrid._core.{source[:-len('.pyx')]}")
        location = pathlib.Path(module.__file__)
        assert location.parent == PACKAGE / "_core", location
        assert location.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), location


def test_the_package_under_test_is_the_one_this_run_is_about():
    if TESTING_INSTALLED:
        assert PACKAGE.parent in installed_package_directories()
        assert not (ROOT / "stressgrid").exists()  # the tests run outside the source tree
    else:
        assert PACKAGE == ROOT / "stressgrid"


def test_the_installed_command_is_the_cli():
    # The console script an installation puts beside its Python; a source tree has none.
    script = pathlib.Path(sys.executable).parent / "stressgrid"
    assert script.exists() == TESTING_INSTALLED
    if TESTING_INSTALLED:
        done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "run load tests on a Stressgrid coordinator" in done.stdout, done


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[1].split()[-1])
def test_in_a_source_tree_not_compiled_every_command_says_what_to_run(tmp_path, args):
    tree = tree_without_compiled_modules(tmp_path / "checkout")
    code, last_line = run_python(args, tree)
    assert code == 1
    assert last_line == (f"ImportError: stressgrid in the source tree {tree} is not compiled "
                         f"({', '.join(CORE_SOURCES)}): run 'pip install -e .' or 'make' in {tree}")


def test_a_module_added_since_the_last_build_is_named_alone(tmp_path):
    built, new = CORE_SOURCES[:-1], CORE_SOURCES[-1]
    tree = tree_without_compiled_modules(tmp_path / "checkout",
                                         keep=[name[:-len(".pyx")] for name in built])
    code, last_line = run_python(COMMANDS[0], tree)
    assert code == 1
    assert f"is not compiled ({new}): run 'pip install -e .' or 'make' in {tree}" in last_line


def test_an_installation_without_its_modules_says_to_reinstall(tmp_path):
    tree = tree_without_compiled_modules(tmp_path / "site", source_tree=False)
    code, last_line = run_python(COMMANDS[0], tree)
    assert code == 1
    assert last_line == (f"ImportError: stressgrid in {tree / 'stressgrid'} is not compiled "
                         f"({', '.join(CORE_SOURCES)}): reinstall it (pip install --force-reinstall)")
