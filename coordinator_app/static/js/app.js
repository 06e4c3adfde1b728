// The page's wiring: token dialog, the coordinator's shared rules, the state feed, and
// the three views.

import { api, hasToken, onTokenChange, setToken, setTokenPrompt } from "./api.js";
import { followState } from "./follow.js";
import { HistoryView, wireDownload } from "./history.js";
import { LiveView } from "./live.js";
import { PlanForm } from "./planform.js";

const MODE_TEXT = {
  live: "live",
  polling: "live (polling)",
  offline: "coordinator unreachable",
};

/** The CloudWatch region the coordinator reports, if its writer is on. */
function cloudWatchRegion(state) {
  const coordinator = state.coordinator || {};
  return coordinator.cloudwatch_region || (coordinator.cloudwatch && coordinator.cloudwatch.region)
    || state.cloudwatch_region || "";
}

function tokenPrompt(rejected) {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-wrong").hidden = !rejected;
  input.value = "";
  return new Promise((resolve) => {
    const form = document.getElementById("token-form");
    const submitted = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      form.removeEventListener("submit", submitted);
      dialog.removeEventListener("cancel", cancelled);
      dialog.close();
      resolve(value);
    };
    const cancelled = (event) => event.preventDefault(); // nothing works without it
    form.addEventListener("submit", submitted);
    dialog.addEventListener("cancel", cancelled);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

const META_RETRY_MS = 2000;

/** The coordinator's GET /api/meta, asked again until it answers (the views need it). */
async function loadMeta() {
  for (;;) {
    try {
      return await api.meta();
    } catch (error) {
      document.getElementById("status-dot").className = "dot offline";
      document.getElementById("status-text").textContent = MODE_TEXT.offline;
      await new Promise((resolve) => setTimeout(resolve, META_RETRY_MS));
    }
  }
}

async function main() {
  setTokenPrompt(tokenPrompt);
  const forget = document.getElementById("forget-token");
  forget.hidden = !hasToken();
  onTokenChange((token) => { forget.hidden = !token; });
  forget.addEventListener("click", () => {
    setToken("");
    location.reload();
  });

  const meta = await loadMeta();
  const history = new HistoryView({
    meta,
    onLoadPlan: (plan) => {
      form.loadPlan(plan);
      document.getElementById("plan").scrollIntoView({ behavior: "smooth" });
    },
  });
  const live = new LiveView({
    meta,
    onRunEnded: () => {
      history.refresh().catch(() => {});
      setTimeout(() => history.refresh().catch(() => {}), 1500);
    },
  });
  const form = new PlanForm({
    meta,
    onStarted: () => {
      history.refresh().catch(() => {});
      document.getElementById("live").scrollIntoView({ behavior: "smooth" });
    },
  });
  wireDownload(document.getElementById("run-results"));
  wireDownload(document.getElementById("run-report"));

  const statusDot = document.getElementById("status-dot");
  const statusText = document.getElementById("status-text");
  let mode = null;
  let generators = 0;
  let version = "";
  const showStatus = () => {
    statusDot.className = `dot ${mode || ""}`;
    const parts = [MODE_TEXT[mode] || "connecting…"];
    if (mode !== "offline" && mode) {
      parts.push(`${generators} generator${generators === 1 ? "" : "s"}`);
    }
    statusText.textContent = parts.join(" · ");
    document.body.dataset.feed = mode || "";
    if (version) statusText.title = `coordinator ${version}`;
  };

  let lastRunId = null;
  followState((state) => {
    generators = (state.generators || []).length;
    version = (state.coordinator || {}).version || "";
    showStatus();
    form.setGenerators(generators);
    form.setRunActive(Boolean(state.run));
    history.setCloudWatchRegion(cloudWatchRegion(state));
    live.update(state);
    history.updateLive(state.run);
    const runId = state.run ? state.run.id : null;
    if (runId && runId !== lastRunId) history.refresh().catch(() => {});
    lastRunId = runId;
  }, (next) => {
    mode = next;
    showStatus();
  });
  history.refresh().catch(() => {});
}

main();
