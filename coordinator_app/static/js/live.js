// The live view: the active run (phase, time left, abort), its telemetry as numbers and
// charts of the last minutes, errors, generators and events.

import { api } from "./api.js";
import { LineChart } from "./chart.js";
import { comparePanel } from "./compare.js";
import { Overview } from "./overview.js";
import { element } from "./dom.js";
import {
  clock, compact, duration, formatterFor, integer, metricLabel, micros, percent,
} from "./format.js";
import { runSummary, showVerdictBadge, table } from "./run_summary.js";
import {
  groupOrder, isCpuOverWarning, isErrorCounter, isHostWarning, isLoopLagOverWarning, isStatusWarning, metricGroup,
  requestGroups,
} from "./rules.js";

// The most points a chart's series keeps (as the coordinator's report series).
const MAX_POINTS = 1800;
const PHASE_LABELS = {
  rampup: "Ramp-up", sustain: "Sustain", rampdown: "Ramp-down", cooldown: "Cooldown",
  done: "Done", aborted: "Aborted",
};
// A finished run's badge shows its result (stressgrid.plan.result), not only its state.
const RESULT_LABELS = {
  passed: "Passed", failed: "Failed", finished_with_errors: "Done · with errors", aborted: "Aborted",
};
const GENERATOR_ROWS = 20;

const FIRST = ["response", "headers_us", "body_us", "conn", "conn_us", "ws_upgrade_us", "send", "receive"];
const LAST = ["network_rx_bytes", "network_tx_bytes", "network_tcp_retransmit_error", "cpu_percent", "worker_loop_lag_us"];

/** A sort key for a metric card ("hist:conn_us", "rate:send_count"): errors, known, own, host. */
export function metricOrder(key, meta) {
  const name = key.replace(/^\w+:/, "");
  const base = name.replace(/_count$/, "");
  if (LAST.includes(base)) return `3-${LAST.indexOf(base)}`;
  if (isErrorCounter(name, meta)) return `0-${base}`;
  if (FIRST.includes(base)) return `1-${FIRST.indexOf(base)}`;
  return `2-${base}`;
}

/**
 * The state's telemetry when it belongs to its run: the state published the moment a
 * run starts still carries the last second before it (with the totals of the run
 * before), which must not seed this run's cards and charts.
 */
export function runTelemetry(state) {
  const telemetry = state.telemetry;
  if (!telemetry || !state.run) return null;
  return telemetry.time >= state.run.started_at ? telemetry : null;
}

/**
 * Time series of telemetry values, one point per telemetry second from the page's first
 * second of the run, for the charts: the whole run, every other point dropped each time a
 * series reaches ``maxPoints``.
 */
export class Series {
  constructor(maxPoints = MAX_POINTS) {
    this.maxPoints = maxPoints;
    this.points = new Map(); // name -> [{t, ...values}]
    this.lastTime = null;
  }

  clear() {
    this.points.clear();
    this.lastTime = null;
  }

  push(name, t, values) {
    let list = this.points.get(name);
    if (!list) {
      list = [];
      this.points.set(name, list);
    }
    list.push({ t, ...values });
    if (list.length >= this.maxPoints) this.points.set(name, list.filter((_, i) => i % 2 === 0));
  }

  /** Add one telemetry second; false when it was already added. */
  add(telemetry) {
    const t = telemetry.time;
    if (!Number.isFinite(t) || (this.lastTime !== null && t <= this.lastTime)) return false;
    this.lastTime = t;
    for (const [name, value] of Object.entries(telemetry.counters || {})) {
      this.push(`rate:${name}`, t, { v: value.per_second });
    }
    for (const [name, value] of Object.entries(telemetry.histograms || {})) {
      this.push(`hist:${name}`, t, { p50: value.p50, p90: value.p90, p99: value.p99, max: value.max });
    }
    this.push("active", t, { v: telemetry.active_device_number });
    this.push("cpu", t, { v: telemetry.max_cpu_percent });
    return true;
  }

  get(name) {
    return this.points.get(name) || [];
  }
}

