// The "New run" form: fields, script blocks, live device arithmetic, checks and submit.

import { api, ApiError } from "./api.js";
import { element } from "./dom.js";
import { CodeEditor } from "./editor.js";
import { duration, integer, shortDuration } from "./format.js";
import { highlightJson, pythonHighlighter } from "./highlight.js";
import {
  bareMessage, buildPlan, exampleParams, exampleScript, formTarget, isMqtt, jsonErrorPosition, jsonMessage,
  OPEN_MODEL, planToValues,
} from "./plan.js";
import { defaultPort, effectiveDevices, rampStepSize, scriptFunctions, scriptNames } from "./rules.js";

const DRAFT_KEY = "stressgrid.draft";
const SIMPLE_FIELDS = ["name", "protocol", "mqtt_version", "hosts", "port", "rampup", "sustain", "rampdown",
  "cooldown", "report_interval", "timeout", "tls_ca_file", "executor", "rate", "rate_steps", "max_devices",
  "pre_allocated", "arrivals"];
// The load model's hint, by executor.
const EXECUTOR_HINTS = {
  devices: "A population of devices, each running its script over and over.",
  arrival_rate: "Iterations of the script started at a rate, each on a free device of a pool, and timed " +
    "from when they should have started.",
};
// The fields whose defaults are the plan's own (meta.default_opts); the form picks the others.
const PLAN_DEFAULT_FIELDS = ["cooldown", "report_interval", "timeout", "mqtt_version"];

// [what to write, what it does, the functions it needs]: a protocol's help shows the
// entries whose functions the coordinator gives that protocol.
const SCRIPT_HELP = [
  ["await get/head/options/delete(path, headers=())", "→ (status, headers, body)", ["get", "head", "options", "delete"]],
  ["await post/put/patch(path, headers=(), body=b\"\", json=…)", "→ (status, headers, body)", ["post", "put", "patch"]],
  ["await ws_upgrade(path)", "then ws_send_text/binary/json, ws_receive_*, ws_fetch_*", ["ws_upgrade"]],
  ["await send(data)", "str or bytes", ["send"]],
  ["await recv(timeout=5000)", "TCP: the bytes buffered; UDP: one datagram", ["recv"]],
  ["params, device_id, row", "this block's params; this device's id; its feeder row (or None)", []],
  ["check(name, condition)", "counts check_<name>_pass/_fail, returns the condition, never raises", ["check"]],
  ["get(…, name=\"login\")", "also counts the request in its own row of the summary", ["get"]],
  ["await delay(ms, random_ratio=0)", "pause, optionally randomized", ["delay"]],
  ["await pace(ms)", "wait for the next tick every ms; later steps timed from it too (intended_*)", ["pace"]],
  ["start_timing(key) / stop_timing(key)", "histogram <key>_us", ["start_timing", "stop_timing"]],
  ["stop_start_timing(stop, start)", "end one timing, begin the next", ["stop_start_timing"]],
  ["record_timing(key, us)", "histogram <key>_us of a time the script measured itself", ["record_timing"]],
  ["inc_counter(key, value=1)", "counter <key>_count and its rate", ["inc_counter"]],
  ["random_bits(n) / random_bytes(n)", "random bytes", ["random_bits", "random_bytes"]],
];

/** The help entries [term, text] for a script of ``protocol``. */
function helpFor(protocol, meta) {
  const available = scriptFunctions(protocol, meta);
  return SCRIPT_HELP.filter(([, , names]) => names.every((name) => available.has(name)))
    .map(([term, text]) => [term, text]);
}

