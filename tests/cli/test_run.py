"""``python -m stressgrid.cli run`` end to end: a real coordinator, generator and demo target."""
import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse

import pytest

from stressgrid.plan.result import is_host_error
from tests.cli.support import TELEMETRY_LINE, Cli, cli_env, run_cli
from tests.conftest import EXAMPLES
from tests.coordinator.support import coordinator_process, wait_until
from tests.support.servers import free_port, nginx

DEMO_SCRIPT = EXAMPLES / "demo_http.py"
# Short runs: ramp-up 0.5 s, sustain 1.5 s, ramp-down 0.5 s.
FAST = ["--rampup", "0.5", "--sustain", "1.5", "--rampdown", "0.5", "--cooldown", "0"]


def target_flags(port):
    return ["-t", "127.0.0.1", "--target-port", port]


def coordinator_flag(coordinator):
    # A bare host:port, as a user would type it.
    return ["-c", f"127.0.0.1:{coordinator.management_port}"]


def archive_of(coordinator, url):
    """The members of the archive at ``url``, fetched from the coordinator: {name: bytes}."""
    path = urllib.parse.urlsplit(url).path
    status, data, _ = coordinator.api.get(path)
    assert status == 200, data
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: archive.extractfile(member).read()
                for member in archive.getmembers() if member.isfile()}


def run_detail(coordinator, url):
    run_id = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1][:-len(".tar.gz")]
    status, detail, _ = coordinator.api.get(f"/api/runs/{run_id}")
    assert status == 200, detail
    return detail


def run_count(coordinator):
    status, body, _ = coordinator.api.get("/api/runs")
    assert status == 200
    return len(body["runs"])


def last_error_line(stderr):
    return stderr.strip().splitlines()[-1]


def test_a_run_shows_telemetry_and_prints_only_the_archive_url(grid, demo_target, tmp_path):
    code, out, err = run_cli(["run", "cli smoke", DEMO_SCRIPT, *coordinator_flag(grid),
                              *target_flags(demo_target), "-s", 40, *FAST], tmp_path)
    assert code == 0, err
    # stdout is exactly one line, the archive URL: `wget $(...)` fetches it.
    assert re.fullmatch(rf"http://127\.0\.0\.1:{grid.management_port}/results/"
                        r"cli-smoke-\d{14}\.tar\.gz", out), out
    # Telemetry went to stderr while the run went on, then the summary.
    assert any(TELEMETRY_LINE.match(line) and "devices" in line for line in err.splitlines()), err
    assert re.search(r"run cli-smoke-\d{14} done after", err)
    files = archive_of(grid, out)
    run_id = urllib.parse.urlsplit(out).path.rsplit("/", 1)[-1][:-len(".tar.gz")]
    csv_text = files[f"{run_id}/results.csv"].decode()
    header, *rows = csv_text.splitlines()
    columns = header.split(",")
    assert rows and int(rows[-1].split(",")[columns.index("response_count")]) > 0
    plan = json.loads(files[f"{run_id}/plan.json"])
    # 40 devices on one generator: 4 ramp steps of 10; the ramp seconds spread over them.
    opts = plan["opts"]
    assert (opts["ramp_steps"], opts["rampup_step_ms"], opts["rampdown_step_ms"],
            opts["sustain_ms"], opts["cooldown_ms"]) == (4, 125, 125, 1500, 0)
    assert plan["blocks"][0]["script"] == DEMO_SCRIPT.read_text()
    assert plan["blocks"][0]["size"] == 40
    assert [(a["host"], a["port"], a["protocol"]) for a in plan["addresses"]] == \
        [("127.0.0.1", demo_target, "http")]
    detail = run_detail(grid, out)
    assert detail["state"] == "done" and detail["summary"]["devices_started"] == 40