export class LiveView {
  /** ``onRunEnded(runId)`` when the active run is gone; ``meta``: the coordinator's GET /api/meta. */
  constructor({ onRunEnded, meta }) {
    this.onRunEnded = onRunEnded;
    this.meta = meta;
    this.series = new Series();
    this.overview = new Overview(document.getElementById("run-overview"));
    this.cards = new Map();
    this.runId = null;
    this.shownRunId = null;
    this.plan = null;
    this.lastRun = null;
    this.idle = document.getElementById("live-idle");
    this.idleText = document.getElementById("idle-text");
    this.runPanel = document.getElementById("live-run");
    this.abortButton = document.getElementById("abort-button");
    this.dismissButton = document.getElementById("dismiss-button");
    this.abortButton.addEventListener("click", () => this.abortClicked());
    this.dismissButton.addEventListener("click", () => {
      this.shownRunId = null;
      this.render(this.state);
    });
  }

  /** A new state from the coordinator (stream or poll). */
  update(state) {
    this.state = state;
    const run = state.run;
    if (run && run.id !== this.runId) {
      // A new run: start its charts from nothing and fetch its plan for the timeline.
      this.series.clear();
      this.clearCards();
      this.runId = run.id;
      this.shownRunId = run.id;
      this.ended = null;
      this.plan = null;
      this.armAbort(false);
      api.run(run.id).then((detail) => {
        if (detail.id === this.runId) {
          this.plan = detail.plan;
          this.render(this.state);
        }
      }).catch(() => {});
    }
    if (run) {
      this.lastRun = run;
      const telemetry = runTelemetry(state);
      if (telemetry && this.series.add(telemetry)) this.overview.add(telemetry);
    } else if (this.runId) {
      const ended = this.runId;
      this.runId = null;
      this.ended = null;
      this.onRunEnded(ended);
      this.fetchEnded(ended);
    } else if (this.knownLastRun !== undefined && state.last_run_id && state.last_run_id !== this.knownLastRun
               && state.last_run_id !== this.shownRunId) {
      // A run started and ended between two states this page got (a short run, a page that
      // was busy): show its end all the same.
      this.series.clear();
      this.clearCards();
      this.shownRunId = state.last_run_id;
      this.ended = null;
      this.plan = null;
      this.onRunEnded(state.last_run_id);
      this.fetchEnded(state.last_run_id);
    }
    this.knownLastRun = state.last_run_id || null;
    this.render(state);
  }

  render(state) {
    if (!state) return;
    this.renderGenerators(state);
    this.renderEvents(state.events || []);
    const showing = this.shownRunId;
    this.overview.show(showing);
    this.idle.hidden = Boolean(showing);
    this.runPanel.hidden = !showing;
    if (!showing) {
      document.title = "Stressgrid";
      const count = (state.generators || []).length;
      this.idleText.textContent = count
        ? `No run in progress. ${count} generator${count > 1 ? "s" : ""} ready.`
        : "No run in progress, and no generator registered yet.";
      return;
    }
    const run = state.run && state.run.id === showing ? state.run : null;
    this.renderHead(run);
    this.renderFinished(run ? null : this.ended);
    if (run) {
      const telemetry = runTelemetry(state) || { generator_count: (state.generators || []).length };
      this.renderTiles(telemetry, run);
      this.renderMetrics(telemetry);
    }
  }

  /** The final record of a run that just ended (its report may take a moment). */
  async fetchEnded(runId, attempt = 0) {
    try {
      const detail = await api.run(runId);
      if (this.shownRunId !== runId) return;
      if (detail.state === "done" || detail.state === "aborted") {
        this.ended = detail;
        this.overview.fetch(); // the whole run, as the coordinator kept it
        this.render(this.state);
        return;
      }
    } catch (error) {
      if (error.status === 404) return;
    }
    if (attempt < 60) setTimeout(() => this.fetchEnded(runId, attempt + 1), 1000);
  }

  // -- run head ------------------------------------------------------------

