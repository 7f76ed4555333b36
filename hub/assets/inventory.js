// Inventory (`/inventory`): what each filament has left and how fast prints use it (low
// stock first), every spool with where it is loaded; operators add spools, weigh them in
// (the scale's gross weight corrects the remaining weight) and archive empty ones. The
// writes go through the hub's Spoolman-compatible API, the one Spoolman's clients use.

import { html, useState } from './lib.js';
import { api, spoolman } from './api.js';
import { me, printers, useQuery } from './store.js';
import { Badge, CodeBlock, EmptyState, ErrorBox, Field, Loading, VisuallyHidden, toast, useTitle } from './ui.js';
import { printerName } from './widgets.js';
import { relativeTime } from './format.js';

// Densities by material, g/cm³ (what a new filament gets unless told otherwise).
const DENSITY = { PLA: 1.24, PETG: 1.27, ABS: 1.04, ASA: 1.07, TPU: 1.21, PC: 1.2, PA: 1.14 };

export function grams(g) {
  if (g == null) return '—';
  return g >= 1000 ? `${(g / 1000).toFixed(2)} kg` : `${Math.round(g)} g`;
}

export function slotName(loaded) {
  if (!loaded) return null;
  return loaded.unit == null ? `${loaded.printer} · external` : `${loaded.printer} · AMS ${loaded.unit + 1} slot ${loaded.slot + 1}`;
}

export function Dot({ color }) {
  return html`<span class="swatch-dot" style=${color ? { backgroundColor: color } : undefined} aria-hidden="true"></span>`;
}

