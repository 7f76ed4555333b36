// The fleet (`/`): a card per printer with its newest camera snapshot, updated live.
//
// Each card renders from its printer's own signal in the store, so a live update re-renders
// that card alone and Preact keeps its element (and the snapshot image in it).

import { html, computed } from './lib.js';
import { printers, fleet } from './store.js';
import { Badge, EmptyState, ErrorBox, Loading, useTitle } from './ui.js';
import { relativeTime } from './format.js';
import {
  printerName, StateBadge, AgentBadge, ProgressBar, progressSummary, Temperatures, AmsSwatches,
  AlertList, SnapshotImage, isActive, PlateControl,
} from './widgets.js';

// The printers' ids by name, as one string: the page re-renders only when it changes.
const order = computed(() => [...printers.value.values()]
  .map((printer) => printer.value)
  .sort((a, b) => printerName(a).localeCompare(printerName(b)))
  .map((printer) => printer.id)
  .join('\n'));

export default function FleetPage() {
  useTitle('Fleet');
  const status = fleet.value;
  const ids = order.value ? order.value.split('\n') : [];
  const map = printers.value;
  let body;
  if (!status.loaded) {
    body = status.error ? html`<${ErrorBox} error=${status.error} />` : html`<${Loading}>Loading printers…<//>`;
  } else if (!ids.length) {
    body = html`<${EmptyState} title="No printers yet — add an agent">
      <p>Printers appear here as soon as an edge agent next to them connects to this hub.</p>
      <p><a class="btn btn-primary" href="/agents">Add an agent</a></p>
    <//>`;
  } else {
    body = html`<div class="cards">
      ${ids.map((id) => html`<${PrinterCard} key=${id} printer=${map.get(id)} />`)}
    </div>`;
  }
  return html`<div class="page">
    <div class="page-head"><div><h1>Printers</h1><${Summary} /></div></div>
    <div>${body}</div>
  </div>`;
}

function Summary() {
  const list = [...printers.value.values()].map((printer) => printer.value);
  const printing = list.filter((p) => isActive(p.state)).length;
  const attention = list.filter((p) => (p.state?.hms?.length ?? 0) > 0 || p.state?.state === 'failed' || !p.agent_online || p.state?.state === 'offline').length;
  return html`<p class="muted">${list.length
    ? `${list.length} printer${list.length === 1 ? '' : 's'} · ${printing} active · ${attention} need${attention === 1 ? 's' : ''} attention`
    : ''}</p>`;
}

function PrinterCard({ printer: signal }) {
  const printer = signal.value;
  const state = printer.state;
  const unreachable = state?.state === 'offline';
  const active = isActive(state);
  const stage = state?.stage?.name && active && state.stage.name !== 'printing' ? state.stage.name : null;
  const name = printerName(printer);
  return html`<article class=${`card printer-card${unreachable || !printer.agent_online ? ' card-dim' : ''}`}
      data-testid="printer-card" data-printer-id=${printer.id}>
    <header class="card-head">
      <h2 class="card-title"><a href=${`/printers/${encodeURIComponent(printer.id)}`}>${name}</a></h2>
      <${StateBadge} state=${state} />
    </header>
    <p class="card-meta">
      <span>${printer.model || state?.model || 'unknown model'}</span>
      <${AgentBadge} online=${printer.agent_online} />
      ${printer.approved_at == null ? html`<${Badge} kind="warn">awaits approval<//>` : null}
      ${unreachable ? html`<${Badge} kind="danger">printer unreachable<//>` : null}
    </p>
    <${SnapshotImage} printer=${printer} />
    <div class="job">
      <p class="job-name">${state?.job_name || (active ? 'Unnamed job' : 'No job')}</p>
      ${stage ? html`<p class="job-stage">${stage}</p>` : null}
    </div>
    <${ProgressBar} percent=${state?.progress_percent} label=${`Progress of ${name}`} />
    <p class="progress-meta">${progressSummary(state)}</p>
    <${Temperatures} state=${state} />
    <${AmsSwatches} state=${state} />
    <${AlertList} state=${state} limit=${3} />
    <${PlateControl} printer=${printer} />
    <p class="card-foot muted">${state ? `Updated ${relativeTime(printer.received_at ?? printer.state_at ?? state.last_report_at)}` : 'No state received yet'}</p>
  </article>`;
}
