"""``--rate`` and its options: an arrival-rate run from the command line over a local fleet of two
workers, counted at nginx; nonsense refused naming the option."""
import html.parser
import json
import pathlib

import pytest

from stressgrid.formatting import format_us
from tests.cli.support import run_cli
from tests.cli.test_local import archive_file
from tests.support.servers import requests_logged

VISIT = "await get('/visit', name='visit')\n"


class _Tables(html.parser.HTMLParser):
    """``{table class: {first cell: [cells]}}`` of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tables, self.table, self.row, self.cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.table = self.tables.setdefault(dict(attrs).get("class", ""), {})
        elif tag == "tr":
            self.row = []
        elif tag == "td":
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag == "td":
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row:
            self.table[self.row[0]] = self.row
            self.row = None


def report_tables(page):
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def visits(root):
    return requests_logged(root).count("/visit")


def test_a_constant_rate_over_two_workers_starts_every_scheduled_iteration(tmp_path, logged_nginx):
    port, root = logged_nginx
    (tmp_path / "visit.py").write_text(VISIT)
    code, out, err = run_cli(["run", "visits", tmp_path / "visit.py", "--local", "--workers", "2",
                              "--target-port", port, "-t", "127.0.0.1", "-s", 200, "--rate", 50,
                              "--sustain", 3, "--cooldown", 0], tmp_path, timeout=90)
    assert code == 0, err
    assert "50 iterations/s for 3 s (uniform) on a pool of 200 devices" in err
    summary = json.loads(archive_file(pathlib.Path(out), "summary.json"))["summary"]
    # 50 a second for 3 s, shared by two workers (one of which may be ready later than the
    # other): 150 iterations, each one visit at nginx.
    assert summary["counters"]["iteration"]["total"] == 150, err
    assert visits(root) == 150 == summary["histograms"]["intended_iteration_us"]["count"]
    assert "dropped_iteration" not in summary["counters"]
    # The rate over the sustain phase counts its last second too, which reached the
    # coordinator after the phase had ended: all 150 iterations over the window's length
    # (3 s, and what the coordinator's clock added on a busy machine: a timed bound would fail
    # there; this one does only when an iteration is left out).
    window = summary["rate_window"]
    assert window["phase"] == "sustain"
    assert summary["counters"]["iteration"]["rate"] == pytest.approx(150 / window["seconds"], rel=1e-3)
    # The HTML report's tables hold the open model's figures and their intended twins.
    tables = report_tables(archive_file(pathlib.Path(out), "report.html"))
    assert tables["counters"]["iteration"][1] == "150"
    for name in ("iteration_us", "intended_iteration_us", "iteration_start_delay_us", "headers_us",
                 "intended_headers_us"):
        assert tables["histograms"][name][1] == f"{summary['histograms'][name]['count']:,}", name
    # The named request's row has the p99 of its intended twin.
    twin = summary["histograms"]["request_visit_intended_headers_us"]["p99"]
    assert tables["requests"]["visit"][7] == format_us(twin)


def test_a_ramp_of_rate_steps_follows_its_line(tmp_path, logged_nginx):
    port, root = logged_nginx
    (tmp_path / "visit.py").write_text(VISIT)
    # 0 -> 40 a second over 2 s, then 40 a second for 1 s: 40 + 40 iterations.
    code, out, err = run_cli(["run", "ramp", tmp_path / "visit.py", "--local", "--workers", "1",
                              "--target-port", port, "-t", "127.0.0.1", "-s", 100, "--rate-steps", "2:40,1:40",
                              "--cooldown", 0], tmp_path, timeout=90)
    assert code == 0, err
    assert visits(root) == 80, err


@pytest.mark.parametrize("flags, named", [
    (["--rate", "-5"], "--rate"),
    (["--rate", "10", "--max-devices", "3", "--pre-allocated", "5"], "opts.pre_allocated_devices"),
    (["--rate-steps", "2:40,x:5"], "--rate-steps"),
    (["--max-devices", "3"], "--rate or --rate-steps"),
])
def test_nonsense_is_refused_naming_the_option(tmp_path, flags, named):
    (tmp_path / "visit.py").write_text(VISIT)
    code, out, err = run_cli(["run", "bad", tmp_path / "visit.py", "--local", "--target-port", 9, *flags],
                             tmp_path, timeout=60)
    assert code == 2, err
    assert named in err, err
    assert out == ""


def test_iterations_beyond_the_pool_are_dropped_counted_and_fail_the_run(tmp_path, logged_nginx):
    port, root = logged_nginx
    (tmp_path / "slow.py").write_text(VISIT + "await delay(500)\n")
    # 20 a second on 2 devices busy half a second each: at most 4 a second can start.
    code, out, err = run_cli(["run", "pool", tmp_path / "slow.py", "--local", "--workers", "1",
                              "--target-port", port, "-t", "127.0.0.1", "-s", 2, "--rate", 20,
                              "--sustain", 2, "--cooldown", 0], tmp_path, timeout=90)
    assert code == 1, err
    assert "iterations_dropped" in err, err
    summary = json.loads(archive_file(pathlib.Path(out), "summary.json"))["summary"]
    started = summary["counters"]["iteration"]["total"]
    dropped = summary["counters"]["dropped_iteration"]["total"]
    assert started + dropped == 40 and dropped >= 20
    assert visits(root) == started


# Each pass takes over 80 ms and its tick comes every 50 ms: every pace is late, by 30 to 80 ms.
PACED_VISIT = "import time\nawait pace(50)\nawait get('/visit', name='visit')\ntime.sleep(0.08)\n"


def test_thresholds_judge_the_intended_twins_and_the_missed_ticks(tmp_path, logged_nginx):
    port, root = logged_nginx
    (tmp_path / "paced.py").write_text(PACED_VISIT)
    code, out, err = run_cli(["run", "paced", tmp_path / "paced.py", "--local", "--workers", "1",
                              "--target-port", port, "-t", "127.0.0.1", "-s", 2, "--rampup", "0.5", "--sustain", 2,
                              "--rampdown", "0.5", "--cooldown", 0,
                              "--threshold", "request_visit_headers_us p50 < 20ms",
                              "--threshold", "request_visit_intended_headers_us p50 < 20ms",
                              "--threshold", "missed_tick count == 0"], tmp_path, timeout=90)
    assert code == 99, err
    archived = json.loads(archive_file(pathlib.Path(out), "summary.json"))
    assert [r["state"] for r in archived["verdict"]["thresholds"]] == ["passed", "failed", "failed"], err
    histograms = archived["summary"]["histograms"]
    twin, plain = histograms["request_visit_intended_headers_us"], histograms["request_visit_headers_us"]
    assert twin["count"] == plain["count"] == histograms["intended_headers_us"]["count"]
    # nginx served those, and at most one more a device: a request in flight at the stop.
    assert 0 <= visits(root) - twin["count"] <= 2
    assert twin["p50"] >= 25_000 > plain["p50"]
    assert archived["summary"]["counters"]["missed_tick"]["total"] > 0
