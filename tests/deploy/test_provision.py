"""provision.sh run for real into a scratch root, and what it installs:
systemd units (checked with systemd-analyze), env files, the sysctl file,
the login limits file, and the virtualenv with the project in it. Also the
startup scripts Terraform renders for the instances, run against the same
kind of scratch root."""
import contextlib
import json
import os
import pathlib
import re
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

import pytest

from tests.support.servers import free_port, wait_for_port

from ._support import (
    FILES,
    PROVISION,
    TEMPLATES,
    render_template,
    require_tool,
    run,
)

VENV_PYTHON = "/opt/stressgrid/venv/bin/python"
UNITS = {
    "coordinator": "stressgrid-coordinator.service",
    "generator": "stressgrid-generator.service",
}
SYSCTL_PATH = "etc/sysctl.d/90-stressgrid.conf"
LIMIT_NOFILE = 1_000_000

# Prints "<module>:yes" when `python -m <module>` has something to run: a
# plain module, or a package with a __main__ submodule.
RUNNABLE_MODULES = """
import importlib.util as u
for name in ("stressgrid.generator", "coordinator_app"):
    spec = u.find_spec(name)
    if spec is not None and spec.submodule_search_locations is not None:
        spec = u.find_spec(name + ".__main__")
    print(name + (":yes" if spec is not None else ":no"))
"""

REQUIRED_SYSCTLS = {
    "net.ipv4.ip_local_port_range",
    "fs.nr_open",
    "fs.file-max",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.netdev_max_backlog",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_tw_reuse",
}


def parse_unit(text):
    """{section: [(key, value), ...]} of a systemd unit file."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"setting outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(sections, section, key):
    return [v for k, v in sections.get(section, []) if k == key]


def parse_sysctl(text):
    """[(line number, ignore_failure, key, value)]; asserts sysctl.d syntax."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        match = re.fullmatch(r"(-?)([a-z0-9_]+(?:[./][a-z0-9_-]+)+)\s*=\s*(\S(?:.*\S)?)", line)
        assert match, f"line {number} is not 'key = value': {raw!r}"
        entries.append((number, match.group(1) == "-", match.group(2), match.group(3)))
    return entries


# --- what provision.sh installed ---------------------------------------------


def test_virtualenv_imports_the_project(provisioned_root):
    python = provisioned_root / VENV_PYTHON.lstrip("/")
    assert python.exists(), "no virtualenv python under the root"
    run([str(python), "-I", "-c", "import stressgrid, coordinator_app"])
    # Every dependency the wheel declares is installed and consistent.
    run([str(python), "-I", "-m", "pip", "check", "--disable-pip-version-check"])
    # The units run `python -m stressgrid.generator` / `python -m coordinator_app`.
    result = run([str(python), "-I", "-c", RUNNABLE_MODULES])
    assert result.stdout.split() == ["stressgrid.generator:yes", "coordinator_app:yes"], result.stdout
    version = (provisioned_root / "opt/stressgrid/VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+.*", version), version


def test_virtualenv_is_inside_the_root(provisioned_root):
    python = provisioned_root / VENV_PYTHON.lstrip("/")
    result = run([str(python), "-I", "-c", "import sys, stressgrid; print(sys.prefix); print(stressgrid.__file__)"])
    prefix, module = result.stdout.split()
    root = str(provisioned_root.resolve())
    assert prefix.startswith(root) and module.startswith(root), result.stdout


@pytest.mark.parametrize("role", sorted(UNITS))
def test_unit_installed_with_limits_and_env_file(provisioned_root, role):
    unit = provisioned_root / "etc/systemd/system" / UNITS[role]
    assert unit.read_text() == (FILES / UNITS[role]).read_text()
    sections = parse_unit(unit.read_text())
    assert unit_values(sections, "Service", "LimitNOFILE") == [str(LIMIT_NOFILE)]
    assert unit_values(sections, "Service", "EnvironmentFile") == [f"-/etc/default/stressgrid-{role}.env"]
    assert unit_values(sections, "Service", "Restart") == ["on-failure"]
    assert unit_values(sections, "Service", "User") == ["stressgrid"]
    (exec_start,) = unit_values(sections, "Service", "ExecStart")
    module = {"coordinator": "coordinator_app", "generator": "stressgrid.generator"}[role]
    assert exec_start.split()[:3] == [VENV_PYTHON, "-m", module]
    assert unit_values(sections, "Install", "WantedBy") == ["multi-user.target"]


