// A small SVG time-series chart: a few lines over a span that grows with the data (or the whole run,
// from its start), a y axis with round ticks, and a hover read-out. No third-party code.

import { element, svgElement } from "./dom.js";

/** Round tick values from 0 to at least ``max``: [0, 25, 50, 75, 100]. */
export function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** The x axis' label for ``seconds`` from the start of a run: 45s, 2m, 1m30s, 1h05m. */
export function elapsedLabel(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s / 60}m`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** The spans of consecutive points in the same phase: [{phase, start, end}] (``end``: the next span's start). */
export function phaseBands(points) {
  const bands = [];
  for (const p of points) {
    if (!p.phase) continue;
    const last = bands[bands.length - 1];
    if (last) last.end = p.t;
    if (!last || last.phase !== p.phase) bands.push({ phase: p.phase, start: p.t, end: p.t });
  }
  return bands;
}

/**
 * ``new LineChart(container, {series, format, windowSeconds, height, elapsed})``.
 * ``series``: [{key, label, className, area, join}]; ``update(points)`` with points
 * [{t: unix seconds, <key>: value}] oldest first (a missing value is a gap, or with ``join``
 * a point the series does not have: two series sampled at different times share a chart).
 * With ``elapsed``, ``t`` is seconds from the start of a run and the x axis spans the whole
 * run from 0; points with a ``phase`` shade the span of each phase behind the lines.
 */
export class LineChart {
  constructor(container, { series, format = String, windowSeconds = 300, height = 120, elapsed = false }) {
    this.container = container;
    this.series = series;
    this.format = format;
    this.windowSeconds = windowSeconds;
    this.height = height;
    this.elapsed = elapsed;
    this.points = [];
    this.width = 0;
    this.svg = svgElement("svg", { class: "chart", role: "img", height: String(height) });
    this.svg.setAttribute("aria-label", series.map((s) => s.label).join(", "));
    container.appendChild(this.svg);
    this.readout = element("div", "chart-readout");
    this.readout.hidden = true;
    container.appendChild(this.readout);
    this.hoverX = null;
    this.svg.addEventListener("pointermove", (event) => {
      const box = this.svg.getBoundingClientRect();
      this.hoverX = event.clientX - box.left;
      this.drawHover();
    });
    this.svg.addEventListener("pointerleave", () => {
      this.hoverX = null;
      this.drawHover();
    });
    if (typeof ResizeObserver !== "undefined") {
      this.observer = new ResizeObserver(() => this.render());
      this.observer.observe(container);
    }
  }

  update(points) {
    this.points = points;
    this.render();
  }

  layout() {
    const width = Math.max(120, Math.floor(this.container.clientWidth || 300));
    const left = 46;
    const right = 8;
    const top = 8;
    const bottom = 18;
    const points = this.points;
    let last;
    let window;
    if (this.elapsed) {
      // The whole run: from its start to its latest point.
      window = Math.max(10, points.length ? points[points.length - 1].t : 0);
      last = window;
    } else {
      last = points.length ? points[points.length - 1].t : Date.now() / 1000;
      // The window grows with the data, from a minute to windowSeconds.
      const span = points.length ? last - points[0].t : 0;
      window = Math.min(this.windowSeconds, Math.max(60, Math.ceil(span / 30) * 30));
    }
    const t0 = last - window;
    const visible = points.filter((p) => p.t >= t0);
    let max = 0;
    for (const p of visible) {
      for (const s of this.series) {
        const v = p[s.key];
        if (Number.isFinite(v) && v > max) max = v;
      }
    }
    const ticks = niceTicks(max);
    const top_value = ticks[ticks.length - 1];
    const plotW = width - left - right;
    const plotH = this.height - top - bottom;
    return {
      width, left, top, plotW, plotH, ticks, visible, t0, last, window,
      x: (t) => left + ((t - t0) / window) * plotW,
      y: (v) => top + plotH - (v / top_value) * plotH,
    };
  }

  render() {
    const g = this.layout();
    this.geometry = g;
    const svg = this.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("width", String(g.width));
    svg.setAttribute("viewBox", `0 0 ${g.width} ${this.height}`);
    if (this.elapsed) {
      for (const band of phaseBands(g.visible)) {
        svgElement("rect", {
          x: g.x(band.start).toFixed(1), y: g.top, height: g.plotH, "data-phase": band.phase,
          width: Math.max(1, g.x(band.end) - g.x(band.start)).toFixed(1), class: `band phase-${band.phase}`,
        }, svg);
      }
    }
    const axis = svgElement("g", { class: "chart-axis" }, svg);
    for (const tick of g.ticks) {
      const y = Math.round(g.y(tick)) + 0.5;
      svgElement("line", { x1: g.left, x2: g.left + g.plotW, y1: y, y2: y, class: tick ? "grid" : "base" }, axis);
      const label = svgElement("text", { x: g.left - 6, y: y + 3.5, "text-anchor": "end" }, axis);
      label.textContent = this.format(tick);
    }
    const every = [10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400]
      .find((s) => g.window / s <= 5) || 86400;
    if (this.elapsed) {
      for (let at = 0; at <= g.window; at += every) {
        const label = svgElement("text", { x: g.x(at), y: this.height - 4, "text-anchor": at ? "middle" : "start" }, axis);
        label.textContent = elapsedLabel(at);
      }
    }
    for (let ago = 0; !this.elapsed && ago <= g.window; ago += every) {
      const x = g.x(g.last - ago);
      const label = svgElement("text", { x, y: this.height - 4, "text-anchor": ago === 0 ? "end" : "middle" }, axis);
      label.textContent = ago === 0 ? "now" : ago % 60 ? `-${ago}s` : `-${ago / 60}m`;
    }
    for (const s of this.series) {
      let d = "";
      let pen = false;
      for (const p of g.visible) {
        const v = p[s.key];
        if (!Number.isFinite(v)) {
          if (!s.join) pen = false; // a gap, unless the series joins over points it lacks
          continue;
        }
        d += `${pen ? "L" : "M"}${g.x(p.t).toFixed(1)},${g.y(v).toFixed(1)}`;
        pen = true;
      }
      if (s.area && d && g.visible.length > 1) {
        const first = g.visible.find((p) => Number.isFinite(p[s.key]));
        const lastPoint = [...g.visible].reverse().find((p) => Number.isFinite(p[s.key]));
        const base = g.y(0).toFixed(1);
        svgElement("path", {
          d: `${d}L${g.x(lastPoint.t).toFixed(1)},${base}L${g.x(first.t).toFixed(1)},${base}Z`,
          class: `area ${s.className}`,
        }, svg);
      }
      if (d) svgElement("path", { d, class: `line ${s.className}`, "data-series": s.key }, svg);
    }
    this.hoverLayer = svgElement("g", { class: "chart-hover" }, svg);
    this.drawHover();
  }

  drawHover() {
    const g = this.geometry;
    if (!g || !this.hoverLayer) return;
    while (this.hoverLayer.firstChild) this.hoverLayer.removeChild(this.hoverLayer.firstChild);
    if (this.hoverX === null || !g.visible.length) {
      this.readout.hidden = true;
      return;
    }
    let best = null;
    for (const p of g.visible) {
      if (!best || Math.abs(g.x(p.t) - this.hoverX) < Math.abs(g.x(best.t) - this.hoverX)) best = p;
    }
    const x = g.x(best.t);
    svgElement("line", { x1: x, x2: x, y1: g.top, y2: g.top + g.plotH }, this.hoverLayer);
    for (const s of this.series) {
      const v = best[s.key];
      if (Number.isFinite(v)) svgElement("circle", { cx: x, cy: g.y(v), r: 3, class: s.className }, this.hoverLayer);
    }
    const ago = Math.round(g.last - best.t);
    this.readout.textContent = "";
    this.readout.appendChild(element("span", "muted", this.elapsed ? `at ${elapsedLabel(best.t)}${best.phase ? ` · ${best.phase}` : ""}`
      : ago ? `${ago}s ago` : "now"));
    for (const s of this.series) {
      this.readout.appendChild(element("span", `key ${s.className}`, `${s.label} ${this.format(best[s.key])}`));
    }
    this.readout.hidden = false;
  }

  destroy() {
    if (this.observer) this.observer.disconnect();
    this.container.textContent = "";
  }
}