  renderHead(run) {
    const last = this.lastRun || {};
    document.getElementById("run-id").textContent = this.shownRunId;
    const phase = document.getElementById("run-phase");
    let label;
    let kind;
    const result = !run && this.ended && this.ended.result;
    if (result && RESULT_LABELS[result]) {
      label = RESULT_LABELS[result];
      kind = result;
    } else if (!run) {
      const final = (this.ended && this.ended.state) || last.outcome || (last.state === "aborting" ? "aborted" : "done");
      label = PHASE_LABELS[final] || final;
      kind = final;
    } else if (run.state === "finishing") {
      label = `${PHASE_LABELS[run.outcome] || run.outcome} · writing report`;
      kind = run.outcome;
    } else if (run.state === "aborting") {
      label = "Aborting";
      kind = "aborted";
    } else if (run.state === "ending") {
      label = "Ending · collecting last metrics";
      kind = run.phase;
    } else {
      label = PHASE_LABELS[run.state] || run.state;
      kind = run.state;
    }
    phase.textContent = label;
    phase.className = `badge phase-${kind}`;
    document.title = run ? `${label} · ${duration(run.remaining_ms)} left · ${run.name} — Stressgrid` : "Stressgrid";
    document.getElementById("run-remaining").textContent = run ? duration(run.remaining_ms) : "—";
    const ending = !run || ["ending", "aborting", "finishing"].includes(run.state);
    this.abortButton.hidden = Boolean(ending);
    this.dismissButton.hidden = Boolean(run);
    const results = document.getElementById("run-results");
    const url = !run && this.ended && this.ended.result_url;
    results.hidden = !url;
    if (url) {
      results.href = url;
      results.dataset.filename = `${this.shownRunId}.tar.gz`;
    }
    this.renderTimeline(run);
  }

  /** A finished run shows its whole-run summary instead of its last second. */
  renderFinished(ended) {
    const report = ended && ended.summary;
    const panel = document.getElementById("run-summary");
    document.getElementById("run-live-metrics").hidden = Boolean(report);
    panel.hidden = !report;
    const link = document.getElementById("run-report");
    link.hidden = !(ended && ended.report_url);
    if (ended && ended.report_url) {
      link.href = ended.report_url;
      link.dataset.filename = `${ended.id}.html`;
    }
    if (!report) {
      showVerdictBadge(document.getElementById("run-verdict"), this.lastRun && this.lastRun.verdict);
      return;
    }
    showVerdictBadge(document.getElementById("run-verdict"), report.verdict);
    if (panel.dataset.run !== ended.id) {
      panel.dataset.run = ended.id;
      panel.textContent = "";
      panel.append(element("h3", "", "Whole run"), runSummary(ended), comparePanel(ended));
    }
  }

  renderTimeline(run) {
    const bar = document.getElementById("run-timeline");
    const opts = this.plan && this.plan.opts;
    bar.textContent = "";
    if (!opts) return;
    const spans = [
      ["rampup", opts.ramp_steps * opts.rampup_step_ms],
      ["sustain", opts.sustain_ms],
      ["rampdown", opts.ramp_steps * opts.rampdown_step_ms],
      ["cooldown", opts.cooldown_ms],
    ].filter(([, ms]) => ms > 0);
    const total = spans.reduce((sum, [, ms]) => sum + ms, 0) || 1;
    // A run that ended keeps its marker where it stopped (an abort stops early).
    const last = this.lastRun && this.lastRun.id === this.shownRunId ? this.lastRun : null;
    const elapsed = run ? run.elapsed_ms : last ? last.elapsed_ms : total;
    let start = 0;
    for (const [phase, ms] of spans) {
      const part = element("div", `segment phase-${phase}${elapsed >= start ? " reached" : ""}`);
      start += ms;
      part.style.flexGrow = String(ms);
      part.title = `${PHASE_LABELS[phase]} ${duration(ms)}`;
      const text = element("span", "", `${PHASE_LABELS[phase]} ${duration(ms)}`);
      part.appendChild(text);
      bar.appendChild(part);
    }
    const marker = element("div", "marker");
    marker.style.left = `${Math.min(100, (100 * elapsed) / total)}%`;
    bar.appendChild(marker);
  }

  armAbort(armed) {
    this.abortArmed = armed;
    clearTimeout(this.abortTimer);
    this.abortButton.textContent = armed ? "Click again to abort" : "Abort run";
    this.abortButton.classList.toggle("armed", armed);
    if (armed) this.abortTimer = setTimeout(() => this.armAbort(false), 4000);
  }

  async abortClicked() {
    if (!this.abortArmed) {
      this.armAbort(true);
      return;
    }
    this.armAbort(false);
    this.abortButton.disabled = true;
    try {
      await api.abort(this.runId);
    } catch (error) {
      this.abortButton.textContent = `Abort failed: ${error.message}`;
    } finally {
      this.abortButton.disabled = false;
    }
  }

  // -- tiles -----------------------------------------------------------------

