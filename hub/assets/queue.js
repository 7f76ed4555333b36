// The print queue (`/queue`): add a file's plate as jobs (operators), and every job in the
// order it goes, where it is, and why it waits; hold, release, approve, move, cancel, retry.
// Jobs change live (the dispatcher's decisions arrive over the WebSocket).

import { html, useState } from './lib.js';
import { api, query } from './api.js';
import { me, printers, useLive, useQuery } from './store.js';
import { Badge, EmptyState, ErrorBox, Field, Loading, confirmDialog, toast, useTitle } from './ui.js';
import { duration, relativeTime } from './format.js';
import { printerName } from './widgets.js';

const STATE_KIND = {
  queued: 'neutral', assigned: 'accent', transferring: 'accent', uploading: 'accent', starting: 'accent',
  printing: 'accent', finished: 'ok', failed: 'danger', cancelled: 'muted',
};

const PRIORITIES = [
  { value: 0, label: 'Normal' },
  { value: 10, label: 'High' },
  { value: 50, label: 'Urgent' },
  { value: -10, label: 'Low' },
];

export default function QueuePage() {
  useTitle('Queue');
  const jobs = useQuery(() => api('/jobs', { resource: 'JobList' }), []);
  // Success estimates, once enough reviewed outcomes exist to measure them.
  const estimate = useQuery(() => api('/analytics/estimate', { resource: 'Estimate' }), []);
  const estimates = estimate.data?.available === true;
  useLive((message) => {
    if (message.type === 'job') jobs.reload();
  });
  const canAct = me.value?.role === 'operator' || me.value?.role === 'admin';
  const list = jobs.data?.jobs ?? null;
  let body;
  if (!list) body = jobs.error ? html`<${ErrorBox} error=${jobs.error} />` : html`<${Loading}>Loading the queue…<//>`;
  else if (!list.length) {
    body = html`<${EmptyState} title="The queue is empty">
      <p>Add a plate of an uploaded file; it goes to a printer that fits it once that printer's plate is confirmed clear.</p>
      <p><a class="btn" href="/files">Files</a></p>
    <//>`;
  } else body = html`<${JobTable} jobs=${list} canAct=${canAct} onChanged=${jobs.reload} estimates=${estimates} />`;
  const waiting = list?.filter((j) => j.state === 'queued').length ?? 0;
  const running = list?.filter((j) => ['assigned', 'transferring', 'uploading', 'starting', 'printing'].includes(j.state)).length ?? 0;
  return html`<div class="page">
    <div class="page-head"><div><h1>Queue</h1>
      <p class="muted" aria-live="polite">${list ? `${waiting} waiting · ${running} under way` : ''}</p>
      ${estimate.data ? html`<p class="muted" data-testid="queue-estimate">Success estimates: ${estimate.data.message}.</p>` : null}
    </div></div>
    ${canAct ? html`<${AddJob} onAdded=${jobs.reload} />` : null}
    ${body}
  </div>`;
}

