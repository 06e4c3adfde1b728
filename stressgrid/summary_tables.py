"""The tables of a finished run's whole-run summary, as every view shows them.

The coordinator's ``summarize`` computes the numbers (``summary.json``'s
``summary``). This module decides what is shown and how: which tables, their
columns, which metric goes in which table, each cell's text, the rows to
highlight and the note under each table. The terminal's end-of-run table, the
HTML report and the website (through the API's ``summary_tables``) render
these same tables, each in its own medium, so they cannot disagree on a row.

Where each metric goes:

- ``histograms``: every histogram but the generators' own (CPU, event-loop
  lag: each view shows them as generator health) and the named requests'
  (their ``request_<name>_*`` histograms are the ``requests`` table);
- ``requests``: each named request: responses, rate, its ``headers_us``
  percentiles, the p99 of its intended twin when the run measured one, and its
  error statuses;
- ``counters``: every counter but the network's bytes (their own line), the
  checks', the named requests' and the errors' (each view lists errors with
  their script lines);
- ``checks``: each ``check`` with the share of its calls that passed.
"""
import dataclasses

from stressgrid.formatting import format_bytes, format_rate, format_us
from stressgrid.plan.constants import (CHECK_PREFIX, GENERATOR_HISTOGRAMS, REQUEST_GROUP_PREFIX,
                                       WARNING_STATUS_COUNTERS)

HISTOGRAM_COLUMNS = (("count", "count"), ("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"),
                     ("p99.9", "p99_9"), ("max", "max"))
REQUEST_PERCENTILES = ("p50", "p90", "p99", "max")
HIDDEN_COUNTER_PREFIXES = ("network_", CHECK_PREFIX, REQUEST_GROUP_PREFIX)
ERROR_SUFFIX = "_error"


@dataclasses.dataclass(frozen=True)
class SummaryTable:
    """One table: ``kind`` names it (``histograms``, ``requests``, ``counters``, ``checks``);
    ``columns`` are the titles, the first the rows' names; ``rows`` hold each row's cells as
    text, its name first; ``warnings`` names the rows to highlight; ``note`` is shown under it."""

    kind: str
    columns: tuple
    rows: tuple
    warnings: frozenset = frozenset()
    note: str = ""

    def to_dict(self):
        return {"kind": self.kind, "columns": list(self.columns), "rows": [list(row) for row in self.rows],
                "warnings": sorted(self.warnings), "note": self.note}


def format_metric(name, value, micro="us"):
    """``value`` of metric ``name`` in its unit: ``_us`` as a duration, ``_percent`` as a
    percentage, ``_bytes`` in bytes, anything else as a count or rate."""
    if value is None:
        return "-"
    if name.endswith("_us"):
        return format_us(value, micro)
    if name.endswith("_percent"):
        return f"{value:.0f}%"
    if "_bytes" in name:
        return format_bytes(value)
    return format_rate(value) if isinstance(value, float) else f"{value:,}"


def summary_tables(summary, micro="us"):
    """The tables of ``summary`` (``summarize``'s dict), the empty ones left out."""
    tables = (_histograms(summary, micro), _requests(summary, micro), _counters(summary), _checks(summary))
    return [table for table in tables if table.rows]


def _histograms(summary, micro):
    rows = tuple((name, f"{figures.get('count', 0):,}",
                  *(format_metric(name, figures.get(key), micro) for _, key in HISTOGRAM_COLUMNS[1:]))
                 for name, figures in sorted((summary.get("histograms") or {}).items())
                 if name not in GENERATOR_HISTOGRAMS and not name.startswith(REQUEST_GROUP_PREFIX))
    return SummaryTable("histograms", ("histogram", *(title for title, _ in HISTOGRAM_COLUMNS)), rows)


def _requests(summary, micro):
    groups = summary.get("requests") or {}
    histograms = summary.get("histograms") or {}
    twins = {name: histograms.get(f"{REQUEST_GROUP_PREFIX}{name}_intended_headers_us") for name in groups}
    intended = any(twins.values())
    rows, warnings = [], set()
    for name, group in groups.items():
        headers = group.get("headers") or {}
        statuses = [group.get(status, 0) for status in sorted(WARNING_STATUS_COUNTERS)]
        if any(statuses):
            warnings.add(name)
        rows.append((name, f"{group.get('count', 0):,}", format_rate(group.get("rate", 0)),
                     *(format_us(headers.get(key), micro) for key in REQUEST_PERCENTILES),
                     *((format_us((twins[name] or {}).get("p99"), micro),) if intended else ()),
                     *(f"{count:,}" for count in statuses)))
    columns = ("request", "count", "rate/s", *REQUEST_PERCENTILES, *(("intended p99",) if intended else ()),
               *(status.split("_")[-1] for status in sorted(WARNING_STATUS_COUNTERS)))
    note = "p50 to max: each named request's headers_us"
    if intended:
        note += "; intended p99: the same from when its step should have started"
    return SummaryTable("requests", columns, tuple(rows), frozenset(warnings),
                        note + "; 4xx, 5xx: its error statuses")


def _counters(summary):
    window = summary.get("rate_window") or {}
    where = "the sustain phase" if window.get("phase") == "sustain" else "the whole run"
    rows, warnings = [], set()
    for name, counter in sorted((summary.get("counters") or {}).items()):
        if name.startswith(HIDDEN_COUNTER_PREFIXES) or name.endswith(ERROR_SUFFIX):
            continue
        if name in WARNING_STATUS_COUNTERS and counter.get("total", 0):
            warnings.add(name)
        rows.append((name, format_metric(name, counter.get("total", 0)), format_rate(counter.get("rate", 0)),
                     format_rate(counter.get("peak", 0))))
    note = (f"rate/s: the mean over {where}, {window.get('seconds', 0):.1f} s; peak/s: the busiest second"
            + ("; 4xx and 5xx responses are warnings, not errors" if warnings else ""))
    return SummaryTable("counters", ("counter", "total", "rate/s", "peak/s"), tuple(rows), frozenset(warnings),
                        note)


def _checks(summary):
    rows, warnings = [], set()
    for name, check in (summary.get("checks") or {}).items():
        calls = check.get("passed", 0) + check.get("failed", 0)
        if check.get("failed"):
            warnings.add(name)
        rows.append((name, f"{check.get('pass_percent', 0):.2f}%", f"{check.get('passed', 0):,}", f"{calls:,}"))
    return SummaryTable("checks", ("check", "passed", "passes", "calls"), tuple(rows), frozenset(warnings))
