// The plan form's arithmetic and checks, with no DOM: form values <-> plan JSON.
//
// ``meta`` is the coordinator's GET /api/meta (see rules.js): its protocols, the plan's
// limits and defaults, and the devices per ramp step. Ramp-up and ramp-down run in steps;
// in each step every generator starts (or stops) meta.devices_per_generator_step devices
// of every block. So the ramp step is that many x generators devices, the devices a block
// gets are its desired count rounded down to a multiple of the step, and the plan's
// ramp_steps is the total divided by the step. The coordinator itself takes any size; only
// this form rounds, as the original's website did.
//
// buildPlan is three pure steps: parseValues (the inputs' strings as numbers and JSON),
// derivePlan (effective devices, ramp steps, step lengths) and validatePlan (the errors,
// with the API's field names); planFrom puts the plan together.

import { countedGenerators, effectiveDevices, protocolInfo, rampStepSize } from "./rules.js";

const HTTP_SCRIPT = `# The body of an async function, run once per device; when it returns,
# the device starts over. params holds this block's params.
for _ in range(params.get("requests", 100)):
    status, headers, body = await get(params.get("path", "/"))
    if status != 200:
        inc_counter("not_ok")
    await delay(params.get("delay_ms", 1000), 0.1)
`;

const TCP_SCRIPT = `# The body of an async function, run once per device over its own connection.
for _ in range(params.get("iterations", 100)):
    start_timing("ping")
    await send("PING\\r\\n")
    reply = await recv()
    stop_timing("ping")
    assert reply.startswith(b"+PONG"), reply
    await delay(params.get("delay_ms", 1000), 0.05)
`;

const UDP_SCRIPT = `# The body of an async function, run once per device; recv() returns one datagram.
for _ in range(params.get("iterations", 100)):
    start_timing("echo")
    await send(b"hello")
    reply = await recv(timeout=2000)
    stop_timing("echo")
    await delay(params.get("delay_ms", 1000), 0.05)
`;

const MQTT_SCRIPT = `# The body of an async function, run once per device over its own MQTT session.
await mqtt_connect(keepalive=60)
await subscribe("devices/" + device_id + "/commands", qos=1)
for _ in range(params.get("iterations", 100)):
    await publish("devices/" + device_id + "/telemetry", b'{"temperature": 21.5}', qos=1)
    await delay(params.get("delay_ms", 1000), 0.1)
`;

/** Whether a protocol's devices speak MQTT (and so have an MQTT version). */
export function isMqtt(protocol) {
  return protocol === "mqtt" || protocol === "mqtts";
}

/** A starting script for a protocol. */
export function exampleScript(protocol) {
  if (protocol === "tcp") return TCP_SCRIPT;
  if (protocol === "udp") return UDP_SCRIPT;
  if (isMqtt(protocol)) return MQTT_SCRIPT;
  return HTTP_SCRIPT;
}

export function exampleParams(protocol) {
  if (["tcp", "udp", "mqtt", "mqtts"].includes(protocol)) return '{"iterations": 100, "delay_ms": 1000}';
  return '{"path": "/", "delay_ms": 1000}';
}

/** Host names from the comma-separated field (blanks dropped, order kept, no duplicates). */
export function parseHosts(text) {
  const seen = new Set();
  const hosts = [];
  for (const part of String(text || "").split(",")) {
    const host = part.trim();
    if (host && !seen.has(host)) {
      seen.add(host);
      hosts.push(host);
    }
  }
  return hosts;
}

function number(text) {
  if (text === "" || text === null || text === undefined) return NaN;
  return Number(text);
}

/** A block's params text as an object: {params, error} with error {message, line?, column?} or null. */
export function parseParams(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return { params: {}, error: null };
  let params;
  try {
    params = JSON.parse(trimmed);
  } catch (error) {
    return { params: {}, error: { message: `Not JSON: ${jsonMessage(error)}`, ...(jsonErrorPosition(trimmed, error) || {}) } };
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    return { params: {}, error: { message: "Params must be a JSON object, like {\"delay_ms\": 100}." } };
  }
  return { params, error: null };
}

const DURATIONS = ["rampup", "sustain", "rampdown", "cooldown"];
export const OPEN_MODEL = "arrival_rate";

/**
 * The rate steps field ("10:100, 60:1000": seconds, then the rate that step goes to) as
 * {steps: [[duration_ms, rate], ...] or null when blank, error: a message or null}.
 */