  renderTiles(telemetry, run) {
    const tiles = document.getElementById("run-tiles");
    const counters = telemetry.counters || {};
    let errorRate = 0;
    let errorTotal = 0;
    for (const [name, value] of Object.entries(counters)) {
      if (isErrorCounter(name, this.meta)) {
        errorRate += value.per_second;
        errorTotal += value.total;
      }
    }
    const cpu = telemetry.max_cpu_percent;
    const cpuHot = isCpuOverWarning(cpu, this.meta);
    const lag = telemetry.loop_lag_p99_us || 0;
    const lagging = isLoopLagOverWarning(lag, this.meta);
    const items = [
      ["generators", "Generators", integer(telemetry.generator_count), ""],
      ["devices", "Active devices", integer(telemetry.active_device_number),
        `of ${integer(run.devices)} planned`],
      ["cpu", "Generator CPU", percent(cpu),
        cpuHot ? `over ${this.meta.cpu_warning_percent}%: results suspect` : "busiest generator", cpuHot],
      ["loop-lag", "Loop lag p99", micros(lag),
        lagging ? `over ${micros(this.meta.loop_lag_warning_us)}: results suspect` : "workers' event loops", lagging],
      ["errors", "Errors", `${compact(errorRate)}/s`, `${integer(errorTotal)} in total`, errorTotal > 0],
      ["elapsed", "Elapsed", duration(run.elapsed_ms), `started ${clock(run.started_at)}`],
    ];
    if (run.executor === "arrival_rate") {
      // The open model: iterations started this second against the schedule's rate now.
      const started = (counters.iteration_count || {}).per_second || 0;
      const dropped = (counters.dropped_iteration_count || {}).per_second || 0;
      const target = run.target_rate;
      items.splice(2, 0, ["iterations", "Iterations", `${compact(started)}/s`,
        (target === null || target === undefined ? "schedule over" : `of ${compact(target)}/s planned`)
          + (dropped ? `, ${compact(dropped)}/s dropped` : ""), dropped > 0]);
    }
    if (tiles.childElementCount !== items.length) {
      tiles.textContent = "";
      for (const [key] of items) {
        const tile = element("div", "tile");
        tile.dataset.tile = key;
        tile.append(element("div", "tile-label"), element("div", "tile-value"), element("div", "tile-note"));
        tiles.appendChild(tile);
      }
    }
    items.forEach(([key, label, value, note, alarm], i) => {
      const tile = tiles.children[i];
      tile.dataset.tile = key;
      tile.children[0].textContent = label;
      tile.children[1].textContent = value;
      tile.children[2].textContent = note;
      tile.classList.toggle("alarm", Boolean(alarm));
    });
  }

  // -- metric cards ------------------------------------------------------------

  clearCards() {
    for (const card of this.cards.values()) card.chart.destroy();
    this.cards.clear();
    document.getElementById("metric-groups").textContent = "";
    document.getElementById("error-list").textContent = "";
  }

  /** The grid of a group's cards, in a fold of its own (the main group's open). */
  groupGrid(name) {
    const groups = document.getElementById("metric-groups");
    const group = metricGroup(name, this.meta);
    const found = [...groups.children].find((node) => node.dataset.group === group);
    if (found) return found.querySelector(".grid");
    const fold = element("details", "metric-group");
    fold.dataset.group = group;
    fold.dataset.order = groupOrder(group, this.meta);
    fold.open = group === this.meta.metric_groups.main;
    const summary = fold.appendChild(element("summary", "", group));
    summary.appendChild(element("span", "muted small group-count"));
    const grid = fold.appendChild(element("div", "grid"));
    const after = [...groups.children].find((node) => node.dataset.order > fold.dataset.order);
    groups.insertBefore(fold, after || null);
    return grid;
  }

  card(key, title, series, format) {
    let card = this.cards.get(key);
    if (card) return card;
    const grid = this.groupGrid(key.replace(/^\w+:/, ""));
    const root = element("article", "metric");
    root.dataset.metric = key;
    const head = element("div", "metric-head");
    const name = element("h4", "metric-name", title);
    name.title = key.replace(/^\w+:/, "");
    const values = element("div", "metric-values");
    head.append(name, values);
    const plot = element("div", "metric-chart");
    root.append(head, plot);
    // Keep cards in a steady order: protocol metrics, then the script's own, then host ones.
    root.dataset.order = metricOrder(key, this.meta);
    const after = [...grid.children].find((node) => node.dataset.order > root.dataset.order);
    grid.insertBefore(root, after || null);
    const chart = new LineChart(plot, { series, format, windowSeconds: Infinity, height: 110 });
    card = { root, values, chart };
    this.cards.set(key, card);
    const count = grid.parentElement.querySelector(".group-count");
    count.textContent = ` ${grid.childElementCount}`;
    return card;
  }