export class PlanForm {
  /** ``onStarted(run)`` after a run was accepted; ``meta``: the coordinator's GET /api/meta. */
  constructor({ onStarted, meta }) {
    this.onStarted = onStarted;
    this.meta = meta;
    this.highlightScript = pythonHighlighter(scriptNames(meta));
    this.form = document.getElementById("plan-form");
    this.generators = 0;
    this.runActive = false;
    this.mode = "form";
    this.blocks = [];
    this.portTouched = false;
    this.checkTimer = null;
    this.checkController = null;
    this.checkSeq = 0;
    this.blocksRoot = document.getElementById("blocks");
    this.summary = document.getElementById("devices-summary");
    this.totalDuration = document.getElementById("total-duration");
    this.formError = document.getElementById("form-error");
    this.checkResult = document.getElementById("check-result");
    this.startButton = document.getElementById("start-button");
    this.jsonEditor = new CodeEditor(document.getElementById("json-editor"), {
      label: "Plan JSON", highlight: highlightJson, minLines: 18, maxLines: 40, className: "json",
      onChange: () => this.scheduleCheck(),
    });

    document.getElementById("add-block").addEventListener("click", () => {
      const protocol = this.field("protocol").value;
      const block = this.addBlock({ script: exampleScript(protocol), params: exampleParams(protocol),
        size: String(rampStepSize(this.generators, this.meta) * 10) });
      block.editor.focus();
      this.changed();
    });
    document.getElementById("mode-form").addEventListener("click", () => this.setMode("form"));
    document.getElementById("mode-json").addEventListener("click", () => this.setMode("json"));
    document.getElementById("check-button").addEventListener("click", () => this.check(true));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    const protocols = this.field("protocol");
    for (const { name, label } of meta.protocols) protocols.appendChild(new Option(label, name));
    const versions = this.field("mqtt_version");
    for (const version of meta.mqtt_versions) versions.appendChild(new Option(version, version));
    this.field("name").maxLength = meta.limits.name_length;
    this.field("port").addEventListener("input", () => { this.portTouched = true; });
    this.field("protocol").addEventListener("change", () => this.protocolChanged());
    this.form.addEventListener("input", (event) => {
      if (event.target.closest(".editor")) return; // editors report through onChange
      this.clearFieldError(event.target.closest("[data-field]"));
      this.changed(false);
    });
    this.form.addEventListener("change", (event) => {
      if (!event.target.closest(".editor")) this.changed(true);
    });

    if (!this.restoreDraft()) this.reset();
    this.update();
    document.getElementById("plan-fieldset").disabled = false;
  }

  field(name) {
    return this.form.elements.namedItem(name);
  }

  /** The form's values for fields the plan gives defaults (cooldown, report interval, timeout). */
  planDefaults() {
    const { values } = planToValues({}, this.meta);
    return Object.fromEntries(PLAN_DEFAULT_FIELDS.map((name) => [name, values[name]]));
  }

  reset() {
    this.field("name").value = "";
    const protocol = this.meta.default_protocol;
    this.field("protocol").value = protocol;
    this.field("hosts").value = "";
    this.field("port").value = defaultPort(protocol, this.meta);
    for (const [name, value] of Object.entries(this.planDefaults())) this.field(name).value = value;
    this.field("executor").value = "devices";
    this.field("arrivals").value = "uniform";
    for (const name of ["rate", "rate_steps", "max_devices", "pre_allocated"]) this.field(name).value = "";
    this.blocksRoot.textContent = "";
    this.blocks = [];
    this.addBlock({ script: exampleScript(protocol), params: exampleParams(protocol), size: "100" });
  }

  // -- blocks ------------------------------------------------------------

