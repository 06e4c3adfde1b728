// The plan form's arithmetic and checks, with no DOM: form values <-> plan JSON.
//
// Ramp-up and ramp-down run in steps; in each step every generator starts (or
// stops) DEVICES_PER_GENERATOR_STEP devices of every block. So the ramp step is
// 10 x generators devices, the devices a block gets are its desired count
// rounded down to a multiple of that, and the plan's ramp_steps is the total
// divided by the step. The coordinator itself takes any size; only this form
// rounds, as the original's website did.

export const DEVICES_PER_GENERATOR_STEP = 10;

export const PROTOCOLS = ["http10", "http10s", "http", "https", "http2", "http2s", "tcp", "udp"];

export const DEFAULT_PORTS = {
  http10: 80, http10s: 443, http: 80, https: 443, http2: 80, http2s: 443, tcp: 6379, udp: 53,
};

export const DEFAULT_OPTS = {
  cooldown_ms: 5000, report_interval_ms: 60000, timeout_ms: 5000,
};

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

/** A starting script for a protocol. */
export function exampleScript(protocol) {
  if (protocol === "tcp") return TCP_SCRIPT;
  if (protocol === "udp") return UDP_SCRIPT;
  return HTTP_SCRIPT;
}

export function exampleParams(protocol) {
  if (protocol === "tcp" || protocol === "udp") return '{"iterations": 100, "delay_ms": 1000}';
  return '{"path": "/", "delay_ms": 1000}';
}

/** Devices started per ramp step with this many generators (at least one assumed). */
export function rampStepSize(generators) {
  return DEVICES_PER_GENERATOR_STEP * Math.max(1, Math.floor(generators) || 0);
}

