"""``--local``: a coordinator, a generator and (optionally) the demo target started on this
machine as child processes, and stopped whatever happens."""
import contextlib
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from stressgrid.orphans import die_with_parent
from stressgrid.plan.constants import plural

from .api_client import Api
from .exits import EXIT_COORDINATOR, EXIT_NO_GENERATORS, CliError

LOCAL_START_TIMEOUT_S = 60.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalProcess:
    """A child process of local mode, with its output in a log file."""

    def __init__(self, name, args, env, log_path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C at the terminal reaches only the CLI, which aborts
                # the run through the API and then stops this process itself.
                start_new_session=True,
                preexec_fn=die_with_parent)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def log_tail(self, lines=5):
        try:
            text = pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return " / ".join(line.strip() for line in tail)

    def stop(self, timeout):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for_port(port, process, deadline):
    while time.monotonic() < deadline:
        if not process.alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class LocalGrid:
    """A coordinator, a generator and (optionally) the demo target on this machine.

    Used as a context manager: entering starts them and waits until the
    generator is registered; leaving stops them all, whatever happened.
    """

    def __init__(self, display, workers=None, demo_target=False, source_addresses=None):
        self.display = display
        self.workers = workers
        self.source_addresses = source_addresses
        self.demo_target = demo_target
        self.processes = []
        self.directory = None
        self.token = secrets.token_urlsafe(24)
        self.base_url = None
        self.target = None

    def _environment(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STRESSGRID_", "AWS_")) and k not in (
                   "COORDINATOR_URL", "GENERATOR_ID", "MANAGEMENT_PORT", "GENERATORS_PORT")}
        env.update(extra)
        return env

    def _start(self, name, args, **env):
        # The interpreter, working directory and environment of this command: 'python -m'
        # finds the same stressgrid in the children as in 'python -m stressgrid.cli'.
        process = LocalProcess(name, [sys.executable, "-m", *args], self._environment(**env),
                               os.path.join(self.directory, f"{name.replace(' ', '-')}.log"))
        self.processes.append(process)
        return process

    def __enter__(self):
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _start_all(self):
        self.directory = tempfile.mkdtemp(prefix="stressgrid-local-")
        management_port = free_port()
        generator_port = free_port()
        while generator_port == management_port:
            generator_port = free_port()
        deadline = time.monotonic() + LOCAL_START_TIMEOUT_S
        coordinator = self._start(
            "coordinator",
            ["coordinator_app", "--management-port", str(management_port),
             "--generator-port", str(generator_port), "--bind", "127.0.0.1",
             "--data-dir", os.path.join(self.directory, "data"), "--log-level", "WARNING"],
            # A random token: other users of this machine cannot use this coordinator. No AWS
            # settings reach it, so local runs never write to CloudWatch.
            STRESSGRID_TOKEN=self.token, AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        if self.demo_target:
            target_port = free_port()
            target = self._start("demo target", ["stressgrid.targets.demo", "--host", "127.0.0.1",
                                                 "--port", str(target_port)])
            self.target = ("127.0.0.1", target_port, "http")
        self.base_url = f"http://127.0.0.1:{management_port}"
        self.display.message(f"local mode: coordinator on {self.base_url}, generator "
                             f"{'with ' + plural(self.workers, 'worker') if self.workers else 'with a worker per core'}"
                             + (f", demo target on http://127.0.0.1:{self.target[1]}"
                                if self.target else ""))
        if not _wait_for_port(management_port, coordinator, deadline):
            raise CliError(EXIT_COORDINATOR, f"the local coordinator did not start: "
                                             f"{coordinator.log_tail() or 'no output'}")
        # The coordinator has written the fleet's join token into its data directory by now.
        generator_args = ["stressgrid.generator", "--log-level", "WARNING",
                          "--join-token-file", os.path.join(self.directory, "data", "join-token")]
        if self.workers:
            generator_args += ["--workers", str(self.workers)]
        if self.source_addresses:
            generator_args += ["--source-addresses", self.source_addresses]
        generator = self._start("generator", generator_args,
                                COORDINATOR_URL=f"tcp://127.0.0.1:{generator_port}",
                                GENERATOR_ID=f"local-{socket.gethostname().split('.')[0]}")
        if self.target and not _wait_for_port(self.target[1], target, deadline):
            raise CliError(EXIT_COORDINATOR, f"the demo target did not start: "
                                             f"{target.log_tail() or 'no output'}")
        api = Api(self.base_url, self.token)
        while True:
            if not generator.alive():
                raise CliError(EXIT_NO_GENERATORS, f"the local generator exited: "
                                                   f"{generator.log_tail() or 'no output'}")
            if not coordinator.alive():
                raise CliError(EXIT_COORDINATOR, f"the local coordinator exited: "
                                                 f"{coordinator.log_tail() or 'no output'}")
            if api.state()["generators"]:
                return
            if time.monotonic() > deadline:
                raise CliError(EXIT_NO_GENERATORS, f"the local generator did not register within "
                                                   f"{LOCAL_START_TIMEOUT_S:g} s: "
                                                   f"{generator.log_tail() or 'no output'}")
            time.sleep(0.1)

    def died(self):
        """A description of any child that exited on its own, or ``None``."""
        for process in self.processes:
            if not process.alive():
                return f"the local {process.name} exited: {process.log_tail() or 'no output'}"
        return None

    def stop(self):
        """Stop every child (generator first, coordinator last) and remove the temp files.

        Ctrl-C and SIGTERM are held meanwhile: stopping must not be cut short.
        """
        order = {"generator": 0, "demo target": 1, "coordinator": 2}
        with _signals_held():
            for process in sorted(self.processes, key=lambda p: order.get(p.name, 1)):
                process.stop(30 if process.name == "coordinator" else 15)
            self.processes = []
            if self.directory:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None


@contextlib.contextmanager
def _signals_held():
    """Ignore Ctrl-C and SIGTERM for the duration of the block (main thread only)."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
