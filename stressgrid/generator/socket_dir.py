"""The agent's private directory for its workers' ``ipc://`` socket, and its cleanup.

The directory is named after the agent that made it: ``stressgrid-agent-<pid>-
<start>-<random>``, where ``<start>`` is when that process started (clock ticks
since boot, from ``/proc/<pid>/stat``). An agent removes its directory when it
stops; one killed with SIGKILL cannot, so every agent, when it starts, removes
the directories of agents it can prove gone: no process has that pid any more,
or the process that has it started at another time (the pid was reused). A
directory whose owner may still run, or that belongs to another user, is left
alone.
"""
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile

import psutil

PREFIX = "stressgrid-agent-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-")

log = logging.getLogger(__name__)


def process_start(pid):
    """When process ``pid`` started, in clock ticks since boot; ``None`` if there is no such process.

    ``0`` where the system does not say (no ``/proc``): then only the pid is compared.
    """
    if not sys.platform.startswith("linux"):
        return 0 if psutil.pid_exists(pid) else None
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold anything; the fields after it
    # start with field 3 (state), and the start time is field 22.
    try:
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def owner_is_gone(pid, start):
    """Whether the process that made a directory (``pid`` started at ``start``) is gone."""
    now = process_start(pid)
    return now is None or (now != 0 and start != 0 and now != start)


def remove_stale(base):
    """Remove the directories in ``base`` of this user's agents that are gone; returns their paths."""
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        if owner_is_gone(int(match.group(1)), int(match.group(2))):
            shutil.rmtree(entry.path, ignore_errors=True)
            log.info("removed %s, left behind by an agent that is gone", entry.path)
            removed.append(entry.path)
    return removed


@contextlib.contextmanager
def agent_socket_dir(base=None):
    """A new private directory for this agent's sockets, removed on exit; stale ones are removed first."""
    base = base or tempfile.gettempdir()
    remove_stale(base)
    pid = os.getpid()
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{pid}-{process_start(pid) or 0}-", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
