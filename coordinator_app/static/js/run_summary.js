// A run's whole-run summary and verdict, as the coordinator computed them (the same
// numbers as summary.json, the CLI's table and the HTML report): the finished view of
// the live panel and a History row's details both show them.

import { element } from "./dom.js";
import { formatterFor, micros } from "./format.js";

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
    if (result.limit !== undefined) {
      item.appendChild(element("span", "muted small threshold-limit",
        `limit ${thresholdValue({ ...result, actual: result.limit })}, the baseline's ` +
        `${thresholdValue({ ...result, actual: result.baseline })}`));
    }
    if (result.abort_on_fail) item.appendChild(element("span", "muted small", "abort on fail"));
  }
  return root;
}

/** Append tables as the coordinator lays them out (``{kind, columns, rows, warnings, note}``)
 * to ``root``: the rows it warns of marked, each table's note under it. */
export function laidTables(root, tables) {
  for (const laid of tables || []) {
    const node = root.appendChild(table(`summary-${laid.kind}`, laid.columns, laid.rows));
    for (const row of node.querySelectorAll("tbody tr")) {
      if (laid.warnings.includes(row.dataset.name)) row.classList.add("warning-row");
    }
    if (laid.note) root.appendChild(element("p", "muted small", `${laid.note}.`));
  }
  return root;
}

/**
 * The whole-run summary's tables as the coordinator lays them out for every view (the API's
 * ``summary_tables``: the CLI's table and the HTML report show the same rows), then the error rate.
 */
export function summaryTables(summary, tables) {
  const root = element("div", "run-summary-tables");
  laidTables(root, tables);
  const rate = summary.error_rate_percent || 0;
  const line = element("p", rate ? "error-rate danger-text" : "error-rate");
  line.append("Error rate ", element("strong", "", `${rate.toFixed(2)}%`),
    element("span", "muted small", " of responses, receives and errors"));
  root.appendChild(line);
  return root;
}

/** Everything a finished run's report says at a glance (``detail``: the API's run, with its
 * ``summary`` report and ``summary_tables``). */
export function runSummary(detail) {
  const report = detail.summary;
  const root = element("div", "run-summary");
  if (report.verdict && report.verdict.thresholds && report.verdict.thresholds.length) {
    root.appendChild(thresholdList(report.verdict));
  }
  if (report.summary) root.appendChild(summaryTables(report.summary, detail.summary_tables));
  return root;
}
