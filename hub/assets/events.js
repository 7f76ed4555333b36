// The event log (`/events`): filters in the URL (printer, kind, from, to), newest first,
// "Older events" pages back with `next_before`; new events that match arrive live.

import { html, useState } from './lib.js';
import { api, query } from './api.js';
import { printers, useLiveList } from './store.js';
import { Badge, EmptyState, ErrorBox, Field, Loading, useTitle } from './ui.js';
import { dateTime, fromLocalInput, toLocalInput } from './format.js';
import { describeEvent, eventKind, EVENT_KINDS, printerName } from './widgets.js';

const PAGE_SIZE = 100;

export default function EventsPage({ search, navigate }) {
  useTitle('Events');
  const filters = {
    printer: search.get('printer') || '',
    kind: search.get('kind') || '',
    from: Number(search.get('from')) || null,
    to: Number(search.get('to')) || null,
  };
  const filterKey = query(filters);
  const fetchPage = (before) => api(`/events${query({ ...filters, before, limit: PAGE_SIZE })}`, { resource: 'EventPage' });
  const events = useLiveList({
    load: async () => {
      const page = await fetchPage(null);
      return { items: page.events, more: page.next_before };
    },
    accept(message) {
      if (message.type !== 'event') return null;
      const kind = message.event?.type;
      if (filters.printer && message.printer !== filters.printer) return null;
      if (filters.kind && kind !== filters.kind) return null;
      if (filters.to != null || (filters.from != null && message.at < filters.from)) return null;
      return { id: message.id, printer_id: message.printer, kind, at: message.at, event: message.event };
    },
    key: (event) => event.id,
  }, [filterKey]);
  const [olderError, setOlderError] = useState(null);
  const [loadingOlder, setLoadingOlder] = useState(false);

  async function older() {
    setLoadingOlder(true);
    try {
      const page = await fetchPage(events.more);
      events.append(page.events, page.next_before);
      setOlderError(null);
    } catch (error) {
      if (error.status !== 401) setOlderError(error);
    } finally {
      setLoadingOlder(false);
    }
  }

  const items = events.items;
  let list;
  if (!items) list = events.error ? html`<${ErrorBox} error=${events.error} />` : html`<${Loading}>Loading events…<//>`;
  else if (!items.length) list = html`<${EmptyState} title="No events match"><p>Try another printer, kind or time range.</p><//>`;
  else list = html`<${EventTable} events=${items} />`;

  return html`<div class="page">
    <div class="page-head"><div><h1>Events</h1>
      <p class="muted" aria-live="polite">${items ? `${items.length} event${items.length === 1 ? '' : 's'} shown${events.more ? ', more available' : ''}` : ''}</p>
    </div></div>
    <${Filters} key=${filterKey} filters=${filters} navigate=${navigate} />
    <div>${list}${olderError ? html`<${ErrorBox} error=${olderError} />` : null}</div>
    <div class="more"><button type="button" class="btn" hidden=${!events.more} disabled=${loadingOlder} onClick=${older}>Older events</button></div>
  </div>`;
}

// The filter form; applying it navigates, so the filters live in the URL.
function Filters({ filters, navigate }) {
  const [printer, setPrinter] = useState(filters.printer);
  const [kind, setKind] = useState(filters.kind);
  const [from, setFrom] = useState(toLocalInput(filters.from));
  const [to, setTo] = useState(toLocalInput(filters.to));
  const known = [...printers.value.values()].map((p) => p.value).sort((a, b) => printerName(a).localeCompare(printerName(b)));

  function submit(event) {
    event.preventDefault();
    navigate(`/events${query({ printer, kind, from: fromLocalInput(from), to: fromLocalInput(to) })}`);
  }

  return html`<form class="form-row filters" role="search" aria-label="Filter events" onSubmit=${submit}>
    <${Field} label="Printer" control=${(id) => html`<select id=${id} name="printer" data-testid="events-printer" value=${printer} onChange=${(e) => setPrinter(e.currentTarget.value)}>
      <option value="">All printers</option>
      ${known.map((p) => html`<option key=${p.id} value=${p.id}>${printerName(p)}</option>`)}
      ${printer && !known.some((p) => p.id === printer) ? html`<option value=${printer}>${printer}</option>` : null}
    </select>`} />
    <${Field} label="Kind" control=${(id) => html`<select id=${id} name="kind" data-testid="events-kind" value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>
      <option value="">All kinds</option>
      ${EVENT_KINDS.map((k) => html`<option key=${k} value=${k}>${k.replace(/_/g, ' ')}</option>`)}
    </select>`} />
    <${Field} label="From" control=${(id) => html`<input id=${id} type="datetime-local" name="from" value=${from} onInput=${(e) => setFrom(e.currentTarget.value)} />`} />
    <${Field} label="To" control=${(id) => html`<input id=${id} type="datetime-local" name="to" value=${to} onInput=${(e) => setTo(e.currentTarget.value)} />`} />
    <div class="field field-action">
      <button type="submit" class="btn btn-primary" data-testid="events-apply">Apply</button>
      <a class="btn btn-ghost" href="/events">Reset</a>
    </div>
  </form>`;
}

function EventTable({ events }) {
  const nameOf = (id) => {
    const printer = printers.value.get(id)?.value;
    return printer ? printerName(printer) : id ?? '—';
  };
  return html`<div class="table-wrap"><table class="table stack" data-testid="events-table">
    <caption class="visually-hidden">Events, newest first</caption>
    <thead><tr><th scope="col">Time</th><th scope="col">Printer</th><th scope="col">Kind</th><th scope="col">What happened</th></tr></thead>
    <tbody>${events.map((event) => html`<tr key=${event.id ?? event.liveKey} data-kind=${event.kind}>
      <td data-label="Time"><time datetime=${new Date(event.at).toISOString()}>${dateTime(event.at)}</time></td>
      <td data-label="Printer">${event.printer_id ? html`<a href=${`/printers/${encodeURIComponent(event.printer_id)}`}>${nameOf(event.printer_id)}</a>` : '—'}</td>
      <td data-label="Kind"><${Badge} kind=${eventKind(event.kind)}>${event.kind.replace(/_/g, ' ')}<//></td>
      <td data-label="What happened">${describeEvent(event.event)}</td>
    </tr>`)}</tbody>
  </table></div>`;
}
