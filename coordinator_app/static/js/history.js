// Run history: past runs with their error flag, peak CPU, results archive, CloudWatch
// link, a detail view, "load this plan" and delete.

import { api, download, hasToken } from "./api.js";
import { comparePanel } from "./compare.js";
import { element } from "./dom.js";
import { duration, integer, metricLabel, micros, percent, timestamp } from "./format.js";
import { isCpuOverWarning, isHostWarning } from "./rules.js";
import { runSummary, showVerdictBadge } from "./run_summary.js";

const PAGE = 25;
const FINAL = new Set(["done", "aborted"]);

/** The CloudWatch console's metrics view of one run (namespace Stressgrid, dimension Run). */
export function cloudWatchUrl(region, runId) {
  const search = encodeURIComponent(`Stressgrid Run="${runId}"`);
  return `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${encodeURIComponent(region)}` +
    `#metricsV2:graph=~();search=${search};namespace=Stressgrid;dimensions=Run`;
}

/** The number of errors in a run summary (error counters' totals). */
export function errorCount(summary, meta) {
  if (!summary || !summary.errors) return 0;
  return Object.entries(summary.errors).filter(([name]) => !isHostWarning(name, meta))
    .reduce((sum, [, e]) => sum + (e.count || 0), 0);
}

/** TCP retransmits of the generator hosts: a warning, not an error of the run. */
export function retransmits(summary, meta) {
  if (!summary || !summary.errors) return 0;
  return Object.entries(summary.errors).filter(([name]) => isHostWarning(name, meta))
    .reduce((sum, [, e]) => sum + (e.count || 0), 0);
}

/** Save a results archive: a plain link without a token, a fetch with one. */
export function wireDownload(link) {
  link.addEventListener("click", (event) => {
    if (!hasToken()) return;
    event.preventDefault();
    download(link.href, link.dataset.filename || "results.tar.gz").catch((error) => {
      link.title = `Download failed: ${error.message}`;
      link.classList.add("failed");
    });
  });
}

export class HistoryView {
  /** ``onLoadPlan(plan)``: fill the form with a past run's plan; ``meta``: the coordinator's GET /api/meta. */
  constructor({ onLoadPlan, meta }) {
    this.onLoadPlan = onLoadPlan;
    this.meta = meta;
    this.body = document.querySelector("#history-table tbody");
    this.empty = document.getElementById("history-empty");
    this.more = document.getElementById("history-more");
    this.limit = PAGE;
    this.runs = [];
    this.details = new Map(); // id -> detail of a finished run (final, so kept)
    this.drawn = new Map(); // id -> the drawn details of a finished run
    this.open = new Set();
    this.region = "";
    this.loading = null;
    document.getElementById("history-refresh").addEventListener("click", () => this.refresh());
    this.more.addEventListener("click", () => {
      this.limit += PAGE;
      this.render();
    });
  }

  setCloudWatchRegion(region) {
    if ((region || "") !== this.region) {
      this.region = region || "";
      this.render();
    }
  }

  /** Keep the active run's row in step with the live state (its phase). */
  updateLive(run) {
    if (!run) return;
    const known = this.runs.find((r) => r.id === run.id);
    if (!known || !known.live || known.live.phase === run.phase) return;
    known.live = run;
    const badge = this.body.querySelector(`tr.run-row[data-run="${CSS.escape(run.id)}"] .badge`);
    if (badge) {
      badge.textContent = `running · ${run.phase}`;
      badge.className = `badge phase-${run.phase}`;
    }
  }

