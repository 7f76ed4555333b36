// Analytics (`/analytics`): success rate, failure reasons, hours, filament and cost by
// printer, material, user or period, as a table with bars, and as CSV. The success estimate
// says when there are too few reviewed outcomes to offer one.

import { html } from './lib.js';
import { api, query } from './api.js';
import { useQuery } from './store.js';
import { EmptyState, ErrorBox, Field, Loading, useTitle } from './ui.js';
import { ProgressBar } from './widgets.js';
import { grams } from './inventory.js';
import { reasonLabel } from './outcomes.js';

const GROUPS = [
  { value: 'printer', label: 'Printer' },
  { value: 'material', label: 'Material' },
  { value: 'user', label: 'User' },
  { value: 'day', label: 'Day' },
  { value: 'week', label: 'Week' },
  { value: 'month', label: 'Month' },
];
const PERIODS = [
  { value: 7, label: '7 days' },
  { value: 30, label: '30 days' },
  { value: 90, label: '90 days' },
  { value: 365, label: 'a year' },
];

export default function AnalyticsPage({ search, navigate }) {
  useTitle('Analytics');
  const params = new URLSearchParams(search);
  const by = GROUPS.some((g) => g.value === params.get('by')) ? params.get('by') : 'printer';
  const days = PERIODS.some((p) => String(p.value) === params.get('days')) ? Number(params.get('days')) : 30;
  const from = Math.floor((Date.now() - days * 86400e3) / 60e3) * 60e3;
  const analytics = useQuery(() => api(`/analytics${query({ by, from })}`, { resource: 'Analytics' }), [by, days]);
  const estimate = useQuery(() => api('/analytics/estimate', { resource: 'Estimate' }), []);
  const set = (key, value) => {
    const next = new URLSearchParams(search);
    next.set(key, value);
    navigate(`/analytics?${next}`, { replace: true });
  };
  const buckets = analytics.data?.buckets ?? null;
  let body;
  if (!buckets) body = analytics.error ? html`<${ErrorBox} error=${analytics.error} />` : html`<${Loading}>Loading…<//>`;
  else if (!buckets.length) body = html`<${EmptyState} title="No prints ended in this period"><p>Every print that ends is counted here.</p><//>`;
  else {
    body = html`<div class="table-wrap"><table class="table stack" data-testid="analytics-table">
      <thead><tr><th scope="col">${GROUPS.find((g) => g.value === by).label}</th><th scope="col">Prints</th><th scope="col">Success rate</th>
        <th scope="col">Hours</th><th scope="col">Filament</th><th scope="col">Cost</th><th scope="col">Failures</th></tr></thead>
      <tbody>${buckets.map((b) => html`<tr key=${b.key}>
        <th scope="row" data-label="Group"><div>${b.key}</div></th>
        <td data-label="Prints">${b.prints}<span class="muted"> (${b.succeeded} ok, ${b.failed} failed, ${b.cancelled} cancelled)</span></td>
        <td data-label="Success rate"><${ProgressBar} percent=${b.success_rate * 100} label=${`Success rate of ${b.key}`} /> ${Math.round(b.success_rate * 100)}%</td>
        <td data-label="Hours">${b.hours.toFixed(1)}</td>
        <td data-label="Filament">${grams(b.filament_g)}</td>
        <td data-label="Cost">${b.cost.toFixed(2)}</td>
        <td data-label="Failures">${Object.entries(b.reasons).sort((x, y) => y[1] - x[1]).map(([r, n], i) => html`${i ? ', ' : ''}${reasonLabel(r)} ×${n}`)}</td>
      </tr>`)}</tbody>
    </table></div>`;
  }
  const e = estimate.data;
  return html`<div class="page">
    <div class="page-head"><div><h1>Analytics</h1>
      <p class="muted">What printed, what failed and why, and what it cost.</p></div>
      <div class="page-actions"><a class="btn" href=${`/api/v1/analytics/csv${query({ by, from })}`} download="kitt-analytics.csv">Download CSV</a></div>
    </div>
    <form class="form-row" aria-label="Grouping" onSubmit=${(ev) => ev.preventDefault()}>
      <${Field} label="Group by" control=${(id) => html`<select id=${id} value=${by} onChange=${(ev) => set('by', ev.currentTarget.value)} data-testid="analytics-by">
        ${GROUPS.map((g) => html`<option value=${g.value}>${g.label}</option>`)}</select>`} />
      <${Field} label="Period" control=${(id) => html`<select id=${id} value=${String(days)} onChange=${(ev) => set('days', ev.currentTarget.value)}>
        ${PERIODS.map((p) => html`<option value=${String(p.value)}>${p.label}</option>`)}</select>`} />
    </form>
    ${body}
    <section class="panel" aria-labelledby="estimate-h"><h2 id="estimate-h">Success estimate</h2>
      ${e ? html`<p data-testid="estimate">${e.message}.${e.available ? html` <span class="muted">Model: ${e.model}.</span>` : null}</p>` : null}
    </section>
  </div>`;
}
