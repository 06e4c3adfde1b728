"""Running ``python -m stressgrid.cli`` as a user would, and watching what it prints."""
import os
import re
import subprocess
import sys
import threading
import time

import psutil

from tests.conftest import ROOT

TELEMETRY_LINE = re.compile(r"^\[\d+:\d\d\] (rampup|sustain|rampdown|cooldown)")


def cli_env(extra=None):
    """The environment of a CLI process: this source tree, no settings from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRESSGRID_", "AWS_", "NO_COLOR"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Cli:
    """One ``python -m stressgrid.cli ...`` process; stdout and stderr collected by line."""

    def __init__(self, args, cwd, env=None):
        self.args = [str(a) for a in args]
        self.process = subprocess.Popen([sys.executable, "-m", "stressgrid.cli", *self.args],
                                        cwd=cwd, env=cli_env(env), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout_lines = []
        self.stderr_lines = []
        self._condition = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self.stdout_lines),
                                               (self.process.stderr, self.stderr_lines))]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self):
        return self.process.pid

    def _read(self, stream, lines):
        for line in stream:
            with self._condition:
                lines.append(line.rstrip("\n"))
                self._condition.notify_all()
        with self._condition:
            self._condition.notify_all()

    def wait_stderr(self, pattern, timeout=30.0):
        """The first stderr line matching ``pattern`` (a regex), waiting for it to appear."""
        regex = re.compile(pattern)

        def found():
            return next((line for line in self.stderr_lines if regex.search(line)), None)

        with self._condition:
            ok = self._condition.wait_for(
                lambda: found() is not None or self.process.poll() is not None, timeout)
            line = found()
        if line is None:
            raise AssertionError(f"no stderr line matching {pattern!r} "
                                 f"({'exited ' + str(self.process.returncode) if ok else 'timed out'}); "
                                 f"stderr so far:\n" + "\n".join(self.stderr_lines[-30:]))
        return line

    def wait_telemetry(self, timeout=30.0):
        return self.wait_stderr(TELEMETRY_LINE.pattern, timeout)

    def finish(self, timeout=60.0):
        """``(exit code, stdout text, stderr text)`` once the process has exited."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the CLI did not exit within {timeout}s; stderr:\n"
                                 + "\n".join(self.stderr_lines[-30:])) from None
        for reader in self._readers:
            reader.join(10)
        return code, "\n".join(self.stdout_lines), "\n".join(self.stderr_lines)

    def descendants(self):
        """Every process below the CLI right now (local mode's children and their workers)."""
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_cli(args, cwd, env=None, timeout=60.0):
    """Run the CLI to its end: ``(exit code, stdout, stderr)``."""
    return Cli(args, cwd, env).finish(timeout)


def alive(processes):
    """The ``psutil.Process`` objects of ``processes`` that still run (zombies count as gone)."""
    result = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                result.append(process)
        except psutil.NoSuchProcess:
            pass
    return result


def wait_gone(processes, timeout=20.0):
    """Wait until none of ``processes`` runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = alive(processes)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
