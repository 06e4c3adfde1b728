"""Host utilization, sampled once a second into the host's metrics.

- histogram ``cpu_percent``: the whole machine's CPU use over the last
  interval, one sample per call (an idle host reads as 1, the histogram's
  lowest value, rather than being counted as out of range);
- counters ``network_rx_bytes`` / ``network_tx_bytes``: bytes received and
  sent by every interface since the previous call;
- counter ``network_tcp_retransmit_error_count``: TCP segments retransmitted
  since the previous call (``RetransSegs`` of ``/proc/net/snmp``; Linux only).
"""
import psutil

from stressgrid.plan.constants import CPU_HISTOGRAM, TCP_RETRANSMIT_METRIC

NETWORK_RX_BYTES = "network_rx_bytes"
NETWORK_TX_BYTES = "network_tx_bytes"
TCP_RETRANSMITS = TCP_RETRANSMIT_METRIC + "_count"
SNMP_PATH = "/proc/net/snmp"


def read_tcp_retransmits(path=SNMP_PATH):
    """The kernel's cumulative ``Tcp: RetransSegs``, or ``None`` where it is not available."""
    try:
        with open(path) as file:
            tcp_lines = [line.split() for line in file if line.startswith("Tcp:")]
    except OSError:
        return None
    if len(tcp_lines) < 2 or "RetransSegs" not in tcp_lines[0]:
        return None
    column = tcp_lines[0].index("RetransSegs")
    try:
        return int(tcp_lines[1][column])
    except (IndexError, ValueError):
        return None


def _network_bytes():
    counters = psutil.net_io_counters()
    return (counters.bytes_recv, counters.bytes_sent) if counters is not None else (0, 0)


class HostSampler:
    """Deltas of the host's CPU, network and retransmit counters between calls."""

    def __init__(self, snmp_path=SNMP_PATH):
        self._snmp_path = snmp_path
        psutil.cpu_percent(interval=None)  # the first call only sets the baseline
        self._network = _network_bytes()
        self._retransmits = read_tcp_retransmits(snmp_path)

    def sample_into(self, aggregate):
        """Record one sample of every host metric into a ``MetricsAggregate``."""
        cpu = psutil.cpu_percent(interval=None)
        aggregate.histogram(CPU_HISTOGRAM).record(max(1, round(cpu)))
        network = _network_bytes()
        for name, now, before in ((NETWORK_RX_BYTES, network[0], self._network[0]),
                                  (NETWORK_TX_BYTES, network[1], self._network[1])):
            _add_counter(aggregate, name, now - before)
        self._network = network
        retransmits = read_tcp_retransmits(self._snmp_path)
        if retransmits is not None and self._retransmits is not None:
            _add_counter(aggregate, TCP_RETRANSMITS, retransmits - self._retransmits)
        self._retransmits = retransmits


def _add_counter(aggregate, name, delta):
    # A counter that went backwards (an interface reset, a wrap) adds nothing.
    if delta > 0:
        aggregate.counters[name] = aggregate.counters.get(name, 0) + delta
