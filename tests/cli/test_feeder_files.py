"""``--data FILE`` and a plan's ``data_file``: feeder rows from the command line, counted at the target."""
import collections
import json
import pathlib

import pytest

from tests.cli.support import run_cli
from tests.cli.test_local import SHORT, archive_file
from tests.conftest import ROOT
from tests.support.servers import requests_logged

# Each device asks for its own user's page once, then idles: nginx's access log holds the rows used.
ONE_REQUEST = "await get('/users/' + row['user'], name='user_page')\nawait delay(600000)\n"


def pages_served(root):
    """How many times nginx served each ``/users/<name>`` page."""
    log = requests_logged(root)
    return collections.Counter(path.rsplit("/", 1)[1] for path in log if path.startswith("/users/"))


def test_every_row_of_a_csv_file_reaches_one_device_of_the_fleet(tmp_path, logged_nginx):
    port, root = logged_nginx
    (tmp_path / "page.py").write_text(ONE_REQUEST)
    names = [f"user{i:02}" for i in range(12)]
    (tmp_path / "users.csv").write_text("user,group\n" + "".join(f"{n},g{i % 3}\n" for i, n in enumerate(names)))
    # 30 devices over 12 rows on two workers: rows 0..5 are used three times, the rest twice.
    code, out, err = run_cli(["run", "users", tmp_path / "page.py", "--local", "--workers", "2",
                              "--target-port", port, "-t", "127.0.0.1", "-s", 30, "--data",
                              tmp_path / "users.csv", *SHORT], tmp_path, timeout=90)
    assert code == 0, err
    assert pages_served(root) == {n: 3 if i < 6 else 2 for i, n in enumerate(names)}
    summary = json.loads(archive_file(pathlib.Path(out), "summary.json"))["summary"]
    assert summary["requests"]["user_page"]["count"] == 30


def test_a_plan_file_names_its_rows_in_a_json_lines_file(tmp_path, logged_nginx):
    port, root = logged_nginx
    (tmp_path / "users.jsonl").write_text("".join(json.dumps({"user": f"j{i}"}) + "\n" for i in range(5)))
    (tmp_path / "plan.json").write_text(json.dumps({
        "name": "jsonl", "addresses": [{"host": "127.0.0.1", "port": port, "protocol": "http"}],
        "blocks": [{"script": ONE_REQUEST, "size": 4, "data_file": "users.jsonl"}]}))
    code, out, err = run_cli(["run", "--plan", tmp_path / "plan.json", "--local", "--workers", "1", *SHORT],
                             tmp_path, timeout=90)
    assert code == 0, err
    assert pages_served(root) == {"j0": 1, "j1": 1, "j2": 1, "j3": 1}


@pytest.mark.parametrize("content,name,message", [
    ("user\n", "users.csv", "users.csv: the file has no rows"),
    ("user,group\nann\n", "users.csv", "users.csv: line 2: has 1 values; the first line names 2 columns"),
    ('{"user": 1}\nnot json\n', "users.jsonl", "users.jsonl: line 2: not valid JSON: Expecting value at column 1"),
    ("user\nann\n", "users.txt", "users.txt must end in .csv, .jsonl, .ndjson or .json"),
])
def test_a_bad_feeder_file_is_a_usage_error_naming_the_file_and_line(tmp_path, content, name, message):
    (tmp_path / name).write_text(content)
    code, out, err = run_cli(["run", "bad", ROOT / "examples" / "shop_users_http.py", "--local",
                              "--demo-target", "--data", tmp_path / name], tmp_path)
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("stressgrid: feeder file ") and last.endswith(message), last


def test_the_shop_example_signs_each_user_in_once_with_the_shipped_file(tmp_path):
    code, out, err = run_cli(["run", "shoppers", ROOT / "examples" / "shop_users_http.py", "--local",
                              "--demo-target", "-s", 20, "--data", ROOT / "examples" / "shop_users.csv",
                              "--script-params", '{"delay_ms": 100}', *SHORT], tmp_path, timeout=90)
    assert code == 0, err
    summary = json.loads(archive_file(pathlib.Path(out), "summary.json"))["summary"]
    assert summary["requests"]["sign_in"]["count"] == 20
    assert summary["checks"]["signed_in_as_self"]["pass_percent"] == 100.0
    assert summary["checks"]["catalog_ok"]["passed"] > 20
