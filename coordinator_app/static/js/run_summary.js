// A run's whole-run summary and verdict, as the coordinator computed them (the same
// numbers as summary.json, the CLI's table and the HTML report): the finished view of
// the live panel and a History row's details both show them.

import { element } from "./dom.js";
import { compact, formatterFor, integer, micros } from "./format.js";

const HISTOGRAM_COLUMNS = [["count", "count"], ["mean", "mean"], ["p50", "p50"], ["p90", "p90"],
  ["p99", "p99"], ["p99.9", "p99_9"], ["max", "max"]];
const VERDICT_TEXT = {
  passed: ["PASSED", "verdict-passed"],
  failed: ["FAILED", "verdict-failed"],
};
const LIVE_TEXT = {
  passed: ["thresholds passing so far", "verdict-passing"],
  failed: ["thresholds failing", "verdict-failing"],
};

/** ``[text, class]`` of a verdict's badge, or null when the run has no thresholds. */
export function verdictBadge(verdict) {
  if (!verdict || !verdict.outcome) return null;
  return (verdict.final ? VERDICT_TEXT : LIVE_TEXT)[verdict.outcome] || null;
}

/** A threshold's measured value in its metric's unit. */
export function thresholdValue(result) {
  const value = result.actual;
  if (value === null || value === undefined) return "no data";
  const metric = result.expr.split(/\s+/)[0];
  if (metric === "error_rate") return `${value.toFixed(2)}%`;
  if (metric.endsWith("_us")) return micros(value);
  return formatterFor(metric)(value);
}

/** Show ``verdict`` on the element ``badge`` (a ``kind``: badge or flag; hidden without thresholds). */
export function showVerdictBadge(badge, verdict, kind = "badge") {
  const shown = verdictBadge(verdict);
  badge.hidden = !shown;
  if (!shown) return;
  const failing = (verdict.thresholds || []).filter((t) => t.state === "failed" || t.state === "failing");
  badge.textContent = shown[0];
  badge.className = `${kind} verdict ${shown[1]}`;
  badge.title = failing.length ? failing.map((t) => `${t.expr}: ${thresholdValue(t)}`).join("\n") : "";
}

/** A compact table: a header row, then one row per ``rows`` entry named by its first cell. */
export function table(className, headers, rows) {
  const node = element("table", `table compact ${className}`);
  const head = element("tr");
  headers.forEach((label, i) => head.appendChild(element("th", i ? "num" : "", label)));
  node.appendChild(element("thead")).appendChild(head);
  const body = node.appendChild(element("tbody"));
  for (const cells of rows) {
    const row = body.appendChild(element("tr"));
    row.dataset.name = cells[0];
    cells.forEach((cell, i) => row.appendChild(element("td", i ? "num" : "", cell)));
  }
  return node;
}

/** The thresholds with their states and measured values. */
export function thresholdList(verdict) {
  const root = element("div", "thresholds");
  const badge = element("span", "badge");
  showVerdictBadge(badge, verdict);
  root.appendChild(badge);
  const list = root.appendChild(element("ul", "threshold-list"));
  for (const result of verdict.thresholds || []) {
    const item = list.appendChild(element("li", `threshold threshold-${result.state}`));
    item.dataset.state = result.state;
    item.append(element("span", "threshold-state", result.state.replace("_", " ")),
      element("code", "", result.expr), element("span", "threshold-actual", thresholdValue(result)));
    if (result.abort_on_fail) item.appendChild(element("span", "muted small", "abort on fail"));
  }
  return root;
}

/** The whole-run summary: histograms, counters with sustain-phase rates and peaks, error rate. */
export function summaryTables(summary) {
  const root = element("div", "run-summary-tables");
  const histograms = Object.entries(summary.histograms || {});
  if (histograms.length) {
    root.appendChild(table("summary-histograms", ["Histogram", ...HISTOGRAM_COLUMNS.map(([label]) => label)],
      histograms.map(([name, h]) => [name, ...HISTOGRAM_COLUMNS.map(([, key]) =>
        (key === "count" ? integer : formatterFor(name))(h[key]))])));
  }
  const counters = Object.entries(summary.counters || {});
  if (counters.length) {
    root.appendChild(table("summary-counters", ["Counter", "total", "rate/s", "peak/s"],
      counters.map(([name, c]) => {
        const format = formatterFor(name, true);
        return [name, formatterFor(name)(c.total), format(c.rate), format(c.peak)];
      })));
    const window = summary.rate_window || {};
    root.appendChild(element("p", "muted small",
      `rate/s: the mean over ${window.phase === "sustain" ? "the sustain phase" : "the whole run"} ` +
      `(${window.seconds} s); peak/s: the busiest second.`));
  }
  const requests = Object.entries(summary.requests || {});
  if (requests.length) {
    root.appendChild(table("summary-requests", ["Request", "count", "rate/s", "p50", "p90", "p99", "max", "4xx", "5xx"],
      requests.map(([name, r]) => {
        const headers = r.headers || {};
        return [name, integer(r.count), compact(r.rate), ...["p50", "p90", "p99", "max"].map((key) => micros(headers[key])),
          integer(r.response_4xx), integer(r.response_5xx)];
      })));
    root.appendChild(element("p", "muted small", "Named requests: p50 to max of each one's headers_us; 4xx, 5xx: its error statuses."));
  }
  const checks = Object.entries(summary.checks || {});
  if (checks.length) {
    root.appendChild(table("summary-checks", ["Check", "passed", "of calls"],
      checks.map(([name, c]) => [name, `${c.pass_percent.toFixed(2)}%`, integer(c.passed + c.failed)])));
  }
  const rate = summary.error_rate_percent || 0;
  const line = element("p", rate ? "error-rate danger-text" : "error-rate");
  line.append("Error rate ", element("strong", "", `${rate.toFixed(2)}%`),
    element("span", "muted small", " of responses, receives and errors"));
  root.appendChild(line);
  return root;
}

/** Everything a finished run's report says at a glance (``report``: the API's run summary). */
export function runSummary(report) {
  const root = element("div", "run-summary");
  if (report.verdict && report.verdict.thresholds && report.verdict.thresholds.length) {
    root.appendChild(thresholdList(report.verdict));
  }
  if (report.summary) root.appendChild(summaryTables(report.summary));
  return root;
}
