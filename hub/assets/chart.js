// Simple SVG line charts, drawn by hand (no library).

import { svg } from './ui.js';

const PAD = { left: 44, right: 12, top: 12, bottom: 26 };
const TIME_STEPS = [60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800]
  .map((s) => s * 1000);

// series: [{ name, cls, points: [[at_ms, value]…] }]; values may be null (a gap).
// Returns an <svg> sized `width` × `height` pixels, described for screen readers by `label`.
export function lineChart({ series, from, to, yMin, yMax, unit = '', width, height = 200, label, gapMs }) {
  const w = Math.max(240, Math.round(width));
  const plotW = w - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v != null);
  let low = yMin ?? (values.length ? Math.min(...values) : 0);
  let high = yMax ?? (values.length ? Math.max(...values) : 1);
  if (yMin == null) low = Math.min(low, 0);
  if (high - low < 1e-9) high = low + 1;
  const yStep = niceStep((high - low) / 4);
  low = Math.floor(low / yStep) * yStep;
  high = Math.ceil(high / yStep) * yStep;
  const span = Math.max(1, to - from);
  const x = (t) => PAD.left + ((t - from) / span) * plotW;
  const y = (v) => PAD.top + plotH - ((v - low) / (high - low)) * plotH;

  const chart = svg('svg', {
    class: 'chart', width: w, height, viewBox: `0 0 ${w} ${height}`, role: 'img', 'aria-label': label,
  });
  chart.append(svg('title', {}, label));

  for (let v = low; v <= high + yStep / 2; v += yStep) {
    chart.append(svg('line', { class: 'grid', x1: PAD.left, x2: w - PAD.right, y1: y(v), y2: y(v) }));
    chart.append(svg('text', { class: 'axis-label', x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' },
      `${Math.round(v * 10) / 10}${unit}`));
  }
  const timeStep = TIME_STEPS.find((s) => span / s <= Math.max(2, plotW / 90)) ?? TIME_STEPS.at(-1);
  const long = span > 36 * 3600 * 1000;
  for (let t = Math.ceil(from / timeStep) * timeStep; t <= to; t += timeStep) {
    chart.append(svg('line', { class: 'grid grid-x', x1: x(t), x2: x(t), y1: PAD.top, y2: PAD.top + plotH }));
    const date = new Date(t);
    const text = long
      ? date.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
      : date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    chart.append(svg('text', { class: 'axis-label', x: x(t), y: height - 8, 'text-anchor': 'middle' }, text));
  }

  for (const s of series) {
    const d = pathData(s.points, x, y, gapMs);
    if (d) chart.append(svg('path', { class: `series ${s.cls}`, d }));
  }
  if (!values.length) {
    chart.append(svg('text', { class: 'chart-empty', x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, 'text-anchor': 'middle' },
      'No data in this range'));
  }
  return chart;
}

function pathData(points, x, y, gapMs) {
  let d = '';
  let previous = null;
  for (const [t, v] of points) {
    if (v == null) {
      previous = null;
      continue;
    }
    const move = previous == null || (gapMs && t - previous > gapMs);
    d += `${move ? 'M' : 'L'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    previous = t;
  }
  return d;
}

function niceStep(raw) {
  const magnitude = 10 ** Math.floor(Math.log10(raw || 1));
  const normalised = raw / magnitude;
  const nice = normalised <= 1 ? 1 : normalised <= 2 ? 2 : normalised <= 5 ? 5 : 10;
  return nice * magnitude;
}

// A chart that redraws itself at its container's width.
export class ChartPanel {
  constructor(container, draw) {
    this.container = container;
    this.draw = draw;
    this.width = 0;
    this.observer = new ResizeObserver((entries) => {
      const width = Math.floor(entries[0].contentRect.width);
      if (width && Math.abs(width - this.width) > 4) {
        this.width = width;
        this.render();
      }
    });
    this.observer.observe(container);
  }

  render() {
    const width = this.width || this.container.clientWidth || 600;
    this.container.replaceChildren(this.draw(width));
  }

  disconnect() {
    this.observer.disconnect();
  }
}