  async refresh() {
    if (this.loading) return this.loading;
    this.loading = (async () => {
      try {
        const { runs } = await api.runs();
        this.runs = runs;
        this.render();
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  async detail(id) {
    if (this.details.has(id)) return this.details.get(id);
    const detail = await api.run(id);
    if (FINAL.has(detail.state)) this.details.set(id, detail);
    return detail;
  }

  render() {
    const runs = this.runs.slice(0, this.limit);
    this.body.textContent = "";
    this.empty.hidden = this.runs.length > 0;
    this.more.hidden = this.runs.length <= this.limit;
    document.getElementById("history-table").hidden = !this.runs.length;
    for (const run of runs) {
      const row = this.row(run);
      this.body.appendChild(row);
      if (this.open.has(run.id)) this.body.appendChild(this.detailRow(run));
    }
    this.fillDetails(runs);
  }

  row(run) {
    const row = element("tr", "run-row");
    row.dataset.run = run.id;
    const live = Boolean(run.live);
    const name = element("td", "run-name");
    const toggle = element("button", "link-button expand", this.open.has(run.id) ? "▾" : "▸");
    toggle.type = "button";
    toggle.setAttribute("aria-label", `Details of ${run.id}`);
    toggle.setAttribute("aria-expanded", String(this.open.has(run.id)));
    toggle.addEventListener("click", () => {
      if (this.open.has(run.id)) this.open.delete(run.id);
      else this.open.add(run.id);
      this.render();
    });
    const title = element("div", "", run.name);
    title.prepend(toggle);
    // Clicking anywhere on the row but its buttons and links opens its summary.
    row.classList.add("clickable");
    row.addEventListener("click", (event) => {
      if (event.target.closest("a, button")) return;
      toggle.click();
    });
    name.append(title, element("code", "muted small", run.id));

    const finished = run.finished_at || (live ? Date.now() / 1000 : null);
    const state = element("td");
    const stateName = live ? (run.live.phase || run.state) : run.state;
    state.appendChild(element("span", `badge phase-${live ? stateName : run.state}`,
      live ? `running · ${stateName}` : run.state));
    if (run.note) state.title = run.note;
    const verdict = element("span", "flag verdict", "");
    verdict.hidden = true;
    verdict.dataset.col = "verdict";
    state.append(" ", verdict);

    const errors = element("td", "errors-cell", live ? "…" : "");
    errors.dataset.col = "errors";
    const cpu = element("td", "num cpu-cell", live ? "…" : "");
    cpu.dataset.col = "cpu";

    const results = element("td", "results-cell");
    if (run.result_url) {
      const link = element("a", "button secondary small download", "CSV archive");
      link.href = run.result_url;
      link.dataset.filename = `${run.id}.tar.gz`;
      link.title = `${run.id}.tar.gz: results.csv, the plan and the summary`;
      link.download = `${run.id}.tar.gz`;
      wireDownload(link);
      results.appendChild(link);
    }
    if (run.report_url) {
      const link = element("a", "button secondary small report", "Report");
      link.href = run.report_url;
      link.target = "_blank";
      link.rel = "noopener";
      link.dataset.filename = `${run.id}.html`;
      link.title = "The run's self-contained HTML report";
      wireDownload(link);
      results.appendChild(link);
    }
    if (this.region) {
      const link = element("a", "button secondary small cloudwatch", "CloudWatch");
      link.href = cloudWatchUrl(this.region, run.id);
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      results.appendChild(link);
    }

    const actions = element("td", "actions");
    const load = element("button", "link-button load-plan", "Load plan");
    load.type = "button";
    load.title = "Fill the form with this run's plan";
    load.addEventListener("click", async () => {
      const detail = await this.detail(run.id);
      this.onLoadPlan(detail.plan);
    });
    actions.appendChild(load);
    if (!live) {
      const remove = element("button", "link-button danger-text delete-run", "Delete");
      remove.type = "button";
      remove.addEventListener("click", () => this.remove(run, remove));
      actions.appendChild(remove);
    }

    row.append(name, element("td", "nowrap", timestamp(run.created_at)),
      element("td", "num", finished ? duration((finished - run.created_at) * 1000) : "—"),
      element("td", "num", integer(run.devices)), state, errors, cpu, results, actions);
    return row;
  }

  async remove(run, button) {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = "Delete for good?";
      setTimeout(() => {
        button.classList.remove("armed");
        button.textContent = "Delete";
      }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await api.remove(run.id);
      this.details.delete(run.id);
      this.drawn.delete(run.id);
      this.open.delete(run.id);
      this.runs = this.runs.filter((r) => r.id !== run.id);
      this.render();
    } catch (error) {
      button.disabled = false;
      button.textContent = `Not deleted: ${error.message}`;
    }
  }

  /** Fill the error and CPU columns from each run's summary (fetched once per finished run). */
  async fillDetails(runs) {
    const queue = runs.filter((run) => !run.live);
    const worker = async () => {
      while (queue.length) {
        const run = queue.shift();
        let detail;
        try {
          detail = await this.detail(run.id);
        } catch (error) {
          continue;
        }
        const row = this.body.querySelector(`tr.run-row[data-run="${CSS.escape(run.id)}"]`);
        if (row) this.fillRow(row, detail);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }

  fillRow(row, detail) {
    const summary = detail.summary;
    const errors = row.querySelector('[data-col="errors"]');
    const cpu = row.querySelector('[data-col="cpu"]');
    errors.textContent = "";
    if (summary) showVerdictBadge(row.querySelector('[data-col="verdict"]'), summary.verdict, "flag");
    if (!summary) {
      errors.appendChild(element("span", "muted", "no report"));
      cpu.textContent = "—";
      return;
    }
    const count = errorCount(summary, this.meta);
    const writerErrors = (summary.writer_errors || []).length;
    if (count) {
      const flag = element("span", "flag flag-error", `${integer(count)} error${count > 1 ? "s" : ""}`);
      flag.title = Object.entries(summary.errors).filter(([name]) => !isHostWarning(name, this.meta))
        .map(([name, e]) => `${name}: ${e.count}${e.line ? ` — ${e.line}` : ""}`).join("\n");
      errors.appendChild(flag);
    } else {
      errors.appendChild(element("span", "flag flag-ok", "none"));
    }
    const resent = retransmits(summary, this.meta);
    if (resent) {
      const flag = element("span", "flag flag-warning", `${integer(resent)} TCP retransmits`);
      flag.title = "TCP retransmits of the generator hosts (all their traffic): a warning, not an error of the run";
      errors.appendChild(flag);
    }
    if (writerErrors) errors.appendChild(element("span", "flag flag-warning", "writer failed"));
    const peak = summary.maxima && summary.maxima.max_cpu_percent;
    cpu.textContent = Number.isFinite(peak) ? percent(peak) : "—";
    const hot = isCpuOverWarning(peak, this.meta);
    cpu.classList.toggle("danger-text", hot);
    if (hot) cpu.title = `A generator ran over ${this.meta.cpu_warning_percent}% CPU: its results may be limited by the generator.`;
  }

  detailRow(run) {
    const row = element("tr", "detail-row");
    row.dataset.detail = run.id;
    const cell = element("td");
    cell.colSpan = 9;
    row.appendChild(cell);
    // A finished run's details are drawn once and moved into each new rendering of the table,
    // so what was opened in them (a comparison) survives the refreshes.
    const drawn = this.drawn.get(run.id);
    if (drawn) {
      cell.appendChild(drawn);
      return row;
    }
    cell.appendChild(element("p", "muted", "Loading…"));
    this.detail(run.id).then((detail) => {
      cell.textContent = "";
      const node = this.drawn.get(run.id) || this.renderDetail(detail);
      if (FINAL.has(detail.state)) this.drawn.set(run.id, node);
      cell.appendChild(node);
    }).catch((error) => {
      cell.textContent = `Could not load the run: ${error.message}`;
    });
    return row;
  }

  renderDetail(detail) {
    const root = element("div", "run-detail");
    const summary = detail.summary;
    if (detail.note) root.appendChild(element("p", "", `Note: ${detail.note}`));
    if (!summary) {
      root.appendChild(element("p", "muted", "No report (the run is in progress, or it was cut short)."));
    } else {
      const facts = element("dl", "facts");
      const fact = (term, value) => {
        const pair = element("div");
        pair.append(element("dt", "", term), element("dd", "", value));
        facts.appendChild(pair);
      };
      fact("Duration", duration(summary.duration_s * 1000));
      fact("Devices started", `${integer(summary.devices_started)} of ${integer(summary.devices_requested)}`);
      fact("Generators", Object.entries(summary.generators || {}).map(([id, n]) => `${id} (${integer(n)})`).join(", ") || "—");
      fact("Peak active devices", integer((summary.maxima || {}).active_device_number));
      fact("Started", timestamp(summary.started_at));
      fact("Peak CPU", percent((summary.maxima || {}).max_cpu_percent));
      const lag = (summary.maxima || {}).max_loop_lag_p99_us;
      if (Number.isFinite(lag)) fact("Peak loop lag p99", micros(lag));
      root.appendChild(facts);

      const errors = Object.entries(summary.errors || {});
      if (errors.length) {
        const list = element("div", "error-list");
        for (const [name, info] of errors) {
          const item = element("div", isHostWarning(name, this.meta) ? "error-item warning-item" : "error-item");
          item.appendChild(element("div", "error-head", `${metricLabel(name)} · ${integer(info.count)}`));
          if (info.line) item.appendChild(element("code", "error-line", info.line));
          list.appendChild(item);
        }
        root.appendChild(list);
      }

      root.append(runSummary(detail), comparePanel(detail));
    }
    return root;
  }
}
