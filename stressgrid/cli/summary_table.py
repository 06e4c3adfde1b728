"""The end-of-run table on stderr: how fast, how many failed, did it pass.

Every number comes from the run's whole-run summary (``summary.summary`` of
the API's run, the same as ``summary.json``): per histogram the exact count,
mean, p50, p90, p99, p99.9 and max; per counter the total, the mean rate over
the sustain phase and the peak second; the error rate; each threshold with the
value it measured. Fits 80 columns.
"""
from stressgrid.plan.constants import (CHECK_PREFIX, CPU_WARNING_PERCENT, GENERATOR_HISTOGRAMS, LOOP_LAG_WARNING_US,
                                       REQUEST_GROUP_PREFIX, WARNING_STATUS_COUNTERS, plural)
from stressgrid.plan.thresholds import ThresholdError, parse

from .display import BOLD, DIM, RED, YELLOW, error_name, format_bytes, format_rate, format_us, \
    is_host_error

NAME_WIDTH = 20
HISTOGRAM_COLUMNS = (("count", "count"), ("mean", "mean"), ("p50", "p50"), ("p90", "p90"),
                     ("p99", "p99"), ("p99.9", "p99_9"), ("max", "max"))
WATCHED_EVENTS = ("generator_lost", "generator_cpu_high", "generator_loop_lag_high", "cohort_skipped",
                  "cohort_not_sent")
VERDICT_MARKS = {"passed": "PASS", "failed": "FAIL", "passing": "pass", "failing": "FAIL",
                 "no_data": "----"}


def _name(name):
    return name if len(name) <= NAME_WIDTH else name[:NAME_WIDTH - 1] + "~"


def format_value(expr, value, micro="us"):
    """A threshold's measured value in its metric's unit (``523us``, ``0.12%``, ``987``)."""
    if value is None:
        return "no data"
    try:
        threshold = parse(expr)
    except ThresholdError:
        return f"{value:g}"
    if threshold.kind == "histogram" and threshold.key.endswith("_us"):
        return format_us(value, micro)
    if threshold.kind == "error_rate" or threshold.key.endswith("_percent"):
        return f"{value:.2f}%"
    return format_rate(value) if isinstance(value, float) else f"{value:,}"


def histogram_rows(summary, micro="us"):
    """The histogram table: a header, then one line per histogram."""
    histograms = [(n, h) for n, h in sorted((summary.get("histograms") or {}).items())
                  if n not in GENERATOR_HISTOGRAMS and not n.startswith(REQUEST_GROUP_PREFIX)]
    if not histograms:
        return []
    rows = [(f"  {'histogram':<{NAME_WIDTH}}" + "".join(f"{title:>8}" for title, _ in HISTOGRAM_COLUMNS),
             DIM)]
    for name, h in histograms:
        cells = [f"{h.get('count', 0):>8,}"] + [f"{format_us(h.get(key), micro):>8}"
                                                 for _, key in HISTOGRAM_COLUMNS[1:]]
        rows.append((f"  {_name(name):<{NAME_WIDTH}}" + "".join(cells), None))
    return rows


def counter_rows(summary):
    """The counter table: total, mean rate over the sustain phase, peak second."""
    counters = [(n, c) for n, c in sorted((summary.get("counters") or {}).items())
                if not n.startswith(("network_", CHECK_PREFIX, REQUEST_GROUP_PREFIX)) and not n.endswith("_error")]
    if not counters:
        return []
    window = summary.get("rate_window") or {}
    where = "the sustain phase" if window.get("phase") == "sustain" else "the whole run"
    rows = [(f"  {'counter':<{NAME_WIDTH}}{'total':>14}{'rate/s':>12}{'peak/s':>12}", DIM)]
    for name, c in counters:
        warn = name in WARNING_STATUS_COUNTERS and c.get("total", 0) > 0
        rows.append((f"  {_name(name):<{NAME_WIDTH}}{c.get('total', 0):>14,}"
                     f"{format_rate(c.get('rate', 0)):>12}{format_rate(c.get('peak', 0)):>12}"
                     + ("  (error statuses: a warning, not counted as errors)" if warn else ""),
                     YELLOW if warn else None))
    rows.append((f"  (rate/s: the mean over {where}, {window.get('seconds', 0):.1f} s; "
                 f"peak/s: the busiest second)", DIM))
    return rows


def request_rows(summary, micro="us"):
    """The named requests: responses, rate, their headers_us percentiles and error statuses."""
    groups = summary.get("requests") or {}
    if not groups:
        return []
    rows = [(f"  {'request':<{NAME_WIDTH}}{'count':>9}{'rate/s':>9}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
             f"{'4xx':>7}{'5xx':>7}", DIM)]
    for name, group in groups.items():
        headers = group.get("headers") or {}
        client_errors, server_errors = group.get("response_4xx", 0), group.get("response_5xx", 0)
        rows.append((f"  {_name(name):<{NAME_WIDTH}}{group.get('count', 0):>9,}{format_rate(group.get('rate', 0)):>9}"
                     + "".join(f"{format_us(headers.get(key), micro):>8}" for key in ("p50", "p90", "p99", "max"))
                     + f"{client_errors:>7,}{server_errors:>7,}",
                     YELLOW if client_errors or server_errors else None))
    rows.append(("  (p50 to max: each named request's headers_us; 4xx, 5xx: its error statuses)", DIM))
    return rows