export function parseRateSteps(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return { steps: null, error: null };
  const steps = [];
  for (const part of trimmed.split(",")) {
    const match = /^\s*([0-9.]+)\s*:\s*([0-9.]+)\s*$/.exec(part);
    const seconds = match ? Number(match[1]) : NaN;
    const rate = match ? Number(match[2]) : NaN;
    if (!Number.isFinite(seconds) || !Number.isFinite(rate)) {
      return { steps: null, error: `"${part.trim()}" is not SECONDS:RATE, like 10:100.` };
    }
    steps.push([Math.round(seconds * 1000), rate]);
  }
  return { steps, error: null };
}

/**
 * The form's values as numbers, lists and JSON; nothing is checked here.
 *
 * ``values``: {name, protocol, mqtt_version, hosts, port, rampup, sustain, rampdown, cooldown,
 * report_interval, timeout, tls_verify, tls_ca_file, blocks: [{script, params, size, data}]}
 * as strings from the inputs. A number that is not one is NaN.
 */
export function parseValues(values) {
  const seconds = {};
  for (const key of DURATIONS) seconds[key] = number(values[key]);
  return {
    name: String(values.name || "").trim(),
    protocol: values.protocol,
    mqttVersion: String(values.mqtt_version || ""),
    hosts: parseHosts(values.hosts),
    port: number(values.port),
    seconds,
    reportInterval: number(values.report_interval),
    timeout: number(values.timeout),
    tlsVerify: Boolean(values.tls_verify),
    tlsCaFile: String(values.tls_ca_file || "").trim(),
    executor: values.executor === OPEN_MODEL ? OPEN_MODEL : "devices",
    rate: number(values.rate),
    rateSteps: parseRateSteps(values.rate_steps),
    maxDevices: number(values.max_devices),
    preAllocated: number(values.pre_allocated),
    arrivals: values.arrivals === "poisson" ? "poisson" : "uniform",
    blocks: (values.blocks || []).map((block) => {
      const { params, error } = parseParams(block.params);
      return { script: String(block.script || ""), params, paramsError: error, desired: number(block.size),
        data: Array.isArray(block.data) && block.data.length ? block.data : null };
    }),
  };
}

/**
 * What the parsed values make with this many generators: {generators (counted, at least
 * one), step, sizes (each block's effective devices), total, rampSteps, rampupStepMs,
 * rampdownStepMs, sustainMs, cooldownMs, totalMs}.
 */
export function derivePlan(parsed, generators, meta) {
  if (parsed.executor === OPEN_MODEL) return deriveOpenPlan(parsed, generators, meta);
  const step = rampStepSize(generators, meta);
  const sizes = parsed.blocks.map((block) => effectiveDevices(block.desired, generators, meta));
  const total = sizes.reduce((sum, size) => sum + size, 0);
  const rampSteps = total / step;
  const { seconds } = parsed;
  const derived = {
    generators: countedGenerators(generators), step, sizes, total, rampSteps,
    rampupStepMs: rampSteps ? Math.round(seconds.rampup * 1000 / rampSteps) : 0,
    rampdownStepMs: rampSteps ? Math.round(seconds.rampdown * 1000 / rampSteps) : 0,
    sustainMs: Math.round(seconds.sustain * 1000),
    cooldownMs: Math.round(seconds.cooldown * 1000),
  };
  derived.totalMs = rampSteps * (derived.rampupStepMs + derived.rampdownStepMs)
    + derived.sustainMs + derived.cooldownMs;
  return derived;
}

/**
 * derivePlan for the open model: no ramp (its rate steps are its ramp), each block's size
 * is its weight as given, the pool is max_devices (default: the sizes together), and the
 * schedule is followed by one ramp-down step (the plan's default) for the iterations still
 * running.
 */
function deriveOpenPlan(parsed, generators, meta) {
  const sizes = parsed.blocks.map((block) => (Number.isInteger(block.desired) ? block.desired : 0));
  const total = sizes.reduce((sum, size) => sum + size, 0);
  const { steps } = parsed.rateSteps;
  const sustainMs = steps ? steps.reduce((sum, [ms]) => sum + ms, 0) : Math.round(parsed.seconds.sustain * 1000);
  const pool = Number.isFinite(parsed.maxDevices) ? parsed.maxDevices : total;
  const derived = {
    generators: countedGenerators(generators), step: 1, sizes, total, rampSteps: 1, open: true,
    pool, preAllocated: Number.isFinite(parsed.preAllocated) ? parsed.preAllocated : pool,
    rampupStepMs: 0, rampdownStepMs: meta.default_opts.rampdown_step_ms, sustainMs,
    cooldownMs: Math.round(parsed.seconds.cooldown * 1000),
  };
  derived.totalMs = derived.sustainMs + derived.rampdownStepMs + derived.cooldownMs;
  return derived;
}

