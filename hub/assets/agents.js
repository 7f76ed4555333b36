// Agents (`/agents`): health of each edge agent (from the store), enrollment and revocation,
// and the hub's replicas the agents connect to (`GET /cluster`, read again after agents
// connect or disconnect, at most once a second).

import { html, useState, useRef, useEffect } from './lib.js';
import { api } from './api.js';
import { agents, agentsError, me, loadAgents, loadFleet, printers, useLiveRefresh, useQuery } from './store.js';
import { Badge, CodeBlock, EmptyState, ErrorBox, Field, Loading, VisuallyHidden, confirmDialog, toast, useTitle } from './ui.js';
import { bytes, count, dateTime, relativeTime } from './format.js';

const CERT_WARN_MS = 14 * 86400e3;

export default function AgentsPage() {
  useTitle('Agents');
  const isAdmin = me.value?.role === 'admin';
  const [enrolling, setEnrolling] = useState(false);
  const [managing, setManaging] = useState(null);
  const list = agents.value;
  const error = agentsError.value;
  let body;
  if (!list) body = error ? html`<${ErrorBox} error=${error} />` : html`<${Loading}>Loading agents…<//>`;
  else if (!list.length) {
    body = html`<${EmptyState} title="No agents yet">
      <p>${isAdmin ? 'Use “Add an agent” to enroll the first Raspberry Pi.' : 'An admin can enroll the first Raspberry Pi.'}</p>
    <//>`;
  } else body = html`<${AgentTable} agents=${list} isAdmin=${isAdmin} onManage=${setManaging} />`;
  return html`<div class="page">
    <div class="page-head">
      <div><h1>Agents</h1><p class="muted">The edge agents on Raspberry Pis next to the printers.</p></div>
      ${isAdmin ? html`<button type="button" class="btn btn-primary" aria-expanded=${enrolling ? 'true' : 'false'} aria-controls="enroll-panel"
        onClick=${() => setEnrolling(!enrolling)}>Add an agent</button>` : null}
    </div>
    <section class="panel" aria-labelledby="enroll-h" id="enroll-panel" hidden=${!enrolling}>
      ${enrolling ? html`<${Enroll} />` : null}
    </section>
    <div>${body}</div>
    <${Replicas} />
    ${isAdmin && managing ? html`<${ManagedPrinters} key=${managing} agent=${managing} onClose=${() => setManaging(null)} />` : null}
    ${isAdmin ? html`<${Ownership} />` : null}
  </div>`;
}

const EMPTY_FORM = { kind: 'moonraker', id: '', name: '', model: '', host: '', port: '', access_code: '', url: '', api_key: '', web_port: '', camera: true };

