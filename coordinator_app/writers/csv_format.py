"""The results CSV (DESIGN.md section 7), as pure functions of interval reports.

One row per report interval: ``clock`` (the interval's index, from 0: row
``n`` covers the run's ``n``-th report interval), ``elapsed_s`` (seconds from
the start of the run to the end of the interval), then every key in sorted
order. A histogram key becomes eleven columns - its
mean (named by the key itself), ``_min``, ``_pc1``, ``_pc10``, ``_pc25``,
``_median``, ``_pc75``, ``_pc90``, ``_pc99``, ``_max`` and ``_stddev``. A
counter key holds the run's cumulative total at the end of the interval and
its ``<name>_per_second`` key the rate over the interval; the gauge
``active_device_number`` is the number of devices at the end of it.
"""
import csv
import io

from stressgrid.metrics import rate_name

HISTOGRAM_COLUMNS = (
    ("", "mean"), ("_min", "min"), ("_pc1", "pc1"), ("_pc10", "pc10"), ("_pc25", "pc25"),
    ("_median", "median"), ("_pc75", "pc75"), ("_pc90", "pc90"), ("_pc99", "pc99"),
    ("_max", "max"), ("_stddev", "stddev"),
)


def _number(value):
    if isinstance(value, float):
        return round(value, 3)
    return value


def interval_row(report, run_started_at):
    """``(histogram summaries, scalar values)`` of one ``IntervalReport`` of a run that
    started at ``run_started_at`` (wall clock).

    Counters are reported as cumulative totals, with every counter the run
    has seen so far; rates are this interval's.
    """
    histograms = {name: h.summary() for name, h in report.histograms.items() if h.total_count}
    scalars = {}
    duration = report.duration_s
    for name, total in report.totals.items():
        scalars[name] = total
        scalars[rate_name(name)] = _number(report.counters.get(name, 0) / duration)
    for name, value in report.gauges.items():
        scalars[name] = _number(value)
    return {"clock": report.clock, "elapsed_s": round(report.ended_at - run_started_at, 3),
            "histograms": histograms, "scalars": scalars}


def keys(rows):
    """Every key of ``rows`` sorted, each as ``(key, is_histogram)``."""
    histogram_keys = set()
    scalar_keys = set()
    for row in rows:
        histogram_keys.update(row["histograms"])
        scalar_keys.update(row["scalars"])
    return [(key, key in histogram_keys) for key in sorted(histogram_keys | scalar_keys)]


def header(rows):
    """Column names for ``rows`` (from ``interval_row``): clock, elapsed_s, then keys sorted."""
    columns = ["clock", "elapsed_s"]
    for key, is_histogram in keys(rows):
        if is_histogram:
            columns.extend(key + suffix for suffix, _ in HISTOGRAM_COLUMNS)
        else:
            columns.append(key)
    return columns


def render(rows):
    """The whole CSV text for ``rows``.

    A histogram absent from an interval leaves its cells empty; a counter
    first seen later counts 0 before it.
    """
    ordered = keys(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header(rows))
    for row in rows:
        values = [row["clock"], row["elapsed_s"]]
        for key, is_histogram in ordered:
            if is_histogram:
                summary = row["histograms"].get(key)
                if summary is None:
                    values.extend("" for _ in HISTOGRAM_COLUMNS)
                else:
                    values.extend(_number(summary[stat]) for _, stat in HISTOGRAM_COLUMNS)
            else:
                values.append(row["scalars"].get(key, 0))
        writer.writerow(values)
    return out.getvalue()