def test_coordinator_unit_passes_ports_data_dir_and_bind():
    sections = parse_unit((FILES / UNITS["coordinator"]).read_text())
    (exec_start,) = unit_values(sections, "Service", "ExecStart")
    args = exec_start.split()
    options = dict(zip(args[3::2], args[4::2]))
    assert options == {
        "--management-port": "${MANAGEMENT_PORT}",
        "--generator-port": "${GENERATORS_PORT}",
        "--bind": "${STRESSGRID_BIND}",
        "--data-dir": "/var/lib/stressgrid",
    }
    defaults = dict(v.split("=", 1) for v in unit_values(sections, "Service", "Environment"))
    assert defaults["MANAGEMENT_PORT"] == "8000"
    assert defaults["GENERATORS_PORT"] == "9696"
    assert defaults["STRESSGRID_BIND"] == "0.0.0.0"
    assert unit_values(sections, "Service", "StateDirectory") == ["stressgrid"]


@pytest.mark.parametrize("role", sorted(UNITS))
def test_env_file_installed_private(provisioned_root, role):
    env_file = provisioned_root / f"etc/default/stressgrid-{role}.env"
    expected = (FILES / f"stressgrid-{role}.env").read_text()
    if role == "generator":  # provisioned as role "all": it joins the coordinator on its host
        expected += "STRESSGRID_JOIN_TOKEN_FILE=/var/lib/stressgrid/join-token\n"
    assert env_file.read_text() == expected
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_sysctl_file_installed_and_well_formed(provisioned_root):
    path = provisioned_root / SYSCTL_PATH
    text = path.read_text()
    assert text == (FILES / "sysctl-stressgrid.conf").read_text()
    entries = parse_sysctl(text)
    keys = [key for _, _, key, _ in entries]
    assert len(keys) == len(set(keys)), "a key is set twice"
    missing = REQUIRED_SYSCTLS - set(keys)
    assert not missing, f"missing kernel settings: {sorted(missing)}"


def test_every_sysctl_setting_has_a_comment_above_it():
    lines = (FILES / "sysctl-stressgrid.conf").read_text().splitlines()
    for number, _, key, _ in parse_sysctl("\n".join(lines)):
        above = lines[number - 2].strip() if number >= 2 else ""
        assert above.startswith("#") and len(above) > 10, f"{key} has no comment saying why"


def test_sysctl_keys_exist_in_the_kernel():
    """A mistyped key would be skipped with an error at every boot."""
    proc = pathlib.Path("/proc/sys")
    if not (proc / "net/ipv4").is_dir():
        pytest.skip("/proc/sys/net/ipv4 is not readable here, so keys cannot be looked up")
    for _, optional, key, _ in parse_sysctl((FILES / "sysctl-stressgrid.conf").read_text()):
        if optional:  # "-key": allowed to be absent (module not loaded)
            continue
        assert (proc / key.replace(".", "/")).exists(), f"{key} is not a kernel setting"


