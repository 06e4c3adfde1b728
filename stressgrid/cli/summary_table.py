"""The end-of-run table on stderr: how fast, how many failed, did it pass.

Every number comes from the run's whole-run summary (``summary.summary`` of
the API's run, the same as ``summary.json``). Its tables are the ones every
view shows (``stressgrid.summary_tables``), drawn here in columns; then the
network, generator health, errors with their script lines, the error rate,
watched events and each threshold with the value it measured.
"""
from stressgrid.formatting import format_bytes, format_us
from stressgrid.plan.constants import CPU_WARNING_PERCENT, LOOP_LAG_WARNING_US, plural
from stressgrid.plan.thresholds import ThresholdError, parse
from stressgrid.summary_tables import SummaryTable, format_metric, summary_tables

from .display import BOLD, DIM, RED, YELLOW, error_name, is_host_error

NAME_WIDTH = 20
COMPARISON_NAMED = 6  # the worse figures a comparison's first line names
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
    if threshold.kind == "error_rate" or threshold.key.endswith("_percent"):
        return f"{value:.2f}%"
    if threshold.stat == "count":
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    return format_metric(threshold.key, value, micro)


def table_rows(table, whole_names=False):
    """One of the summary's tables (``SummaryTable``): a title row, its rows, its note.
    The name column is ``NAME_WIDTH`` wide (``whole_names``: as wide as the longest name);
    each other column as wide as its widest cell."""
    widths = [max(len(table.columns[i]), *(len(row[i]) for row in table.rows)) + 2
              for i in range(1, len(table.columns))]
    width = max(NAME_WIDTH, *(len(row[0]) + 1 for row in table.rows)) if whole_names else NAME_WIDTH
    name = (lambda text: text) if whole_names else _name
    rows = [(f"  {table.columns[0]:<{width}}" + "".join(f"{title:>{w}}" for title, w in
                                                       zip(table.columns[1:], widths)), DIM)]
    for row in table.rows:
        rows.append((f"  {name(row[0]):<{width}}" + "".join(f"{cell:>{w}}" for cell, w in zip(row[1:], widths)),
                     YELLOW if row[0] in table.warnings else None))
    if table.note:
        rows.append((f"  ({table.note})", DIM))
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
        expr = r.get("expr", "")
        abort = "  (abort_on_fail)" if r.get("abort_on_fail") else ""
        if "limit" in r:
            abort = (f"  limit {format_value(expr, r['limit'], micro)}, the baseline's "
                     f"{format_value(expr, r.get('baseline'), micro)}") + abort
        rows.append((f"  {mark}  {expr:<40} {format_value(expr, r.get('actual'), micro):>12}"
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
    for table in summary_tables(summary, micro):
        rows += table_rows(table)
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


def comparison_rows(answer):
    """The lines of a comparison (the API's ``/api/runs/<id>/compare/<baseline>`` answer):
    a head naming both runs and what got worse, then its tables."""
    worse = (answer.get("comparison") or {}).get("worse") or []
    named = ", ".join(worse[:COMPARISON_NAMED]) + (f" and {len(worse) - COMPARISON_NAMED} more"
                                                    if len(worse) > COMPARISON_NAMED else "")
    head = f"compared with run {answer.get('baseline')}: " + (
        f"{plural(len(worse), 'figure')} worse: {named}" if worse else "nothing worse")
    if not answer.get("same_scripts", True):
        head += " (the runs' scripts differ)"
    rows = [(head, BOLD + (YELLOW if worse else ""))]
    for table in answer.get("tables") or ():
        rows += table_rows(SummaryTable(table["kind"], tuple(table["columns"]),
                                        tuple(tuple(row) for row in table["rows"]),
                                        frozenset(table.get("warnings") or ()), table.get("note") or ""),
                           whole_names=True)
    return rows


def show_comparison(display, answer):
    """Print a comparison with a baseline run through ``display`` (stderr)."""
    for text, style in comparison_rows(answer):
        display.message(text, style)
