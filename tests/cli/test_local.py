"""``--local``: the CLI starts a coordinator, a generator and the demo target itself."""
import csv
import io
import json
import os
import pathlib
import shutil
import signal
import tarfile

import psutil

from tests.cli.support import Cli, alive, run_cli, wait_gone
from tests.conftest import ROOT

# The README's first command, with short durations.
README_COMMAND = ["run", "demo", "examples/demo_http.py", "--local", "--demo-target", "-s", "100",
                  "--sustain", "20"]
SHORT = ["--sustain", "2", "--rampup", "1", "--rampdown", "0.5", "--cooldown", "0"]


def readme_command(tmp_path, *extra):
    """The README command run from ``tmp_path`` (the script path made absolute)."""
    args = [str(ROOT / a) if a.startswith("examples/") else a for a in README_COMMAND]
    return Cli([*args, *extra], tmp_path)


def local_data_dir(processes):
    """The temporary directory of the local coordinator, from its command line."""
    for process in processes:
        command = process.cmdline()
        if "coordinator_app" in command:
            return pathlib.Path(command[command.index("--data-dir") + 1]).parent
    raise AssertionError(f"no coordinator among {[p.cmdline() for p in processes]}")


def archive_file(archive_path, name):
    with tarfile.open(archive_path) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(f"/{name}"))
        return archive.extractfile(member).read().decode()


def csv_rows(archive_path):
    return list(csv.DictReader(io.StringIO(archive_file(archive_path, "results.csv"))))


def test_the_readme_demo_runs_a_real_load_test_and_leaves_only_the_archive(tmp_path):
    cli = readme_command(tmp_path, *SHORT)
    try:
        cli.wait_telemetry(timeout=60)
        children = cli.descendants()
        directory = local_data_dir(children)
        commands = [" ".join(p.cmdline()) for p in children]
        code, out, err = cli.finish(timeout=60)
    finally:
        cli.kill()
    assert code == 0, err
    # Coordinator, demo target, generator agent and its workers (one per core).
    assert any("-m stressgrid.targets.demo" in c for c in commands), commands
    assert sum("-m stressgrid.generator.worker" in c for c in commands) == len(os.sched_getaffinity(0)), commands
    assert "local mode: coordinator on http://127.0.0.1:" in err
    # The only stdout line is the path of the archive, downloaded into the current directory.
    archive = pathlib.Path(out)
    assert len(out.splitlines()) == 1 and archive.parent == tmp_path and archive.is_file()
    assert archive.name.startswith("demo-") and archive.name.endswith(".tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]
    rows = csv_rows(archive)
    assert int(rows[-1]["response_count"]) > 100 and int(rows[-1]["request_index_response_2xx_count"]) > 0
    summary = json.loads(archive_file(archive, "summary.json"))
    # The example names its requests and checks its answers: a row per page, every check passed.
    assert set(summary["summary"]["requests"]) == {"index", "json"}
    assert {name: check["pass_percent"] for name, check in summary["summary"]["checks"].items()} == \
        {"index_ok": 100.0, "json_ok": 100.0}
    assert summary["state"] == "done" and summary["maxima"]["active_device_number"] == 100
    # Everything the CLI started is gone, and so are its temporary files.
    assert wait_gone(children) == []
    assert not directory.exists()


def test_ctrl_c_in_local_mode_aborts_downloads_and_stops_everything(tmp_path):
    cli = readme_command(tmp_path, "--sustain", "600", "--rampup", "0.5", "--workers", "1")
    try:
        cli.wait_telemetry(timeout=60)
        children = cli.descendants()
        directory = local_data_dir(children)
        cli.process.send_signal(signal.SIGINT)
        code, out, err = cli.finish(timeout=60)
    finally:
        cli.kill()
    assert code == 130, err
    assert "interrupted: aborting run" in err
    archive = pathlib.Path(out)
    assert len(out.splitlines()) == 1 and archive.is_file() and archive.parent == tmp_path
    assert csv_rows(archive)
    assert wait_gone(children) == []
    assert not directory.exists()


def test_children_do_not_outlive_a_killed_cli(tmp_path):
    cli = readme_command(tmp_path, "--sustain", "600", "--rampup", "0.5", "--workers", "1")
    try:
        cli.wait_telemetry(timeout=60)
        children = cli.descendants()
        directory = local_data_dir(children)
        cli.process.kill()  # SIGKILL: no cleanup code runs in the CLI
        cli.finish(timeout=10)
        # The kernel tells the direct children (parent-death signal); they stop their own.
        assert wait_gone(children, timeout=30) == []
    finally:
        cli.kill()
        for process in alive(locals().get("children", [])):
            process.kill()
    # Only the temporary directory stays behind after a SIGKILL.
    assert directory.name.startswith("stressgrid-local-")
    shutil.rmtree(directory, ignore_errors=True)


def test_a_script_error_in_local_mode_starts_nothing(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("while True:\n    await get('/'\n")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code, out, err = run_cli(["run", "broken", script, "--local", "--demo-target"], tmp_path)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith(f"stressgrid: script error: {script}:2:")
    assert "local mode" not in err
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before
