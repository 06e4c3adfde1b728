"""The run's report as one self-contained HTML file: ``report.html`` in the archive and
``results/<run id>.html`` beside it.

Everything is inline - styles, SVG charts, data - so the file opens from disk
and makes no network request. It shows the verdict and thresholds, the plan,
the whole-run summary table (the same numbers as ``summary.json``, the CLI
and the website), time series (rates, p50/p90/p99 per histogram, active
devices, errors, generator CPU), each histogram's latency distribution as an
HdrHistogram-style percentile plot on a log axis, errors with their script
lines, events and generators. ``render`` is a pure function of the run's data.
"""
import html
import json
import math
import time

from stressgrid.formatting import format_bytes, format_rate, format_us
from stressgrid.plan.constants import (CPU_HISTOGRAM, CPU_WARNING_PERCENT, GENERATOR_HISTOGRAMS, LOOP_LAG_HISTOGRAM,
                                       LOOP_LAG_WARNING_US)
from stressgrid.comparison import compare, comparison_tables
from stressgrid.summary_tables import summary_tables

from ..overview import MAIN_GROUP, group_order, metric_group, overview, phase_bands
from . import Writer
from .archive import report_name, write_atomically
from .series import QUANTILES, RunSeries
from .svg import line_chart

# The percentile plot's x axis: -log10(1 - p), ticks at 0%, 90%, 99%, ... up to the count's reach.
PERCENTILE_TICKS = ((0, "0%"), (1, "90%"), (2, "99%"), (3, "99.9%"), (4, "99.99%"), (5, "99.999%"),
                    (6, "99.9999%"))