  addBlock({ script = "", params = "{}", size = "10", data = null, dataName = "" } = {}) {
    const root = element("div", "block");
    const head = element("div", "block-head");
    const title = element("h3");
    const remove = element("button", "link-button remove-block", "Remove");
    remove.type = "button";
    head.append(title, remove);

    const grid = element("div", "block-grid");
    const scriptField = element("div", "field script-field");
    scriptField.dataset.field = "script";
    scriptField.append(element("span", "hint", "Python: the body of an async function that every device runs. " +
      "Tab indents; Esc then Tab leaves the editor."));

    const side = element("div", "block-side");
    const sizeField = element("label", "field");
    sizeField.dataset.field = "size";
    const sizeInput = element("input", "block-size");
    sizeInput.type = "number";
    sizeInput.min = "1";
    sizeInput.step = "1";
    sizeInput.value = size;
    const effective = element("span", "effective");
    const sizeLabel = element("span", "label", "Desired devices");
    sizeField.append(sizeLabel, sizeInput, effective, element("span", "field-error"));

    const paramsField = element("div", "field");
    paramsField.dataset.field = "params";
    paramsField.append(element("span", "label", "Params (JSON object)"));

    const help = element("details", "script-help");
    const helpList = element("dl");
    help.append(element("summary", "", "Script functions"), helpList);

    const dataField = element("div", "field data-field");
    dataField.dataset.field = "data";
    const dataInput = element("input", "block-data-file");
    dataInput.type = "file";
    dataInput.accept = ".csv,.jsonl,.ndjson,.json";
    dataInput.setAttribute("aria-label", "Feeder rows file");
    const dataStatus = element("span", "hint data-status");
    const dataClear = element("button", "link-button clear-data", "Remove rows");
    dataClear.type = "button";
    dataField.append(element("span", "label", "Feeder rows (optional)"), dataInput, dataStatus, dataClear,
      element("span", "field-error"));

    side.append(sizeField, paramsField, dataField, help);
    grid.append(scriptField, side);
    root.append(head, grid);
    this.blocksRoot.appendChild(root);

    const block = { root, title, remove, sizeInput, sizeLabel, effective, helpList, dataField, dataInput, dataStatus, dataClear };
    block.editor = new CodeEditor(scriptField, {
      value: script, label: "Script", highlight: this.highlightScript, minLines: 12, maxLines: 32, className: "script",
      onChange: () => {
        this.changed(false);
        this.scheduleCheck();
      },
    });
    block.params = new CodeEditor(paramsField, {
      value: params, label: "Params", highlight: highlightJson, minLines: 3, maxLines: 12, className: "params",
      onChange: () => {
        this.changed(false);
        this.scheduleCheck();
      },
    });
    this.setBlockData(block, data, dataName);
    dataInput.addEventListener("change", (event) => {
      event.stopPropagation(); // the rows arrive later: loadBlockData reports the change
      this.loadBlockData(block);
    });
    dataClear.addEventListener("click", () => {
      dataInput.value = "";
      this.setBlockData(block, null, "");
      this.changed(true);
    });
    remove.addEventListener("click", () => {
      this.blocks.splice(this.blocks.indexOf(block), 1);
      root.remove();
      this.changed(true);
    });
    this.blocks.push(block);
    this.renumber();
    return block;
  }

  /** Give ``block`` feeder ``rows`` (null: none), read from the file ``name``. */
  setBlockData(block, rows, name) {
    block.data = rows && rows.length ? rows : null;
    block.dataName = block.data ? name : "";
    block.dataStatus.textContent = block.data
      ? `${integer(block.data.length)} row${block.data.length > 1 ? "s" : ""} from ${name}: device i of ` +
        "the fleet gets row i (cycling) as row"
      : "A .csv (first line names the columns), .jsonl or .json file: one row per device, as row.";
    block.dataClear.hidden = !block.data;
  }

  /** Read the file chosen for ``block`` into its rows, through the coordinator's reader. */
  async loadBlockData(block) {
    const file = block.dataInput.files[0];
    this.clearFieldError(block.dataField);
    if (!file) return;
    const fail = (message) => {
      block.dataInput.value = "";
      block.dataField.classList.add("invalid");
      block.dataField.querySelector(":scope > .field-error").textContent = `${file.name}: ${message}`;
    };
    const limit = this.meta.limits.data_bytes;
    if (file.size > limit) {
      fail(`the file is ${integer(file.size)} bytes; feeder data may be at most ${integer(limit)} bytes`);
      return;
    }
    block.dataStatus.textContent = `Reading ${file.name}…`;
    try {
      const { rows } = await api.feederRows(file);
      this.setBlockData(block, rows, file.name);
    } catch (error) {
      this.setBlockData(block, block.data, block.dataName);
      fail(error.message);
    }
    this.changed(true);
  }