def test_sysctl_values_fit_a_million_connections():
    values = {key: value for _, _, key, value in parse_sysctl((FILES / "sysctl-stressgrid.conf").read_text())}

    def ints(key):
        return [int(part) for part in values[key].split()]

    low, high = ints("net.ipv4.ip_local_port_range")
    assert 1024 <= low < high <= 65535 and high - low >= 60000
    reserved = {int(p) for p in values["net.ipv4.ip_local_reserved_ports"].split(",")}
    assert {8000, 9696} <= reserved, "coordinator ports must be kept out of the ephemeral range"
    (nr_open,) = ints("fs.nr_open")
    (file_max,) = ints("fs.file-max")
    assert nr_open >= LIMIT_NOFILE, "LimitNOFILE in the units would exceed fs.nr_open"
    assert file_max >= nr_open
    assert ints("net.core.somaxconn")[0] >= 4096
    assert ints("net.ipv4.tcp_max_syn_backlog")[0] >= 4096
    assert ints("net.core.netdev_max_backlog")[0] >= 10000
    for key in ("net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
        triple = ints(key)
        assert len(triple) == 3 and triple == sorted(triple) and triple[0] > 0, key
    assert ints("net.ipv4.tcp_tw_reuse")[0] in (1, 2)


def test_login_limits_match_the_units(provisioned_root):
    text = (provisioned_root / "etc/security/limits.d/90-stressgrid.conf").read_text()
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert rows and all(len(row) == 4 for row in rows), rows
    assert {(row[0], row[1]) for row in rows} >= {("*", "soft"), ("*", "hard")}
    assert all(row[2] == "nofile" and int(row[3]) == LIMIT_NOFILE for row in rows)


# --- systemd-analyze ------------------------------------------------------------


def _unit_copy_for_verify(provisioned_root, tmp_path, role, text=None):
    """The unit with ExecStart pointed at the scratch root's real venv python."""
    text = text if text is not None else (FILES / UNITS[role]).read_text()
    python = provisioned_root / VENV_PYTHON.lstrip("/")
    copy = tmp_path / UNITS[role]
    copy.write_text(text.replace(VENV_PYTHON, str(python)))
    return copy


def _verify(systemd_analyze, unit):
    result = run([systemd_analyze, "verify", "--man=no", str(unit)], check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.mark.parametrize("role", sorted(UNITS))
def test_systemd_analyze_verify(provisioned_root, tmp_path, role):
    systemd_analyze = require_tool("systemd-analyze", "systemd")
    unit = _unit_copy_for_verify(provisioned_root, tmp_path, role)
    code, output = _verify(systemd_analyze, unit)
    assert code == 0 and output == "", output


def test_systemd_analyze_catches_a_broken_unit(provisioned_root, tmp_path):
    """Control: the verify check above does see mistakes in these units."""
    systemd_analyze = require_tool("systemd-analyze", "systemd")
    broken = (FILES / UNITS["generator"]).read_text().replace(
        f"LimitNOFILE={LIMIT_NOFILE}", "LimitNOFILE=a-million"
    )
    unit = _unit_copy_for_verify(provisioned_root, tmp_path, "generator", broken)
    _, output = _verify(systemd_analyze, unit)
    assert "a-million" in output


# --- the units' command lines, run for real -------------------------------------


def _service_command(provisioned_root, data_dir, role, settings):
    """ExecStart of the unit, expanded the way systemd would, and its environment.

    Environment= defaults come first and ``settings`` (what the env file would
    hold) override them; the venv and data paths point into the scratch root.
    """
    sections = parse_unit((FILES / UNITS[role]).read_text())
    (exec_start,) = unit_values(sections, "Service", "ExecStart")
    environment = dict(v.split("=", 1) for v in unit_values(sections, "Service", "Environment"))
    environment.update(settings)
    words = [re.sub(r"\$\{(\w+)\}", lambda m: environment[m.group(1)], word) for word in exec_start.split()]
    words = [w.replace("/var/lib/stressgrid", str(data_dir)) for w in words]
    assert words[0] == VENV_PYTHON
    words[0] = str(provisioned_root / VENV_PYTHON.lstrip("/"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data_dir), **environment}
    return words, env


@contextlib.contextmanager
def _service(command, env, log_path, cwd):
    """Run a service in its own process group; stop the whole group after."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_for_generator(url, token, generator_id, timeout=60.0):
    """Follow the server-sent state stream until ``generator_id`` is registered."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(request, timeout=10) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data:"):
                state = json.loads(line[5:])
                if any(g.get("id") == generator_id for g in state.get("generators", [])):
                    return state
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"generator {generator_id} did not register within {timeout}s")