/** The open model's own errors (opts.rate, opts.rate_steps, the pool). */
function validateOpenPlan(parsed, derived, meta, fail) {
  const { steps, error } = parsed.rateSteps;
  const hasRate = Number.isFinite(parsed.rate) && parsed.rate !== 0;
  if (error) fail("opts.rate_steps", error);
  else if (hasRate && steps) fail("opts.rate", "Give a rate or rate steps, not both.");
  else if (!hasRate && !steps) fail("opts.rate", "Iterations a second across the fleet, or rate steps.");
  else if (hasRate && !(parsed.rate > 0)) fail("opts.rate", "Iterations a second, more than 0.");
  else if (steps && !steps.some(([, rate]) => rate > 0)) fail("opts.rate_steps", "Some step must go above 0.");
  if (hasRate && !(derived.sustainMs > 0)) fail("opts.sustain_ms", "How long the rate lasts: more than 0 s.");
  const { pool, preAllocated } = derived;
  if (!Number.isInteger(pool) || pool < 1 || pool > meta.limits.block_size) {
    fail("opts.max_devices", `A whole number of devices, from 1 to ${integerText(meta.limits.block_size)}.`);
  } else if (!Number.isInteger(preAllocated) || preAllocated < 0 || preAllocated > pool) {
    fail("opts.pre_allocated_devices", `From 0 to the max devices (${integerText(pool)}).`);
  }
}

function integerText(value) {
  return Number(value).toLocaleString("en-US");
}

/**
 * The errors of the parsed values, as {field, message, line?, column?} with the API's
 * field names (``blocks[1].params``), so the form shows its own and the server's errors
 * the same way.
 */
export function validatePlan(parsed, derived, meta) {
  const errors = [];
  const fail = (field, message) => errors.push({ field, message });
  const { limits } = meta;
  if (!parsed.name) fail("name", "Give the plan a name.");
  else if (parsed.name.length > limits.name_length) fail("name", `At most ${limits.name_length} characters.`);

  if (!protocolInfo(parsed.protocol, meta)) fail("addresses[0].protocol", "Choose a protocol.");

  if (!parsed.hosts.length) fail("addresses[0].host", "Name at least one target host.");
  const spaced = parsed.hosts.find((host) => /\s/.test(host));
  if (spaced) fail("addresses[0].host", `"${spaced}" is not a host name: separate hosts with commas.`);

  const { port } = parsed;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    fail("addresses[0].port", "A port from 1 to 65535.");
  }

  const open = parsed.executor === OPEN_MODEL;
  for (const key of DURATIONS) {
    if (open && (key === "rampup" || key === "rampdown" || (key === "sustain" && parsed.rateSteps.steps))) continue;
    const value = parsed.seconds[key];
    if (!Number.isFinite(value) || value < 0) {
      fail(`opts.${key === "rampup" || key === "rampdown" ? key + "_step" : key}_ms`,
        "Seconds, zero or more.");
    }
  }
  const minimumReport = limits.report_interval_ms / 1000;
  if (!Number.isFinite(parsed.reportInterval) || parsed.reportInterval < minimumReport) {
    fail("opts.report_interval_ms", `At least ${minimumReport} second${minimumReport === 1 ? "" : "s"}.`);
  }
  const { timeout } = parsed;
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > limits.timeout_ms) {
    fail("opts.timeout_ms", `Milliseconds, from 1 to ${limits.timeout_ms}.`);
  }

  const { step } = derived;
  parsed.blocks.forEach((block, i) => {
    if (!block.script.trim()) fail(`blocks[${i}].script`, "The script is empty.");
    if (block.paramsError) errors.push({ field: `blocks[${i}].params`, ...block.paramsError });
    if (!Number.isInteger(block.desired) || block.desired < 1) {
      fail(`blocks[${i}].size`, open ? "A whole number: the block's weight among the iterations."
        : "A whole number of devices.");
    } else if (!open && derived.sizes[i] === 0) {
      fail(`blocks[${i}].size`, `At least ${step} devices: ramps go in steps of ${step} ` +
        `(${meta.devices_per_generator_step} × ${derived.generators} generator${derived.generators > 1 ? "s" : ""}).`);
    }
  });
  if (!parsed.blocks.length) fail("blocks", "Add a script block.");
  if (derived.rampSteps > limits.ramp_steps) {
    fail("blocks[0].size", `That is ${derived.rampSteps} ramp steps; at most ${limits.ramp_steps}.`);
  }
  if (open) validateOpenPlan(parsed, derived, meta, fail);
  return errors;
}

