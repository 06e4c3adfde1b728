"""MQTT devices run by a generator of several workers: each device is its own client."""
import json
import pathlib

from stressgrid.plan.constants import HOST_WARNING_METRICS
from tests.cli.support import run_cli
from tests.cli.test_local import archive_file
from tests.mqtt.broker import mosquitto

SCRIPT = """
await mqtt_connect(keepalive=60)
await publish("ids/" + device_id, device_id, qos=1)
inc_counter("announced")
await delay(60000)
"""


def test_the_devices_of_every_worker_have_their_own_client_ids(tmp_path):
    # A client id is the device's id: one that another worker's device also had would make
    # the broker close the older session (a "takeover"), and the pair would take turns.
    devices = 12
    (tmp_path / "announce.py").write_text(SCRIPT)
    with mosquitto(tmp_path) as broker, broker.listener("ids/#") as routed:
        code, out, err = run_cli(["run", "announce", tmp_path / "announce.py", "--local", "--workers", "2",
                                  "--target-protocol", "mqtt", "-t", "127.0.0.1", "--target-port", broker.port,
                                  "-s", devices, "--rampup", 0, "--sustain", 3, "--cooldown", 0], tmp_path,
                                 timeout=90)
        announced = routed(devices)
    assert code == 0, err
    ids = [line.split()[1] for line in announced]
    assert len(ids) == len(set(ids)) == devices, ids
    summary = json.loads(archive_file(pathlib.Path(out), "summary.json"))["summary"]
    assert summary["counters"]["announced"]["total"] == devices
    # (The host's TCP retransmits are a warning about the machine, not a device's error.)
    errors = [name for name in summary["counters"] if name.endswith("_error") and name not in HOST_WARNING_METRICS]
    assert errors == [], summary["counters"]
