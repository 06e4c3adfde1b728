// A finished run compared with an earlier one: "Compare with..." picks the baseline (the
// newest passed run, or any finished run of the history), and the coordinator's comparison
// (GET /api/runs/<id>/compare/<baseline>) is drawn as its tables, the figures that got worse
// marked. A run planned with a baseline opens compared with it.

import { api } from "./api.js";
import { LineChart } from "./chart.js";
import { element } from "./dom.js";
import { formatterFor, micros, timestamp } from "./format.js";
import { laidTables } from "./run_summary.js";

const LAST_PASSED = "last-passed";
const DEFAULT_TOLERANCE = 10;
const NAMED_WORSE = 8;

/** The first line of a comparison: the baseline and what got worse. */
export function comparisonHead(answer) {
  const worse = answer.comparison.worse;
  if (!worse.length) return `Nothing worse than run ${answer.baseline}`;
  const named = worse.slice(0, NAMED_WORSE).join(", ") +
    (worse.length > NAMED_WORSE ? ` and ${worse.length - NAMED_WORSE} more` : "");
  return `${worse.length} worse than run ${answer.baseline} by more than ` +
    `${answer.comparison.tolerance_percent}%: ${named}`;
}

/** Both runs' overview points on one elapsed axis: ``{t, run_<field>, baseline_<field>}``. */
export function overlaid(run, baseline) {
  const points = [];
  for (const [prefix, view] of [["run", run], ["baseline", baseline]]) {
    for (const row of view.points) {
      const point = { t: row[view.fields.indexOf("t")] };
      view.fields.forEach((field, i) => {
        if (field !== "t") point[`${prefix}_${field}`] = row[i];
      });
      points.push(point);
    }
  }
  return points.sort((a, b) => a.t - b.t);
}

/** Charts of this run over its baseline from the start (the main rate and the main latency's
 * p99), added to ``charts`` (so they can be let go of). */
async function overlay(root, runId, baselineId, charts) {
  const box = root.appendChild(element("div", "overview compare-overlay"));
  let run;
  let baseline;
  try {
    [run, baseline] = await Promise.all([api.overview(runId), api.overview(baselineId)]);
  } catch (error) {
    box.replaceWith(element("p", "muted small", `No charts to overlay: ${error.message}`));
    return;
  }
  const points = overlaid(run, baseline);
  const shown = [
    ["rate", `${run.names.rate || "rate"} per second`, formatterFor(run.names.rate || "", true)],
    ["p99", `${run.names.latency || "latency"} p99`, micros],
  ];
  for (const [field, title, format] of shown) {
    const chart = box.appendChild(element("div", "overview-chart"));
    chart.dataset.chart = field;
    chart.appendChild(element("div", "overview-title", `${title}: this run and the baseline`));
    const plot = chart.appendChild(element("div", "metric-chart"));
    const drawn = new LineChart(plot, {
      series: [
        { key: `run_${field}`, label: "this run", className: "s-p99", join: true },
        { key: `baseline_${field}`, label: "baseline", className: "s-max", join: true },
      ],
      format, height: 90, elapsed: true,
    });
    drawn.update(points);
    charts.push(drawn);
  }
}

/** The panel under a finished run's summary (``detail``: the API's run). */
export function comparePanel(detail) {
  const root = element("div", "compare-panel");
  root.dataset.run = detail.id;
  const open = element("button", "button secondary small compare-open", "Compare with…");
  open.type = "button";
  const form = element("div", "compare-form");
  form.hidden = true;
  const choice = element("select", "compare-baseline");
  choice.setAttribute("aria-label", "Baseline run");
  const tolerance = element("input", "compare-tolerance");
  tolerance.type = "number";
  tolerance.min = "0";
  tolerance.max = "1000";
  tolerance.value = String(DEFAULT_TOLERANCE);
  tolerance.setAttribute("aria-label", "Tolerance in percent");
  const go = element("button", "button small compare-go", "Compare");
  go.type = "button";
  form.append(element("span", "muted small", "Baseline "), choice, element("span", "muted small", " tolerance % "),
    tolerance, " ", go);
  const result = element("div", "compare-result");
  root.append(open, form, result);

  const planned = detail.plan && detail.plan.baseline;
  const fillChoices = async () => {
    const { runs } = await api.runs();
    choice.textContent = "";
    choice.appendChild(new Option("the last passed run", LAST_PASSED));
    for (const run of runs) {
      if (run.id === detail.id || !run.finished_at) continue;
      choice.appendChild(new Option(`${run.name} · ${timestamp(run.created_at)} · ${run.result || run.state}`, run.id));
    }
    if (planned) choice.value = planned;
  };
  const charts = [];
  const show = async () => {
    charts.splice(0).forEach((chart) => chart.destroy());
    result.textContent = "";
    result.appendChild(element("p", "muted", "Comparing…"));
    try {
      const answer = await api.compare(detail.id, choice.value || planned || LAST_PASSED,
        tolerance.value || DEFAULT_TOLERANCE);
      result.textContent = "";
      const worse = answer.comparison.worse.length > 0;
      const head = result.appendChild(element("p", worse ? "compare-head danger-text" : "compare-head",
        comparisonHead(answer)));
      head.dataset.worse = String(answer.comparison.worse.length);
      if (!answer.same_scripts) result.appendChild(element("p", "muted small", "The two runs' scripts differ."));
      overlay(result, detail.id, answer.baseline, charts);
      laidTables(result, answer.tables);
    } catch (error) {
      result.textContent = "";
      result.appendChild(element("p", "danger-text compare-error", `Cannot compare: ${error.message}`));
    }
  };
  open.addEventListener("click", async () => {
    form.hidden = false;
    open.hidden = true;
    try {
      await fillChoices();
    } catch (error) {
      result.textContent = `Cannot list the runs: ${error.message}`;
    }
  });
  go.addEventListener("click", show);
  if (planned) {
    open.hidden = true;
    form.hidden = false;
    fillChoices().catch(() => {}).finally(show);
  }
  return root;
}
