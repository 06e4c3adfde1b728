"""The open-file limit and the number of devices it lets this host hold.

Every device holds one socket, and each worker process has its own open-file
limit, so a worker holds at most its limit minus a reserve for the runtime's
own files (the event loop, ZeroMQ, imported modules). The system-wide file
limit caps the host as a whole.
"""
import dataclasses
import logging

try:
    import resource
except ImportError:  # not a POSIX system
    resource = None

# Files a worker keeps for itself: the loop, ZeroMQ sockets, logs, modules.
RESERVED_FILES_PER_WORKER = 256
# What deployment images configure (LimitNOFILE); less than this is reported.
RECOMMENDED_OPEN_FILES = 1_000_000
SYSTEM_FILE_MAX = "/proc/sys/fs/file-max"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OpenFileLimit:
    """The soft limit after raising it, the hard limit, and the soft limit before."""

    soft: int
    hard: int
    before: int


def raise_open_file_limit():
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; children inherit it."""
    if resource is None:
        return OpenFileLimit(RECOMMENDED_OPEN_FILES, RECOMMENDED_OPEN_FILES, RECOMMENDED_OPEN_FILES)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    target = hard
    if target == resource.RLIM_INFINITY:
        target = _system_file_max() or RECOMMENDED_OPEN_FILES
    if soft == resource.RLIM_INFINITY or soft >= target:
        return OpenFileLimit(soft, hard, before)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError) as exc:  # e.g. above the kernel's nr_open
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return OpenFileLimit(soft, hard, before)


def _system_file_max():
    try:
        with open(SYSTEM_FILE_MAX) as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def device_capacity(limit, workers, system_file_max=None):
    """How many devices ``workers`` processes with ``limit`` open files can hold."""
    per_worker = max(0, limit.soft - RESERVED_FILES_PER_WORKER)
    capacity = per_worker * workers
    if system_file_max is None:
        system_file_max = _system_file_max()
    if system_file_max:
        capacity = min(capacity, max(0, system_file_max - RESERVED_FILES_PER_WORKER * workers))
    return capacity


def worker_capacities(capacity, workers):
    """``capacity`` dealt among ``workers``: what each worker may hold (the first get the remainder)."""
    share, remainder = divmod(capacity, workers)
    return [share + (1 if index < remainder else 0) for index in range(workers)]


def report_capacity(limit, workers, capacity):
    """Log the capacity, as a warning when the open-file limit is what caps it."""
    if limit.soft < RECOMMENDED_OPEN_FILES:
        log.warning("open-file limit %d (hard limit %d) caps this host at %d devices "
                    "(%d workers); raise the hard limit (e.g. LimitNOFILE=%d) to hold more",
                    limit.soft, limit.hard, capacity, workers, RECOMMENDED_OPEN_FILES)
    else:
        log.info("open-file limit %d: this host holds up to %d devices over %d workers",
                 limit.soft, capacity, workers)
