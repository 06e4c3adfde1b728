"""An MQTT plan from the command line, with what every protocol has: feeder rows for the
credentials, checks, a pool of source addresses, thresholds, the report."""
import json
import pathlib
import re

from tests.cli.support import run_cli
from tests.cli.test_local import archive_file
from tests.mqtt.broker import mosquitto

SCRIPT = """
await mqtt_connect(username=row["user"], password=row["password"])
topic = "cli/" + device_id
await subscribe(topic, qos=1)
await publish(topic, row["user"], qos=1)
message = await mqtt_receive()
check("echoed", message.payload == row["user"].encode())
inc_counter("echoed")
await delay(60000)
"""
USERS = {"alice": "a-secret", "bob": "b-secret", "carol": "c-secret"}


def test_feeder_credentials_checks_sources_and_thresholds_over_mqtt(tmp_path):
    (tmp_path / "echo.py").write_text(SCRIPT)
    rows = [f"{user},{password}" for user, password in USERS.items()] + ["mallory,guessed"]
    (tmp_path / "users.csv").write_text("user,password\n" + "\n".join(rows) + "\n")
    log = tmp_path / "broker.log"
    with mosquitto(tmp_path, users=USERS, log=log) as broker:
        code, out, err = run_cli(
            ["run", "mqtt-echo", tmp_path / "echo.py", "--local", "--workers", "1", "--target-protocol", "mqtt",
             "--mqtt-version", "3.1.1", "-t", "127.0.0.1", "--target-port", broker.port,
             "--source-addresses", "127.0.0.2,127.0.0.3",
             "-s", 4, "--data", tmp_path / "users.csv", "--rampup", 0, "--sustain", 3, "--cooldown", 0,
             "--threshold", "publish_us p99 < 5s", "--threshold", "check_echoed_fail count == 0",
             "--threshold", "not_authorized_error count == 0"], tmp_path, timeout=90)
        connections = log.read_text()
    # Mallory's device is refused at every attempt: the verdict names the threshold it fails.
    assert code == 99, err
    assert re.search(r"thresholds: 2 of 3 passed -> FAILED", err), err
    archived = json.loads(archive_file(pathlib.Path(out), "summary.json"))
    summary, verdict = archived["summary"], archived["verdict"]
    assert [r["state"] for r in verdict["thresholds"]] == ["passed", "passed", "failed"]
    counters = summary["counters"]
    refused = counters["not_authorized_error"]["total"]
    assert verdict["thresholds"][2]["actual"] == refused >= 1
    # The three others, one feeder row each, connected, published and got their message back.
    assert counters["echoed"]["total"] == counters["check_echoed_pass"]["total"] == 3
    assert "check_echoed_fail" not in counters
    assert counters["publish"]["total"] == counters["message"]["total"] == 3
    assert summary["histograms"]["publish_us"]["count"] == 3
    assert summary["histograms"]["mqtt_connect_us"]["count"] == 3
    # At the broker: each user logged in from the pool's addresses, on MQTT 3.1.1 (mosquitto's
    # protocol p2; p5 is MQTT 5), mallory refused each time.
    logins = re.findall(r"New client connected from (127\.0\.0\.\d+):\d+ as \S+ \(p(\d).*u'(\w+)'", connections)
    assert sorted(user for _, _, user in logins) == sorted(USERS), connections
    assert {address for address, _, _ in logins} <= {"127.0.0.2", "127.0.0.3"}
    assert {level for _, level, _ in logins} == {"2"}
    assert connections.count("not authorised") >= refused
    # The HTML report has the MQTT figures.
    report = archive_file(pathlib.Path(out), "report.html")
    for name in ("publish_us", "mqtt_connect_us", "not_authorized_error"):
        assert name in report, name


def test_the_mqtt_version_flag_is_for_mqtt_targets_only(tmp_path):
    (tmp_path / "echo.py").write_text(SCRIPT)
    code, _, err = run_cli(["run", "x", tmp_path / "echo.py", "--local", "--target-protocol", "http",
                            "--mqtt-version", "3.1.1"], tmp_path, timeout=30)
    assert code == 2 and "--mqtt-version is for mqtt and mqtts targets, not http" in err, err
    code, _, err = run_cli(["run", "x", tmp_path / "echo.py", "--local", "--target-protocol", "mqtt",
                            "--mqtt-version", "4"], tmp_path, timeout=30)
    assert code == 2 and "--mqtt-version" in err and "3.1.1" in err, err