export default function InventoryPage() {
  useTitle('Inventory');
  const inventory = useQuery(() => api('/inventory', { resource: 'InventoryView' }), []);
  const canEdit = me.value?.role === 'operator' || me.value?.role === 'admin';
  const data = inventory.data;
  let body;
  if (!data) body = inventory.error ? html`<${ErrorBox} error=${inventory.error} />` : html`<${Loading}>Loading the inventory…<//>`;
  else {
    const low = data.filaments.filter((f) => f.low);
    const spools = data.spools.filter((s) => !s.archived);
    body = html`
      ${low.length ? html`<div class="banner banner-warn" role="status" data-testid="low-stock">
        <strong>Low stock: </strong>${low.map((f, i) => html`${i ? ', ' : ''}<span>${f.name} (${grams(f.remaining_g)}${f.days_to_empty != null ? `, about ${Math.max(0, Math.round(f.days_to_empty))} days left` : ''})</span>`)}
      </div>` : null}
      <section class="panel" aria-labelledby="stock-h"><h2 id="stock-h">Filaments</h2>
        ${data.filaments.length ? html`<${StockTable} filaments=${data.filaments} lowStock=${data.low_stock_g} />` : html`<p class="muted">No filaments yet.</p>`}
      </section>
      <section class="panel" aria-labelledby="spools-h"><h2 id="spools-h">Spools</h2>
        ${spools.length ? html`<${SpoolTable} spools=${spools} canEdit=${canEdit} onChanged=${inventory.reload} />`
          : html`<${EmptyState} title="No spools yet"><p>Spools with RFID tags appear when a printer reads them; add the others here.</p><//>`}
      </section>
      ${canEdit ? html`<section class="panel" aria-labelledby="add-h"><h2 id="add-h">Add a spool</h2><${AddSpool} onAdded=${inventory.reload} /></section>` : null}
      ${me.value?.role === 'admin' ? html`<section class="panel" aria-labelledby="clients-h"><h2 id="clients-h">Spoolman clients</h2><${SpoolmanClients} /></section>` : null}`;
  }
  return html`<div class="page">
    <div class="page-head"><div><h1>Inventory</h1>
      <p class="muted">Spools and what is left on them: prints deduct what they used; a weigh-in corrects it.</p>
    </div></div>
    ${body}
  </div>`;
}

function StockTable({ filaments, lowStock }) {
  return html`<div class="table-wrap"><table class="table stack" data-testid="stock-table">
    <thead><tr><th scope="col">Filament</th><th scope="col">Spools</th><th scope="col">Left</th><th scope="col">Used (30 days)</th><th scope="col">Days to empty</th></tr></thead>
    <tbody>${filaments.map((f) => html`<tr key=${f.id} data-low=${f.low ? 'true' : 'false'}>
      <th scope="row" data-label="Filament"><div><${Dot} color=${f.color} />${f.name}${f.vendor ? html`<span class="muted"> · ${f.vendor}</span>` : null}
        ${f.low ? html` <${Badge} kind="warn" title=${`Below ${lowStock} g, or empty within a week at the recent pace`}>low<//>` : null}</div></th>
      <td data-label="Spools">${f.spools}</td>
      <td data-label="Left">${grams(f.remaining_g)}</td>
      <td data-label="Used (30 days)">${grams(f.used_30d_g)}</td>
      <td data-label="Days to empty">${f.days_to_empty == null ? '—' : Math.round(f.days_to_empty)}</td>
    </tr>`)}</tbody>
  </table></div>`;
}

function SpoolTable({ spools, canEdit, onChanged }) {
  return html`<div class="table-wrap"><table class="table stack" data-testid="spool-table">
    <thead><tr><th scope="col">Spool</th><th scope="col">Left</th><th scope="col">Where</th><th scope="col">Last used</th>${canEdit ? html`<th scope="col">Weigh-in</th>` : null}</tr></thead>
    <tbody>${spools.map((s) => html`<tr key=${s.id} data-testid="spool-row" data-spool=${s.id}>
      <th scope="row" data-label="Spool"><div><${Dot} color=${s.color} />#${s.id} ${s.name}${s.vendor ? html`<span class="muted"> · ${s.vendor}</span>` : null}
        ${s.tagged ? html` <${Badge} kind="neutral" title="Identified by its RFID tag">RFID<//>` : null}</div></th>
      <td data-label="Left" data-testid="spool-left">${grams(s.remaining_g)}${s.initial_g ? html`<span class="muted"> of ${grams(s.initial_g)}</span>` : null}</td>
      <td data-label="Where">${slotName(s.loaded) ?? s.location ?? html`<span class="muted">—</span>`}</td>
      <td data-label="Last used">${s.last_used ? relativeTime(s.last_used) : '—'}</td>
      ${canEdit ? html`<td data-label="Weigh-in"><${WeighIn} spool=${s} onChanged=${onChanged} /></td>` : null}
    </tr>`)}</tbody>
  </table></div>`;
}

function WeighIn({ spool, onChanged }) {
  const [weight, setWeight] = useState('');
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    const value = Number(weight);
    if (!weight || !Number.isFinite(value) || value < 0) return;
    setBusy(true);
    try {
      await spoolman(`/spool/${spool.id}/measure`, { method: 'PUT', body: { weight: value }, request: 'SpoolmanMeasure' });
      toast(`Spool #${spool.id} weighed: ${value} g with its spool`, 'ok');
      setWeight('');
      onChanged();
    } catch (error) {
      if (error.status !== 401) toast(`Could not weigh spool #${spool.id}: ${error.message}`, 'error');
    } finally {
      setBusy(false);
    }
  }
  async function archive() {
    try {
      await spoolman(`/spool/${spool.id}`, { method: 'PATCH', body: { archived: true }, request: 'SpoolmanSpoolPatch' });
      toast(`Spool #${spool.id} archived`, 'ok');
      onChanged();
    } catch (error) {
      if (error.status !== 401) toast(`Could not archive spool #${spool.id}: ${error.message}`, 'error');
    }
  }
  return html`<form class="inline-form" onSubmit=${submit}>
    <input type="number" min="0" step="1" inputmode="decimal" class="input-small" aria-label=${`Gross weight of spool #${spool.id}, grams`}
      placeholder="g on scale" value=${weight} onInput=${(e) => setWeight(e.currentTarget.value)} data-testid="weigh-input" />
    <button type="submit" class="btn btn-small" disabled=${busy || !weight}>Weigh<${VisuallyHidden}> spool #${spool.id}<//></button>
    ${spool.remaining_g === 0 ? html`<button type="button" class="btn btn-small" onClick=${archive}>Archive<${VisuallyHidden}> spool #${spool.id}<//></button>` : null}
  </form>`;
}

function AddSpool({ onAdded }) {
  const [material, setMaterial] = useState('PLA');
  const [name, setName] = useState('');
  const [color, setColor] = useState('#ffffff');
  const [weight, setWeight] = useState('1000');
  const [tare, setTare] = useState('250');
  const [price, setPrice] = useState('');
  const [location, setLocation] = useState('');
  async function submit(event) {
    event.preventDefault();
    try {
      const filament = await spoolman('/filament', {
        method: 'POST',
        request: 'SpoolmanFilamentNew',
        resource: 'SpoolmanEntity',
        body: {
          name: name.trim() || `${material} ${color.toUpperCase()}`,
          material,
          density: DENSITY[material] ?? 1.24,
          diameter: 1.75,
          weight: Number(weight) || null,
          spool_weight: tare === '' ? null : Number(tare),
          price: price === '' ? null : Number(price),
          color_hex: color.replace('#', ''),
        },
      });
      await spoolman('/spool', {
        method: 'POST',
        request: 'SpoolmanSpoolNew',
        body: { filament_id: filament.id, location: location.trim() || null, price: null },
      });
      toast('Spool added', 'ok');
      setName('');
      setLocation('');
      onAdded();
    } catch (error) {
      if (error.status !== 401) toast(`Could not add the spool: ${error.message}`, 'error');
    }
  }
  return html`<form class="form-row" onSubmit=${submit} aria-label="Add a spool">
    <${Field} label="Material" control=${(id) => html`<select id=${id} value=${material} onChange=${(e) => setMaterial(e.currentTarget.value)}>
      ${Object.keys(DENSITY).map((m) => html`<option value=${m}>${m}</option>`)}</select>`} />
    <${Field} label="Name" hint="Optional" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} type="text" maxlength="64" value=${name} onInput=${(e) => setName(e.currentTarget.value)} />`} />
    <${Field} label="Colour" control=${(id) => html`<input id=${id} type="color" value=${color} onInput=${(e) => setColor(e.currentTarget.value)} />`} />
    <${Field} label="Filament, g" hint="When full" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} type="number" min="1" value=${weight} onInput=${(e) => setWeight(e.currentTarget.value)} />`} />
    <${Field} label="Empty spool, g" control=${(id) => html`<input id=${id} type="number" min="0" value=${tare} onInput=${(e) => setTare(e.currentTarget.value)} />`} />
    <${Field} label="Price" hint="Per spool" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} type="number" min="0" step="0.01" value=${price} onInput=${(e) => setPrice(e.currentTarget.value)} />`} />
    <${Field} label="Location" control=${(id) => html`<input id=${id} type="text" maxlength="64" value=${location} onInput=${(e) => setLocation(e.currentTarget.value)} />`} />
    <div class="field field-action"><button type="submit" class="btn btn-primary">Add spool</button></div>
  </form>`;
}

