"""``run --local --source-addresses``: the local generator's devices connect from every address
of the pool, as the target sees them; a bad pool is a usage error naming the item."""
import signal

from tests.cli.support import Cli, run_cli
from tests.cli.test_local import SHORT
from tests.coordinator.support import wait_until
from tests.generator.conftest import Redis
from tests.support.servers import redis_server

IDLE = "await delay(600000)\n"


def test_a_local_run_spreads_its_connections_over_the_pool(tmp_path):
    (tmp_path / "idle.py").write_text(IDLE)
    with redis_server(tmp_path) as port:
        redis = Redis(port)
        cli = Cli(["run", "pool", tmp_path / "idle.py", "--local", "--workers", "2", "--target-protocol", "tcp",
                   "-t", "127.0.0.1", "--target-port", port, "-s", 12, "--source-addresses",
                   "127.0.0.2-127.0.0.4", "--sustain", "600", "--rampup", "0.5"], tmp_path)
        try:
            wait_until(lambda: sum(redis.client_addresses().values()) == 12, timeout=60,
                       message="12 devices connected")
            # Two workers, each dealing its 6 devices round-robin over the three addresses.
            assert redis.client_addresses() == {"127.0.0.2": 4, "127.0.0.3": 4, "127.0.0.4": 4}
            cli.process.send_signal(signal.SIGINT)
            code, _, err = cli.finish(timeout=60)
            assert code == 130, err
        finally:
            cli.kill()
            redis.close()


def test_a_bad_pool_is_a_usage_error_before_anything_starts(tmp_path):
    (tmp_path / "idle.py").write_text(IDLE)
    code, out, err = run_cli(["run", "pool", tmp_path / "idle.py", "--local", "--demo-target",
                              "--source-addresses", "127.0.0.9-127.0.0.2", *SHORT], tmp_path)
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("stressgrid: --source-addresses: ") and "127.0.0.9-127.0.0.2" in last, last
    assert "local mode" not in err
    code, out, err = run_cli(["run", "pool", tmp_path / "idle.py", "--source-addresses", "127.0.0.2"], tmp_path)
    assert code == 2 and err.strip().endswith("--source-addresses needs --local (a remote generator takes its own "
                                              "--source-addresses)")