// The printers the hub manages for one agent: their status on the agent, what the agent
// heard on its LAN (to add from), and a form to add or edit one. Secrets are typed in and
// never shown again.
function ManagedPrinters({ agent, onClose }) {
  const [list, setList] = useState(null);
  const [found, setFound] = useState(null);
  const [error, setError] = useState(null);
  const [form, setForm] = useState(null);
  const [version, setVersion] = useState(0);
  const heading = useRef(null);
  useEffect(() => heading.current?.focus(), []);
  useEffect(() => {
    const base = `/agents/${encodeURIComponent(agent)}`;
    Promise.all([
      api(`${base}/printers`, { resource: 'ManagedList' }),
      api(`${base}/discovered`, { resource: 'DiscoveredList' }),
    ]).then(([managed, discovered]) => { setList(managed); setFound(discovered.printers); setError(null); })
      .catch(setError);
  }, [agent, version]);
  // The agent's answers and what it hears arrive through its records: look again every few
  // seconds while the panel is open, sooner while a change waits for the agent.
  useEffect(() => {
    const pending = list?.printers?.some((p) => p.status === 'pending');
    const timer = setTimeout(() => setVersion((v) => v + 1), pending ? 2000 : 5000);
    return () => clearTimeout(timer);
  }, [list, found, error]);
  const refresh = () => setVersion((v) => v + 1);

  function fromDiscovered(printer) {
    if (printer.vendor === 'moonraker') {
      const id = (printer.name ?? '').split('@').pop().trim().replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'klipper';
      setForm({ ...EMPTY_FORM, kind: 'moonraker', id, url: printer.url ?? '', name: printer.name ?? '' });
    } else {
      setForm({ ...EMPTY_FORM, kind: 'bambu', id: printer.key, name: printer.name ?? '', model: printer.model ?? '', host: printer.address });
    }
  }

  function edit(printer) {
    setForm({
      ...EMPTY_FORM, editing: true, kind: printer.kind, id: printer.id, name: printer.name ?? '', model: printer.model ?? '',
      host: printer.host ?? '', port: printer.port ? String(printer.port) : '', url: printer.url ?? '',
      web_port: printer.web_port ? String(printer.web_port) : '', camera: printer.camera, has_secret: printer.has_secret,
    });
  }

  async function remove(printer) {
    const ok = await confirmDialog({
      title: `Stop managing ${printer.name || printer.id}?`,
      body: html`<p>Agent ${agent} stops driving it. Its history stays.</p>`,
      confirmLabel: 'Remove',
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/agents/${encodeURIComponent(agent)}/printers/${encodeURIComponent(printer.id)}`, { method: 'DELETE' });
      toast(`${printer.name || printer.id} removed from ${agent}.`, 'ok');
      refresh();
    } catch (failure) {
      toast(`Could not remove: ${failure.message}`, 'error');
    }
  }

  const status = (printer) => {
    if (printer.status === 'applied') return html`<${Badge} kind="ok">running<//>`;
    if (printer.status === 'error') return html`<${Badge} kind="danger">refused<//> <span class="warn-text">${printer.error}</span>`;
    return html`<${Badge} kind="muted">waiting for the agent<//>`;
  };
  return html`<section class="panel" aria-labelledby="managed-h" data-testid="managed-printers" data-agent=${agent}>
    <div class="page-head">
      <h2 id="managed-h" tabindex="-1" ref=${heading}>Printers managed for ${agent}</h2>
      <button type="button" class="btn btn-small" onClick=${onClose}>Close<${VisuallyHidden}> printers of ${agent}<//></button>
    </div>
    <p class="muted">The agent receives this list now, or when it next connects, and runs it without a restart. Printers in its own agent.toml are managed there.</p>
    ${error ? html`<${ErrorBox} error=${error} />` : null}
    ${!list && !error ? html`<${Loading}>Loading…<//>` : null}
    ${list ? (list.printers.length ? html`<ul class="plain-list" data-testid="managed-list">${list.printers.map((p) => html`<li key=${p.id} data-managed-id=${p.id} data-status=${p.status}>
        <span class="strong">${p.name || p.id}</span> <span class="muted mono">${p.id}</span>
        <span class="muted">${p.kind === 'bambu' ? `Bambu Lab at ${p.host}` : `Klipper at ${p.url}`}</span> ${status(p)}
        <button type="button" class="btn btn-small" onClick=${() => edit(p)}>Edit<${VisuallyHidden}> ${p.name || p.id}<//></button>
        <button type="button" class="btn btn-small btn-danger" onClick=${() => remove(p)}>Remove<${VisuallyHidden}> ${p.name || p.id}<//></button>
      </li>`)}</ul>` : html`<p>No printers managed from the hub yet.</p>`) : null}
    ${list?.local?.length ? html`<p data-testid="managed-locally">Managed locally, in the agent’s agent.toml: ${list.local.map((p, i) => html`${i ? ', ' : ''}<span class="strong">${p.name || p.id}</span> <span class="muted mono">${p.id}</span>`)}</p>` : null}
    <h3>Heard on its network</h3>
    ${found?.length ? html`<ul class="plain-list" data-testid="discovered-list">${found.map((d) => html`<li key=${d.key} data-discovered=${d.key}>
        <span class="strong">${d.name || d.key}</span>
        ${d.vendor === 'moonraker' ? null : html`<span class="muted mono">${d.key}</span>`}
        <span class="muted">${d.vendor === 'moonraker' ? `Klipper (Moonraker) at ${d.url}` : `Bambu Lab ${d.model ?? ''} at ${d.address}${d.bind === 'occupied' ? ', bound to a Bambu account' : ''}`}</span>
        <span class="muted">heard ${relativeTime(d.seen_at)}</span>
        <button type="button" class="btn btn-small btn-primary" onClick=${() => fromDiscovered(d)}>Add<${VisuallyHidden}> ${d.name || d.key}<//></button>
      </li>`)}</ul>` : html`<p class="muted">Nothing heard yet: the agent listens for a minute every ten (Bambu printers announce themselves, Moonraker over mDNS).</p>`}
    <div class="button-row"><button type="button" class="btn" data-testid="managed-add" onClick=${() => setForm({ ...EMPTY_FORM })}>Add a printer by hand</button></div>
    ${form ? html`<${ManagedForm} agent=${agent} initial=${form} onDone=${() => { setForm(null); refresh(); }} onCancel=${() => setForm(null)} />` : null}
  </section>`;
}

function ManagedForm({ agent, initial, onDone, onCancel }) {
  const [form, setForm] = useState(initial);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const first = useRef(null);
  useEffect(() => first.current?.focus(), []);
  const set = (key) => (event) => setForm({ ...form, [key]: event.currentTarget.type === 'checkbox' ? event.currentTarget.checked : event.currentTarget.value });
  const text = (label, key, hint, attrs = {}) => html`<${Field} label=${label} hint=${hint}
    control=${(id, hintId) => html`<input id=${id} aria-describedby=${hintId} type="text" autocomplete="off" spellcheck="false"
      value=${form[key]} onInput=${set(key)} data-field=${key} ...${attrs} />`} />`;

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body = { kind: form.kind, camera: form.camera };
    for (const key of ['name', 'model']) if (form[key].trim()) body[key] = form[key].trim();
    if (form.kind === 'bambu') {
      body.host = form.host.trim();
      if (form.port) body.port = Number(form.port);
      if (form.access_code) body.access_code = form.access_code;
    } else {
      body.url = form.url.trim();
      if (form.web_port) body.web_port = Number(form.web_port);
      if (form.api_key) body.api_key = form.api_key;
    }
    try {
      await api(`/agents/${encodeURIComponent(agent)}/printers/${encodeURIComponent(form.id.trim())}`, {
        method: 'PUT', body, request: 'ManagedPrinterRequest', resource: 'ManagedPrinterView',
      });
      toast(`${form.name || form.id} sent to ${agent}.`, 'ok');
      onDone();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const secretHint = form.editing && form.has_secret ? 'Stored; leave empty to keep it' : undefined;
  return html`<form class="form-grid" onSubmit=${submit} data-testid="managed-form">
    <h3>${form.editing ? `Edit ${form.id}` : 'Add a printer'}</h3>
    <${Field} label="Kind" control=${(id) => html`<select id=${id} ref=${first} value=${form.kind} disabled=${form.editing} onChange=${set('kind')} data-field="kind">
      <option value="moonraker">Klipper (Moonraker)</option><option value="bambu">Bambu Lab (LAN mode)</option>
    </select>`} />
    ${text(form.kind === 'bambu' ? 'Serial number' : 'Printer id', 'id', form.kind === 'bambu' ? 'On the printer: Settings > Device' : 'Letters, digits, dot, dash, underscore; e.g. voron-1',
      { required: true, readonly: form.editing, pattern: '[A-Za-z0-9._-]{1,64}' })}
    ${text('Name (optional)', 'name')}
    ${text('Model (optional)', 'model')}
    ${form.kind === 'bambu' ? html`
      ${text('Address', 'host', 'The printer’s IP address or host name', { required: true })}
      <${Field} label="LAN access code" hint=${secretHint ?? 'The 8 characters on the printer’s screen (LAN only mode)'}
        control=${(id, hintId) => html`<input id=${id} aria-describedby=${hintId} type="password" autocomplete="off"
          value=${form.access_code} onInput=${set('access_code')} data-field="access_code" required=${!form.has_secret} />`} />` : html`
      ${text('Moonraker address', 'url', 'e.g. http://voron.local:7125', { required: true })}
      <${Field} label="API key (if Moonraker requires one)" hint=${secretHint}
        control=${(id, hintId) => html`<input id=${id} aria-describedby=${hintId} type="password" autocomplete="off"
          value=${form.api_key} onInput=${set('api_key')} data-field="api_key" />`} />
      ${text('Web server port (optional)', 'web_port', 'Where its webcam URLs resolve; 80 unless Mainsail or Fluidd runs elsewhere', { inputmode: 'numeric', pattern: '[0-9]{0,5}' })}`}
    <div class="field"><label><input type="checkbox" checked=${form.camera} onChange=${set('camera')} data-field="camera" /> Watch its camera</label></div>
    ${error ? html`<${ErrorBox} error=${error} />` : null}
    <div class="button-row">
      <button type="submit" class="btn btn-primary" disabled=${busy} data-testid="managed-save">${form.editing ? 'Save' : 'Add'}</button>
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

// Which agent owns each printer: new printers awaiting approval, and claims refused because
// another agent owns the printer (a Pi moved, or one that should not speak for it).
function Ownership() {
  const [claims, setClaims] = useState(null);
  const [error, setError] = useState(null);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    api('/printer-claims', { resource: 'ClaimList' })
      .then((answer) => { setClaims(answer.claims); setError(null); })
      .catch(setError);
  }, [version]);
  const pending = [...printers.value.values()].map((p) => p.value).filter((p) => p.approved_at == null);
  const refresh = () => { setVersion(version + 1); loadFleet(); };
  if (!pending.length && !claims?.length && !error) return null;
  return html`<section class="panel" aria-labelledby="ownership-h" data-testid="ownership">
    <h2 id="ownership-h">Printer ownership</h2>
    ${error ? html`<${ErrorBox} error=${error} />` : null}
    ${pending.length ? html`<h3>Awaiting approval</h3>
      <p>These printers were first announced by the agent shown. They take no commands until you approve that agent as their owner.</p>
      <ul class="plain-list">${pending.map((p) => html`<li key=${p.id} data-printer-id=${p.id}>
        <span class="strong">${p.name || p.id}</span> <span class="muted mono">${p.id}</span> from agent <span class="mono">${p.agent_id}</span>
        <button type="button" class="btn btn-small btn-primary" onClick=${() => approve(p, refresh)}>
          Approve<${VisuallyHidden}> ${p.name || p.id}<//></button>
      </li>`)}</ul>` : null}
    ${claims?.length ? html`<h3>Refused claims</h3>
      <p>These agents announced a printer another agent owns. Their records about it are kept but not shown or used. Move the printer if it really moved.</p>
      <ul class="plain-list">${claims.map((c) => html`<li key=${`${c.printer_id} ${c.agent_id}`} data-claim=${c.printer_id}>
        <span class="mono">${c.printer_id}</span>: claimed by <span class="mono">${c.agent_id}</span>, owned by <span class="mono">${c.owner_id}</span>
        (${count(c.refused_records)} records refused, last ${relativeTime(c.last_at)})
        <button type="button" class="btn btn-small" onClick=${() => move(c, refresh)}>
          Move to ${c.agent_id}<${VisuallyHidden}> (printer ${c.printer_id})<//></button>
      </li>`)}</ul>` : null}
  </section>`;
}

async function approve(printer, done) {
  try {
    await api(`/printers/${encodeURIComponent(printer.id)}/approve`, { method: 'POST', resource: 'Printer' });
    toast(`${printer.name || printer.id} approved for agent ${printer.agent_id}.`, 'ok');
    done();
  } catch (error) {
    toast(`Could not approve: ${error.message}`, 'error');
  }
}

async function move(claim, done) {
  const ok = await confirmDialog({
    title: `Move printer ${claim.printer_id} to agent ${claim.agent_id}?`,
    body: html`<p>Commands for it go to ${claim.agent_id} from now on, and records about it from ${claim.owner_id} are refused.</p>`,
    confirmLabel: 'Move',
  });
  if (!ok) return;
  try {
    await api(`/printers/${encodeURIComponent(claim.printer_id)}/owner`, {
      method: 'POST', body: { agent: claim.agent_id }, request: 'MovePrinter', resource: 'Printer',
    });
    toast(`Printer ${claim.printer_id} now belongs to ${claim.agent_id}.`, 'ok');
    done();
  } catch (error) {
    toast(`Could not move: ${error.message}`, 'error');
  }
}

function Enroll() {
  const [name, setName] = useState('');
  const [serials, setSerials] = useState('');
  const [ttl, setTtl] = useState('3600');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  const first = useRef(null);
  useEffect(() => first.current?.focus(), []);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    try {
      const body = { ttl_s: Number(ttl) };
      if (name.trim()) body.name = name.trim();
      const printers = serials.split(/[\s,]+/).filter(Boolean);
      if (printers.length) body.printers = printers;
      const answer = await api('/enrollment-tokens', { method: 'POST', body, request: 'EnrollmentTokenRequest', resource: 'EnrollmentToken' });
      setResult({ command: `kitt-agent enroll --hub ${location.hostname}:7070 --token ${answer.token}`, expiresAt: answer.expires_at });
    } catch (error) {
      setResult({ error });
    } finally {
      setBusy(false);
    }
  }

  return html`<h2 id="enroll-h">Add an agent</h2>
    <p>Create a single-use token, then run the enrollment command on the Pi. The agent appears below once it connects.</p>
    <form class="form-row" onSubmit=${submit}>
      <${Field} label="Agent name (optional)" hint="Letters, digits, dot, dash, underscore; e.g. pi-x1c-01"
        control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} ref=${first} type="text" name="name" autocomplete="off"
          pattern="[A-Za-z0-9._-]{1,64}" spellcheck="false" value=${name} onInput=${(e) => setName(e.currentTarget.value)} />`} />
      <${Field} label="Printer serials (optional)" hint="The printers this Pi will serve, approved now; others wait for approval"
        control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} type="text" name="printers" autocomplete="off"
          pattern="[A-Za-z0-9._\\- ,]*" spellcheck="false" value=${serials} onInput=${(e) => setSerials(e.currentTarget.value)} />`} />
      <${Field} label="Token valid for" control=${(id) => html`<select id=${id} name="ttl" value=${ttl} onChange=${(e) => setTtl(e.currentTarget.value)}>
        <option value="3600">1 hour</option><option value="86400">1 day</option><option value=${String(7 * 86400)}>7 days</option>
      </select>`} />
      <div class="field field-action"><button type="submit" class="btn btn-primary" disabled=${busy}>Create enrollment token</button></div>
    </form>
    <div class="enroll-result" aria-live="polite">
      ${result?.error ? html`<${ErrorBox} error=${result.error} />` : null}
      ${result?.command ? html`
        <p>On the Raspberry Pi, run (the token works once, until <strong>${dateTime(result.expiresAt)}</strong>):</p>
        <${CodeBlock} text=${result.command} />
        <p class="hint">Port 7070 is the hub’s default agent port (UDP); use yours if it was changed.</p>` : null}
    </div>`;
}

