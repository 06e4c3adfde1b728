"""Real servers for tests: started on loopback, waited for by port, stopped for sure."""
import contextlib
import errno
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


# Ports for the servers tests start come from below the kernel's ephemeral range (32768 and
# up), so that no client connection's source port takes one between ``free_port`` and the
# server's bind; each pytest-xdist worker has its own block, so parallel workers never pick
# the same port, and a worker hands out its ports in turn, so it reuses one only after
# ``PORTS_PER_WORKER`` others.
FIRST_PORT = 20000
PORTS_PER_WORKER = 1500
MAX_WORKERS = 8


def _port_block():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if index >= MAX_WORKERS:
        raise RuntimeError(f"tests/support/servers.py has port blocks for {MAX_WORKERS} xdist workers, "
                           f"not {worker}")
    start = FIRST_PORT + index * PORTS_PER_WORKER
    return itertools.cycle(range(start, start + PORTS_PER_WORKER))


_next_ports = _port_block()


def free_port(kind=socket.SOCK_STREAM, host="127.0.0.1"):
    """A port of this worker's block that nothing is bound to right now (``kind`` on ``host``,
    and on ``::1`` too where there is IPv6: a client given ``localhost`` may try that first)."""
    for _ in range(PORTS_PER_WORKER):
        port = next(_next_ports)
        if _can_bind(socket.AF_INET, kind, host, port) and _can_bind(socket.AF_INET6, kind, "::1", port):
            return port
    raise RuntimeError(f"every port of this test worker's block is in use on {host}")


def _can_bind(family, kind, host, port):
    try:
        sock = socket.socket(family, kind)
    except OSError:  # no IPv6 here: nothing can hold the port there either
        return True
    with sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRNOTAVAIL  # ::1 not configured
        return True


def wait_for_port(port, host="127.0.0.1", timeout=15.0, process=None):
    """Block until a TCP connect to ``host:port`` succeeds (or raise)."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
            time.sleep(0.02)


def wait_for(condition, timeout, interval=0.02):
    """Check ``condition`` until it returns a true value (returned) or ``timeout`` s pass
    (``False``).

    For state outside any message stream (a server's client count after a
    process exited): a bounded poll, not a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def require(binary):
    """Path of ``binary`` or a clear error: the CI script installs every one."""
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        raise RuntimeError(f"{binary} is not installed; run .ci/run or see README")
    return path


@contextlib.contextmanager
def running(args, ports=(), host="127.0.0.1", **popen):
    """Run ``args`` until the block ends; wait for each TCP port in ``ports`` first.

    The server's stderr goes to a temporary file whose tail is shown if it
    exits before listening.
    """
    if isinstance(ports, int):
        ports = (ports,)
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors, **popen)
        try:
            for port in ports:
                try:
                    wait_for_port(port, host, process=process)
                except RuntimeError as exc:
                    errors.seek(0)
                    tail = errors.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"{exc}: {args[0]} said: {tail}") from None
            yield process
        finally:
            stop_process(process)


def stop_process(process, timeout=5.0):
    """SIGTERM ``process``, and SIGKILL it if it has not ended within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def redis_server(tmp_path, host="127.0.0.1"):
    """A real redis-server on a free port; yields the port."""
    port = free_port(host=host)
    args = [require("redis-server"), "--port", str(port), "--bind", host, "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), "--maxclients", "20000",
            "--protected-mode", "no"]
    with running(args, port, host):
        yield port


@contextlib.contextmanager
def nginx(tmp_path, server_blocks, modules=(), cpu_core=None, directives=()):
    """A real nginx running ``server_blocks`` (text of ``server { ... }``) in ``tmp_path``.

    ``modules`` are dynamic module file names to load (e.g. the WebDAV extension).
    The blocks must listen on ports the caller picked with ``free_port``.
    ``cpu_core`` pins nginx to that core (``taskset -c``); ``directives`` are more
    top-level directives (e.g. ``worker_rlimit_nofile 65536;``).
    """
    binary = require("nginx")
    root = tmp_path / "nginx"
    for sub in ("logs", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    loads = "".join(f"load_module {m};\n" for m in modules)
    main = "".join(f"{d}\n" for d in directives)
    config = f"""{loads}
worker_processes 1;
{main}daemon off;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    keepalive_requests 1000000;
    {server_blocks}
}}
"""
    (root / "nginx.conf").write_text(config)
    ports = [int(part.split()[0].split(":")[-1].rstrip(";")) for part in server_blocks.split("listen ")[1:]]
    pinned = ["taskset", "-c", str(cpu_core)] if cpu_core is not None else []
    with running([*pinned, binary, "-c", str(root / "nginx.conf"), "-p", str(root)], ports):
        yield root


@contextlib.contextmanager
def logging_nginx(tmp_path):
    """nginx answering 200 ``ok`` to every request and logging each one's path (``$uri``) as a
    line of ``logs/requests.log``; yields ``(port, root)`` (``requests_logged(root)`` reads it)."""
    port = free_port()
    server = (f"server {{ listen 127.0.0.1:{port}; access_log {tmp_path}/nginx/logs/requests.log paths; "
              f"location / {{ return 200 'ok'; }} }}")
    with nginx(tmp_path, "log_format paths '$uri';\n" + server) as root:
        yield port, root


def requests_logged(root):
    """The paths ``logging_nginx`` at ``root`` has served, one per request, in order."""
    return (root / "logs" / "requests.log").read_text().split()


@contextlib.contextmanager
def nginx_with_certificate(tmp_path, server_blocks, modules=(), hostname="localhost"):
    """``nginx`` whose TLS servers use a fresh self-signed certificate for ``hostname``.

    ``server_blocks(key, cert)`` gets the paths of the key and the certificate and
    returns the text of the ``server { ... }`` blocks. Yields the certificate's
    path: the CA a verifying client needs.
    """
    key, cert = self_signed_certificate(tmp_path, hostname)
    with nginx(tmp_path, server_blocks(key, cert), modules):
        yield cert


@contextlib.contextmanager
def public_web_root(prefix, files):
    """A directory nginx's unprivileged workers may read and write (pytest's tmp is 0700).

    It holds ``files`` ({name: bytes}, world-readable) and the world-writable
    directories ``dav`` (for WebDAV uploads) and ``dav-tmp`` (their temporary
    bodies); removed when the block ends.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o777)
    try:
        for name, content in files.items():
            (root / name).write_bytes(content)
        for name in ("dav", "dav-tmp"):
            (root / name).mkdir()
            (root / name).chmod(0o777)
        for path in root.iterdir():
            if path.is_file():
                path.chmod(0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def self_signed_certificate(directory, hostname="localhost"):
    """A key and self-signed certificate for ``hostname`` (and 127.0.0.1); returns paths."""
    key = directory / "server.key"
    cert = directory / "server.crt"
    subprocess.run(
        [require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={hostname}",
         "-addext", f"subjectAltName=DNS:{hostname},IP:127.0.0.1"],
        check=True, capture_output=True)
    return key, cert


@contextlib.contextmanager
def dnsmasq(answers, host="127.0.0.1"):
    """A real dnsmasq answering ``answers`` ({name: ipv4}) on a free port; yields the port."""
    port = free_port(host=host)
    args = [require("dnsmasq"), "--keep-in-foreground", "--conf-file=/dev/null",
            f"--port={port}", f"--listen-address={host}", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--no-poll", "--pid-file=", "--user=root",
            "--cache-size=1000", "--dns-forward-max=10000"]
    args += [f"--address=/{name}/{ip}" for name, ip in answers.items()]
    with running(args, port, host):  # dnsmasq serves TCP on the same port
        yield port
