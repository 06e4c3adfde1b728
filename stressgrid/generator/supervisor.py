"""Worker processes: start them, notice when one dies, restart it, stop them all.

Each worker is ``python -m stressgrid.generator.worker`` in its own session,
so a Ctrl-C at the terminal reaches only the agent, which then stops the
workers in order. A worker that dies is started again at once; one that keeps
dying young is started again after a growing pause (1 s, 2 s, ... 30 s).
"""
import dataclasses
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time

import stressgrid

# A worker that lived shorter than this before dying counts as dying young.
YOUNG_DEATH_S = 5.0
MAX_RESTART_DELAY_S = 30.0
STOP_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


def describe_exit(returncode):
    """``exited with status 3`` or ``killed by SIGKILL``."""
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclasses.dataclass
class WorkerSlot:
    """One worker index and the process currently filling it."""

    index: int
    process: subprocess.Popen = None
    started_at: float = 0.0
    young_deaths: int = 0
    restart_at: float = None
    kill_requested: bool = False  # this pool killed it (``kill``)

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    @property
    def alive(self):
        return self.process is not None and self.process.returncode is None


@dataclasses.dataclass(frozen=True)
class WorkerExit:
    """A worker process that ended: which slot, which process, how, and whether the pool killed it."""

    index: int
    pid: int
    returncode: int
    killed: bool = False

    def describe(self):
        return f"worker {self.index} (pid {self.pid}) {describe_exit(self.returncode)}"


class WorkerPool:
    """The worker processes of this host, one slot per worker index."""

    def __init__(self, count, endpoint, log_level="INFO", clock=time.monotonic, source_addresses=""):
        self.endpoint = endpoint
        self.log_level = log_level
        self.source_addresses = source_addresses
        self.slots = [WorkerSlot(index) for index in range(count)]
        self._clock = clock
        self._environment = _child_environment()

    def __len__(self):
        return len(self.slots)

    def start_all(self):
        """Start a process for every slot; returns the slots."""
        for slot in self.slots:
            self._spawn(slot)
        return list(self.slots)

    def _spawn(self, slot):
        command = [sys.executable, "-m", "stressgrid.generator.worker", "--index", str(slot.index),
                   "--endpoint", self.endpoint, "--parent-pid", str(os.getpid()),
                   "--log-level", self.log_level, "--source-addresses", self.source_addresses]
        slot.process = subprocess.Popen(command, env=self._environment, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        slot.started_at = self._clock()
        slot.restart_at = None
        slot.kill_requested = False
        log.debug("worker %d started as pid %d", slot.index, slot.process.pid)

    def kill(self, index):
        """SIGKILL worker ``index``; ``reap`` sees it end and restarts it."""
        slot = self.slots[index]
        if slot.alive:
            slot.kill_requested = True
            _signal(slot.process, signal.SIGKILL)

    def reap(self):
        """``WorkerExit`` for every worker that ended since the last call; schedules restarts."""
        exits = []
        now = self._clock()
        for slot in self.slots:
            if slot.process is None or slot.restart_at is not None:
                continue
            returncode = slot.process.poll()
            if returncode is None:
                continue
            exits.append(WorkerExit(slot.index, slot.process.pid, returncode, slot.kill_requested))
            slot.young_deaths = slot.young_deaths + 1 if now - slot.started_at < YOUNG_DEATH_S else 0
            delay = 0.0 if slot.young_deaths <= 1 else min(MAX_RESTART_DELAY_S, 2.0 ** (slot.young_deaths - 2))
            slot.restart_at = now + delay
        return exits

    def restart_due(self):
        """Start every worker whose restart time has come; returns their slots."""
        now = self._clock()
        restarted = []
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._spawn(slot)
                restarted.append(slot)
        return restarted

    def next_restart_at(self):
        """The clock time of the earliest pending restart, or ``None``."""
        pending = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        return min(pending) if pending else None

    def stop_all(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM every worker, wait up to ``timeout`` s, then SIGKILL what is left."""
        running = [slot.process for slot in self.slots if slot.alive]
        for process in running:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0f s; killing it", process.pid, timeout)
                _signal(process, signal.SIGKILL)
                process.wait()
        for slot in self.slots:
            slot.restart_at = None


def _signal(process, signum):
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


def _child_environment():
    """This environment, with the directory holding the ``stressgrid`` package importable."""
    environment = dict(os.environ)
    package_root = str(pathlib.Path(stressgrid.__file__).resolve().parent.parent)
    paths = [path for path in environment.get("PYTHONPATH", "").split(os.pathsep) if path]
    if package_root not in paths:
        environment["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    return environment