PERCENTILE_POINTS_PER_DECADE = 40

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#111}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{font-weight:600;color:#444;border-bottom:1px solid #ccc}
tr:nth-child(even) td{background:#f6f7f9}.badge{display:inline-block;padding:2px 10px;border-radius:10px;
font-weight:700;color:#fff}.passed{background:#16a34a}.failed{background:#dc2626}.none{background:#6b7280}
.fail{color:#b91c1c;font-weight:600}.warn{color:#b45309;font-weight:600}.muted{color:#666}pre{background:#f6f7f9;padding:10px;overflow:auto;
max-height:420px;font-size:12px}svg.chart{width:100%;max-width:760px;display:block;margin:8px 0}
.plot{fill:#fff;stroke:#ccc}.grid{stroke:#eee}.title{font-weight:600;font-size:13px}
.ytick{text-anchor:end;font-size:11px;fill:#555}.xtick{text-anchor:middle;font-size:11px;fill:#555}
.xlabel{text-anchor:end;font-size:11px;fill:#777}.legend{font-size:12px}.empty{text-anchor:middle;fill:#999}
table.errors td:last-child{text-align:left;font-family:monospace;white-space:pre-wrap}
.band{fill-opacity:.08}.band-rampup{fill:#2563eb}.band-sustain{fill:#16a34a}.band-rampdown{fill:#9333ea}
.band-cooldown{fill:#6b7280}.band-key{padding:0 6px;border-radius:4px}.band-key.band-rampup{background:#2563eb22}
.band-key.band-sustain{background:#16a34a22}.band-key.band-rampdown{background:#9333ea22}
.band-key.band-cooldown{background:#6b728022}details.group{margin:6px 0}details.group summary{cursor:pointer;
font-weight:600}.overview{display:grid;grid-template-columns:1fr 1fr;gap:0 16px}.overview svg.chart{max-width:100%}
"""


def _e(value):
    return html.escape(str(value))


def _table(headers, rows, cls=""):
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _time(stamp):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp)) if stamp else "-"


def _percent(value):
    return f"{value:.0f}%"


def percentile_curve(histogram):
    """``[(-log10(1 - p), value at p)]`` from 0% to the highest percentile the count resolves."""
    count = histogram.total_count
    if not count:
        return []
    decades = min(max(math.log10(count), 1.0), 6.0)
    steps = int(decades * PERCENTILE_POINTS_PER_DECADE)
    curve = []
    for step in range(steps + 1):
        x = decades * step / steps
        percentile = 100.0 * (1.0 - 10.0 ** -x)
        curve.append((x, max(histogram.value_at_percentile(percentile), 1)))
    curve.append((decades, max(histogram.max, 1)))
    return curve


def _verdict_section(verdict):
    if not verdict or not verdict.get("thresholds"):
        return ('<h2>Verdict</h2><p><span class="badge none">no thresholds</span> '
                '<span class="muted">the plan set no pass/fail conditions</span></p>')
    outcome = verdict.get("outcome") or "none"
    rows = []
    for result in verdict["thresholds"]:
        failed = result.get("state") == "failed"
        actual = result.get("actual")
        rows.append((f'<span class="{"fail" if failed else ""}">{_e(result.get("state"))}</span>',
                     _e(result.get("expr")), _e("no data" if actual is None else actual),
                     "yes" if result.get("abort_on_fail") else ""))
    return (f'<h2>Verdict</h2><p><span class="badge {_e(outcome)}" id="verdict">{_e(outcome.upper())}'
            f'</span></p>' + _table(("state", "threshold", "measured", "abort on fail"), rows,
                                    "thresholds"))


def _tables(tables):
    """``SummaryTable``s as HTML tables, their warned rows' names marked, each with its note."""
    parts = []
    for table in tables:
        rows = [[f'<span class="warn">{_e(row[0])}</span>' if row[0] in table.warnings else _e(row[0]),
                 *(_e(cell) for cell in row[1:])] for row in table.rows]
        parts.append(_table(table.columns, rows, table.kind))
        if table.note:
            parts.append(f'<p class="muted">{_e(table.note)}.</p>')
    return parts


def _summary_section(summary):
    parts = ["<h2>Summary</h2>", *_tables(summary_tables(summary))]
    parts.append(f'<p>error rate: <b id="error-rate">{summary.get("error_rate_percent", 0):.2f}%</b> '
                 f'<span class="muted">(every *_error count over responses + receives + errors)</span></p>')
    return "".join(parts)


def _comparison_section(baseline):
    """The run against its baseline (``(baseline id, comparison)``, or a sentence why not)."""
    if baseline is None:
        return ""
    if isinstance(baseline, str):
        return f"<h2>Compared with the baseline</h2><p class='muted'>{_e(baseline)}</p>"
    baseline_id, comparison, views = baseline
    worse = comparison["worse"]
    head = (f"<p><span class='fail'>{len(worse):,} worse by more than {comparison['tolerance_percent']:g}%:</span> "
            f"{_e(', '.join(worse))}</p>" if worse else "<p>nothing worse</p>")
    return (f"<h2 id='comparison'>Compared with run {_e(baseline_id)}</h2>" + head + _overlay(*views)
            + "".join(_tables(comparison_tables(comparison, baseline_id))))


def _overlay(run, baseline):
    """This run's main rate and main latency p99 over its baseline's, from each one's start
    (``overview.overview``'s dicts; nothing when the baseline kept no overview)."""
    if not run or not baseline or not run["points"] or not baseline["points"]:
        return ""
    charts = []
    for index, title, y_format in ((3, f"{run['names']['rate'] or 'rate'} per second", format_rate),
                                   (6, f"{run['names']['latency'] or 'latency'} p99", format_us)):
        charts.append(line_chart(f"{title}: this run and the baseline", [
            (label, [(row[0], row[index]) for row in view["points"]])
            for label, view in (("this run", run), ("baseline", baseline))],
            y_format=y_format, x_format=lambda x: f"{x:g} s"))
    return "<div class='overview'>" + "".join(charts) + "</div>"


def _overview_section(points, summary):
    """The run at a glance: its main rate, main latency, active devices and errors per second
    over the whole run on one time axis, the phases shaded (``overview.overview``'s points)."""
    view = overview(points, summary)
    rows = view["points"]
    if not rows:
        return "<h2 id='overview'>Overview</h2><p class='muted'>no per-second data</p>"
    names = view["names"]
    span = (0.0, max(rows[-1][0], 1.0))
    bands = phase_bands(rows)

    def chart(title, lines, y_format):
        return line_chart(title, [(label, [(row[0], row[index]) for row in rows]) for label, index in lines],
                          y_format=y_format, x_format=lambda x: f"{x:g} s", x_range=span, bands=bands)
    rate_format = format_rate if names["rate"] is None or "_bytes" not in names["rate"] else format_bytes
    return ("<h2 id='overview'>Overview</h2><div class='overview'>"
            + chart(f"{names['rate'] or 'no rate'} per second", [("per second", 3)], rate_format)
            + chart(f"{names['latency'] or 'no latency'}", [("p50", 4), ("p90", 5), ("p99", 6)], format_us)
            + chart("active devices", [("devices", 2)], lambda v: f"{v:,.0f}")
            + chart("errors per second", [("errors", 7)], format_rate)
            + "</div><p class='muted'>shaded: " + ", ".join(
                f"<span class='band-key band-{_e(phase)}'>{_e(phase)}</span>" for phase in dict.fromkeys(
                    band[2] for band in bands)) + "</p>")


def _series_section(points):
    """Every metric over time, folded by group (the main metrics open, named requests,
    checks, status classes, network, errors and the generators' health closed)."""
    if not points:
        return "<h2>Over time</h2><p class='muted'>no per-second data</p>"
    groups = {}
    for name in sorted({name for p in points for name in p.rates}):
        groups.setdefault(metric_group(name), {"rates": [], "histograms": []})["rates"].append(name)
    for name in sorted({name for p in points for name in p.quantiles} - {CPU_HISTOGRAM}):
        groups.setdefault(metric_group(name), {"rates": [], "histograms": []})["histograms"].append(name)
    groups.setdefault("generators", {"rates": [], "histograms": []})  # the busiest generator's CPU
    parts = ["<h2>Over time</h2>"]
    for group in sorted(groups, key=group_order):
        members = groups[group]
        charts = []
        if members["rates"]:
            charts.append(line_chart(f"{group}: rates per second", [
                (name, [(p.elapsed_s, p.rates.get(name, 0)) for p in points]) for name in members["rates"]],
                y_format=format_rate, x_format=lambda x: f"{x:g} s"))
        for name in members["histograms"]:
            title = ("generator loop health: worker event-loop lag" if name == LOOP_LAG_HISTOGRAM
                     else f"{name} per second")
            charts.append(_quantile_chart(title, name, points))
        if group == "generators":
            charts.append(line_chart("generator CPU (the busiest generator)", [
                ("cpu", [(p.elapsed_s, p.cpu_percent) for p in points])], y_format=_percent,
                x_format=lambda x: f"{x:g} s"))
        count = len(charts)
        parts.append(f"<details class='group' data-group='{_e(group)}'{' open' if group == MAIN_GROUP else ''}>"
                     f"<summary>{_e(group)} <span class='muted'>({count} chart{'s' if count != 1 else ''})"
                     f"</span></summary>{''.join(charts)}</details>")
    return "".join(parts)


def _quantile_chart(title, name, points):
    return line_chart(title, [
        (quantile, [(p.elapsed_s, p.quantiles[name][i] if name in p.quantiles else None)
                    for p in points]) for i, quantile in enumerate(QUANTILES)],
        y_format=format_us, x_format=lambda x: f"{x:g} s")


def _distribution_section(histograms):
    lines = [(name, percentile_curve(h)) for name, h in sorted(histograms.items())
             if name not in GENERATOR_HISTOGRAMS and h.total_count]
    if not lines:
        return ""
    reach = max(x for _, curve in lines for x, _ in curve)
    ticks = [(x, text) for x, text in PERCENTILE_TICKS if x <= reach + 1e-9]
    return ("<h2>Latency distribution</h2>" + line_chart(
        "value at percentile (whole run, log scale)", lines, y_format=format_us,
        x_format=lambda x: f"{100 * (1 - 10 ** -x):.4g}%", log_y=True, x_ticks=ticks,
        x_label="percentile"))


def _errors_section(errors):
    if not errors:
        return "<h2>Errors</h2><p>none</p>"
    rows = [(_e(name), f"{e.get('count', 0):,}", _e(e.get("line", ""))) for name, e in errors.items()]
    return "<h2>Errors</h2>" + _table(("error", "count", "first script line"), rows, "errors")


def _events_section(events):
    rows = [(_e(f"{e.get('elapsed_s', 0):.1f} s"), _e(e.get("kind")), _e(e.get("generator", "")),
             _e(e.get("message", ""))) for e in events]
    return "<h2>Events</h2>" + (_table(("at", "kind", "generator", "message"), rows, "events")
                                if rows else "<p>none</p>")


def _loop_lag_line(maxima):
    lag = maxima.get("max_loop_lag_p99_us")
    if lag is None:
        return ""
    warning = (f" <span class='fail'>over {format_us(LOOP_LAG_WARNING_US)}: the latencies include the "
               f"generator's delay</span>" if lag > LOOP_LAG_WARNING_US else "")
    return f"<p>worst worker event-loop lag (p99 of a second): {_e(format_us(lag))}{warning}</p>"


def render(info, report, histograms, points, baseline=None):
    """The report's HTML text.

    ``info``: the run's ``RunInfo``; ``report``: its summary (``summary.json``);
    ``histograms``: name -> whole-run ``Histogram``; ``points``: ``RunSeries.points``;
    ``baseline``: ``(baseline run id, compare()'s result, (this run's overview, the baseline's
    overview or None))``, a sentence saying why the run
    could not be compared with its baseline, or ``None`` for a run without one.
    """
    summary = report.get("summary") or {}
    generators = [(_e(name), f"{devices:,}") for name, devices in sorted((report.get("generators") or {}).items())]
    cpu = (report.get("maxima") or {}).get("max_cpu_percent")
    head = (f"<h1>{_e(info.name)}</h1><p class='muted'>run {_e(info.id)} &middot; {_e(report.get('state'))} "
            f"&middot; started {_e(_time(report.get('started_at')))} &middot; "
            f"{report.get('duration_s', 0):g} s &middot; {report.get('devices_started', 0):,} of "
            f"{report.get('devices_requested', 0):,} devices"
            + (f" &middot; {_e(report['note'])}" if report.get("note") else "") + "</p>")
    sections = [
        head, _verdict_section(report.get("verdict")), _overview_section(points, summary),
        _summary_section(summary), _comparison_section(baseline), _series_section(points), _distribution_section(histograms),
        _errors_section(report.get("errors") or {}), _events_section(report.get("events") or []),
        "<h2>Generators</h2>" + (_table(("generator", "devices started"), generators, "generators")
                                 if generators else "<p>none</p>")
        + (f"<p>peak generator CPU: {cpu:.0f}%"
           + (f" <span class='fail'>over {CPU_WARNING_PERCENT}%: results may be limited by the "
              f"generator</span>" if cpu > CPU_WARNING_PERCENT else "") + "</p>" if cpu is not None else "")
        + _loop_lag_line(report.get("maxima") or {}),
        "<h2>Plan</h2><pre>" + _e(json.dumps(info.plan, indent=2, sort_keys=True)) + "</pre>",
    ]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{_e(info.name)} - Stressgrid report</title><style>{STYLE}</style></head><body>"
            + "".join(sections) + "</body></html>\n")


class HtmlReportWriter(Writer):
    """Collects each second of a run and writes its report when the run ends.

    Runs before the archive writer, so ``report.html`` goes into the archive.
    """

    name = "html_report"

    def __init__(self, archive, store=None):
        """``store``: the run history, where a run's baseline (its plan's ``baseline``) is read."""
        self.archive = archive
        self.store = store
        self._series = {}

    def start(self, run):
        self._series[run.id] = RunSeries(run.started_at)

    def second(self, run, telemetry):
        series = self._series.get(run.id)
        if series is not None:
            series.add(telemetry)

    def points(self, run_id):
        """A copy of the points so far of run ``run_id`` (``None`` when it is not running).
        Called from other threads: the copy is taken in one step."""
        series = self._series.get(run_id)
        return list(series.points) if series is not None else None

    def finish(self, run, final):
        series = self._series.pop(run.id, None)
        report = final.to_dict(run.writer_errors)
        points = series.points if series else []
        view = overview(points, report.get("summary"))
        written = write_report(self.archive, run, report, final.totals.histograms, points,
                               self._baseline(run, report, view))
        return {**written, "overview": view}

    def _baseline(self, run, report, view):
        """``render``'s ``baseline`` for the run (its overview ``view``): its comparison with the
        run its plan names."""
        baseline_id = (run.plan or {}).get("baseline")
        if baseline_id is None or self.store is None:
            return None
        baseline = self.store.get(baseline_id)
        figures = ((baseline or {}).get("summary") or {}).get("summary")
        if figures is None:
            return f"run {baseline_id} is no longer in the history"
        if not report.get("summary"):
            return "this run has no summary to compare"
        return baseline_id, compare(report["summary"], figures), (view, self.store.overview(baseline_id))


def write_report(archive, info, report, histograms, points, baseline=None):
    """Render the report (``render``'s arguments) into the run's directory, so it goes into
    its archive, and beside the archive; returns ``{"report": its file name}``."""
    text = render(info, report, histograms, points, baseline)
    directory = archive.work_dir(info.id)
    directory.mkdir(parents=True, exist_ok=True)
    for path in (directory / "report.html", archive.results_dir / report_name(info.id)):
        write_atomically(path, text)
    return {"report": report_name(info.id)}
