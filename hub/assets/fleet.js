// The fleet (`/`): a card per printer with its newest camera snapshot, updated live.

import { api } from './api.js';
import { h, replaceChildren, emptyState, errorBox, coalesce, badge } from './ui.js';
import { relativeTime } from './format.js';
import {
  printerName, stateBadge, agentBadge, progressBar, progressSummary, temperatures, amsSwatches,
  alertList, snapshot, setSnapshot, isActive,
} from './widgets.js';

export function mount(main, ctx) {
  ctx.setTitle('Fleet');
  const summary = h('p', { class: 'muted' });
  const grid = h('div', { class: 'cards' });
  const body = h('div', {}, h('p', { class: 'loading' }, 'Loading printers…'));
  main.append(h('div', { class: 'page' },
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Printers'), summary)),
    body));

  let printers = new Map();
  const dirty = new Set();
  let refreshing = null;
  // One snapshot image per printer, moved from card to card as cards are rebuilt, so a
  // state update neither reloads nor blanks the picture.
  const snapshots = new Map();

  function card(printer) {
    return printerCard(printer, snapshotImage(printer));
  }

  function snapshotImage(printer) {
    let img = snapshots.get(printer.id);
    if (img) setSnapshot(img, printer);
    else {
      img = snapshot(printer);
      if (img) snapshots.set(printer.id, img);
    }
    return img;
  }

  const flush = coalesce(() => {
    for (const id of dirty) {
      const printer = printers.get(id);
      const old = grid.querySelector(`[data-printer-id="${CSS.escape(id)}"]`);
      if (!printer || !old) continue;
      const hadFocus = old.contains(document.activeElement);
      const fresh = card(printer);
      old.replaceWith(fresh);
      if (hadFocus) fresh.querySelector('a')?.focus();
    }
    dirty.clear();
    renderSummary();
  });

  function renderSummary() {
    const list = [...printers.values()];
    const printing = list.filter((p) => isActive(p.state)).length;
    const attention = list.filter((p) => (p.state?.hms?.length ?? 0) > 0 || p.state?.state === 'failed' || !p.agent_online || p.state?.state === 'offline').length;
    summary.textContent = list.length
      ? `${list.length} printer${list.length === 1 ? '' : 's'} · ${printing} active · ${attention} need${attention === 1 ? 's' : ''} attention`
      : '';
  }

  function renderAll() {
    if (!printers.size) {
      replaceChildren(body, emptyState('No printers yet — add an agent',
        h('p', {}, 'Printers appear here as soon as an edge agent next to them connects to this hub.'),
        h('p', {}, h('a', { class: 'btn btn-primary', href: '/agents' }, 'Add an agent'))));
      renderSummary();
      return;
    }
    const sorted = [...printers.values()].sort((a, b) => printerName(a).localeCompare(printerName(b)));
    replaceChildren(grid, sorted.map(card));
    replaceChildren(body, grid);
    renderSummary();
  }

  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const data = await api('/printers');
        printers = new Map(data.printers.map((p) => [p.id, p]));
        renderAll();
      } catch (error) {
        if (error.status !== 401) replaceChildren(body, errorBox(error));
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  function onLive(message) {
    if (message.type === 'printer_state') {
      const printer = printers.get(message.printer);
      if (!printer) {
        refresh();
        return;
      }
      printer.state = message.state;
      printer.state_at = message.at;
      if (message.state?.model) printer.model = message.state.model;
      dirty.add(printer.id);
      flush();
    } else if (message.type === 'agent') {
      for (const printer of printers.values()) {
        if (printer.agent_id === message.agent) {
          printer.agent_online = message.online;
          dirty.add(printer.id);
        }
      }
      flush();
    } else if (message.type === 'snapshot') {
      const printer = printers.get(message.printer);
      if (!printer || (printer.latest_snapshot?.captured_at ?? -Infinity) > message.captured_at) return;
      printer.latest_snapshot = {
        id: message.id,
        captured_at: message.captured_at,
        trigger: message.trigger,
        url: `/api/v1/snapshots/${encodeURIComponent(message.id)}`,
      };
      dirty.add(printer.id);
      flush();
    }
  }

  return { refresh, onLive, unmount() {} };
}

function printerCard(printer, snapshotImg) {
  const state = printer.state;
  const unreachable = state?.state === 'offline';
  const active = isActive(state);
  const stage = state?.stage?.name && active && state.stage.name !== 'printing' ? state.stage.name : null;
  return h('article', {
    class: `card printer-card${unreachable || !printer.agent_online ? ' card-dim' : ''}`,
    'data-testid': 'printer-card',
    'data-printer-id': printer.id,
  },
  h('header', { class: 'card-head' },
    h('h2', { class: 'card-title' }, h('a', { href: `/printers/${encodeURIComponent(printer.id)}` }, printerName(printer))),
    stateBadge(state)),
  h('p', { class: 'card-meta' },
    h('span', {}, printer.model || state?.model || 'unknown model'),
    agentBadge(printer.agent_online),
    unreachable ? badge('printer unreachable', 'danger') : null),
  snapshotImg,
  h('div', { class: 'job' },
    h('p', { class: 'job-name' }, state?.job_name || (active ? 'Unnamed job' : 'No job')),
    stage ? h('p', { class: 'job-stage' }, stage) : null),
  progressBar(state?.progress_percent, `Progress of ${printerName(printer)}`),
  h('p', { class: 'progress-meta' }, progressSummary(state)),
  temperatures(state),
  amsSwatches(state),
  alertList(state, { limit: 3 }),
  h('p', { class: 'card-foot muted' }, state ? `Updated ${relativeTime(printer.state_at ?? state.last_report_at)}` : 'No state received yet'));
}