// Spoolman clients (admins): each a base URL with its own token, for Moonraker's
// `[spoolman] server:`, OctoPrint-Spoolman or Home Assistant; shown once, revocable.
function SpoolmanClients() {
  const clients = useQuery(() => api('/spoolman-clients', { resource: 'SpoolmanClientList' }), []);
  const [name, setName] = useState('');
  const [printer, setPrinter] = useState('');
  const [created, setCreated] = useState(null);
  const known = [...printers.value.values()].map((p) => p.value).sort((a, b) => printerName(a).localeCompare(printerName(b)));
  async function submit(event) {
    event.preventDefault();
    try {
      const answer = await api('/spoolman-clients', {
        method: 'POST',
        request: 'NewSpoolmanClient',
        body: { name: name.trim(), printer: printer || null },
        resource: 'SpoolmanClientCreated',
      });
      setCreated(`${location.origin}${answer.path}`);
      setName('');
      setPrinter('');
      clients.reload();
    } catch (error) {
      if (error.status !== 401) toast(`Could not add the client: ${error.message}`, 'error');
    }
  }
  async function revoke(client) {
    try {
      await api(`/spoolman-clients/${encodeURIComponent(client.id)}`, { method: 'DELETE' });
      toast(`${client.name} revoked`, 'ok');
      clients.reload();
    } catch (error) {
      if (error.status !== 401) toast(`Could not revoke: ${error.message}`, 'error');
    }
  }
  const list = clients.data?.clients ?? [];
  return html`
    ${list.length ? html`<div class="table-wrap"><table class="table stack" data-testid="spoolman-clients">
      <thead><tr><th scope="col">Client</th><th scope="col">Reports for</th><th scope="col">Last used</th><th scope="col">Status</th></tr></thead>
      <tbody>${list.map((c) => html`<tr key=${c.id}>
        <th scope="row" data-label="Client"><div>${c.name}<span class="muted"> · ${c.id}</span></div></th>
        <td data-label="Reports for">${c.printer ?? '—'}</td>
        <td data-label="Last used">${c.last_used_at ? relativeTime(c.last_used_at) : 'never'}</td>
        <td data-label="Status">${c.revoked ? html`<${Badge} kind="muted">revoked<//>` : html`<button type="button" class="btn btn-small btn-danger"
          onClick=${() => revoke(c)}>Revoke<${VisuallyHidden}> ${c.name}<//></button>`}</td>
      </tr>`)}</tbody>
    </table></div>` : html`<p class="muted">No Spoolman clients yet.</p>`}
    <form class="form-row" onSubmit=${submit} aria-label="Add a Spoolman client">
      <${Field} label="Client" hint="Such as voron-moonraker or home-assistant" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint}
        type="text" maxlength="64" required value=${name} onInput=${(e) => setName(e.currentTarget.value)} data-testid="spoolman-client-name" />`} />
      <${Field} label="Reports usage for" hint="A Moonraker using kitt as its Spoolman" control=${(id, hint) => html`<select id=${id}
        aria-describedby=${hint} value=${printer} onChange=${(e) => setPrinter(e.currentTarget.value)}>
        <option value="">no printer</option>
        ${known.map((p) => html`<option key=${p.id} value=${p.id}>${printerName(p)}</option>`)}
      </select>`} />
      <div class="field field-action"><button type="submit" class="btn btn-primary" data-testid="spoolman-client-add">Add client</button></div>
    </form>
    <div aria-live="polite">${created ? html`<div class="banner banner-ok" data-testid="spoolman-client-url">
      <p><strong>Its base URL, shown only once: </strong>configure the client with it (Moonraker: <code>[spoolman] server:</code>).</p>
      <${CodeBlock} text=${created} />
    </div>` : null}</div>`;
}
