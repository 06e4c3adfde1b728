// The run at a glance: its main rate, the p50/p90/p99 of its main latency, active devices and
// errors per second, each a chart over the whole run so far on one time axis, the plan's
// phases shaded. The coordinator picks the main metrics and makes the points (GET
// /api/runs/<id>/overview for the run so far, then each second's point in the telemetry).

import { api } from "./api.js";
import { LineChart } from "./chart.js";
import { element } from "./dom.js";
import { compact, formatterFor, integer, micros, metricLabel } from "./format.js";

// Downsample the page's own points the way the coordinator does, past this many.
const MAX_POINTS = 1800;

/** Overview points (the API's arrays, named by ``fields``) as chart points. */
export function chartPoints(fields, rows) {
  return rows.map((row) => Object.fromEntries(fields.map((field, i) => [field, row[i]])));
}

export class Overview {
  constructor(root) {
    this.root = root;
    this.runId = null;
    this.fields = null;
    this.names = null;
    this.points = [];
    this.charts = null;
    this.fetching = null;
  }

  /** Show run ``runId`` (fetching its points so far), or nothing (``null``). */
  show(runId) {
    if (runId === this.runId) return;
    this.runId = runId;
    this.points = [];
    this.names = null;
    this.root.hidden = !runId;
    if (runId) this.fetch();
  }

  fetch() {
    const runId = this.runId;
    this.fetching = api.overview(runId).then((answer) => {
      if (runId !== this.runId) return;
      this.fields = answer.fields;
      this.setNames(answer.names);
      this.points = chartPoints(answer.fields, answer.points);
      this.render();
    }).catch(() => {}).finally(() => {
      this.fetching = null;
    });
  }

  /** One second's telemetry of the shown run (its ``overview``: ``{names, point}``). */
  add(telemetry) {
    const second = telemetry && telemetry.overview;
    if (!second || !this.runId) return;
    if (!this.fields) {
      // The run's points were not there yet (it had just started): ask again.
      if (!this.fetching) this.fetch();
      return;
    }
    const changed = !this.names || second.names.rate !== this.names.rate || second.names.latency !== this.names.latency;
    if (changed) {
      // The main metrics settled on others: the run's points so far, with them.
      if (!this.fetching) this.fetch();
      return;
    }
    const point = chartPoints(this.fields, [second.point])[0];
    const last = this.points[this.points.length - 1];
    if (last && point.t <= last.t) return;
    this.points.push(point);
    if (this.points.length > MAX_POINTS) this.points = this.points.filter((_, i) => i % 2 === 0);
    this.render();
  }

  setNames(names) {
    const same = this.names && this.names.rate === names.rate && this.names.latency === names.latency;
    this.names = names;
    if (same && this.charts) return;
    for (const chart of this.charts || []) chart.destroy();
    this.root.textContent = "";
    const rate = names.rate ? `${metricLabel(names.rate)} per second` : "no rate yet";
    const latency = names.latency ? `${metricLabel(names.latency)} (${names.latency})` : "no latency yet";
    const panel = (key, title, series, format) => {
      const box = this.root.appendChild(element("div", "overview-chart"));
      box.dataset.chart = key;
      box.appendChild(element("div", "overview-title", title));
      const plot = box.appendChild(element("div", "metric-chart"));
      return new LineChart(plot, { series, format, height: 90, elapsed: true });
    };
    this.charts = [
      panel("rate", rate, [{ key: "rate", label: "per second", className: "s-rate", area: true }],
        names.rate ? formatterFor(names.rate, true) : compact),
      panel("latency", latency, [
        { key: "p50", label: "p50", className: "s-p50" },
        { key: "p90", label: "p90", className: "s-p90" },
        { key: "p99", label: "p99", className: "s-p99" },
      ], micros),
      panel("devices", "active devices", [{ key: "devices", label: "devices", className: "s-max" }], integer),
      panel("errors", "errors per second", [{ key: "errors", label: "errors", className: "s-error", area: true }],
        (v) => `${compact(v)}/s`),
    ];
  }

  render() {
    if (!this.charts) return;
    for (const chart of this.charts) chart.update(this.points);
  }
}
