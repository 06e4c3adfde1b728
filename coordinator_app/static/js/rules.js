// The coordinator's shared rules and names as pure functions of ``meta``, its answer to
// GET /api/meta (fetched once when the page starts): the page keeps no copy of them.

/** The protocol called ``name``: {name, label, default_port, script_functions}, or undefined. */
export function protocolInfo(name, meta) {
  return meta.protocols.find((protocol) => protocol.name === name);
}

/** The port the form suggests for ``protocol`` ("" for an unknown one). */
export function defaultPort(protocol, meta) {
  const info = protocolInfo(protocol, meta);
  return info ? String(info.default_port) : "";
}

/** The functions a script of ``protocol`` may call. */
export function scriptFunctions(protocol, meta) {
  const info = protocolInfo(protocol, meta);
  return new Set(info ? info.script_functions : []);
}

/** Every name the coordinator gives a script, whatever its protocol: its arguments and functions. */
export function scriptNames(meta) {
  return new Set([...meta.script_arguments, ...meta.protocols.flatMap((p) => p.script_functions)]);
}

/** The generators the ramp arithmetic counts: at least one. */
export function countedGenerators(generators) {
  return Math.max(1, Math.floor(generators) || 0);
}

/** Devices started per ramp step with this many generators. */
export function rampStepSize(generators, meta) {
  return meta.devices_per_generator_step * countedGenerators(generators);
}

/** ``desired`` rounded down to a multiple of the ramp step. */
export function effectiveDevices(desired, generators, meta) {
  const step = rampStepSize(generators, meta);
  const n = Math.floor(Number(desired));
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.floor(n / step) * step;
}

/** A host metric named like an error (the generators' TCP retransmits): a warning, not an error of the run. */
export function isHostWarning(name, meta) {
  return meta.host_warning_metrics.includes(name.replace(/_count$/, ""));
}

/** A counter of the run's errors. */
export function isErrorCounter(name, meta) {
  return meta.error_suffixes.some((suffix) => name.endsWith(suffix)) && !isHostWarning(name, meta);
}

/** A generator CPU percentage that makes the results suspect. */
export function isCpuOverWarning(percent, meta) {
  return percent > meta.cpu_warning_percent;
}

/** A worker event-loop lag (microseconds, p99 of a second) that makes the results suspect. */
export function isLoopLagOverWarning(us, meta) {
  return us > meta.loop_lag_warning_us;
}

/** A status-class counter of error statuses (4xx, 5xx): shown as a warning, not an error. */
export function isStatusWarning(name, meta) {
  return meta.warning_status_counters.includes(name.replace(/_count$/, ""));
}

/**
 * The requests scripts named (``get(..., name=...)``) in one second of telemetry: a list of
 * {name, rate, total, headers (its headers_us figures or null), status (warning class -> its
 * counter, or null)}, by name.
 */
export function requestGroups(telemetry, meta) {
  const { prefix, responses } = meta.request_group;
  const counters = telemetry.counters || {};
  const histograms = telemetry.histograms || {};
  const suffix = `${responses}_count`;
  return Object.keys(counters)
    .filter((key) => key.startsWith(prefix) && key.endsWith(suffix) && key.length > prefix.length + suffix.length)
    .map((key) => key.slice(prefix.length, -suffix.length))
    .sort()
    .map((name) => {
      const group = `${prefix}${name}_`;
      const counter = counters[`${prefix}${name}${suffix}`];
      return {
        name, rate: counter.per_second, total: counter.total,
        headers: histograms[`${group}headers_us`] || null,
        status: Object.fromEntries(meta.warning_status_counters.map((status) => [status, counters[`${group}${status}_count`] || null])),
      };
    });
}

/** The group a metric's card is folded in (as the coordinator's overview.metric_group):
 * "request <name>" for a named request's, "checks", "status classes", "network", "errors",
 * "generators" or "main". */
export function metricGroup(name, meta) {
  const rules = meta.metric_groups;
  const metric = name.replace(/_count$/, "");
  if (metric.startsWith(rules.request_prefix)) {
    const endings = rules.request_suffixes.filter((suffix) => metric.endsWith(`_${suffix}`));
    if (endings.length) {
      const longest = endings.reduce((a, b) => (b.length > a.length ? b : a));
      const named = metric.slice(rules.request_prefix.length, metric.length - longest.length - 1);
      if (named) return `request ${named}`;
    }
  }
  if (metric.startsWith(rules.check_prefix)) return "checks";
  if (rules.status_counters.includes(metric)) return "status classes";
  if (metric.startsWith(rules.network_prefix)) return "network";
  if (meta.error_suffixes.some((suffix) => metric.endsWith(suffix))) return "errors";
  if (rules.generator_histograms.includes(metric)) return "generators";
  return rules.main;
}

/** A sort key of groups: main, the named requests by name, then the fixed later ones. */
export function groupOrder(group, meta) {
  const rules = meta.metric_groups;
  if (group === rules.main) return "0";
  const later = rules.later.indexOf(group);
  return later >= 0 ? `2-${String(later).padStart(2, "0")}` : `1-${group}`;
}