def test_ctrl_c_aborts_the_run_and_still_prints_its_archive(grid, demo_target, tmp_path):
    cli = Cli(["run", "interrupted", DEMO_SCRIPT, *coordinator_flag(grid),
               *target_flags(demo_target), "-s", 20, "--rampup", 0, "--sustain", 600], tmp_path)
    try:
        cli.wait_telemetry()
        interrupted_at = time.monotonic()
        cli.process.send_signal(signal.SIGINT)
        code, out, err = cli.finish(timeout=30)
    finally:
        cli.kill()
    assert code == 130, err
    assert time.monotonic() - interrupted_at < 20  # aborted, not sustained for 10 minutes
    assert "interrupted: aborting run" in err
    assert len(out.splitlines()) == 1 and out.endswith(".tar.gz"), out
    detail = run_detail(grid, out)
    assert detail["state"] == "aborted"
    files = archive_of(grid, out)
    assert any(name.endswith("/results.csv") for name in files)


def test_errors_counted_during_the_run_exit_1_with_the_archive(grid, demo_target, tmp_path):
    script = tmp_path / "failing.py"
    script.write_text('status, _, _ = await get("/status/503")\n'
                      'assert status == 200, f"got {status}"\n')
    code, out, err = run_cli(["run", "failing", script, *coordinator_flag(grid),
                              *target_flags(demo_target), "-s", 5, *FAST], tmp_path)
    assert code == 1, err
    assert out.endswith(".tar.gz") and len(out.splitlines()) == 1
    assert re.search(r"^stressgrid: run failing-\d{14} counted \d+ errors: assertion_error \d+$",
                     last_error_line(err)), err
    assert "AssertionError: got 503" in err  # the first traceback line of the error
    summary = run_detail(grid, out)["summary"]
    assert summary["errors"]["assertion_error_count"]["count"] > 0


def test_a_script_that_holds_the_loop_shows_its_lag_beside_cpu_live_and_in_the_summary(grid, demo_target,
                                                                                      tmp_path):
    script = tmp_path / "blocking.py"
    script.write_text("import time\n"
                      "time.sleep(0.3)  # holds the worker's loop\n"
                      "await get('/')\n")
    code, out, err = run_cli(["run", "lagging", script, *coordinator_flag(grid),
                              *target_flags(demo_target), "-s", 1, *FAST], tmp_path)
    assert code == 0, err  # a warning about the results, not an error of the target
    lags = [float(m.group(1)) for m in re.finditer(r"loop lag p99 (\d+(?:\.\d+)?)ms", err)]
    assert lags and max(lags) >= 150, err  # woken up to 0.3 s late, minus what was left of its 0.1 s sleep
    assert "results suspect" in err
    assert re.search(r"peak loop lag p99 +\d+ms  over 100ms: the latencies include the generator's delay", err), err
    assert "generator_loop_lag_high: workers' event loops woke up" in err
    detail = run_detail(grid, out)
    assert detail["summary"]["maxima"]["max_loop_lag_p99_us"] >= 150_000
    assert [e["kind"] for e in detail["summary"]["events"]].count("generator_loop_lag_high") == 1


def test_error_statuses_are_warnings_a_threshold_can_fail_on_and_checks_show_their_pass_share(
        grid, demo_target, tmp_path):
    script = tmp_path / "statuses.py"
    script.write_text('status, _, _ = await get("/status/503", name="status_page")\n'
                      'check("available", status == 200)\n'
                      'check("answered", status > 0)\n'
                      'await delay(50)\n')
    code, out, err = run_cli(["run", "statuses", script, *coordinator_flag(grid), *target_flags(demo_target),
                              "-s", 2, *FAST, "--threshold", "response_5xx count == 0"], tmp_path)
    assert code == 99, err   # the threshold failed; no error was counted
    summary = run_detail(grid, out)["summary"]
    counters = summary["summary"]["counters"]
    assert counters["response_5xx"]["total"] == counters["response"]["total"] > 0
    # No error was counted (the machine's TCP retransmits are a host warning, not the run's).
    assert not [name for name in summary.get("errors") or {} if not is_host_error(name)], summary["errors"]
    assert re.search(r"^  response_5xx +[\d,]+ ", err, re.M), err
    assert "4xx and 5xx responses are warnings, not errors" in err
    assert re.search(r"^  available +0\.00% +0 +[\d,]+$", err, re.M), err
    responses = counters["response"]["total"]
    assert summary["summary"]["requests"]["status_page"]["response_5xx"] == responses
    assert re.search(rf"^  status_page +{responses:,} +[\d.]+( +\d+(\.\d+)?(us|µs|ms)){{4}} +0 +{responses:,}$",
                     err, re.M), err
    assert re.search(r"^  answered +100\.00% +([\d,]+) +\1$", err, re.M), err
    assert re.search(r"FAIL  response_5xx count == 0 +([\d,]+)", err), err