/** The plan JSON of the parsed and derived values, as far as they go (errors or not). */
export function planFrom(parsed, derived) {
  const { hosts, port } = parsed;
  const plan = {
    name: parsed.name,
    addresses: (hosts.length ? hosts : [""]).map((host) => ({ host, port: Number.isFinite(port) ? port : null, protocol: parsed.protocol })),
    blocks: parsed.blocks.map(({ script, params, data }, i) => (
      data ? { script, params, size: derived.sizes[i], data } : { script, params, size: derived.sizes[i] })),
    opts: {
      ramp_steps: derived.rampSteps,
      rampup_step_ms: derived.rampupStepMs,
      sustain_ms: derived.sustainMs,
      rampdown_step_ms: derived.rampdownStepMs,
      cooldown_ms: derived.cooldownMs,
      report_interval_ms: Math.round(parsed.reportInterval * 1000),
      timeout_ms: parsed.timeout,
    },
  };
  if (parsed.tlsVerify) plan.opts.tls_verify = true;
  if (isMqtt(parsed.protocol) && parsed.mqttVersion) plan.opts.mqtt_version = parsed.mqttVersion;
  if (parsed.tlsCaFile) plan.opts.tls_ca_file = parsed.tlsCaFile;
  if (derived.open) {
    const { opts } = plan;
    delete opts.ramp_steps;
    delete opts.rampup_step_ms;
    delete opts.rampdown_step_ms;
    opts.executor = OPEN_MODEL;
    // What the fields say, both when both are given (the coordinator then refuses it too).
    if (parsed.rateSteps.steps) {
      delete opts.sustain_ms;
      opts.rate_steps = parsed.rateSteps.steps;
    }
    if (!parsed.rateSteps.steps || Number.isFinite(parsed.rate)) {
      opts.rate = Number.isFinite(parsed.rate) ? parsed.rate : null;
    }
    opts.arrivals = parsed.arrivals;
    if (Number.isFinite(parsed.maxDevices)) opts.max_devices = parsed.maxDevices;
    if (Number.isFinite(parsed.preAllocated)) opts.pre_allocated_devices = parsed.preAllocated;
  }
  return plan;
}

/**
 * Check the form's values and build the plan: {plan, errors, derived}. The plan is built
 * even from values with errors (the JSON view shows it as far as it goes); callers submit
 * it only when ``errors`` is empty.
 */
export function buildPlan(values, generators, meta) {
  const parsed = parseValues(values);
  const derived = derivePlan(parsed, generators, meta);
  return { plan: planFrom(parsed, derived), errors: validatePlan(parsed, derived, meta), derived };
}

function seconds(ms) {
  return Math.round(Number(ms) || 0) / 1000;
}

/**
 * Form values from a plan (advanced mode or a past run): the inverse of buildPlan.
 * ``warnings`` says what the form cannot show (several ports or protocols).
 */