def test_unit_command_lines_start_a_working_coordinator_and_generator(provisioned_root, tmp_path):
    """The units' ExecStart lines, with the settings Terraform writes, run the
    installed coordinator and generator: the token is enforced and the
    generator registers over the generator port."""
    management_port, generator_port = free_port(), free_port()
    token = "DeploySmokeToken123"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    command, env = _service_command(provisioned_root, data_dir, "coordinator", {
        "STRESSGRID_TOKEN": token,
        "MANAGEMENT_PORT": str(management_port),
        "GENERATORS_PORT": str(generator_port),
        "STRESSGRID_BIND": "127.0.0.1",  # a test listens on loopback only
    })
    coordinator_log = tmp_path / "coordinator.log"
    generator_log = tmp_path / "generator.log"
    with _service(command, env, coordinator_log, data_dir) as coordinator:
        try:
            wait_for_port(management_port, timeout=60, process=coordinator)
            base = f"http://127.0.0.1:{management_port}"
            assert _get(f"{base}/api/state")[0] == 401
            assert _get(f"{base}/api/state", "wrong-token")[0] == 401
            status, body = _get(f"{base}/api/state", token)
            assert status == 200 and isinstance(json.loads(body), dict)

            command, env = _service_command(provisioned_root, data_dir, "generator", {
                "COORDINATOR_URL": f"tcp://127.0.0.1:{generator_port}",
                "GENERATOR_ID": "deploy-smoke",
                # As the env file of a host with both roles says, in the scratch data dir.
                "STRESSGRID_JOIN_TOKEN_FILE": str(data_dir / "join-token"),
            })
            with _service(command, env, generator_log, data_dir) as generator:
                _wait_for_generator(f"{base}/api/stream", token, "deploy-smoke")
                assert generator.poll() is None, "the generator exited"
        except BaseException:
            for log in (coordinator_log, generator_log):
                if log.exists():
                    print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")
            raise


# --- provision.sh behaviour -----------------------------------------------------


def _provision(*args, env=None):
    full_env = dict(os.environ)
    for name in ("STRESSGRID_ROOT", "STRESSGRID_WHEEL", "STRESSGRID_SKIP_SYSTEM",
                 "STRESSGRID_ROLE", "STRESSGRID_FILES", "STRESSGRID_PYTHON"):
        full_env.pop(name, None)
    full_env.update(env or {})
    return run(["bash", str(PROVISION), *args], check=False, env=full_env, timeout=900)


def test_provision_rejects_unknown_role(tmp_path):
    result = _provision("--root", str(tmp_path), "--skip-system", "--wheel", str(tmp_path), "database")
    assert result.returncode != 0
    assert "unknown ROLE 'database'" in result.stderr


def test_provision_refuses_system_steps_into_a_scratch_root(tmp_path):
    result = _provision("--root", str(tmp_path), "--wheel", str(tmp_path), "generator")
    assert result.returncode != 0
    assert "--skip-system" in result.stderr
    assert not (tmp_path / "opt").exists()


def test_provision_wants_exactly_one_package_in_a_directory(tmp_path):
    packages = tmp_path / "dist"
    packages.mkdir()
    for name in ("stressgrid-0.1.0-py3-none-any.whl", "stressgrid-0.2.0-py3-none-any.whl"):
        (packages / name).write_bytes(b"")
    result = _provision("--root", str(tmp_path / "root"), "--skip-system", "--wheel", str(packages), "generator")
    assert result.returncode != 0
    assert "found 2" in result.stderr


def _stand_in_sdist(directory):
    """A minimal source archive named like the project's, with both packages.

    It checks the script's source-archive route (pip compiling a .tar.gz)
    without compiling the real project a second time.
    """
    base = "stressgrid-0.0.1"
    members = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: stressgrid\nVersion: 0.0.1\n",
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "setuptools.build_meta"\n'
            '[project]\nname = "stressgrid"\nversion = "0.0.1"\n'
            '[tool.setuptools]\npackages = ["stressgrid", "coordinator_app"]\n'
        ),
        "stressgrid/__init__.py": "STAND_IN = True\n",
        "coordinator_app/__init__.py": "",
    }
    archive = directory / f"{base}.tar.gz"
    source = directory / "stand-in-source"
    with tarfile.open(archive, "w:gz") as tar:
        for name, content in members.items():
            path = source / base / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            tar.add(path, arcname=f"{base}/{name}")
    return archive


