// Outcomes (`/outcomes`): every print that ended, the review queue first. An operator
// confirms or corrects the reason the printer's words gave, scores the print (0–100, and
// per aspect) and adds notes; the scores are kept exactly as given.

import { html, useState } from './lib.js';
import { api, path, query } from './api.js';
import { me, useLive, useQuery } from './store.js';
import { Badge, EmptyState, ErrorBox, Field, Loading, toast, useTitle } from './ui.js';
import { dateTime, duration } from './format.js';
import { markFailed, markLoaded } from './widgets.js';
import { Dot, grams } from './inventory.js';

export const REASONS = [
  'first_layer_adhesion', 'warping', 'stringing', 'spaghetti', 'nozzle_clog', 'filament_runout',
  'layer_shift', 'overheating', 'support_failure', 'user_cancelled', 'power_failure', 'other',
];
const ASPECTS = ['surface', 'dimensions', 'adhesion'];
const RESULT_KIND = { success: 'ok', failed: 'danger', cancelled: 'muted' };

export function reasonLabel(reason) {
  return reason ? reason.replace(/_/g, ' ') : '—';
}

function money(value) {
  return value == null ? '—' : value.toFixed(2);
}

export default function OutcomesPage({ search }) {
  useTitle('Outcomes');
  const params = new URLSearchParams(search);
  const all = params.get('show') === 'all';
  // One outcome, as the assistant's citations link to it.
  const one = params.get('id');
  const outcomes = useQuery(
    () => (one
      ? api(`/outcomes/${encodeURIComponent(one)}`, { resource: 'OutcomeView' }).then((o) => ({ outcomes: [o], total: 1 }))
      : api(`/outcomes${query({ reviewed: all ? null : 'false', limit: 100 })}`, { resource: 'OutcomeList' })),
    [all, one],
  );
  // A print's end (its event) and its outcome are committed together.
  useLive((message) => {
    const ended = ['job_finished', 'job_cancelled', 'job_failed'].includes(message.event?.type);
    if (message.type === 'job' || (message.type === 'event' && ended)) outcomes.reload();
  });
  const canReview = me.value?.role === 'operator' || me.value?.role === 'admin';
  const list = outcomes.data?.outcomes ?? null;
  let body;
  if (!list) body = outcomes.error ? html`<${ErrorBox} error=${outcomes.error} />` : html`<${Loading}>Loading outcomes…<//>`;
  else if (!list.length) {
    body = html`<${EmptyState} title=${all ? 'No prints have ended yet' : 'Nothing to review'}>
      <p>${all ? 'Every print that ends appears here, with what it used and cost.' : 'Every ended print has been reviewed.'}</p>
    <//>`;
  } else {
    body = html`<ul class="outcome-list" data-testid="outcome-list">
      ${list.map((o) => html`<${OutcomeCard} key=${o.id} outcome=${o} canReview=${canReview} onReviewed=${outcomes.reload} />`)}
    </ul>`;
  }
  return html`<div class="page">
    <div class="page-head"><div><h1>Outcomes</h1>
      <p class="muted">${one ? `Outcome #${one}.` : all ? 'Every print that ended, newest first.' : `The review queue: ${outcomes.data?.total ?? '…'} prints not reviewed yet.`}</p>
    </div>
    <div class="page-actions">${all || one ? html`<a class="btn" href="/outcomes">Review queue</a>` : null}${!all ? html`<a class="btn" href="/outcomes?show=all">All outcomes</a>` : null}</div></div>
    ${body}
  </div>`;
}

function OutcomeCard({ outcome, canReview, onReviewed }) {
  const o = outcome;
  return html`<li class="card outcome" data-testid="outcome" data-outcome=${o.id} data-reviewed=${o.reviewed ? 'true' : 'false'}>
    <div class="card-head"><h2 class="card-title">${o.name ?? 'Unnamed print'}</h2>
      <${Badge} kind=${RESULT_KIND[o.result] ?? 'neutral'}>${o.result}<//></div>
    <p class="card-meta">
      <a href=${path.printer(o.printer_id)}>${o.printer_id}</a>
      <span>${dateTime(o.ended_at)}</span>
      ${o.duration_s != null ? html`<span>${duration(o.duration_s)}</span>` : null}
      ${o.progress != null && o.result !== 'success' ? html`<span>${Math.round(o.progress * 100)}% made</span>` : null}
      ${o.requested_by ? html`<span>queued by ${o.requested_by}</span>` : null}
    </p>
    <dl class="facts">
      <dt>Reason</dt><dd data-testid="outcome-reason">${reasonLabel(o.reason)}${o.reviewed ? ` (reviewed by ${o.reviewed_by})` : o.reason_rule ? html` <span class="muted">from ${o.reason_rule}</span>` : null}</dd>
      <dt>Filament</dt><dd>${grams(o.filament_g)}${o.usage.length ? html` <span class="muted">(${o.usage.map((u, i) => html`${i ? ', ' : ''}<${Dot} color=${u.color} />${grams(u.grams)}${u.spool_id ? ` from spool #${u.spool_id}` : ''}`)})</span>` : null}</dd>
      <dt>Cost</dt><dd>${money(o.cost)}${o.energy_cost != null ? html` <span class="muted">(energy ${money(o.energy_cost)})</span>` : null}</dd>
      ${o.reviewed ? html`<dt>Quality</dt><dd data-testid="outcome-quality">${o.quality ?? '—'}${Object.keys(o.aspects).length ? html` <span class="muted">(${Object.entries(o.aspects).map(([a, v]) => `${a} ${v}`).join(', ')})</span>` : null}</dd>` : null}
      ${o.notes ? html`<dt>Notes</dt><dd>${o.notes}</dd>` : null}
    </dl>
    ${o.snapshots.length ? html`<div class="outcome-snapshots">${o.snapshots.slice(-4).map((id) => html`<img key=${id} src=${path.snapshotImage(id)}
      alt=${`Snapshot of ${o.name ?? 'the print'}`} loading="lazy" onLoad=${markLoaded} onError=${markFailed} />`)}</div>` : null}
    ${canReview && !o.reviewed ? html`<${ReviewForm} outcome=${o} onReviewed=${onReviewed} />` : null}
  </li>`;
}

function ReviewForm({ outcome, onReviewed }) {
  const [reason, setReason] = useState(outcome.reason ?? '');
  const [quality, setQuality] = useState('');
  const [aspects, setAspects] = useState({});
  const [notes, setNotes] = useState('');
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    const scores = Object.fromEntries(Object.entries(aspects).filter(([, v]) => v !== '').map(([a, v]) => [a, Number(v)]));
    try {
      await api(`/outcomes/${outcome.id}/review`, {
        method: 'PUT',
        request: 'ReviewRequest',
        body: { reason: reason || null, quality: quality === '' ? null : Number(quality), aspects: scores, notes: notes.trim() || null },
        resource: 'OutcomeView',
      });
      toast('Review saved', 'ok');
      onReviewed();
    } catch (error) {
      if (error.status !== 401) toast(`Could not save the review: ${error.message}`, 'error');
      setBusy(false);
    }
  }
  const score = (label, value, set) => html`<${Field} label=${label} hint="0–100" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint}
    type="number" min="0" max="100" step="1" class="input-small" value=${value} onInput=${(e) => set(e.currentTarget.value)}
    data-testid=${`review-${label.toLowerCase()}`} />`} />`;
  return html`<form class="review form-row" onSubmit=${submit} aria-label=${`Review ${outcome.name ?? 'the print'}`} data-testid="review-form">
    <${Field} label="Reason" control=${(id) => html`<select id=${id} value=${reason} onChange=${(e) => setReason(e.currentTarget.value)} data-testid="review-reason">
      <option value="">none: it printed well</option>
      ${REASONS.map((r) => html`<option value=${r}>${reasonLabel(r)}</option>`)}
    </select>`} />
    ${score('Quality', quality, setQuality)}
    ${ASPECTS.map((a) => score(a[0].toUpperCase() + a.slice(1), aspects[a] ?? '', (v) => setAspects({ ...aspects, [a]: v })))}
    <${Field} label="Notes" control=${(id) => html`<input id=${id} type="text" maxlength="4000" value=${notes} onInput=${(e) => setNotes(e.currentTarget.value)} />`} />
    <div class="field field-action"><button type="submit" class="btn btn-primary" disabled=${busy} data-testid="review-submit">Save review</button></div>
  </form>`;
}