def test_a_script_error_is_caught_before_submission_with_its_line(grid, demo_target, tmp_path):
    script = tmp_path / "unawaited.py"
    script.write_text("path = '/'\nstatus = get(path)\n")
    before = run_count(grid)
    code, out, err = run_cli(["run", "unawaited", script, *coordinator_flag(grid),
                              *target_flags(demo_target)], tmp_path)
    assert code == 2 and out == ""
    line = last_error_line(err)
    assert line.startswith(f"stressgrid: script error: {script}:2:10: ") and "await" in line, line
    assert run_count(grid) == before


def test_every_script_problem_is_shown_in_line_order_by_the_cli_and_the_api(grid, tmp_path):
    # The typo on line 1 is found by a later check than the missing await on line 2.
    source = "x = lenn('/')\nstatus = get('/')\n"
    script = tmp_path / "two-mistakes.py"
    script.write_text(source)
    code, out, err = run_cli(["run", "two", script, *coordinator_flag(grid)], tmp_path)
    assert code == 2 and out == ""
    reported = [line for line in err.splitlines() if line.startswith("stressgrid: ")]
    assert reported == [
        f"stressgrid: script error: {script}:1:5: name 'lenn' is not defined; did you mean 'len'?",
        f"stressgrid: script error: {script}:2:10: get() must be awaited: write 'await get(...)'",
    ], err
    status, body, _ = grid.api.post("/api/plans/check", {
        "name": "two", "addresses": [{"host": "127.0.0.1", "port": 1, "protocol": "http"}],
        "blocks": [{"script": source, "size": 1}]})
    assert status == 400
    error = body["error"]
    assert (error["field"], error["line"], error["column"]) == ("blocks[0].script", 1, 5)
    assert [(p["line"], p["column"]) for p in error["problems"]] == [(1, 5), (2, 10)]
    assert "line 2, column 10: get() must be awaited" in error["message"]


def test_a_plan_the_coordinator_rejects_names_the_field(grid, tmp_path):
    before = run_count(grid)
    code, out, err = run_cli(["run", "nowhere", DEMO_SCRIPT, *coordinator_flag(grid),
                              "-t", "no-such-host.invalid", *FAST], tmp_path)
    assert code == 2 and out == ""
    line = last_error_line(err)
    assert "the coordinator rejected the plan" in line and "addresses[0].host" in line, line
    assert run_count(grid) == before


@pytest.mark.parametrize("args, message", [
    (["run", "missing", "no-such-script.py"], "script file no-such-script.py does not exist"),
    (["run", "params", DEMO_SCRIPT, "--script-params", "{not json"], "--script-params is not valid JSON"),
    (["run", "params", DEMO_SCRIPT, "--script-params", "[1]"], "--script-params must be a JSON object"),
    (["run", "noscript"], "SCRIPT_FILE is required"),
    (["run", "demo", DEMO_SCRIPT, "--demo-target"], "--demo-target needs --local"),
    (["run", "plan", "--plan", "no-such-plan.toml"], "plan file no-such-plan.toml does not exist"),
])
def test_usage_errors_exit_2_before_contacting_anyone(tmp_path, args, message):
    # No coordinator listens on the default address's port here; nothing must be contacted.
    code, out, err = run_cli([*args, "-c", f"127.0.0.1:{free_port()}"], tmp_path)
    assert code == 2 and out == ""
    assert message in last_error_line(err), err