def test_provision_installs_from_a_source_archive_in_a_directory(tmp_path):
    packages = tmp_path / "dist"
    packages.mkdir()
    _stand_in_sdist(packages)
    root = tmp_path / "root"
    result = _provision(
        "--skip-system", "generator",
        env={"STRESSGRID_ROOT": str(root), "STRESSGRID_WHEEL": str(packages),
             "STRESSGRID_PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    python = root / VENV_PYTHON.lstrip("/")
    run([str(python), "-I", "-c", "import stressgrid, coordinator_app; assert stressgrid.STAND_IN"])
    assert (root / "opt/stressgrid/VERSION").read_text().strip() == "0.0.1"
    # Role "generator" installs only the generator's unit and env file.
    assert (root / "etc/systemd/system" / UNITS["generator"]).is_file()
    assert not (root / "etc/systemd/system" / UNITS["coordinator"]).exists()
    assert not (root / "etc/default/stressgrid-coordinator.env").exists()
    assert (root / SYSCTL_PATH).is_file()


def test_provision_keeps_existing_settings(tmp_path):
    packages = tmp_path / "dist"
    packages.mkdir()
    archive = _stand_in_sdist(packages)
    root = tmp_path / "root"
    env_file = root / "etc/default/stressgrid-generator.env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("COORDINATOR_URL=tcp://10.1.2.3:9696\n")
    result = _provision("--root", str(root), "--skip-system", "--wheel", str(archive),
                        "--python", sys.executable, "generator")
    assert result.returncode == 0, result.stdout + result.stderr
    assert env_file.read_text() == "COORDINATOR_URL=tcp://10.1.2.3:9696\n"


# --- startup scripts rendered by Terraform -----------------------------------------


def _fake_systemctl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    fake.chmod(0o755)
    return bin_dir, log


def _run_startup(script_text, tmp_path):
    script = tmp_path / "startup.sh"
    script.write_text(script_text)
    root = tmp_path / "root"
    bin_dir, log = _fake_systemctl(tmp_path)
    env = dict(os.environ, STRESSGRID_ROOT=str(root), PATH=f"{bin_dir}:{os.environ['PATH']}")
    run(["bash", str(script)], env=env)
    return root, log.read_text().splitlines()


COORDINATOR_KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
JOIN_TOKEN = "sgj1_" + "Ab-_" * 21 + "Ab"

def test_generator_startup_points_at_the_coordinator(tmp_path):
    terraform = require_tool("terraform", "terraform (HashiCorp's release)")
    script = render_template(
        terraform, TEMPLATES / "generator-startup.sh.tftpl",
        {"coordinator_url": "tcp://10.0.3.7:9696", "join_token": JOIN_TOKEN}, tmp_path,
    )
    root, calls = _run_startup(script, tmp_path)
    env_file = root / "etc/default/stressgrid-generator.env"
    assert env_file.read_text() == f"COORDINATOR_URL=tcp://10.0.3.7:9696\nSTRESSGRID_JOIN_TOKEN={JOIN_TOKEN}\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert calls == [
        "enable stressgrid-generator.service",
        "restart stressgrid-generator.service",
    ]


@pytest.mark.parametrize("aws_region", ["us-west-2", ""])
def test_coordinator_startup_writes_token_and_region(tmp_path, aws_region):
    terraform = require_tool("terraform", "terraform (HashiCorp's release)")
    script = render_template(
        terraform, TEMPLATES / "coordinator-startup.sh.tftpl",
        {"management_token": "T0kenT0ken", "management_port": 8000,
         "generator_port": 9696, "aws_region": aws_region,
         "coordinator_key": COORDINATOR_KEY, "join_token": JOIN_TOKEN},
        tmp_path,
    )
    root, calls = _run_startup(script, tmp_path)
    env_file = root / "etc/default/stressgrid-coordinator.env"
    expected = ["STRESSGRID_TOKEN=T0kenT0ken", "MANAGEMENT_PORT=8000", "GENERATORS_PORT=9696"]
    if aws_region:
        expected.append(f"AWS_REGION={aws_region}")
    assert env_file.read_text().splitlines() == expected
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # The fleet's credentials land in the data directory, owner-only, as the coordinator reads them.
    data_dir = root / "var/lib/stressgrid"
    assert (data_dir / "coordinator.key").read_text() == COORDINATOR_KEY + "\n"
    assert (data_dir / "join-token").read_text() == JOIN_TOKEN + "\n"
    assert {stat.S_IMODE((data_dir / name).stat().st_mode) for name in ("coordinator.key", "join-token")} == {0o600}
    assert calls == [
        "enable stressgrid-coordinator.service",
        "restart stressgrid-coordinator.service",
    ]