  renumber() {
    this.blocks.forEach((block, i) => {
      block.root.dataset.block = String(i);
      block.title.textContent = this.blocks.length > 1 ? `Script block ${i + 1}` : "Script";
      block.remove.hidden = this.blocks.length < 2;
    });
    const protocol = this.field("protocol").value;
    const help = helpFor(protocol, this.meta);
    for (const block of this.blocks) {
      block.helpList.textContent = "";
      for (const [term, text] of help) {
        const dt = element("dt");
        dt.appendChild(element("code", "", term));
        block.helpList.append(dt, element("dd", "", text));
      }
    }
  }

  protocolChanged() {
    const protocol = this.field("protocol").value;
    if (!this.portTouched || !this.field("port").value) {
      this.field("port").value = defaultPort(protocol, this.meta);
    }
    // Swap an untouched example script for the new protocol's.
    const examples = new Set(["http", "tcp", "udp", "mqtt"].map(exampleScript));
    const paramExamples = new Set(["http", "tcp"].map(exampleParams));
    for (const block of this.blocks) {
      if (examples.has(block.editor.value)) block.editor.value = exampleScript(protocol);
      if (paramExamples.has(block.params.value)) block.params.value = exampleParams(protocol);
    }
    this.renumber();
  }

  // -- values --------------------------------------------------------------

  values() {
    const values = {};
    for (const name of SIMPLE_FIELDS) values[name] = this.field(name).value;
    values.tls_verify = this.field("tls_verify").checked;
    values.blocks = this.blocks.map((block) => ({
      script: block.editor.value, params: block.params.value, size: block.sizeInput.value,
      data: block.data, dataName: block.dataName,
    }));
    return values;
  }

  setValues(values) {
    for (const name of SIMPLE_FIELDS) {
      if (values[name] !== undefined) this.field(name).value = values[name];
    }
    this.field("tls_verify").checked = Boolean(values.tls_verify);
    this.portTouched = true;
    this.blocksRoot.textContent = "";
    this.blocks = [];
    const blocks = values.blocks && values.blocks.length ? values.blocks : [{}];
    for (const block of blocks) this.addBlock(block);
    const defaults = this.planDefaults();
    if (values.tls_verify || values.tls_ca_file || values.cooldown !== defaults.cooldown
        || values.timeout !== defaults.timeout) {
      document.getElementById("advanced-options").open = true;
    }
  }

  /** Fill the form from a plan (a past run's, or the JSON view's). */
  loadPlan(plan) {
    const { values, warnings } = planToValues(plan, this.meta);
    this.setMode("form", { skipConvert: true });
    this.setValues(values);
    this.clearErrors();
    this.update();
    this.saveDraft();
    this.showFormError(warnings.join(" "), "warning");
  }

  setGenerators(count) {
    if (count !== this.generators) {
      this.generators = count;
      this.update();
    }
  }

  setRunActive(active) {
    this.runActive = active;
    this.startButton.disabled = active || this.submitting;
    this.startButton.textContent = active ? "A run is in progress" : "Start run";
  }

  changed(check) {
    this.update();
    this.saveDraftSoon();
    if (check) this.scheduleCheck();
  }