def check_rows(summary):
    """Each ``check`` of the scripts with the share of its calls that passed."""
    rows = []
    for name, check in (summary.get("checks") or {}).items():
        passed, calls = check.get("passed", 0), check.get("passed", 0) + check.get("failed", 0)
        rows.append((f"  {_name('check ' + name):<{NAME_WIDTH}}{check.get('pass_percent', 0):>13.2f}%  passed, "
                     f"{passed:,} of {calls:,}", YELLOW if check.get("failed") else None))
    return rows


def error_rows(summary, errors):
    """Each error counter with its count and first script line, then the error rate."""
    counters = summary.get("counters") or {}
    rows = []
    for name, e in sorted((errors or {}).items()):
        host = is_host_error(name)
        line = f"  {e['line']}" if e.get("line") else ""
        if host:
            line += "  (the generator hosts' TCP retransmits: a warning, not a run error)"
        rows.append((f"  {_name(error_name(name)):<{NAME_WIDTH}}{e.get('count', 0):>14,}{line}",
                     YELLOW if host else RED))
    if "error_rate_percent" in summary:
        operations = sum(c.get("total", 0) for n, c in counters.items()
                         if n in ("response", "receive") or (n.endswith("_error") and not is_host_error(n)))
        rate = summary["error_rate_percent"]
        rows.append((f"  {'error rate':<{NAME_WIDTH}}{rate:>13.2f}%  of {operations:,} responses, "
                     f"receives and errors", RED if rate else None))
    return rows


def threshold_rows(verdict, micro="us"):
    """``thresholds: N of M passed -> PASSED``, then each threshold and its measured value."""
    results = (verdict or {}).get("thresholds") or []
    if not results:
        return []
    passed = sum(1 for r in results if r.get("state") in ("passed", "passing"))
    outcome = (verdict.get("outcome") or "").upper()
    rows = [(f"thresholds: {passed} of {len(results)} passed -> {outcome}",
             BOLD + (RED if outcome == "FAILED" else ""))]
    for r in results:
        mark = VERDICT_MARKS.get(r.get("state"), "?")
        abort = "  (abort_on_fail)" if r.get("abort_on_fail") else ""
        rows.append((f"  {mark}  {r.get('expr', ''):<40} {format_value(r.get('expr', ''), r.get('actual'), micro):>12}"
                     f"{abort}", RED if mark == "FAIL" else None))
    return rows


def summary_rows(detail, micro="us", seen_events=()):
    """Every line of the end-of-run table for a finished run's API detail."""
    report = detail.get("summary") or {}
    summary = report.get("summary") or {}
    state = detail.get("state") or report.get("state")
    generators = report.get("generators") or {}
    head = (f"run {detail.get('id')} {state} after {report.get('duration_s', 0):.1f} s: "
            f"{report.get('devices_started', 0):,} of {report.get('devices_requested', 0):,} "
            f"devices started on {plural(len(generators), 'generator')}")
    if report.get("note"):
        head += f" ({report['note']})"
    rows = [(head, BOLD)]
    rows += histogram_rows(summary, micro)
    rows += request_rows(summary, micro)
    rows += counter_rows(summary)
    rows += check_rows(summary)
    counters = summary.get("counters") or {}
    if "network_rx_bytes" in counters or "network_tx_bytes" in counters:
        rows.append((f"  {'network rx / tx':<{NAME_WIDTH}}"
                     f"{format_bytes((counters.get('network_rx_bytes') or {}).get('total', 0)):>14}"
                     f" / {format_bytes((counters.get('network_tx_bytes') or {}).get('total', 0))}",
                     None))
    cpu = (report.get("maxima") or {}).get("max_cpu_percent")
    if cpu is not None:
        rows.append((f"  {'peak generator cpu':<{NAME_WIDTH}}{cpu:>13.0f}%"
                     + (f"  over {CPU_WARNING_PERCENT}%: results may be limited by the generator"
                        if cpu > CPU_WARNING_PERCENT else ""),
                     YELLOW if cpu > CPU_WARNING_PERCENT else None))
    lag = (report.get("maxima") or {}).get("max_loop_lag_p99_us")
    if lag is not None:
        over = lag > LOOP_LAG_WARNING_US
        rows.append((f"  {'peak loop lag p99':<{NAME_WIDTH}}{format_us(lag, micro):>14}"
                     + (f"  over {format_us(LOOP_LAG_WARNING_US, micro)}: the latencies include the generator's delay"
                        if over else ""), YELLOW if over else None))
    rows += error_rows(summary, report.get("errors"))
    for event in report.get("events") or ():
        key = (event.get("time"), event.get("kind"), event.get("message"))
        if event.get("kind") in WATCHED_EVENTS and key not in seen_events:
            rows.append((f"  {event.get('kind')}: {event.get('message')}", YELLOW))
    for failure in report.get("writer_errors") or ():
        rows.append((f"  writer {failure.get('writer')} failed in {failure.get('stage')}: "
                     f"{failure.get('error')}", RED))
    rows += threshold_rows(report.get("verdict"), micro)
    return rows


def show_summary(display, detail):
    """Print the end-of-run table through ``display`` (stderr)."""
    display.close()
    for text, style in summary_rows(detail, display.micro, display.seen_events):
        display.message(text, style)