function AddJob({ onAdded }) {
  const files = useQuery(() => api('/files?limit=200', { resource: 'FileList' }), []);
  const [fileId, setFileId] = useState('');
  const [plate, setPlate] = useState('');
  const [copies, setCopies] = useState('1');
  const [priority, setPriority] = useState('0');
  const [printer, setPrinter] = useState('');
  const [approval, setApproval] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const list = files.data?.files ?? [];
  const file = list.find((f) => f.id === fileId) ?? null;
  const known = [...printers.value.values()].map((p) => p.value).sort((a, b) => printerName(a).localeCompare(printerName(b)));

  async function submit(event) {
    event.preventDefault();
    if (!file) return;
    setBusy(true);
    setError(null);
    try {
      const body = {
        file: file.id,
        plate: plate ? Number(plate) : null,
        copies: Number(copies) || 1,
        priority: Number(priority),
        printer: printer || null,
        needs_approval: approval,
      };
      const answer = await api('/jobs', { method: 'POST', body, request: 'JobRequest', resource: 'JobList' });
      toast(`${answer.jobs.length} job${answer.jobs.length === 1 ? '' : 's'} queued`, 'success');
      onAdded();
    } catch (failure) {
      if (failure.status !== 401) setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return html`<form class="card add-job" aria-label="Add a job" onSubmit=${submit}>
    <div class="form-row">
      <${Field} label="File" control=${(id) => html`<select id=${id} data-testid="job-file" value=${fileId}
          onChange=${(e) => { setFileId(e.currentTarget.value); setPlate(''); }}>
        <option value="">${list.length ? 'Choose a file' : 'No files uploaded'}</option>
        ${list.map((f) => html`<option key=${f.id} value=${f.id}>${f.name}</option>`)}
      </select>`} />
      <${Field} label="Plate" control=${(id) => html`<select id=${id} data-testid="job-plate" value=${plate}
          onChange=${(e) => setPlate(e.currentTarget.value)} disabled=${!file}>
        ${(file?.plates ?? []).map((p) => html`<option key=${p.index} value=${p.index}>Plate ${p.index}${p.estimated_s ? ` · ${duration(p.estimated_s)}` : ''}</option>`)}
      </select>`} />
      <${Field} label="Copies" control=${(id) => html`<input id=${id} type="number" min="1" max="100" value=${copies}
          data-testid="job-copies" onInput=${(e) => setCopies(e.currentTarget.value)} />`} />
      <${Field} label="Priority" control=${(id) => html`<select id=${id} value=${priority} onChange=${(e) => setPriority(e.currentTarget.value)}>
        ${PRIORITIES.map((p) => html`<option key=${p.value} value=${p.value}>${p.label}</option>`)}
      </select>`} />
      <${Field} label="Printer" control=${(id) => html`<select id=${id} value=${printer} onChange=${(e) => setPrinter(e.currentTarget.value)}>
        <option value="">Any that fits</option>
        ${known.map((p) => html`<option key=${p.id} value=${p.id}>${printerName(p)}</option>`)}
      </select>`} />
      <div class="field field-check">
        <label><input type="checkbox" checked=${approval} onChange=${(e) => setApproval(e.currentTarget.checked)} /> Needs approval</label>
      </div>
      <div class="field field-action">
        <button type="submit" class="btn btn-primary" data-testid="job-add" disabled=${!file || busy}>Add to queue</button>
      </div>
    </div>
    ${error ? html`<${ErrorBox} error=${error} />` : null}
  </form>`;
}

function JobTable({ jobs, canAct, onChanged, estimates }) {
  return html`<div class="table-wrap"><table class="table stack" data-testid="jobs-table">
    <caption class="visually-hidden">Jobs in the order they go, then the last ones done</caption>
    <thead><tr><th scope="col">#</th><th scope="col">Job</th><th scope="col">State</th><th scope="col">Printer</th>
      <th scope="col">Where it is</th>${canAct ? html`<th scope="col">Actions</th>` : null}</tr></thead>
    <tbody>${jobs.map((job) => html`<${JobRow} key=${job.id} job=${job} canAct=${canAct} onChanged=${onChanged} estimates=${estimates} />`)}</tbody>
  </table></div>`;
}

// A queued job's chance of success on its printer with its material, when offered.
function JobEstimate({ job }) {
  const printer = job.printer ?? job.target_printer ?? null;
  const material = job.materials.find((m) => m.type)?.type ?? null;
  const estimate = useQuery(() => api(`/analytics/estimate${query({ printer, material })}`, { resource: 'Estimate' }), [printer, material]);
  const p = estimate.data?.success_probability;
  if (p == null) return null;
  return html`<br /><span class="muted" title=${estimate.data.message} data-testid="job-estimate">success ≈ ${Math.round(p * 100)}%</span>`;
}

function JobRow({ job, canAct, onChanged, estimates }) {
  const [busy, setBusy] = useState(false);
  async function act(action, body) {
    if (action === 'cancel') {
      const sure = await confirmDialog({ title: `Cancel ${job.name}?`, body: 'The job leaves the queue; retry puts it back.', confirmLabel: 'Cancel job', danger: true });
      if (!sure) return;
    }
    setBusy(true);
    try {
      await api(`/jobs/${job.id}/${action}`, body ? { method: 'POST', body, request: 'MoveRequest', resource: 'JobDetail' } : { method: 'POST', resource: 'JobDetail' });
      onChanged();
    } catch (failure) {
      if (failure.status !== 401) toast(failure.message, 'error');
    } finally {
      setBusy(false);
    }
  }
  const printer = job.printer ? printers.value.get(job.printer)?.value : null;
  const name = job.copies > 1 ? `${job.name} (${job.copy} of ${job.copies})` : job.name;
  const queued = job.state === 'queued';
  let where = '';
  if (queued && job.held) where = 'Held by an operator';
  else if (queued) where = job.waiting?.reason ?? 'Waiting for the dispatcher';
  else if (job.reason) where = job.reason;
  else if (job.state === 'assigned') where = `Assigned; filament ${job.mapping.map((m) => `${m.slot} ← ${m.tray}`).join(', ') || 'as loaded'}`;
  return html`<tr data-job=${job.id} data-state=${job.state} data-testid="job-row">
    <td data-label="#">${job.queue_place ?? '—'}</td>
    <td data-label="Job"><div class="job-cell">
      ${job.thumbnail_url ? html`<img class="job-thumb" src=${job.thumbnail_url} alt="" width="40" height="40" loading="lazy" />` : null}
      <div><strong>${name}</strong><br /><span class="muted">${job.file_name ?? job.file} · plate ${job.plate}${job.estimated_s ? ` · ${duration(job.estimated_s)}` : ''}</span>
        ${estimates && queued ? html`<${JobEstimate} job=${job} />` : null}</div>
    </div></td>
    <td data-label="State">
      <${Badge} kind=${STATE_KIND[job.state] ?? 'neutral'}>${job.state}<//>
      ${job.held ? html` <${Badge} kind="warn">held<//>` : null}
      ${job.needs_approval && !job.approved_by ? html` <${Badge} kind="warn">needs approval<//>` : null}
      ${job.priority > 0 ? html` <${Badge} kind="info">priority ${job.priority}<//>` : null}
    </td>
    <td data-label="Printer">${job.printer ? html`<a href=${`/printers/${encodeURIComponent(job.printer)}`}>${printer ? printerName(printer) : job.printer}</a>` : (job.target_printer ? `only ${job.target_printer}` : 'any that fits')}</td>
    <td data-label="Where it is" data-testid="job-where" data-code=${job.waiting?.code ?? ''}>${where}<br /><span class="muted">${relativeTime(job.updated_at)}</span></td>
    ${canAct ? html`<td data-label="Actions"><div class="job-actions">
      ${queued && job.needs_approval && !job.approved_by ? html`<button type="button" class="btn btn-small" disabled=${busy} onClick=${() => act('approve')}>Approve</button>` : null}
      ${queued ? html`<button type="button" class="btn btn-small" disabled=${busy} data-testid="job-hold" onClick=${() => act(job.held ? 'release' : 'hold')}>${job.held ? 'Release' : 'Hold'}</button>` : null}
      ${queued ? html`<button type="button" class="btn btn-small" disabled=${busy} aria-label=${`Move ${name} up`} onClick=${() => act('move', { to: 'up' })}>↑</button>
        <button type="button" class="btn btn-small" disabled=${busy} aria-label=${`Move ${name} down`} onClick=${() => act('move', { to: 'down' })}>↓</button>` : null}
      ${['queued', 'assigned', 'transferring', 'uploading', 'starting'].includes(job.state) ? html`<button type="button" class="btn btn-small btn-danger" disabled=${busy} onClick=${() => act('cancel')}>Cancel</button>` : null}
      ${['failed', 'cancelled'].includes(job.state) ? html`<button type="button" class="btn btn-small" disabled=${busy} data-testid="job-retry" onClick=${() => act('retry')}>Retry</button>` : null}
    </div></td>` : null}
  </tr>`;
}