  /** Recompute what derives from the fields: effective devices, steps, durations. */
  update() {
    const { derived } = buildPlan(this.values(), this.generators, this.meta);
    const open = Boolean(derived.open);
    for (const node of this.form.querySelectorAll(".arrival-field")) node.hidden = !open;
    for (const node of this.form.querySelectorAll(".mqtt-field")) node.hidden = !isMqtt(this.field("protocol").value);
    for (const name of ["rampup", "rampdown"]) this.form.querySelector(`[data-field="${name}"]`).hidden = open;
    document.getElementById("executor-hint").textContent = EXECUTOR_HINTS[open ? OPEN_MODEL : "devices"];
    if (open) {
      this.updateOpen(derived);
      return;
    }
    for (const block of this.blocks) {
      block.sizeLabel.textContent = "Desired devices";
      const desired = Number(block.sizeInput.value);
      const effective = effectiveDevices(desired, this.generators, this.meta);
      block.effective.textContent = Number.isFinite(desired) && desired > 0
        ? `→ ${integer(effective)} effective` : "";
      block.effective.classList.toggle("rounded", effective !== desired);
    }
    this.summary.textContent = "";
    const line = element("div");
    line.append("Effective devices ", element("strong", "", integer(derived.total)));
    line.append(` · ramp step ${integer(derived.step)} devices (${this.meta.devices_per_generator_step} × ` +
      `${derived.generators} generator${derived.generators > 1 ? "s" : ""})`);
    if (derived.rampSteps) {
      line.append(` · ${integer(derived.rampSteps)} ramp step${derived.rampSteps > 1 ? "s" : ""}` +
        ` of ${shortDuration(derived.rampupStepMs)} up, ${shortDuration(derived.rampdownStepMs)} down`);
    }
    this.showSummary(line, derived);
  }

  /** The summary under the blocks: ``line``, a warning without generators; the total duration. */
  showSummary(line, derived) {
    this.summary.appendChild(line);
    if (!this.generators) {
      this.summary.appendChild(element("div", "warning-text",
        "No generator is registered: counting as one. Start a generator before the run."));
    }
    this.totalDuration.value = Number.isFinite(derived.totalMs) ? duration(derived.totalMs) : "—";
    this.totalDuration.textContent = this.totalDuration.value;
  }

  /** ``update`` for the open model: blocks are weights, the pool and the rate are the load. */
  updateOpen(derived) {
    derived.sizes.forEach((size, i) => {
      const block = this.blocks[i];
      block.sizeLabel.textContent = "Weight";
      block.effective.textContent = size > 0 ? `weight ${integer(size)} of ${integer(derived.total)}` : "";
      block.effective.classList.remove("rounded");
    });
    this.summary.textContent = "";
    const line = element("div");
    const pool = Number.isFinite(derived.pool) ? integer(derived.pool) : "—";
    line.append("Pool of ", element("strong", "", pool), " devices");
    if (Number.isFinite(derived.preAllocated) && derived.preAllocated !== derived.pool) {
      line.append(` (${integer(derived.preAllocated)} created at the start)`);
    }
    line.append(` · iterations started on schedule for ${shortDuration(derived.sustainMs)} across ` +
      `${derived.generators} generator${derived.generators > 1 ? "s" : ""}; one that finds every device ` +
      "busy is dropped and counted");
    this.showSummary(line, derived);
  }

  // -- modes ---------------------------------------------------------------

  setMode(mode, { skipConvert = false } = {}) {
    if (mode === this.mode) return;
    if (mode === "json") {
      if (!skipConvert) {
        const { plan } = buildPlan(this.values(), this.generators, this.meta);
        this.jsonEditor.value = JSON.stringify(plan, null, 2);
      }
    } else if (!skipConvert) {
      let plan;
      try {
        plan = JSON.parse(this.jsonEditor.value);
      } catch (error) {
        const at = jsonErrorPosition(this.jsonEditor.value, error);
        this.jsonEditor.setError({ ...(at || {}), message: `Not valid JSON (${jsonMessage(error)}): fix it to go back to the form.` });
        return;
      }
      const { values, warnings } = planToValues(plan || {}, this.meta);
      this.setValues(values);
      this.showFormError(warnings.join(" "), "warning");
    }
    this.mode = mode;
    document.getElementById("form-fields").hidden = mode !== "form";
    document.getElementById("json-fields").hidden = mode !== "json";
    document.getElementById("mode-form").setAttribute("aria-selected", String(mode === "form"));
    document.getElementById("mode-json").setAttribute("aria-selected", String(mode === "json"));
    this.clearErrors();
    this.update();
    this.saveDraftSoon();
  }

