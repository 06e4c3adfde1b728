"""Fixtures for the deployment checks: the project's wheel, built once per
session, and a scratch root that provision.sh has installed into."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from ._support import PROVISION, REPO, run

# Generated or local-only things that must not go into the build copy when
# the source is not a git checkout.
_IGNORED = shutil.ignore_patterns(
    ".git", ".tox", ".venv", "build", "dist", "*.egg-info", "__pycache__",
    "*.so", "*.pyc", ".pytest_cache", ".hypothesis", "results",
)


def _copy_sources(destination):
    """Copy the repository's sources (what git would commit) to destination."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, destination, ignore=_IGNORED)
        return
    for name in filter(None, listed):
        source = REPO / name
        if not source.is_file():  # deleted in the work tree, or a submodule
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory):
    """The stressgrid wheel built from this repository, once per session.

    STRESSGRID_TEST_WHEEL=path/to/stressgrid-*.whl uses a wheel built
    beforehand (e.g. by `pip wheel . -w dist`) instead; a directory there
    means the newest stressgrid wheel in it (tox builds one in .tox/dist).
    """
    prebuilt = os.environ.get("STRESSGRID_TEST_WHEEL")
    if prebuilt:
        path = pathlib.Path(prebuilt).resolve()
        if path.is_dir():
            wheels = sorted(path.glob("stressgrid-*.whl"), key=lambda wheel: wheel.stat().st_mtime)
            assert wheels, f"STRESSGRID_TEST_WHEEL={prebuilt} holds no stressgrid wheel"
            path = wheels[-1]
        assert path.is_file(), f"STRESSGRID_TEST_WHEEL={prebuilt} does not exist"
        assert path.name.startswith("stressgrid-") and path.suffix == ".whl", path.name
        return path
    source = tmp_path_factory.mktemp("source") / "stressgrid"
    source.mkdir()
    _copy_sources(source)
    out = tmp_path_factory.mktemp("wheel")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "-w", str(out), str(source)],
        timeout=1800,
    )
    wheels = sorted(out.glob("stressgrid-*.whl"))
    assert len(wheels) == 1, f"expected one stressgrid wheel, got {wheels}"
    return wheels[0]


@pytest.fixture(scope="session")
def provisioned_root(tmp_path_factory, project_wheel):
    """A scratch root into which provision.sh installed both roles for real."""
    root = tmp_path_factory.mktemp("image-root")
    result = run(
        ["bash", str(PROVISION), "--root", str(root), "--skip-system",
         "--wheel", str(project_wheel), "--python", sys.executable, "all"],
        timeout=1800,
    )
    assert "done: role all" in result.stdout, result.stdout
    return root