  renderMetrics(telemetry) {
    const histograms = telemetry.histograms || {};
    const counters = telemetry.counters || {};
    for (const [name, value] of Object.entries(histograms)) {
      const format = formatterFor(name);
      const card = this.card(`hist:${name}`, metricLabel(name), [
        { key: "p50", label: "p50", className: "s-p50" },
        { key: "p90", label: "p90", className: "s-p90" },
        { key: "p99", label: "p99", className: "s-p99" },
      ], format);
      card.values.textContent = "";
      for (const key of ["p50", "p90", "p99", "max"]) {
        const item = element("span", `stat s-${key}`);
        item.dataset.stat = key;
        item.append(element("span", "stat-key", key), element("span", "stat-value", format(value[key])));
        card.values.appendChild(item);
      }
      card.chart.update(this.series.get(`hist:${name}`));
      card.root.classList.toggle("alarm", (name === "cpu_percent" && isCpuOverWarning(value.max, this.meta))
        || (name === this.meta.loop_lag_histogram && isLoopLagOverWarning(value.p99, this.meta)));
    }
    for (const [name, value] of Object.entries(counters)) {
      const error = isErrorCounter(name, this.meta);
      const host = isHostWarning(name, this.meta);
      const warning = host || isStatusWarning(name, this.meta);
      const format = formatterFor(name, true);
      const card = this.card(`rate:${name}`, metricLabel(name), [
        { key: "v", label: "per second", className: error ? "s-error" : warning ? "s-warning" : "s-rate", area: true },
      ], format);
      card.root.classList.toggle("alarm", error && value.total > 0);
      card.root.classList.toggle("warn", warning && value.total > 0);
      if (host) card.root.title = "TCP retransmits of the whole generator host (other traffic included): a warning, not an error of the run";
      else if (warning) card.root.title = "Responses with an error status: a warning, not counted as errors (a threshold can gate on it)";
      card.values.textContent = "";
      const rate = element("span", "stat big");
      rate.dataset.stat = "per_second";
      rate.append(element("span", "stat-value", format(value.per_second)));
      const total = element("span", "stat");
      total.dataset.stat = "total";
      total.append(element("span", "stat-key", "total"),
        element("span", "stat-value", formatterFor(name)(value.total)));
      card.values.append(rate, total);
      card.chart.update(this.series.get(`rate:${name}`));
    }
    this.renderErrors(telemetry);
    this.renderRequests(telemetry);
  }

  /** The named requests of this second, a row each (their cards are in the grids too). */
  renderRequests(telemetry) {
    const groups = requestGroups(telemetry, this.meta);
    const section = document.getElementById("run-requests");
    const holder = document.getElementById("request-table");
    section.hidden = !groups.length;
    holder.textContent = "";
    if (!groups.length) return;
    const statuses = this.meta.warning_status_counters;
    const node = table("live-requests", ["Request", "rate/s", "total", "p50", "p90", "p99", "max",
      ...statuses.map((status) => status.replace(/^response_/, "") + "/s")],
    groups.map((group) => {
      const headers = group.headers || {};
      return [group.name, compact(group.rate), integer(group.total),
        ...["p50", "p90", "p99", "max"].map((key) => micros(headers[key])),
        ...statuses.map((status) => compact((group.status[status] || {}).per_second || 0))];
    }));
    // An error status this second is a warning, as in the rate cards.
    node.querySelectorAll("tbody tr").forEach((row, i) => statuses.forEach((status, k) => {
      const counter = groups[i].status[status];
      if (counter && counter.per_second > 0) row.cells[7 + k].classList.add("warning-text");
    }));
    holder.appendChild(node);
  }

