// The event log (`/events`): filters in the URL (printer, kind, from, to), newest first,
// "Older" pages back with `next_before`; new events arrive live.

import { api, query } from './api.js';
import { h, replaceChildren, errorBox, field, badge, emptyState } from './ui.js';
import { dateTime, fromLocalInput, toLocalInput } from './format.js';
import { describeEvent, eventKind, EVENT_KINDS, printerName } from './widgets.js';

const PAGE_SIZE = 100;

export function mount(main, ctx) {
  ctx.setTitle('Events');
  const filters = {
    printer: ctx.search.get('printer') || '',
    kind: ctx.search.get('kind') || '',
    from: Number(ctx.search.get('from')) || null,
    to: Number(ctx.search.get('to')) || null,
  };
  let events = [];
  let nextBefore = null;
  let printers = [];
  let refreshing = null;

  const printerSelect = h('select', { name: 'printer' }, h('option', { value: '' }, 'All printers'));
  const kindSelect = h('select', { name: 'kind' }, h('option', { value: '' }, 'All kinds'),
    EVENT_KINDS.map((kind) => h('option', { value: kind, selected: kind === filters.kind }, kind.replace(/_/g, ' '))));
  const fromInput = h('input', { type: 'datetime-local', name: 'from', value: toLocalInput(filters.from) });
  const toInput = h('input', { type: 'datetime-local', name: 'to', value: toLocalInput(filters.to) });
  const form = h('form', { class: 'form-row filters', role: 'search', 'aria-label': 'Filter events' },
    field('Printer', printerSelect),
    field('Kind', kindSelect),
    field('From', fromInput),
    field('To', toInput),
    h('div', { class: 'field field-action' },
      h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply'),
      h('a', { class: 'btn btn-ghost', href: '/events' }, 'Reset')));
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  const list = h('div', {});
  const older = h('button', { type: 'button', class: 'btn', hidden: true }, 'Older events');
  main.append(h('div', { class: 'page' },
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Events'), status)),
    form, list, h('div', { class: 'more' }, older)));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = {
      printer: printerSelect.value,
      kind: kindSelect.value,
      from: fromLocalInput(fromInput.value),
      to: fromLocalInput(toInput.value),
    };
    ctx.navigate(`/events${query(next)}`);
  });

  older.addEventListener('click', async () => {
    older.disabled = true;
    try {
      const page = await fetchPage(nextBefore);
      events = events.concat(page.events);
      nextBefore = page.next_before;
      render();
    } catch (error) {
      if (error.status !== 401) list.append(errorBox(error));
    } finally {
      older.disabled = false;
    }
  });

  function fetchPage(before) {
    return api(`/events${query({ ...filters, before, limit: PAGE_SIZE })}`);
  }

  function nameOf(id) {
    const printer = printers.find((p) => p.id === id);
    return printer ? printerName(printer) : id ?? '—';
  }

  function render() {
    status.textContent = `${events.length} event${events.length === 1 ? '' : 's'} shown${nextBefore ? ', more available' : ''}`;
    older.hidden = !nextBefore;
    if (!events.length) {
      replaceChildren(list, emptyState('No events match', h('p', {}, 'Try another printer, kind or time range.')));
      return;
    }
    const th = (text) => h('th', { scope: 'col' }, text);
    replaceChildren(list, h('div', { class: 'table-wrap' }, h('table', { class: 'table stack', 'data-testid': 'events-table' },
      h('caption', { class: 'visually-hidden' }, 'Events, newest first'),
      h('thead', {}, h('tr', {}, th('Time'), th('Printer'), th('Kind'), th('What happened'))),
      h('tbody', {}, events.map((event) => h('tr', {},
        h('td', { 'data-label': 'Time' }, h('time', { datetime: new Date(event.at).toISOString() }, dateTime(event.at))),
        h('td', { 'data-label': 'Printer' }, event.printer_id
          ? h('a', { href: `/printers/${encodeURIComponent(event.printer_id)}` }, nameOf(event.printer_id))
          : '—'),
        h('td', { 'data-label': 'Kind' }, badge(event.kind.replace(/_/g, ' '), eventKind(event.kind))),
        h('td', { 'data-label': 'What happened' }, describeEvent(event.event))))))));
  }

  function renderPrinterOptions() {
    replaceChildren(printerSelect, h('option', { value: '' }, 'All printers'),
      printers.map((p) => h('option', { value: p.id, selected: p.id === filters.printer }, printerName(p))),
      filters.printer && !printers.some((p) => p.id === filters.printer)
        ? h('option', { value: filters.printer, selected: true }, filters.printer) : null);
  }

  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const [printerList, page] = await Promise.all([api('/printers'), fetchPage(null)]);
        printers = printerList.printers;
        renderPrinterOptions();
        events = page.events;
        nextBefore = page.next_before;
        render();
      } catch (error) {
        if (error.status !== 401) replaceChildren(list, errorBox(error));
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  function onLive(message) {
    if (message.type !== 'event') return;
    const kind = message.event?.type;
    if (filters.printer && message.printer !== filters.printer) return;
    if (filters.kind && kind !== filters.kind) return;
    if (filters.to != null || (filters.from != null && message.at < filters.from)) return;
    events.unshift({ id: null, printer_id: message.printer, agent_id: message.agent, kind, at: message.at, event: message.event });
    render();
  }

  return { refresh, onLive, unmount() {} };
}
