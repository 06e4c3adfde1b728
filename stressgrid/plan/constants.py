"""Numbers and names the coordinator, the CLI and the website share, each defined here once.

The plan's own limits and defaults live with its model (``model.py``), the
script functions per protocol in ``api.py``; the website reads all of them
from ``GET /api/meta`` instead of keeping copies.
"""

# In each ramp-up (ramp-down) step every generator starts (stops) this many devices, as in
# the original: the website and the CLI count ramp steps and round device counts by it.
DEVICES_PER_GENERATOR_STEP = 10

# A generator busier than this (percent of its CPU) may limit the load it makes: the
# results of a run that went over it are suspect.
CPU_WARNING_PERCENT = 80
# The histogram of each generator machine's CPU use (percent, one value a second).
CPU_HISTOGRAM = "cpu_percent"

# Host metrics named like errors (TCP retransmits of the whole generator machine, other
# traffic included): shown as warnings, never counted as errors of the run.
TCP_RETRANSMIT_METRIC = "network_tcp_retransmit_error"
HOST_WARNING_METRICS = frozenset({TCP_RETRANSMIT_METRIC})

# Each worker's event-loop lag (how late its loop wakes up): a generator health metric, shown
# beside generator CPU; a blocked loop delays every device on it.
LOOP_LAG_HISTOGRAM = "worker_loop_lag_us"
# Loop lag (p99 over a second, all workers merged) past this delays the devices' own timings
# by as much: the results of a run that went over it are suspect, like those over the CPU limit.
LOOP_LAG_WARNING_US = 100_000
# Histograms of the generators' own health, shown beside generator CPU rather than among the
# script's latencies.
GENERATOR_HISTOGRAMS = frozenset({CPU_HISTOGRAM, LOOP_LAG_HISTOGRAM})

# Failures of the load generation itself, not of the target: the run did not make the load its
# plan asked for, so it has errors whatever its thresholds say (counters, without "_count").
WORKER_KILLED_ERROR = "worker_killed_error"
WORKER_CRASHED_ERROR = "worker_crashed_error"
DEVICE_CANCELLED_ERROR = "device_cancelled_error"
DEVICE_UNPLACED_ERROR = "device_unplaced_error"
GENERATOR_LOST_ERROR = "generator_lost_error"
FLEET_ERRORS = frozenset({WORKER_KILLED_ERROR, WORKER_CRASHED_ERROR, DEVICE_CANCELLED_ERROR, DEVICE_UNPLACED_ERROR,
                          GENERATOR_LOST_ERROR})

# Every HTTP response also counts in its status class (counters ``response_1xx_count`` ..
# ``response_5xx_count``); the 4xx and 5xx classes are shown as warnings (not errors: the
# original counts a response whatever its status), and thresholds can gate on them.
# (the compiled recorder names them once more, stressgrid._core.metrics.STATUS_CLASS_COUNTERS).
STATUS_CLASS_COUNTERS = ("response_1xx", "response_2xx", "response_3xx", "response_4xx", "response_5xx")
WARNING_STATUS_COUNTERS = frozenset(STATUS_CLASS_COUNTERS[3:])

# A request a script names (``name=``) also counts in its group: ``request_<name>_headers_us``,
# ``request_<name>_body_us``, ``request_<name>_response_count`` and its status classes (the
# compiled recorder names them once more, stressgrid._core.metrics.REQUEST_GROUP_PREFIX).
REQUEST_GROUP_PREFIX = "request_"
REQUEST_GROUP_RESPONSES = "_response"

# ``check(name, condition)`` counts into these two counters (without ``_count``).
CHECK_PREFIX = "check_"
CHECK_PASS_SUFFIX = "_pass"
CHECK_FAIL_SUFFIX = "_fail"


# The protocol a new plan has unless it says otherwise (the CLI's and the plan form's).
DEFAULT_PROTOCOL = "http"

# How the plan form names each protocol (api.PROTOCOLS, in that order) and the port it
# suggests for it.
PROTOCOL_LABELS = {
    "http10": "HTTP 1.0", "http10s": "HTTP 1.0 over TLS", "http": "HTTP 1.1",
    "https": "HTTP 1.1 over TLS", "http2": "HTTP/2", "http2s": "HTTP/2 over TLS",
    "tcp": "TCP", "udp": "UDP", "mqtt": "MQTT", "mqtts": "MQTT over TLS",
}
# The MQTT version of mqtt and mqtts devices (opts.mqtt_version), and the ways a plan may
# write one -> as the plan keeps it.
DEFAULT_MQTT_VERSION = "5.0"
MQTT_VERSIONS = {"5.0": "5.0", "5": "5.0", 5: "5.0", "3.1.1": "3.1.1"}
MQTT_VERSION_NAMES = tuple(dict.fromkeys(MQTT_VERSIONS.values()))  # as kept: "5.0", "3.1.1"
DEFAULT_PORTS = {
    "http10": 80, "http10s": 443, "http": 80, "https": 443, "http2": 80, "http2s": 443,
    "tcp": 6379, "udp": 53, "mqtt": 1883, "mqtts": 8883,
}


def ramp_step_size(generators):
    """Devices started per ramp step with this many generators (at least one counted)."""
    return DEVICES_PER_GENERATOR_STEP * max(1, generators)


# More source addresses than this in one generator's pool is a typo (a /8), not a plan.
MAX_POOL_ADDRESSES = 65_536

def effective_devices(desired, generators):
    """``desired`` rounded down to a multiple of the ramp step, as the website's form does."""
    step = ramp_step_size(generators)
    return (desired // step) * step

# A run's phases as the API reports them (its "state"), and the two it ends in.
RAMPUP = "rampup"
SUSTAIN = "sustain"
RAMPDOWN = "rampdown"
COOLDOWN = "cooldown"
DONE = "done"
ABORTED = "aborted"
FINAL_STATES = (DONE, ABORTED)


def plural(count, word):
    """``1 generator``, ``2 generators``: counts in events, errors and the CLI's lines."""
    return f"{count} {word}{'' if count == 1 else 's'}"
