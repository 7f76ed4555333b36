// One printer (`/printers/<id>`): live state, controls, cameras, alerts, charts, snapshots,
// timeline. The printer itself comes from the store; the rest is fetched for this page and
// extended live.

import { html, useState } from './lib.js';
import { api, path, query } from './api.js';
import { printers, fleet, me, commandResults, useQuery, useLive, useLiveList } from './store.js';
import { Badge, EmptyState, ErrorBox, Field, Loading, confirmDialog, toast, useTitle } from './ui.js';
import { clock, dateTime, duration, relativeTime, temperature } from './format.js';
import { ChartBox, LineChart } from './chart.js';
import { CameraPane, SnapshotTimeline, useSnapshots } from './camera.js';
import { hmsText, moduleName, severityKind, sortAlerts, printErrorText } from './hms.js';
import {
  printerName, StateBadge, AgentBadge, ProgressBar, progressSummary, AmsSwatches, isActive,
  describeEvent, eventKind, trayDescription, Swatch, triggerLabel, WikiLink,
} from './widgets.js';

const RANGES = [
  { key: '1h', label: '1 hour', ms: 3600e3 },
  { key: '6h', label: '6 hours', ms: 6 * 3600e3 },
  { key: '24h', label: '24 hours', ms: 24 * 3600e3 },
  { key: '7d', label: '7 days', ms: 7 * 24 * 3600e3 },
];
const TIMELINE_LIMIT = 50;
const SNAPSHOT_LIMIT = 60;
const ROLE_RANK = { viewer: 0, operator: 1, admin: 2 };

export default function PrinterPage({ params }) {
  const id = params[0];
  const signal = printers.value.get(id);
  const status = fleet.value;
  if (!signal) {
    if (!status.loaded) {
      return html`<div class="page"><h1>${id}</h1>${status.error ? html`<${ErrorBox} error=${status.error} />` : html`<${Loading}>Loading…<//>`}</div>`;
    }
    return html`<${UnknownPrinter} id=${id} />`;
  }
  return html`<${Printer} key=${id} id=${id} printer=${signal.value} />`;
}

function UnknownPrinter({ id }) {
  useTitle('Unknown printer');
  return html`<div class="page"><h1>Unknown printer</h1>
    <${EmptyState} title=${`No printer “${id}”`}><p><a href="/">Back to the fleet</a></p><//>
  </div>`;
}

