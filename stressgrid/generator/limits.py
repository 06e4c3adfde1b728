"""The open-file limit and the number of devices it lets this host hold.

Every device holds one socket, and each worker process has its own open-file
limit, so a worker holds at most its limit minus a reserve for the runtime's
own files (the event loop, ZeroMQ, imported modules). The system-wide file
limit caps the host as a whole. Many workers (``--workers`` above the cores)
add up many per-process limits.

Every connection to one target (address and port) also needs its own
ephemeral port per source address, shared by all the workers of the host: the
host holds at most the ephemeral range times the source addresses it connects
from to any one target (``stressgrid.protocols.source``).
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
LOCAL_PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
# Linux's default ephemeral range, 32768-60999, when the range cannot be read.
DEFAULT_EPHEMERAL_PORTS = 28_232

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


def ephemeral_ports():
    """How many ephemeral ports the system gives out (its local port range)."""
    try:
        with open(LOCAL_PORT_RANGE) as file:
            low, high = (int(part) for part in file.read().split()[:2])
        return max(0, high - low + 1)
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_PORTS


def device_capacity(limit, workers, system_file_max=None, source_addresses=0, ports=None):
    """How many devices ``workers`` processes with ``limit`` open files can hold, connecting to
    one target from ``source_addresses`` addresses (0: the system's one) with ``ports`` each."""
    per_worker = max(0, limit.soft - RESERVED_FILES_PER_WORKER)
    capacity = per_worker * workers
    if system_file_max is None:
        system_file_max = _system_file_max()
    if system_file_max:
        capacity = min(capacity, max(0, system_file_max - RESERVED_FILES_PER_WORKER * workers))
    if ports is None:
        ports = ephemeral_ports()
    return min(capacity, ports * max(1, source_addresses))


def worker_capacities(capacity, workers):
    """``capacity`` dealt among ``workers``: what each worker may hold (the first get the remainder)."""
    share, remainder = divmod(capacity, workers)
    return [share + (1 if index < remainder else 0) for index in range(workers)]


def report_capacity(limit, workers, capacity, source_addresses=0, ports=None):
    """Log the capacity, as a warning when the open-file limit or the ports are what cap it."""
    ports = ephemeral_ports() if ports is None else ports
    if capacity == ports * max(1, source_addresses):
        log.warning("the ephemeral port range (%d ports per source address, %d source address(es)) "
                    "caps this host at %d connections to one target; add source addresses "
                    "(--source-addresses) or targets to hold more", ports, max(1, source_addresses), capacity)
    elif limit.soft < RECOMMENDED_OPEN_FILES:
        log.warning("open-file limit %d (hard limit %d) caps this host at %d devices "
                    "(%d workers); raise the hard limit (e.g. LimitNOFILE=%d) to hold more",
                    limit.soft, limit.hard, capacity, workers, RECOMMENDED_OPEN_FILES)
    else:
        log.info("open-file limit %d: this host holds up to %d devices over %d workers",
                 limit.soft, capacity, workers)