  renderErrors(telemetry) {
    const section = document.getElementById("run-errors");
    const list = document.getElementById("error-list");
    const errors = Object.entries(telemetry.errors || {}).filter(([name, e]) => e.count > 0 && !isHostWarning(name, this.meta));
    section.hidden = !errors.length;
    list.textContent = "";
    for (const [name, info] of errors) {
      const rate = (telemetry.counters || {})[name];
      const item = element("div", "error-item");
      item.dataset.error = name;
      const head = element("div", "error-head");
      head.append(element("strong", "", metricLabel(name)),
        element("span", "", `${integer(info.count)} total${rate ? ` · ${compact(rate.per_second)}/s` : ""}`));
      item.appendChild(head);
      if (info.line) item.appendChild(element("code", "error-line", info.line));
      list.appendChild(item);
    }
  }

  // -- generators and events -----------------------------------------------------

  renderGenerators(state) {
    const generators = state.generators || [];
    const body = document.querySelector("#generator-table tbody");
    body.textContent = "";
    // A big fleet shows its busiest first and the rest on request.
    let shown = generators;
    if (generators.length > GENERATOR_ROWS && !this.allGenerators) {
      shown = [...generators].sort((a, b) => (b.cpu_percent || 0) - (a.cpu_percent || 0)).slice(0, GENERATOR_ROWS);
    }
    for (const g of shown) {
      const row = element("tr");
      row.dataset.generator = g.id;
      const cpu = element("td", "cpu-cell");
      const bar = element("div", "cpu-bar");
      const fill = element("div", g.cpu_warning ? "cpu-fill hot" : "cpu-fill");
      fill.style.width = `${Math.min(100, g.cpu_percent || 0)}%`;
      bar.appendChild(fill);
      cpu.append(bar, element("span", g.cpu_warning ? "danger-text" : "", percent(g.cpu_percent)));
      if (g.cpu_warning) cpu.title = `Over ${this.meta.cpu_warning_percent}%: this generator may limit the load it can make.`;
      row.append(element("td", "", g.id), element("td", "", `${g.workers} / ${g.cores} cores`),
        element("td", "num", `${integer(g.active_device_number)} / ${integer(g.capacity)}`),
        element("td", "num", g.source_addresses ? integer(g.source_addresses) : "system"), cpu,
        element("td", "num muted", `${(g.last_seen_s || 0).toFixed(1)}s ago`),
        element("td", "muted", g.version));
      body.appendChild(row);
    }
    if (generators.length > GENERATOR_ROWS) {
      const row = element("tr", "more-row");
      const cell = element("td");
      cell.colSpan = 7;
      const toggle = element("button", "link-button",
        this.allGenerators ? "Show the busiest only" : `Show all ${integer(generators.length)} generators`);
      toggle.type = "button";
      toggle.addEventListener("click", () => {
        this.allGenerators = !this.allGenerators;
        this.renderGenerators(this.state);
      });
      cell.append(this.allGenerators ? "" : `The ${GENERATOR_ROWS} busiest of ${integer(generators.length)}. `, toggle);
      row.appendChild(cell);
      body.appendChild(row);
    }
    document.getElementById("generator-table").hidden = !generators.length;
    document.getElementById("no-generators").hidden = generators.length > 0;
    const endpoint = state.coordinator && state.coordinator.generator_endpoint;
    if (endpoint) {
      const port = endpoint.split(":").pop();
      document.getElementById("generator-host").textContent = `${location.hostname}:${port}`;
    }
    const summary = document.getElementById("live-generators-summary");
    const hot = generators.filter((g) => g.cpu_warning).length;
    summary.textContent = `${generators.length} generator${generators.length === 1 ? "" : "s"}` +
      (hot ? ` · ${hot} over ${this.meta.cpu_warning_percent}% CPU` : "");
    summary.classList.toggle("danger-text", hot > 0);
  }

  renderEvents(events) {
    const list = document.getElementById("event-list");
    const key = events.length ? `${events.length}:${events[events.length - 1].time}` : "";
    if (key === this.eventsKey) return;
    this.eventsKey = key;
    list.textContent = "";
    for (const event of [...events].reverse()) {
      const item = element("li", `event event-${event.kind}`);
      item.append(element("time", "muted", clock(event.time)), element("span", "event-kind", event.kind.replace(/_/g, " ")),
        element("span", "", event.message || ""));
      list.appendChild(item);
    }
    document.querySelector("#events summary").textContent = `Events (${events.length})`;
  }
}
