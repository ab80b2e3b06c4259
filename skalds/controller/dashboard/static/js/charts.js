// Inline-SVG charts: a time-series line chart and horizontal bars. No library; each chart is one
// <svg role="img"> with a text description for screen readers, and scales to its container.

import { h, s } from "./dom.js";

const pad2 = (n) => String(n).padStart(2, "0");
const clock = (ms) => {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
};
const clockSec = (ms) => {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
};

function niceMax(value) {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

/**
 * series: [{name, cls, points: [{x: ms, y: number}]}]
 * opts: {label, height, xFrom, xTo, seconds, step}. Redrawn at its container's width (text stays legible on phones).
 */
export function lineChart(series, opts = {}) {
  const description = opts.label || "chart";
  const figure = h("figure", { class: "chart-box" });
  const legend = h(
    "figcaption",
    { class: "chart-legend" },
    series.map((line) => {
      const last = line.points.length ? line.points[line.points.length - 1].y : null;
      const value = last === null || last === undefined ? "" : `: ${last}`;
      return h("span", { class: `legend-item ${line.cls || ""}` }, h("span", { class: "swatch", "aria-hidden": "true" }), `${line.name}${value}`);
    }),
  );
  let drawn = 0;
  const draw = (width) => {
    const w = Math.max(260, Math.round(width));
    if (w === drawn) return;
    drawn = w;
    const svg = drawLines(series, opts, w, description);
    const old = figure.querySelector("svg");
    if (old) old.replaceWith(svg);
    else figure.prepend(svg);
  };
  draw(640);
  figure.append(legend);
  if (typeof ResizeObserver !== "undefined") {
    const observer = new ResizeObserver((entries) => {
      for (const entry of entries) if (entry.contentRect.width > 0) draw(entry.contentRect.width);
    });
    observer.observe(figure);
  }
  return figure;
}

function drawLines(series, opts, width, description) {
  const height = opts.height || 200;
  const m = { top: 12, right: 12, bottom: 26, left: 40 };
  const all = series.flatMap((line) => line.points);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img", "aria-label": description });
  svg.append(s("title", { text: description }));
  if (all.length === 0) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty", text: "no data yet" }));
    return svg;
  }
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y).filter((y) => typeof y === "number");
  const x0 = opts.xFrom ?? Math.min(...xs);
  const x1 = Math.max(opts.xTo ?? Math.max(...xs), x0 + 1);
  const yMin = Math.min(0, ...ys);
  const integral = ys.every((y) => Number.isInteger(y));
  const dataMax = Math.max(...ys, 0);
  let yMax = Math.max(niceMax(dataMax), yMin + 1);
  let rows = 4;
  if (integral) {
    // Whole-number ticks for counts: a step of 1, 2, 5, 10, 20, … with at most four rows.
    const span = Math.max(1, dataMax - yMin);
    let step = 1;
    for (let k = 0; span / step > 4; k += 1) step = [1, 2, 5][(k + 1) % 3] * 10 ** Math.floor((k + 1) / 3);
    rows = Math.max(1, Math.ceil(span / step));
    yMax = yMin + rows * step;
  }
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const X = (x) => m.left + ((x - x0) / (x1 - x0)) * plotW;
  const Y = (y) => m.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;

  const grid = s("g", { class: "chart-grid" });
  for (let i = 0; i <= rows; i += 1) {
    const value = yMin + ((yMax - yMin) * i) / rows;
    const y = Y(value);
    grid.append(s("line", { x1: m.left, x2: width - m.right, y1: y, y2: y }));
    const text = Number.isInteger(value) ? String(value) : value.toFixed(1);
    grid.append(s("text", { x: m.left - 6, y: y + 4, "text-anchor": "end", text }));
  }
  const fmt = opts.seconds ? clockSec : clock;
  const ticks = width < 420 ? 2 : 4;
  for (let i = 0; i <= ticks; i += 1) {
    const x = x0 + ((x1 - x0) * i) / ticks;
    const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
    grid.append(s("text", { x: X(x), y: height - 8, "text-anchor": anchor, text: fmt(x) }));
  }
  svg.append(grid);

  for (const line of series) {
    const points = line.points.filter((p) => typeof p.y === "number").sort((a, b) => a.x - b.x);
    if (points.length === 0) continue;
    let d = "";
    points.forEach((p, i) => {
      if (opts.step && i > 0) d += ` H${X(p.x).toFixed(1)} V${Y(p.y).toFixed(1)}`;
      else d += `${i === 0 ? "M" : " L"}${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`;
    });
    svg.append(s("path", { d, class: `chart-line ${line.cls || ""}`, fill: "none" }));
    if (points.length === 1) {
      svg.append(s("circle", { cx: X(points[0].x), cy: Y(points[0].y), r: 3, class: `chart-dot ${line.cls || ""}` }));
    }
  }
  return svg;
}

/** rows: [{label, value, href}] as horizontal bars (HTML, so labels wrap on phones). */
export function barList(rows, opts = {}) {
  if (rows.length === 0) return h("p", { class: "muted" }, opts.empty || "nothing to show");
  const max = Math.max(1, ...rows.map((r) => r.value));
  return h(
    "ul",
    { class: "bars", "aria-label": opts.label || "" },
    rows.map((row) => {
      const fill = h("span", { class: "bar-fill" });
      fill.style.width = `${(row.value / max) * 100}%`;
      const label = row.href ? h("a", { href: row.href }, row.label) : row.label;
      return h(
        "li",
        { class: "bar-row" },
        h("span", { class: "bar-label" }, label),
        h("span", { class: "bar-track", "aria-hidden": "true" }, fill),
        h("span", { class: "bar-value" }, String(row.value)),
      );
    }),
  );
}
