// Simple SVG line charts, drawn by hand (no chart library).

import { html, useState, useRef, useLayoutEffect } from './lib.js';

const PAD = { left: 44, right: 12, top: 12, bottom: 26 };
const TIME_STEPS = [60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800]
  .map((s) => s * 1000);

// series: [{ name, cls, points: [[at_ms, value]…] }]; values may be null (a gap).
// An <svg> `width` × `height` pixels, described for screen readers by `label`.
export function LineChart({ series, from, to, yMin, yMax, unit = '', width, height = 200, label, gapMs }) {
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

  const yTicks = [];
  for (let v = low; v <= high + yStep / 2; v += yStep) yTicks.push(v);
  const timeStep = TIME_STEPS.find((s) => span / s <= Math.max(2, plotW / 90)) ?? TIME_STEPS.at(-1);
  const long = span > 36 * 3600 * 1000;
  const xTicks = [];
  for (let t = Math.ceil(from / timeStep) * timeStep; t <= to; t += timeStep) xTicks.push(t);
  const timeText = (t) => (long
    ? new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
    : new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }));

  return html`<svg class="chart" width=${w} height=${height} viewBox=${`0 0 ${w} ${height}`} role="img" aria-label=${label}>
    <title>${label}</title>
    ${yTicks.map((v) => html`
      <line class="grid" x1=${PAD.left} x2=${w - PAD.right} y1=${y(v)} y2=${y(v)} />
      <text class="axis-label" x=${PAD.left - 6} y=${y(v) + 4} text-anchor="end">${`${Math.round(v * 10) / 10}${unit}`}</text>`)}
    ${xTicks.map((t) => html`
      <line class="grid grid-x" x1=${x(t)} x2=${x(t)} y1=${PAD.top} y2=${PAD.top + plotH} />
      <text class="axis-label" x=${x(t)} y=${height - 8} text-anchor="middle">${timeText(t)}</text>`)}
    ${series.map((s) => {
      const d = pathData(s.points, x, y, gapMs);
      return d ? html`<path class=${`series ${s.cls}`} d=${d} />` : null;
    })}
    ${values.length ? null : html`<text class="chart-empty" x=${PAD.left + plotW / 2} y=${PAD.top + plotH / 2} text-anchor="middle">No data in this range</text>`}
  </svg>`;
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

// A box whose chart (`chart(width)`) is drawn at the box's width, again when it resizes.
export function ChartBox({ chart }) {
  const box = useRef(null);
  const [width, setWidth] = useState(0);
  useLayoutEffect(() => {
    setWidth(box.current.clientWidth || 600);
    const observer = new ResizeObserver((entries) => {
      const next = Math.floor(entries[0].contentRect.width);
      setWidth((current) => (next && Math.abs(next - current) > 4 ? next : current));
    });
    observer.observe(box.current);
    return () => observer.disconnect();
  }, []);
  return html`<div class="chart-box" ref=${box}>${width ? chart(width) : null}</div>`;
}