/** ``desired`` rounded down to a multiple of the ramp step. */
export function effectiveDevices(desired, generators) {
  const step = rampStepSize(generators);
  const n = Math.floor(Number(desired));
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.floor(n / step) * step;
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

/**
 * Check the form's values and build the plan.
 *
 * ``values``: {name, protocol, hosts, port, rampup, sustain, rampdown, cooldown,
 * report_interval, timeout, tls_verify, tls_ca_file, blocks: [{script, params, size}]}
 * as strings from the inputs. Returns {plan, errors, derived}: ``errors`` are
 * {field, message} with the API's field names (``blocks[1].params``), so the form
 * shows its own and the server's errors the same way.
 */
export function buildPlan(values, generators) {
  const errors = [];
  const fail = (field, message) => errors.push({ field, message });
  const name = String(values.name || "").trim();
  if (!name) fail("name", "Give the plan a name.");
  else if (name.length > 200) fail("name", "At most 200 characters.");

  const protocol = values.protocol;
  if (!PROTOCOLS.includes(protocol)) fail("addresses[0].protocol", "Choose a protocol.");

  const hosts = parseHosts(values.hosts);
  if (!hosts.length) fail("addresses[0].host", "Name at least one target host.");
  const spaced = hosts.find((host) => /\s/.test(host));
  if (spaced) fail("addresses[0].host", `"${spaced}" is not a host name: separate hosts with commas.`);

  const port = number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    fail("addresses[0].port", "A port from 1 to 65535.");
  }

  const seconds = {};
  for (const key of ["rampup", "sustain", "rampdown", "cooldown"]) {
    const value = number(values[key]);
    if (!Number.isFinite(value) || value < 0) {
      fail(`opts.${key === "rampup" || key === "rampdown" ? key + "_step" : key}_ms`,
        "Seconds, zero or more.");
    }
    seconds[key] = value;
  }
  const reportInterval = number(values.report_interval);
  if (!Number.isFinite(reportInterval) || reportInterval < 1) {
    fail("opts.report_interval_ms", "At least 1 second.");
  }
  const timeout = number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 3600000) {
    fail("opts.timeout_ms", "Milliseconds, from 1 to 3600000.");
  }

  const step = rampStepSize(generators);
  const blocks = [];
  (values.blocks || []).forEach((block, i) => {
    const script = String(block.script || "");
    if (!script.trim()) fail(`blocks[${i}].script`, "The script is empty.");
    let params = {};
    const paramsText = String(block.params || "").trim();
    if (paramsText) {
      try {
        params = JSON.parse(paramsText);
      } catch (error) {
        const at = jsonErrorPosition(paramsText, error);
        errors.push({ field: `blocks[${i}].params`, message: `Not JSON: ${jsonMessage(error)}`, ...(at || {}) });
      }
      if (params === null || typeof params !== "object" || Array.isArray(params)) {
        if (!errors.some((e) => e.field === `blocks[${i}].params`)) {
          fail(`blocks[${i}].params`, "Params must be a JSON object, like {\"delay_ms\": 100}.");
        }
        params = {};
      }
    }
    const desired = number(block.size);
    const effective = effectiveDevices(desired, generators);
    if (!Number.isInteger(desired) || desired < 1) {
      fail(`blocks[${i}].size`, "A whole number of devices.");
    } else if (effective === 0) {
      fail(`blocks[${i}].size`, `At least ${step} devices: ramps go in steps of ${step} ` +
        `(10 × ${Math.max(1, generators)} generator${generators > 1 ? "s" : ""}).`);
    }
    blocks.push({ script, params, size: effective, desired });
  });
  if (!blocks.length) fail("blocks", "Add a script block.");

  const total = blocks.reduce((sum, block) => sum + block.size, 0);
  const rampSteps = total / step;
  const derived = {
    step, total, rampSteps,
    rampupStepMs: rampSteps ? Math.round(seconds.rampup * 1000 / rampSteps) : 0,
    rampdownStepMs: rampSteps ? Math.round(seconds.rampdown * 1000 / rampSteps) : 0,
    sustainMs: Math.round(seconds.sustain * 1000),
    cooldownMs: Math.round(seconds.cooldown * 1000),
  };
  derived.totalMs = rampSteps * (derived.rampupStepMs + derived.rampdownStepMs)
    + derived.sustainMs + derived.cooldownMs;
  if (rampSteps > 100000) {
    fail(`blocks[0].size`, `That is ${rampSteps} ramp steps; at most 100000.`);
  }
  // The plan is built even from values with errors (the JSON view shows it as far
  // as it goes); callers submit it only when ``errors`` is empty.
  const plan = {
    name,
    addresses: (hosts.length ? hosts : [""]).map((host) => ({ host, port: Number.isFinite(port) ? port : null, protocol })),
    blocks: blocks.map(({ script, params, size }) => ({ script, params, size })),
    opts: {
      ramp_steps: rampSteps,
      rampup_step_ms: derived.rampupStepMs,
      sustain_ms: derived.sustainMs,
      rampdown_step_ms: derived.rampdownStepMs,
      cooldown_ms: derived.cooldownMs,
      report_interval_ms: Math.round(reportInterval * 1000),
      timeout_ms: timeout,
    },
  };
  if (values.tls_verify) plan.opts.tls_verify = true;
  const ca = String(values.tls_ca_file || "").trim();
  if (ca) plan.opts.tls_ca_file = ca;
  return { plan, errors, derived };
}

function seconds(ms) {
  return Math.round(Number(ms) || 0) / 1000;
}

/**
 * Form values from a plan (advanced mode or a past run): the inverse of buildPlan.
 * ``warnings`` says what the form cannot show (several ports or protocols).
 */
export function planToValues(plan) {
  const warnings = [];
  const addresses = Array.isArray(plan.addresses) ? plan.addresses : [];
  const opts = Object.assign({ ramp_steps: 1, rampup_step_ms: 1000, sustain_ms: 60000,
    rampdown_step_ms: 1000 }, DEFAULT_OPTS, plan.opts || {});
  const first = addresses[0] || {};
  if (new Set(addresses.map((a) => a.port)).size > 1) {
    warnings.push("The plan's addresses use several ports; the form keeps the first.");
  }
  const steps = Number(opts.ramp_steps) || 1;
  return {
    values: {
      name: plan.name || "",
      protocol: first.protocol || "http",
      hosts: parseHosts(addresses.map((a) => a.host).join(",")).join(", "),
      port: first.port !== undefined ? String(first.port) : "",
      rampup: String(seconds(steps * opts.rampup_step_ms)),
      sustain: String(seconds(opts.sustain_ms)),
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
  let match = /^blocks\[(\d+)\]\.(script|params|size)/.exec(text);
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
  };
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