  /** ``{plan, errors}`` of the current mode. */
  currentPlan() {
    if (this.mode === "json") {
      const text = this.jsonEditor.value;
      try {
        return { plan: JSON.parse(text), errors: [] };
      } catch (error) {
        const at = jsonErrorPosition(text, error);
        return { plan: null, errors: [{ field: "json", message: `Not valid JSON: ${jsonMessage(error)}`, ...(at || {}) }] };
      }
    }
    const { plan, errors } = buildPlan(this.values(), this.generators, this.meta);
    return { plan, errors };
  }

  // -- errors ----------------------------------------------------------------

  clearFieldError(container) {
    if (!container) return;
    container.classList.remove("invalid");
    const slot = container.querySelector(":scope > .field-error");
    if (slot) slot.textContent = "";
  }

  clearErrors() {
    for (const node of this.form.querySelectorAll(".invalid")) this.clearFieldError(node);
    for (const block of this.blocks) {
      block.editor.clearError();
      block.params.clearError();
    }
    this.jsonEditor.clearError();
    this.showFormError("");
  }

  showFormError(message, kind = "error") {
    this.formError.textContent = message || "";
    this.formError.className = `form-error ${kind}`;
    this.formError.hidden = !message;
  }

  /** Show errors ({field, message, line?, column?}) where they belong; returns the first element. */
  showErrors(errors) {
    let first = null;
    const loose = [];
    for (const error of errors) {
      if (this.mode === "json") {
        if (error.field === "json") {
          this.jsonEditor.setError(error);
        } else {
          const where = error.line ? ` (line ${error.line}${error.column ? `, column ${error.column}` : ""})` : "";
          loose.push(`${error.field ? `${error.field}${where}: ` : ""}${bareMessage(error.message)}`);
        }
        first = first || this.jsonEditor.root;
        continue;
      }
      const { target, block } = formTarget(error.field);
      const owner = block !== undefined ? this.blocks[block] : null;
      if (target === "script" && owner) {
        owner.editor.setError({ line: error.line, column: error.column, message: bareMessage(error.message) });
        first = first || owner.editor.root;
        continue;
      }
      if (target === "params" && owner) {
        let position = {};
        if (error.line) position = { line: error.line, column: error.column };
        owner.params.setError({ ...position, message: error.message });
        first = first || owner.params.root;
        continue;
      }
      let container = null;
      if ((target === "size" || target === "data") && owner) {
        container = owner.root.querySelector(`[data-field="${target}"]`);
      }
      else if (target) container = this.form.querySelector(`#form-fields [data-field="${target}"]`);
      if (!container) {
        loose.push(error.message);
        continue;
      }
      if (container.closest("details")) container.closest("details").open = true;
      container.classList.add("invalid");
      const slot = container.querySelector(":scope > .field-error");
      if (slot && !slot.textContent) slot.textContent = error.message;
      first = first || container;
    }
    if (loose.length) this.showFormError(loose.join(" "));
    return first || (loose.length ? this.formError : null);
  }

  // -- server checks -----------------------------------------------------------

  scheduleCheck() {
    clearTimeout(this.checkTimer);
    this.checkTimer = setTimeout(() => this.check(false), 700);
  }