// The hub's replicas: alive or not (a heartbeat every 2 s, silent for 10 s is gone), the
// agents connected to each, which one answered. One hub on SQLite is one replica.
function Replicas() {
  const cluster = useQuery(() => api('/cluster', { resource: 'ClusterView' }), []);
  useLiveRefresh((message) => message.type === 'agent', cluster.reload, 1000);
  const data = cluster.data;
  let body;
  if (!data) body = cluster.error ? html`<${ErrorBox} error=${cluster.error} />` : html`<${Loading}>Loading the replicas…<//>`;
  else {
    const th = (text) => html`<th scope="col">${text}</th>`;
    body = html`<div class="table-wrap"><table class="table stack" data-testid="replicas-table">
      <caption class="visually-hidden">The hub's replicas</caption>
      <thead><tr>${th('Replica')}${th('Status')}${th('Agents')}${th('Heartbeat')}${th('Started')}${th('Listens')}</tr></thead>
      <tbody>${data.replicas.map((r) => html`<tr key=${r.instance} data-replica=${r.name}>
        <th scope="row" data-label="Replica"><span class="strong">${r.name}</span>${r.here ? html` <span class="muted">(this page's)</span>` : null}</th>
        <td data-label="Status">${r.alive ? html`<${Badge} kind="ok">alive<//>` : html`<${Badge} kind="danger">silent<//>`}</td>
        <td data-label="Agents">${count(r.agents)}</td>
        <td data-label="Heartbeat"><span title=${dateTime(r.heartbeat_at)}>${relativeTime(r.heartbeat_at, data.now)}</span></td>
        <td data-label="Started">${r.started_at == null ? '—' : dateTime(r.started_at)}</td>
        <td data-label="Listens" class="mono">${r.http_addr ? `${r.http_addr} (API), ${r.sync_addr} (agents)` : '—'}</td>
      </tr>`)}</tbody>
    </table></div>`;
  }
  const one = data && data.database === 'sqlite';
  return html`<section class="panel" aria-labelledby="replicas-h" data-testid="replicas">
    <h2 id="replicas-h">Hub replicas</h2>
    <p class="muted">${one ? 'One hub on SQLite. Replicas need PostgreSQL: see deploy/hub/REPLICAS.md.'
      : 'Every replica on this PostgreSQL; agents move to another when theirs goes silent.'}</p>
    ${body}
  </section>`;
}

