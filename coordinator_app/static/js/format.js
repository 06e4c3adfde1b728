// Numbers, units and times as the page shows them.

const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** 1234567 -> "1,234,567". */
export function integer(value) {
  return Number.isFinite(value) ? GROUPED.format(Math.round(value)) : "—";
}

function trim(value, digits) {
  return Number(value.toFixed(digits)).toString();
}

/** A compact count: 950, 9.5k, 1.2M. */
export function compact(value) {
  if (!Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  if (abs >= 1e9) return trim(value / 1e9, abs >= 1e10 ? 1 : 2) + "G";
  if (abs >= 1e6) return trim(value / 1e6, abs >= 1e7 ? 1 : 2) + "M";
  if (abs >= 1e4) return trim(value / 1e3, abs >= 1e5 ? 0 : 1) + "k";
  if (abs >= 100) return trim(value, 0);
  if (abs >= 10) return trim(value, 1);
  return trim(value, 2);
}

/** Microseconds as µs, ms or s with three significant digits. */
export function micros(value) {
  if (!Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  if (abs < 1000) return `${trim(value, 0)} µs`;
  if (abs < 1e6) return `${trim(value / 1000, abs < 1e4 ? 2 : abs < 1e5 ? 1 : 0)} ms`;
  return `${trim(value / 1e6, abs < 1e7 ? 2 : 1)} s`;
}

/** Bytes (per second, with ``suffix``) in B, kB, MB, GB. */
export function bytes(value, suffix = "") {
  if (!Number.isFinite(value)) return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = value;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${trim(v, Math.abs(v) >= 100 || i === 0 ? 0 : 1)} ${units[i]}${suffix}`;
}

export function percent(value) {
  return Number.isFinite(value) ? `${trim(value, value >= 10 ? 0 : 1)}%` : "—";
}

/** Milliseconds as "1h 02m", "4m 05s", "12s". */
export function duration(ms) {
  if (!Number.isFinite(ms)) return "—";
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (h) return `${h}h ${pad(m)}m`;
  if (m) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

/** Milliseconds for short spans: "450 ms", "1.5s", then as ``duration``. */
export function shortDuration(ms) {
  if (!Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10000) return `${trim(ms / 1000, 1)}s`;
  return duration(ms);
}

/** A Unix time (seconds) as local "2024-05-01 14:03:22". */
export function timestamp(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function clock(seconds) {
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** How a metric's values read: by the naming rules of the metrics (DESIGN section 5). */
export function metricKind(name) {
  if (name === "cpu_percent" || name.endsWith("_percent")) return "percent";
  if (name.endsWith("_us")) return "micros";
  if (name.includes("_bytes")) return "bytes";
  return "count";
}

/** A formatter for values of the metric ``name`` (``rate``: per second). */
export function formatterFor(name, rate = false) {
  const kind = metricKind(name);
  if (kind === "percent") return percent;
  if (kind === "micros") return micros;
  if (kind === "bytes") return (v) => bytes(v, rate ? "/s" : "");
  return (v) => compact(v) + (rate ? "/s" : "");
}

/** "conn_refused_error_count" -> "conn refused error"; "set_us" -> "set". */
export function metricLabel(name) {
  return name.replace(/_(count|us|number)$/, "").replace(/_/g, " ");
}
