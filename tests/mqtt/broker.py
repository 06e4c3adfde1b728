"""A real mosquitto broker for the tests: plain, TLS, or with a password file, and what it counts."""
import contextlib
import os
import pathlib
import pwd
import subprocess
import tempfile

from tests.support.servers import free_port, require, running, self_signed_certificate, wait_for


class Broker:
    """A running mosquitto: the devices' ``port``, its ``process`` (to kill or stop), its
    ``$SYS`` counters (read on ``plain_port``), the TLS ``certificate`` when it has one."""

    def __init__(self, port, process, plain_port, certificate=None):
        self.port = port
        self.process = process
        self.plain_port = plain_port
        self.certificate = certificate

    @contextlib.contextmanager
    def listener(self, topic_filter):
        """A ``mosquitto_sub`` on ``topic_filter`` (QoS 2) for the block's length; yields a
        function that waits until it has ``n`` messages (or ``timeout``) and returns them all:
        what the broker itself routed."""
        with tempfile.NamedTemporaryFile("w+b") as output:
            process = subprocess.Popen(
                [require("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(self.plain_port), "-t", topic_filter,
                 "-q", "2", "-v", "-N", "-F", "%t %p\n"], stdout=output, stderr=subprocess.DEVNULL)
            try:
                # The broker republishes its $SYS counters every second: connected, it has subscribed.
                if not wait_for(lambda: self.sys_value("clients/connected") >= 1, 10, 0.2):
                    raise RuntimeError(f"mosquitto_sub on {topic_filter} did not connect")

                def messages(n, timeout=10.0):

                    def read():
                        return pathlib.Path(output.name).read_bytes().splitlines()
                    wait_for(lambda: len(read()) >= n, timeout, 0.05)
                    return read()

                yield messages
            finally:
                process.terminate()
                process.wait(5)

    def sys_value(self, name, timeout=10.0):
        """The broker's own ``$SYS/broker/<name>`` (it republishes them every second), as an int."""
        output = subprocess.run(
            [require("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(self.plain_port), "-t", f"$SYS/broker/{name}",
             "-C", "1", "-W", str(int(timeout))], capture_output=True, text=True, timeout=timeout + 5)
        if output.returncode != 0:
            raise RuntimeError(f"mosquitto_sub could not read $SYS/broker/{name}: {output.stderr.strip()}")
        return int(output.stdout.split()[0])


@contextlib.contextmanager
def mosquitto(tmp_path, tls=False, users=None, log=None):
    """A mosquitto on free loopback ports; yields a ``Broker``.

    ``tls``: the devices' listener speaks TLS with a fresh self-signed certificate (a plain
    listener beside it serves ``$SYS`` to the tests). ``users``: ``{name: password}`` in a
    password file, anonymous clients refused on the devices' listener. ``log``: a file the
    broker logs each client's connection to (its address and client id).
    """
    port = free_port()
    # Started as root, mosquitto would switch to its own user, who cannot read pytest's
    # private temporary directory (its password file, its certificate): it stays who it is.
    lines = [f"user {pwd.getpwuid(os.geteuid()).pw_name}", "persistence false", "sys_interval 1",
             "per_listener_settings true", "log_dest stderr",
             "max_connections -1", f"listener {port} 127.0.0.1"]
    if log is not None:
        lines += [f"log_dest file {log}", "connection_messages true"]
    certificate = None
    if tls:
        key, certificate = self_signed_certificate(tmp_path)
        lines += [f"certfile {certificate}", f"keyfile {key}"]
    if users:
        password_file = tmp_path / "passwords"
        password_file.write_text("")
        for name, password in users.items():
            subprocess.run([require("mosquitto_passwd"), "-b", str(password_file), name, password], check=True,
                           capture_output=True)
        lines += [f"password_file {password_file}", "allow_anonymous false"]
    else:
        lines += ["allow_anonymous true"]
    plain_port = None
    if tls or users:
        plain_port = free_port()
        lines += [f"listener {plain_port} 127.0.0.1", "allow_anonymous true"]
    config = tmp_path / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    ports = (port,) if plain_port is None else (port, plain_port)
    with running([require("mosquitto"), "-c", str(config)], ports) as process:
        yield Broker(port, process, plain_port or port, certificate)