function AgentTable({ agents: list, isAdmin, onManage }) {
  const th = (text) => html`<th scope="col">${text}</th>`;
  return html`<div class="table-wrap"><table class="table stack" data-testid="agents-table">
    <caption class="visually-hidden">Agents and their health</caption>
    <thead><tr>${th('Agent')}${th('Status')}${th('Version')}${th('Last seen')}${th('Outbox')}${th('Drops')}${th('Disk free')}${th('Clock')}${th('Certificate expires')}${isAdmin ? th('Actions') : null}</tr></thead>
    <tbody>${list.map((agent) => html`<tr key=${agent.id} data-agent-id=${agent.id}>
      <th scope="row" data-label="Agent"><div>
        <span class="strong">${agent.name || agent.id}</span>
        ${agent.hostname ? html`<span class="muted block">${agent.hostname}</span>` : null}
        ${agent.name && agent.name !== agent.id ? html`<span class="muted block mono">${agent.id}</span>` : null}
      </div></th>
      <td data-label="Status">${agent.revoked_at ? html`<${Badge} kind="muted">revoked<//>` : agent.online ? html`<${Badge} kind="ok">online<//>` : html`<${Badge} kind="danger">offline<//>`}</td>
      <td data-label="Version">${agent.software || '—'}</td>
      <td data-label="Last seen">${agent.online ? 'now' : html`<span title=${dateTime(agent.last_seen_at)}>${relativeTime(agent.last_seen_at)}</span>`}</td>
      <td data-label="Outbox">${agent.outbox_records == null ? '—' : `${count(agent.outbox_records)} records, ${bytes(agent.outbox_bytes)}`}</td>
      <td data-label="Drops"><${Drops} agent=${agent} /></td>
      <td data-label="Disk free">${bytes(agent.disk_free_bytes)}</td>
      <td data-label="Clock"><${Clock} agent=${agent} /></td>
      <td data-label="Certificate expires"><${Certificate} agent=${agent} /></td>
      ${isAdmin ? html`<td data-label="Actions">${agent.revoked_at ? '—' : html`<div class="button-row">
        <button type="button" class="btn btn-small" data-testid="manage-printers" onClick=${() => onManage(agent.id)}>
          Printers<${VisuallyHidden}> of ${agent.name || agent.id}<//></button>
        <button type="button" class="btn btn-small btn-danger" onClick=${() => revoke(agent)}>
        Revoke<${VisuallyHidden}> ${agent.name || agent.id}<//></button></div>`}</td>` : null}
    </tr>`)}</tbody>
  </table></div>`;
}

function Drops({ agent }) {
  const list = Array.isArray(agent.drops) ? agent.drops : [];
  const total = list.reduce((sum, d) => sum + (d.count ?? 0), 0);
  if (!total) return 'none';
  return html`<span class="warn-text" title=${list.map((d) => `${d.class} (${d.reason}): ${d.count}`).join('; ')}>
    ${count(total)} (${list.map((d) => `${d.class}: ${d.count}`).join(', ')})</span>`;
}

/** How far the agent's clock is from the hub's: "in sync", or flagged when it is off. */
function Clock({ agent }) {
  const clock = agent.clock;
  if (!clock) return '—';
  const text = clockText(clock.offset_ms);
  const title = `The hub's clock minus the agent's, ±${clock.uncertainty_ms} ms. Expiries and the plate check follow the hub's clock; the times this agent stamps on its events and telemetry are off by this much. Set up NTP on the Pi.`;
  return clock.off
    ? html`<span class="warn-text" data-testid="clock-off" title=${title}>⚠ ${text}</span>`
    : html`<span title=${title}>in sync</span>`;
}

/** "3 h 2 min behind the hub" for an offset (hub minus agent) in milliseconds. */
export function clockText(offsetMs) {
  const abs = Math.abs(offsetMs);
  const h = Math.floor(abs / 3600000);
  const min = Math.floor((abs % 3600000) / 60000);
  const s = Math.floor((abs % 60000) / 1000);
  const size = h ? `${h} h ${min} min` : min ? `${min} min ${s} s` : `${s} s`;
  return `${size} ${offsetMs > 0 ? 'behind' : 'ahead of'} the hub`;
}

function Certificate({ agent }) {
  const left = agent.certificate_expires_at - Date.now();
  const text = `${dateTime(agent.certificate_expires_at)} (${relativeTime(agent.certificate_expires_at)})`;
  return left < CERT_WARN_MS && !agent.revoked_at ? html`<span class="warn-text">${text}</span>` : text;
}

async function revoke(agent) {
  const ok = await confirmDialog({
    title: `Revoke agent ${agent.name || agent.id}?`,
    body: html`<p>It is disconnected within seconds and can never reconnect with its certificate. To bring the Pi back, enroll it again with a new token.</p>`,
    confirmLabel: 'Revoke',
    danger: true,
  });
  if (!ok) return;
  try {
    await api(`/agents/${encodeURIComponent(agent.id)}/revoke`, { method: 'POST' });
    toast(`Agent ${agent.name || agent.id} revoked.`, 'ok');
    loadAgents();
  } catch (error) {
    toast(`Could not revoke: ${error.message}`, 'error');
  }
}