function Printer({ id, printer }) {
  const name = printerName(printer);
  useTitle(name);
  const state = printer.state;
  const canCommand = (ROLE_RANK[me.value?.role] ?? 0) >= ROLE_RANK.operator;
  const snapshots = useSnapshots(id, state, SNAPSHOT_LIMIT);
  const readOnly = state?.control === 'read_only';
  return html`<div class="page">
    <p class="crumbs"><a href="/">← Fleet</a></p>
    <div class="page-head"><div>
      <h1>${name}</h1>
      <div class="head-badges">
        <${StateBadge} state=${state} />
        <${AgentBadge} online=${printer.agent_online} />
        ${state?.state === 'offline' ? html`<${Badge} kind="danger">printer unreachable<//>` : null}
        <span class="muted">${[printer.name ? printer.id : null, printer.model || state?.model, state?.firmware ? `firmware ${state.firmware}` : null].filter(Boolean).join(' · ')}</span>
      </div>
    </div></div>
    <div class="banner-slot">${readOnly ? html`<div class="banner banner-warn" role="status" data-testid="read-only-banner">
      <strong>Read-only: </strong>enable Developer Mode in LAN-only mode on the printer to allow commands from kitt.
    </div>` : null}</div>
    <div class="printer-grid">
      <section class="panel" aria-labelledby="now-h"><h2 id="now-h">Now</h2><div class="now"><${Now} printer=${printer} /></div></section>
      <section class="panel" aria-labelledby="controls-h"><h2 id="controls-h">Controls</h2>
        <${Controls} id=${id} printer=${printer} canCommand=${canCommand} />
      </section>
      <section class="panel panel-wide" aria-labelledby="cameras-h"><h2 id="cameras-h">Camera</h2>
        <${CameraPane} printerId=${id} printerLabel=${name} canSnapshot=${canCommand}
          agentOnline=${printer.agent_online} stills=${snapshots.list} onSnapshot=${snapshots.add} />
      </section>
      <section class="panel" aria-labelledby="alerts-h"><h2 id="alerts-h">Alerts</h2><div><${Alerts} state=${state} /></div></section>
      <section class="panel" aria-labelledby="ams-h"><h2 id="ams-h">Filament</h2><div><${Filament} state=${state} />
        <${Spools} id=${id} state=${state} canAssign=${canCommand} /></div></section>
      <section class="panel panel-wide" aria-labelledby="charts-h"><${History} id=${id} /></section>
      <section class="panel panel-wide" aria-labelledby="snapshots-h" data-testid="snapshot-timeline">
        <h2 id="snapshots-h">Snapshots</h2>
        <${SnapshotTimeline} snapshots=${snapshots} />
      </section>
      <section class="panel panel-wide" aria-labelledby="timeline-h">
        <div class="panel-head"><h2 id="timeline-h">Timeline</h2><a href=${`/events${query({ printer: id })}`}>All events of this printer</a></div>
        <${Timeline} id=${id} snapshots=${snapshots} />
      </section>
    </div>
  </div>`;
}

function Now({ printer }) {
  const state = printer.state;
  if (!state) return html`<p class="muted">No state received from this printer yet.</p>`;
  const active = isActive(state);
  const row = (label, value) => (value == null || value === '' ? null : html`<dt>${label}</dt><dd>${value}</dd>`);
  const fans = Object.entries(state.fans ?? {}).map(([fan, pct]) => `${fan.replace('_', ' ')} ${pct}%`).join(', ');
  const lights = Object.entries(state.lights ?? {}).map(([light, mode]) => `${light.replace(/_/g, ' ')} ${mode}`).join(', ');
  return html`
    ${state.message ? html`<p class="printer-message" role="status" data-testid="printer-message">${state.message}</p>` : null}
    <p class="job-name">${state.job_name || (active ? 'Unnamed job' : 'No job')}</p>
    ${state.stage?.name && active ? html`<p class="job-stage">${state.stage.name}</p>` : null}
    <${ProgressBar} percent=${state.progress_percent} />
    <p class="progress-meta">${progressSummary(state)}</p>
    <dl class="facts">
      ${row('Nozzle', temperature(state.nozzle_temp_c, state.nozzle_target_c))}
      ${row('Bed', temperature(state.bed_temp_c, state.bed_target_c))}
      ${state.chamber_temp_c != null ? row('Chamber', temperature(state.chamber_temp_c)) : null}
      ${(state.heaters ?? []).filter((h) => h.index > 0).map((h) => row(`${h.kind[0].toUpperCase()}${h.kind.slice(1)} ${h.index + 1}`, temperature(h.temp_c, h.target_c)))}
      ${state.klipper ? row('Klipper', state.klipper.klippy) : null}
      ${active && state.remaining_s != null ? row('Time left', duration(state.remaining_s)) : null}
      ${row('Speed', state.speed_level)}
      ${row('Fans', fans)}
      ${row('Lights', lights)}
      ${state.door_open != null ? row('Door', state.door_open ? 'open' : 'closed') : null}
      ${row('Control', state.control === 'available' ? 'commands allowed' : state.control === 'read_only' ? 'read-only' : 'unknown')}
      ${row('Last report', printer.received_at ?? printer.state_at ? `${relativeTime(printer.received_at ?? printer.state_at)} (${dateTime(printer.received_at ?? printer.state_at)})` : null)}
    </dl>`;
}

const SPEEDS = ['silent', 'standard', 'sport', 'ludicrous'];
// The percentages the levels stand for (a Klipper printer reports only its percentage).
const SPEED_PERCENT = { silent: 50, standard: 100, sport: 124, ludicrous: 166 };

function levelOf(percent) {
  if (percent == null) return null;
  return SPEEDS.reduce((best, level) => (Math.abs(SPEED_PERCENT[level] - percent) < Math.abs(SPEED_PERCENT[best] - percent) ? level : best));
}

function Controls({ id, printer, canCommand }) {
  const [sent, setSent] = useState([]);
  const [speed, setSpeed] = useState(null);
  const results = commandResults.value;
  const state = printer.state;
  const readOnly = state?.control === 'read_only';
  const unreachable = state?.state === 'offline' || !state;
  const blocked = !canCommand || readOnly || unreachable;
  const s = state?.state;
  const speedValue = speed ?? state?.speed_level ?? levelOf(state?.speed_percent) ?? 'standard';
  // The printer's own list of controls; a state stored before the hub knew of them has none,
  // and then the controls every printer had before (Bambu's) are offered.
  const offered = state?.controls?.length ? state.controls : ['pause', 'resume', 'stop', 'light', 'speed'];
  const has = (control) => offered.includes(control);

  async function send(body, label) {
    const key = `${Date.now()}-${Math.random()}`;
    const change = (fields) => setSent((list) => list.map((c) => (c.key === key ? { ...c, ...fields } : c)));
    setSent((list) => [{ key, label, at: Date.now(), id: null, status: 'sending…', kind: 'pending' }, ...list].slice(0, 8));
    try {
      const answer = await api(`${path.printer(id)}/commands`, { method: 'POST', body: { ...body, expires_in_s: 60 }, request: 'CommandRequest', resource: 'CommandAccepted' });
      change({ id: answer.id, status: answer.status === 'sent' ? 'sent; waiting for the printer…' : answer.status });
    } catch (error) {
      change({ status: `not sent: ${error.message}`, kind: 'error' });
    }
  }

  async function stop() {
    const ok = await confirmDialog({
      title: `Stop the print on ${printerName(printer)}?`,
      body: html`<p>The job is cancelled and cannot be resumed.</p>`,
      confirmLabel: 'Stop the print',
      danger: true,
    });
    if (ok) send({ action: 'stop' }, 'Stop');
  }

  // Both end any print and need the person's word, which the API requires too.
  async function firmwareRestart() {
    const ok = await confirmDialog({
      title: `Restart the firmware of ${printerName(printer)}?`,
      body: html`<p>Klipper restarts: a print in progress ends and the printer is unavailable for a few seconds.</p>`,
      confirmLabel: 'Restart the firmware',
      danger: true,
    });
    if (ok) send({ action: 'firmware_restart', confirmed: true }, 'Firmware restart');
  }

  async function emergencyStop() {
    const ok = await confirmDialog({
      title: `Emergency stop ${printerName(printer)}?`,
      body: html`<p>Heaters and motors stop at once and the print is lost. The printer stays stopped until its firmware is restarted.</p>`,
      confirmLabel: 'Stop the printer now',
      danger: true,
    });
    if (ok) send({ action: 'emergency_stop', confirmed: true }, 'Emergency stop');
  }

  let note = '';
  if (!canCommand) note = `Your role (${me.value?.role ?? 'viewer'}) can watch but not send commands.`;
  else if (readOnly) note = 'Commands are off: the printer is read-only.';
  else if (unreachable) note = 'Commands are off: the printer is not reachable.';
  else if (!printer.agent_online) note = 'The agent is offline: a command is held until it returns or expires (60 s).';

  return html`<div class="controls">
      <div class="button-row">
        ${has('pause') ? html`<button type="button" class="btn" data-testid="cmd-pause" disabled=${blocked || !['printing', 'preparing'].includes(s)}
          onClick=${() => send({ action: 'pause' }, 'Pause')}>Pause</button>` : null}
        ${has('resume') ? html`<button type="button" class="btn" data-testid="cmd-resume" disabled=${blocked || s !== 'paused'}
          onClick=${() => send({ action: 'resume' }, 'Resume')}>Resume</button>` : null}
        ${has('stop') ? html`<button type="button" class="btn btn-danger" data-testid="cmd-stop" disabled=${blocked || !['printing', 'preparing', 'paused'].includes(s)}
          onClick=${stop}>Stop</button>` : null}
      </div>
      ${has('firmware_restart') || has('emergency_stop') ? html`<div class="button-row">
        ${has('firmware_restart') ? html`<button type="button" class="btn" data-testid="cmd-firmware-restart" disabled=${blocked}
          onClick=${firmwareRestart}>Restart firmware</button>` : null}
        ${has('emergency_stop') ? html`<button type="button" class="btn btn-danger" data-testid="cmd-emergency-stop" disabled=${blocked}
          onClick=${emergencyStop}>Emergency stop</button>` : null}
      </div>` : null}
      ${has('light') ? html`<div class="button-row">
        <button type="button" class="btn" data-testid="cmd-light-on" disabled=${blocked}
          onClick=${() => send({ action: 'set_light', node: 'chamber_light', mode: 'on' }, 'Light on')}>Light on</button>
        <button type="button" class="btn" data-testid="cmd-light-off" disabled=${blocked}
          onClick=${() => send({ action: 'set_light', node: 'chamber_light', mode: 'off' }, 'Light off')}>Light off</button>
      </div>` : null}
      ${has('speed') ? html`<div class="button-row align-end">
        <${Field} label="Speed level" id="speed-level" control=${(controlId) => html`<select id=${controlId} disabled=${blocked}
          value=${speedValue} onChange=${(event) => setSpeed(event.currentTarget.value)}>
          ${SPEEDS.map((level) => html`<option value=${level}>${level}</option>`)}
        </select>`} />
        <button type="button" class="btn" data-testid="cmd-speed" disabled=${blocked}
          onClick=${() => send({ action: 'set_speed', level: speedValue }, `Speed: ${speedValue}`)}>Set speed</button>
      </div>` : null}
      <p class="hint" id="controls-note" hidden=${!note}>${note}</p>
    </div>
    <ol class="outcomes" aria-live="polite" aria-label="Command outcomes">
      ${sent.map((c) => {
        const outcome = c.id ? results.get(c.id) : null;
        const kind = outcome ? (outcome === 'succeeded' ? 'ok' : 'error') : c.kind;
        return html`<li key=${c.key} class=${`outcome outcome-${kind}`} data-testid="command-outcome">
          <span class="outcome-time">${clock(c.at)}</span>${' '}<strong>${c.label}</strong>: ${outcome ?? c.status}
        </li>`;
      })}
    </ol>`;
}

function Alerts({ state }) {
  const list = sortAlerts(state?.hms);
  if (!list.length && !state?.print_error) return html`<p class="muted">No active alerts.</p>`;
  return html`<div class="table-wrap"><table class="table stack">
    <thead><tr><th scope="col">Severity</th><th scope="col">Code</th><th scope="col">What it means</th></tr></thead>
    <tbody>
      ${state?.print_error ? html`<tr>
        <td data-label="Severity"><${Badge} kind="danger">print error<//></td>
        <td data-label="Code"><${WikiLink} code=${state.print_error} /></td>
        <td data-label="What it means">${printErrorText(state.print_error) ?? 'See the wiki page for this code.'}</td>
      </tr>` : null}
      ${list.map((alert) => html`<tr key=${alert.code}>
        <td data-label="Severity"><${Badge} kind=${severityKind(alert.severity)}>${alert.severity}<//></td>
        <td data-label="Code"><${WikiLink} code=${alert.code} /></td>
        <td data-label="What it means">${hmsText(alert.code) ?? `An alert from the ${moduleName(alert.module)}; see the wiki page for this code.`}</td>
      </tr>`)}
    </tbody>
  </table></div>`;
}

function Filament({ state }) {
  const units = state?.ams ?? [];
  if (!units.length && !state?.external_spool) return html`<p class="muted">No AMS or spool information.</p>`;
  return html`<${AmsSwatches} state=${state} />
    <ul class="tray-list">
      ${units.flatMap((unit) => (unit.trays ?? []).map((tray) => html`<li key=${`${unit.id}-${tray.slot}`}>
        <${Swatch} tray=${tray} /><span>AMS ${unit.id + 1} slot ${tray.slot + 1}: ${trayDescription(tray)}</span>
      </li>`))}
      ${units.filter((u) => u.humidity != null).map((unit) => html`<li key=${`h${unit.id}`} class="muted">
        AMS ${unit.id + 1}: humidity level ${unit.humidity}${unit.temp_c != null ? `, ${Math.round(unit.temp_c)} °C` : ''}
      </li>`)}
    </ul>`;
}

// Which spool is in each slot and how much is left on it; operators put a spool in a slot
// (for trays without RFID tags, and a Klipper printer's one spool).
function Spools({ id, state, canAssign }) {
  const inventory = useQuery(() => api('/inventory', { resource: 'InventoryView' }), [id]);
  useLive((message) => {
    if (message.type === 'job' && message.printer === id) inventory.reload();
  });
  const spools = inventory.data?.spools?.filter((s) => !s.archived) ?? [];
  const slots = [];
  for (const unit of state?.ams ?? []) for (const tray of unit.trays ?? []) slots.push({ unit: unit.id, slot: tray.slot });
  if (state?.external_spool || !slots.length) slots.push({ unit: null, slot: 0 });
  const label = (s) => (s.unit == null ? (state?.ams?.length ? 'External spool' : 'Spool') : `AMS ${s.unit + 1} slot ${s.slot + 1}`);
  const inSlot = (s) => spools.find((sp) => sp.loaded?.printer === id && (sp.loaded.unit ?? null) === s.unit && sp.loaded.slot === s.slot);
  async function assign(slot, value) {
    try {
      await api(`/printers/${encodeURIComponent(id)}/slots`, {
        method: 'PUT',
        request: 'SlotAssignment',
        body: { unit: slot.unit, slot: slot.slot, spool_id: value === '' ? null : Number(value) },
        resource: 'SlotList',
      });
      inventory.reload();
    } catch (error) {
      if (error.status !== 401) toast(`Could not change the spool: ${error.message}`, 'error');
    }
  }
  if (inventory.error) return html`<${ErrorBox} error=${inventory.error} />`;
  return html`<ul class="spool-slots" data-testid="spool-slots">${slots.map((s) => {
    const spool = inSlot(s);
    return html`<li key=${`${s.unit}-${s.slot}`}><span>${label(s)}:</span>
      ${spool ? html`<span data-testid="slot-spool">#${spool.id} ${spool.name}, ${spool.remaining_g == null ? 'remaining unknown' : `${Math.round(spool.remaining_g)} g left`}</span>` : html`<span class="muted">no spool known</span>`}
      ${canAssign ? html`<select aria-label=${`Spool in ${label(s)}`} value=${spool ? String(spool.id) : ''} onChange=${(e) => assign(s, e.currentTarget.value)}>
        <option value="">none</option>
        ${spools.map((sp) => html`<option value=${String(sp.id)}>#${sp.id} ${sp.name}${sp.remaining_g != null ? ` (${Math.round(sp.remaining_g)} g)` : ''}</option>`)}
      </select>` : null}
    </li>`;
  })}</ul>`;
}

// The charts: the last hour raw, anything older at the range's resolution (`auto` would pick
// raw for up to 6 h, more samples at 1 Hz than one answer holds). While they show "now",
// live states extend them.
function History({ id }) {
  const [rangeKey, setRangeKey] = useState(RANGES[1].key);
  const range = RANGES.find((r) => r.key === rangeKey) ?? RANGES[1];
  const telemetry = useQuery(async () => {
    const to = Date.now();
    const from = to - range.ms;
    const recentFrom = Math.max(from, to - 3600e3);
    const telemetryPath = `${path.printer(id)}/telemetry`;
    const requests = [api(`${telemetryPath}${query({ from: recentFrom, to, resolution: 'raw', limit: 20000 })}`, { resource: 'Telemetry' })];
    if (from < recentFrom) {
      const resolution = range.ms > 24 * 3600e3 ? '15m' : '1m';
      requests.unshift(api(`${telemetryPath}${query({ from, to: recentFrom - 1, resolution, limit: 20000 })}`, { resource: 'Telemetry' }));
    }
    let samples = [];
    try {
      samples = (await Promise.all(requests)).flatMap((answer) => answer.samples);
    } catch (error) {
      if (error.status === 401) throw error;
    }
    return { samples, to };
  }, [id, rangeKey]);

  useLive((message) => {
    if (message.type !== 'printer_state' || message.printer !== id) return;
    telemetry.update((data) => {
      if (!data || Date.now() - data.to >= range.ms) return data;
      const s = message.state;
      const to = Math.max(data.to, message.at);
      const samples = [...data.samples, {
        at: message.at, progress_percent: s.progress_percent,
        nozzle_temp_c: s.nozzle_temp_c, bed_temp_c: s.bed_temp_c, chamber_temp_c: s.chamber_temp_c,
      }].filter((sample) => sample.at >= to - range.ms);
      return { samples, to };
    });
  });

  const samples = telemetry.data?.samples ?? [];
  const to = telemetry.data?.to ?? Date.now();
  const from = to - range.ms;
  const gapMs = range.ms > 24 * 3600e3 ? 60 * 60e3 : 5 * 60e3;
  const label = (title, fields, unit) => {
    const last = samples.at(-1);
    const values = fields.filter(([, key]) => last?.[key] != null).map(([text, key]) => `${text} ${Math.round(last[key])}${unit}`);
    return `${title} over the last ${range.label}${values.length ? `; latest: ${values.join(', ')}` : '; no data'}`;
  };
  const points = (key) => samples.map((s) => [s.at, s[key]]);

  return html`
    <div class="panel-head"><h2 id="charts-h">History</h2>
      <${Field} label="Range" id="chart-range" control=${(controlId) => html`<select id=${controlId} value=${rangeKey}
        onChange=${(event) => setRangeKey(event.currentTarget.value)}>
        ${RANGES.map((r) => html`<option value=${r.key}>${r.label}</option>`)}
      </select>`} />
    </div>
    <h3>Temperatures</h3>
    <${ChartBox} chart=${(width) => html`<${LineChart} width=${width} from=${from} to=${to} unit="°" gapMs=${gapMs}
      series=${[
        { name: 'Nozzle', cls: 'series-nozzle', points: points('nozzle_temp_c') },
        { name: 'Bed', cls: 'series-bed', points: points('bed_temp_c') },
        { name: 'Chamber', cls: 'series-chamber', points: points('chamber_temp_c') },
      ]}
      label=${label('Temperatures', [['nozzle', 'nozzle_temp_c'], ['bed', 'bed_temp_c'], ['chamber', 'chamber_temp_c']], ' °C')} />`} />
    <ul class="legend">
      ${[['Nozzle', 'series-nozzle'], ['Bed', 'series-bed'], ['Chamber', 'series-chamber']]
        .map(([text, cls]) => html`<li><span class=${`legend-key ${cls}`}></span>${text}</li>`)}
    </ul>
    <h3>Progress</h3>
    <${ChartBox} chart=${(width) => html`<${LineChart} width=${width} from=${from} to=${to} yMin=${0} yMax=${100} unit="%"
      height=${150} gapMs=${gapMs} series=${[{ name: 'Progress', cls: 'series-progress', points: points('progress_percent') }]}
      label=${label('Progress', [['progress', 'progress_percent']], '%')} />`} />`;
}

function Timeline({ id, snapshots }) {
  const events = useLiveList({
    load: async () => {
      const answer = await api(`/events${query({ printer: id, limit: TIMELINE_LIMIT })}`, { resource: 'EventPage' });
      return { items: answer.events, more: null };
    },
    accept: (message) => (message.type === 'event' && message.printer === id
      ? { id: message.id, at: message.at, kind: message.event?.type, event: message.event, printer_id: message.printer }
      : null),
    key: (event) => event.id,
    limit: TIMELINE_LIMIT,
  }, [id]);
  if (events.error && !events.items) return html`<${ErrorBox} error=${events.error} />`;
  if (!events.items) return html`<ol class="timeline"><li class="muted">Loading…</li></ol>`;
  if (!events.items.length) return html`<ol class="timeline"><li class="muted">No events yet.</li></ol>`;
  return html`<ol class="timeline">
    ${events.items.map((event) => {
      const shot = event.id != null ? snapshots.forEvent(event.id) : null;
      return html`<li key=${event.id ?? event.liveKey} class=${`timeline-item timeline-${eventKind(event.kind)}`}>
        <time datetime=${new Date(event.at).toISOString()} title=${dateTime(event.at)}>${clock(event.at)}</time>${' '}<span>${describeEvent(event.event)}</span>
        ${shot ? html`<a class="timeline-snapshot" href=${shot.url} target="_blank" rel="noopener">
          <img class="thumb-img" loading="lazy" decoding="async" src=${shot.url}
            alt=${`Snapshot: ${triggerLabel(shot)}, ${clock(shot.captured_at)} (full size in a new tab)`} />
        </a>` : null}
      </li>`;
    })}
  </ol>`;
}