def test_a_bad_option_value_exits_2(tmp_path):
    code, out, err = run_cli(["run", "x", DEMO_SCRIPT, "-s", "0"], tmp_path)
    assert code == 2 and out == "" and "--size" in err


def test_an_unreachable_coordinator_exits_3(tmp_path):
    port = free_port()
    code, out, err = run_cli(["run", "x", DEMO_SCRIPT, "-c", f"http://127.0.0.1:{port}"], tmp_path)
    assert code == 3 and out == ""
    assert last_error_line(err).startswith(f"stressgrid: cannot reach the coordinator at "
                                           f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def web_servers(tmp_path_factory):
    """A real nginx that is not a coordinator, answering in several ways: {kind: port}."""
    directory = tmp_path_factory.mktemp("not-a-coordinator")
    (directory / "www").mkdir()
    (directory / "www" / "index.html").write_text("<html><body>a web site</body></html>\n")
    ports = {kind: free_port() for kind in ("static", "html", "json", "bad gateway")}
    blocks = f"""
    server {{ listen 127.0.0.1:{ports['static']}; root {directory / 'www'}; }}
    server {{ listen 127.0.0.1:{ports['html']}; default_type text/html;
             location / {{ return 200 '<html>every path</html>'; }} }}
    server {{ listen 127.0.0.1:{ports['json']}; default_type application/json;
             location / {{ return 200 '{{"ok": true}}'; }} }}
    server {{ listen 127.0.0.1:{ports['bad gateway']};
             location / {{ proxy_pass http://127.0.0.1:{free_port()}; }} }}
    """
    with nginx(directory, blocks):
        yield ports


@pytest.mark.parametrize("kind", ["static", "html", "json", "bad gateway"])
def test_a_web_server_that_is_not_a_coordinator_exits_3_with_one_line(web_servers, kind, tmp_path):
    port = web_servers[kind]
    code, out, err = run_cli(["run", "x", DEMO_SCRIPT, "-c", f"http://127.0.0.1:{port}"], tmp_path)
    assert code == 3 and out == ""
    assert err.splitlines() == [err.strip()], err  # one line: no traceback
    assert err.startswith(f"stressgrid: http://127.0.0.1:{port}/api/state ")
    assert err.rstrip().endswith("is this a Stressgrid coordinator?"), err


def test_token_refused_exits_3_and_no_generators_exits_4(tmp_path):
    with coordinator_process(tmp_path, token="right-token") as coordinator:
        flags = ["-c", f"localhost:{coordinator.management_port}"]
        code, out, err = run_cli(["run", "x", DEMO_SCRIPT, *flags, "--token", "wrong"], tmp_path)
        assert code == 3 and out == "" and "refused the token (401)" in last_error_line(err)
        code, out, err = run_cli(["run", "x", DEMO_SCRIPT, *flags], tmp_path)
        assert code == 3 and "pass --token or set STRESSGRID_TOKEN" in last_error_line(err)
        # The token from the environment gets through; this coordinator has no generator.
        code, out, err = run_cli(["run", "x", DEMO_SCRIPT, *flags], tmp_path,
                                 env={"STRESSGRID_TOKEN": "right-token"})
        assert code == 4 and out == ""
        # The hint names this coordinator's generator port, not the default one.
        assert last_error_line(err) == (
            f"stressgrid: no generator is registered with the coordinator at "
            f"http://localhost:{coordinator.management_port}; start one with 'COORDINATOR_URL="
            f"tcp://localhost:{coordinator.generator_port} python -m stressgrid.generator'"), err


def test_a_busy_coordinator_exits_5(grid, demo_target, tmp_path):
    plan = {"name": "occupying", "addresses": [{"host": "127.0.0.1", "port": demo_target,
                                                 "protocol": "http"}],
            "blocks": [{"script": "await delay(1000)\n", "size": 1}],
            "opts": {"rampup_step_ms": 0, "sustain_ms": 600000, "rampdown_step_ms": 0,
                     "cooldown_ms": 0}}
    status, run, _ = grid.api.post("/api/runs", plan)
    assert status == 201, run
    try:
        code, out, err = run_cli(["run", "second", DEMO_SCRIPT, *coordinator_flag(grid),
                                  *target_flags(demo_target)], tmp_path)
        assert code == 5 and out == ""
        assert f"run {run['id']} is in progress" in last_error_line(err)
    finally:
        grid.api.post(f"/api/runs/{run['id']}/abort")
        grid.api.wait_run_finished(run["id"])
    wait_until(lambda: grid.api.state()["run"] is None, message="the coordinator to be idle")


def test_a_toml_plan_file_with_flags_over_it(grid, demo_target, tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "visit.py").write_text(DEMO_SCRIPT.read_text())
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(f"""
name = "from-toml"

[[addresses]]
host = "127.0.0.1"
port = {demo_target}
protocol = "http"

[[blocks]]
script_file = "scripts/visit.py"
size = 20
params = {{ delay_ms = 50 }}

[opts]
ramp_steps = 2
rampup_step_ms = 250
sustain_ms = 600000
rampdown_step_ms = 250
cooldown_ms = 0
timeout_ms = 2000
""")
    # The sustain flag overrides the file's ten minutes; the rest comes from the file.
    code, out, err = run_cli(["run", "--plan", plan_file, *coordinator_flag(grid),
                              "--sustain", "1", "--quiet"], tmp_path)
    assert code == 0, err
    # --quiet: no telemetry lines, still the summary.
    assert not any(TELEMETRY_LINE.match(line) for line in err.splitlines())
    assert re.search(r"run from-toml-\d{14} done after", err)
    plan = run_detail(grid, out)["plan"]
    assert plan["name"] == "from-toml"
    assert plan["blocks"] == [{"script": DEMO_SCRIPT.read_text(), "params": {"delay_ms": 50},
                               "size": 20}]
    assert {k: plan["opts"][k] for k in ("ramp_steps", "rampup_step_ms", "sustain_ms",
                                         "rampdown_step_ms", "timeout_ms")} == \
        {"ramp_steps": 2, "rampup_step_ms": 250, "sustain_ms": 1000, "rampdown_step_ms": 250,
         "timeout_ms": 2000}


def test_block_flags_on_a_plan_with_several_blocks_exit_2(tmp_path):
    plan_file = tmp_path / "plan.json"
    block = {"script": "await delay(10)\n", "size": 1}
    plan_file.write_text(json.dumps({"name": "two", "blocks": [block, block],
                                     "addresses": [{"host": "127.0.0.1", "port": 1,
                                                    "protocol": "http"}]}))
    code, out, err = run_cli(["run", "--plan", plan_file, "-s", "5"], tmp_path)
    assert code == 2 and "--size cannot be applied to a plan with 2 blocks" in err


def test_on_a_terminal_telemetry_is_redrawn_in_place_and_errors_are_red(grid, demo_target,
                                                                        tmp_path):
    script = tmp_path / "failing.py"
    script.write_text('status, _, _ = await get("/status/500")\n'
                      'assert status == 200, f"got {status}"\n')
    controller, terminal = pty.openpty()
    output = []

    def read_terminal():
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            output.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    env = cli_env({"TERM": "xterm", "COLUMNS": "120"})
    process = subprocess.Popen(
        [sys.executable, "-m", "stressgrid.cli", "run", "tty", str(script),
         *coordinator_flag(grid), *map(str, target_flags(demo_target)), "-s", "5", *FAST],
        cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    try:
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    os.close(controller)
    screen = b"".join(output).decode()
    assert process.returncode == 1
    assert out.decode().strip().endswith(".tar.gz")
    assert re.search(r"\x1b\[\d+A\x1b\[J", screen)  # the live block is redrawn in place
    assert re.search(r"\x1b\[31m\s+assertion_error", screen)  # errors in red
    assert "\x1b[31mstressgrid: run tty-" in screen  # and the reason line too