export function planToValues(plan, meta) {
  const warnings = [];
  const addresses = Array.isArray(plan.addresses) ? plan.addresses : [];
  const opts = { ...meta.default_opts, ...(plan.opts || {}) };
  const first = addresses[0] || {};
  if (new Set(addresses.map((a) => a.port)).size > 1) {
    warnings.push("The plan's addresses use several ports; the form keeps the first.");
  }
  const steps = Number(opts.ramp_steps) || 1;
  const open = opts.executor === OPEN_MODEL;
  const rateSteps = open && Array.isArray(opts.rate_steps) ? opts.rate_steps : null;
  return {
    values: {
      executor: open ? OPEN_MODEL : "devices",
      rate: open && !rateSteps && opts.rate !== undefined ? String(opts.rate) : "",
      rate_steps: rateSteps ? rateSteps.map(([ms, rate]) => `${seconds(ms)}:${rate}`).join(", ") : "",
      max_devices: open && opts.max_devices !== undefined ? String(opts.max_devices) : "",
      pre_allocated: open && opts.pre_allocated_devices !== undefined ? String(opts.pre_allocated_devices) : "",
      arrivals: open && opts.arrivals === "poisson" ? "poisson" : "uniform",
      name: plan.name || "",
      protocol: first.protocol || meta.default_protocol,
      mqtt_version: opts.mqtt_version !== undefined ? String(opts.mqtt_version) : meta.default_mqtt_version,
      hosts: parseHosts(addresses.map((a) => a.host).join(",")).join(", "),
      port: first.port !== undefined ? String(first.port) : "",
      rampup: String(seconds(steps * opts.rampup_step_ms)),
      sustain: String(seconds(rateSteps ? rateSteps.reduce((sum, [ms]) => sum + ms, 0) : opts.sustain_ms)),
      rampdown: String(seconds(steps * opts.rampdown_step_ms)),
      cooldown: String(seconds(opts.cooldown_ms)),
      report_interval: String(seconds(opts.report_interval_ms)),
      timeout: String(opts.timeout_ms),
      tls_verify: Boolean(opts.tls_verify),
      tls_ca_file: opts.tls_ca_file || "",
      blocks: (Array.isArray(plan.blocks) ? plan.blocks : []).map((block) => ({
        script: block.script || "",
        params: JSON.stringify(block.params || {}, null, 2).replace(/^\{\}$/, "{}"),
        size: String(block.size || ""),
        data: Array.isArray(block.data) && block.data.length ? block.data : null,
        dataName: "the plan",
      })),
    },
    warnings,
  };
}

/**
 * Where a field named by the API (``blocks[1].script``, ``opts.sustain_ms``) is shown
 * in the form: {target, block} with target one of the form's field names.
 */
export function formTarget(field) {
  const text = String(field || "");
  let match = /^blocks\[(\d+)\]\.(script|params|size|data)/.exec(text);
  if (match) return { target: match[2], block: Number(match[1]) };
  if (/^blocks(\[\d+\])?$/.test(text)) return { target: "size", block: Number((/\d+/.exec(text) || [0])[0]) };
  match = /^addresses(\[\d+\])?(\.(\w+))?/.exec(text);
  if (match) {
    const key = match[3];
    if (key === "port") return { target: "port" };
    if (key === "protocol") return { target: "protocol" };
    return { target: "hosts" };
  }
  const opts = {
    "opts.ramp_steps": { target: "size", block: 0 },
    "opts.rampup_step_ms": { target: "rampup" },
    "opts.sustain_ms": { target: "sustain" },
    "opts.rampdown_step_ms": { target: "rampdown" },
    "opts.cooldown_ms": { target: "cooldown" },
    "opts.report_interval_ms": { target: "report_interval" },
    "opts.timeout_ms": { target: "timeout" },
    "opts.tls_verify": { target: "tls_verify" },
    "opts.tls_ca_file": { target: "tls_ca_file" },
    "opts.mqtt_version": { target: "mqtt_version" },
    "opts.executor": { target: "executor" },
    "opts.rate": { target: "rate" },
    "opts.rate_steps": { target: "rate_steps" },
    "opts.max_devices": { target: "max_devices" },
    "opts.pre_allocated_devices": { target: "pre_allocated" },
    "opts.arrivals": { target: "arrivals" },
  };
  if (/^opts\.rate_steps\[\d+\]$/.test(text)) return { target: "rate_steps" };
  if (opts[text]) return opts[text];
  if (text === "name") return { target: "name" };
  return { target: null };
}

/** The message without the "line 2, column 1: " the API puts before script errors. */
export function bareMessage(message) {
  return String(message || "").replace(/^(block \d+, )?line \d+(, column \d+)?: /, "");
}

/** 1-based {line, column} of a character offset in ``text``. */
export function lineColumn(text, offset) {
  const before = String(text).slice(0, Math.max(0, offset));
  const lines = before.split("\n");
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

/** JSON.parse's message without the position (shown at the line instead). */
export function jsonMessage(error) {
  return String(error && error.message || "bad JSON")
    .replace(/\s*(in JSON )?at position \d+( \(line \d+ column \d+\))?/, "")
    .replace(/^JSON\.parse: /, "");
}

/** Where JSON.parse failed, from its message: {line, column} or null. */
export function jsonErrorPosition(text, error) {
  const message = String(error && error.message || "");
  let match = /line (\d+) column (\d+)/.exec(message);
  if (match) return { line: Number(match[1]), column: Number(match[2]) };
  match = /position (\d+)/.exec(message);
  if (match) return lineColumn(text, Number(match[1]));
  if (/end of JSON input/i.test(message)) return lineColumn(text, String(text).length);
  return null;
}