  /** Validate with the coordinator (``explicit``: the user asked; show client errors too). */
  async check(explicit) {
    clearTimeout(this.checkTimer);
    const { plan, errors } = this.currentPlan();
    if (errors.length) {
      if (explicit) {
        this.clearErrors();
        this.reveal(this.showErrors(errors));
        this.setCheckResult("Fix the marked fields.", "error");
      } else {
        // Show only the errors of what was just edited: scripts and params.
        this.clearScriptErrors();
        this.showErrors(errors.filter((e) => /\.(script|params)$/.test(e.field) || e.field === "json"));
      }
      return false;
    }
    if (this.checkController) this.checkController.abort();
    this.checkController = new AbortController();
    const seq = ++this.checkSeq;
    if (explicit) this.setCheckResult("Checking…", "");
    // A check while typing leaves feeder rows out (they were checked when their file was read,
    // and may be megabytes); an explicit check and the submit send them.
    const checked = explicit || !Array.isArray(plan.blocks) ? plan
      : { ...plan, blocks: plan.blocks.map((block) => (block && typeof block === "object" && "data" in block
        ? Object.fromEntries(Object.entries(block).filter(([key]) => key !== "data")) : block)) };
    try {
      const result = await api.check(checked, { signal: this.checkController.signal });
      if (seq !== this.checkSeq) return false;
      this.clearErrors();
      const addresses = result.addresses.length;
      this.setCheckResult(`Plan OK: ${integer(result.devices)} devices on ${addresses} address` +
        `${addresses > 1 ? "es" : ""}, ${duration(result.duration_ms)}.`, "ok");
      return true;
    } catch (error) {
      if (error.name === "AbortError" || seq !== this.checkSeq) return false;
      this.clearErrors();
      if (error instanceof ApiError && error.status === 400) {
        const shown = this.showErrors([{ field: error.error.field, message: error.error.message,
          line: error.error.line, column: error.error.column }]);
        if (explicit) this.reveal(shown);
        this.setCheckResult("The plan has a problem (marked).", "error");
      } else {
        this.setCheckResult(`Could not check the plan: ${error.message}`, "error");
      }
      return false;
    }
  }

  clearScriptErrors() {
    for (const block of this.blocks) {
      block.editor.clearError();
      block.params.clearError();
    }
    this.jsonEditor.clearError();
  }

  setCheckResult(text, kind) {
    this.checkResult.textContent = text;
    this.checkResult.className = `check-result ${kind}`;
  }

  reveal(element) {
    if (element && element.scrollIntoView) element.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  async submit() {
    clearTimeout(this.checkTimer);
    this.checkSeq += 1; // a pending background check must not overwrite what follows
    this.clearErrors();
    const { plan, errors } = this.currentPlan();
    if (errors.length) {
      this.reveal(this.showErrors(errors));
      this.setCheckResult("Fix the marked fields.", "error");
      return;
    }
    this.submitting = true;
    this.startButton.disabled = true;
    this.setCheckResult("Starting…", "");
    try {
      const run = await api.start(plan);
      this.setCheckResult(`Started ${run.id}.`, "ok");
      this.saveDraft();
      this.onStarted(run);
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        this.reveal(this.showErrors([{ field: error.error.field, message: error.error.message,
          line: error.error.line, column: error.error.column }]));
        this.setCheckResult("The plan has a problem (marked).", "error");
      } else if (error instanceof ApiError && error.status === 409) {
        this.showFormError(error.message);
        this.setCheckResult("Not started.", "error");
      } else {
        this.showFormError(`Could not start the run: ${error.message}`);
        this.setCheckResult("Not started.", "error");
      }
    } finally {
      this.submitting = false;
      this.setRunActive(this.runActive);
    }
  }

  // -- draft -------------------------------------------------------------------

  saveDraftSoon() {
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => this.saveDraft(), 400);
  }

  saveDraft() {
    const values = this.values();
    const withoutRows = { ...values, blocks: values.blocks.map((block) => ({ ...block, data: null, dataName: "" })) };
    // Feeder rows may not fit in the browser's storage: then the draft keeps the rest.
    for (const kept of [values, withoutRows]) {
      try {
        localStorage.setItem(DRAFT_KEY, JSON.stringify({ mode: this.mode, values: kept, json: this.jsonEditor.value }));
        return;
      } catch (error) {
        // storage full or disabled: the draft is a convenience only
      }
    }
  }

  restoreDraft() {
    let draft;
    try {
      draft = JSON.parse(localStorage.getItem(DRAFT_KEY) || "null");
    } catch (error) {
      draft = null;
    }
    if (!draft || !draft.values) return false;
    this.setValues(draft.values);
    this.jsonEditor.value = draft.json || "";
    if (draft.mode === "json") this.setMode("json", { skipConvert: true });
    return true;
  }
}
