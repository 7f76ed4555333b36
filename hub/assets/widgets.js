// Pieces of printer display shared by the fleet and printer pages.

import { html, useState } from './lib.js';
import { api } from './api.js';
import { me, printers } from './store.js';
import { Badge, VisuallyHidden, toast } from './ui.js';
import { clock, dateTime, duration, temperature, stateLabel } from './format.js';
import { hmsText, moduleName, severityKind, sortAlerts, wikiUrl } from './hms.js';

const STATE_KIND = {
  idle: 'neutral',
  preparing: 'accent',
  printing: 'accent',
  paused: 'warn',
  finished: 'ok',
  failed: 'danger',
  offline: 'muted',
};

export function printerName(printer) {
  return printer.name || printer.id;
}

export function StateBadge({ state }) {
  const value = state?.state ?? null;
  return html`<${Badge} kind=${STATE_KIND[value] ?? 'muted'} data-testid="printer-state" data-state=${value ?? 'none'}>${stateLabel(value)}<//>`;
}

export function AgentBadge({ online }) {
  return online
    ? html`<${Badge} kind="ok" title="The edge agent is connected to the hub">agent online<//>`
    : html`<${Badge} kind="danger" title="The edge agent is not connected: the state shown may be old">agent offline<//>`;
}

export function ProgressBar({ percent, label = 'Print progress' }) {
  const value = Math.max(0, Math.min(100, Math.round(percent ?? 0)));
  return html`<div class="progress" role="progressbar" aria-label=${label} aria-valuemin="0" aria-valuemax="100"
      aria-valuenow=${value} aria-valuetext=${`${value}%`} data-testid="progress">
    <div class="progress-fill" style=${{ width: `${value}%` }}></div>
  </div>`;
}

export function isActive(state) {
  return ['preparing', 'printing', 'paused'].includes(state?.state);
}

// "42% · layer 10/120 · 1 h 2 min left"
export function progressSummary(state) {
  const parts = [`${Math.round(state?.progress_percent ?? 0)}%`];
  if (state?.layer != null && state?.total_layers) parts.push(`layer ${state.layer}/${state.total_layers}`);
  if (isActive(state) && state?.remaining_s != null) parts.push(`${duration(state.remaining_s)} left`);
  return parts.join(' · ');
}

export function Temperatures({ state }) {
  const row = (name, current, target) => html`<dt>${name}</dt><dd>${temperature(current, target)}</dd>`;
  return html`<dl class="temps">
    ${row('Nozzle', state?.nozzle_temp_c, state?.nozzle_target_c)}
    ${row('Bed', state?.bed_temp_c, state?.bed_target_c)}
    ${state?.chamber_temp_c != null ? row('Chamber', state.chamber_temp_c) : null}
  </dl>`;
}

export function trayDescription(tray) {
  const parts = [tray.material || 'empty'];
  if (tray.color) parts.push(tray.color);
  if (tray.remain_percent != null && tray.remain_percent >= 0) parts.push(`${tray.remain_percent}% left`);
  return parts.join(', ');
}

export function Swatch({ tray, active }) {
  const color = tray.color && /^#[0-9a-fA-F]{6,8}$/.test(tray.color) ? { backgroundColor: tray.color.slice(0, 7) } : undefined;
  return html`<span class=${`swatch${tray.color ? '' : ' swatch-empty'}${active ? ' swatch-active' : ''}`}
    title=${trayDescription(tray)} style=${color}></span>`;
}

function isActiveTray(state, unit, tray) {
  const active = state?.active_tray;
  return Boolean(active && typeof active === 'object' && active.ams === unit.id && active.slot === tray.slot);
}

// One row of swatches per AMS unit, plus the external spool.
export function AmsSwatches({ state }) {
  const units = state?.ams ?? [];
  if (!units.length && !state?.external_spool) return null;
  return html`<div class="ams">
    ${units.map((unit) => html`<div class="ams-unit" key=${unit.id}>
      <span class="ams-label">AMS ${unit.id + 1}</span>
      <ul class="swatches" aria-label=${`AMS ${unit.id + 1} trays`}>
        ${(unit.trays ?? []).map((tray) => html`<li key=${tray.slot}>
          <${Swatch} tray=${tray} active=${isActiveTray(state, unit, tray)} />
          <${VisuallyHidden}>Slot ${tray.slot + 1}: ${trayDescription(tray)}${isActiveTray(state, unit, tray) ? ' (in use)' : ''}<//>
        </li>`)}
      </ul>
    </div>`)}
    ${state?.external_spool ? html`<div class="ams-unit">
      <span class="ams-label">Spool</span>
      <ul class="swatches" aria-label="External spool">
        <li><${Swatch} tray=${state.external_spool} active=${state.active_tray === 'external'} />
          <${VisuallyHidden}>External spool: ${trayDescription(state.external_spool)}<//></li>
      </ul>
    </div>` : null}
  </div>`;
}

// A link to the Bambu Lab wiki page of an HMS or print error code.
export function WikiLink({ code }) {
  return html`<a href=${wikiUrl(code)} target="_blank" rel="noopener noreferrer">${code}<${VisuallyHidden}> (opens the Bambu Lab wiki)<//></a>`;
}

// A compact list of active HMS alerts, most severe first.
export function AlertList({ state, limit = Infinity }) {
  const alerts = sortAlerts(state?.hms);
  if (!alerts.length && !state?.print_error) return null;
  return html`<ul class="alerts" aria-label="Active alerts">
    ${state?.print_error ? html`<li class="alert alert-danger">
      <span class="alert-severity">print error</span>${' '}<${WikiLink} code=${state.print_error} />
    </li>` : null}
    ${alerts.slice(0, limit).map((alert) => html`<li key=${alert.code} class=${`alert alert-${severityKind(alert.severity)}`}>
      <span class="alert-severity">${alert.severity}</span>${' '}<${WikiLink} code=${alert.code} />${' '}<span class="alert-text">${hmsText(alert.code) ?? `Alert from the ${moduleName(alert.module)}.`}</span>
    </li>`)}
    ${alerts.length > limit ? html`<li class="alert alert-more">and ${alerts.length - limit} more</li>` : null}
  </ul>`;
}

// Marks an image with `data-loaded` ("true" or "error") as it loads, so tests and styles
// can tell; for an MJPEG stream, once its first frame is in.
export function markLoaded(event) {
  event.currentTarget.dataset.loaded = 'true';
}

export function markFailed(event) {
  event.currentTarget.dataset.loaded = 'error';
}

// The printer's newest camera snapshot (`printer.latest_snapshot`) as a lazy 16:9 image, or
// nothing. A newer snapshot changes the same element's `src`, which keeps the old picture
// until the new one has loaded.
export function SnapshotImage({ printer }) {
  const latest = printer.latest_snapshot;
  if (!latest?.url) return null;
  return html`<img class="snapshot" loading="lazy" decoding="async" data-testid="fleet-snapshot"
    data-snapshot-id=${latest.id}
    alt=${`Camera snapshot of ${printerName(printer)} at ${clock(latest.captured_at)} (${triggerLabel(latest)})`}
    title=${`${triggerLabel(latest)} · ${dateTime(latest.captured_at)}`}
    onLoad=${markLoaded} onError=${markFailed} src=${latest.url} />`;
}

const TRIGGERS = {
  job_started: 'Job started',
  first_layer_done: 'First layer',
  interval: 'Interval',
  paused: 'Paused',
  failed: 'Failed',
  finished: 'Finished',
  requested: 'Requested',
};

// Why a snapshot was taken, in words: "Job started", "Layer 20", "Interval", "Requested".
export function triggerLabel(snapshot) {
  if (snapshot?.trigger === 'layer') return snapshot.layer != null ? `Layer ${snapshot.layer}` : 'Layer change';
  return TRIGGERS[snapshot?.trigger] ?? snapshot?.trigger ?? 'Snapshot';
}

// Text for an event, from its JSON (`event.type` and fields).
export function describeEvent(event) {
  const tray = (ref) => (ref == null ? 'none' : ref === 'external' ? 'external spool' : `AMS ${ref.ams + 1} slot ${ref.slot + 1}`);
  const job = (name) => (name ? `“${name}”` : 'the job');
  switch (event?.type) {
    case 'state_changed': return `${stateLabel(event.from)} → ${stateLabel(event.to)}`;
    case 'job_started': return `Started ${job(event.job_name)}${event.total_layers ? ` (${event.total_layers} layers)` : ''}`;
    case 'job_paused': return `Paused${event.reason?.name ? `: ${event.reason.name}` : ''}`;
    case 'job_resumed': return 'Resumed';
    case 'job_finished': return `Finished ${job(event.job_name)}`;
    case 'job_cancelled': return `Cancelled ${job(event.job_name)}`;
    case 'job_failed': {
      const codes = [event.error?.print_error, ...(event.error?.hms ?? []).map((a) => a.code)].filter(Boolean);
      return `Failed ${job(event.job_name)}${codes.length ? `: ${codes.join(', ')}` : ''}`;
    }
    case 'hms_raised': return `Alert ${event.hms?.code} (${event.hms?.severity})${hmsText(event.hms?.code) ? `: ${hmsText(event.hms.code)}` : ''}`;
    case 'hms_cleared': return `Alert cleared: ${event.hms?.code}`;
    case 'print_error_raised': return `Print error ${event.print_error}`;
    case 'print_error_cleared': return `Print error cleared: ${event.print_error}`;
    case 'active_tray_changed': return `Filament: ${tray(event.from)} → ${tray(event.to)}`;
    case 'tray_changed': return `AMS ${(event.ams ?? 0) + 1} slot ${(event.tray?.slot ?? 0) + 1}: ${trayDescription(event.tray ?? {})}`;
    case 'printer_reachable': return 'Printer reachable';
    case 'printer_unreachable': return `Printer unreachable${event.reason ? `: ${event.reason}` : ''}`;
    case 'control_changed': return `Control: ${event.from} → ${event.to}`;
    case 'low_stock': return `Low stock: ${event.reason ?? 'a filament is running out'}`;
    case 'spool_tagged': return `Tagged spool in ${event.ams == null ? 'the external holder' : `AMS ${event.ams + 1} slot ${(event.slot ?? 0) + 1}`}: ${event.product ?? 'unknown product'}`;
    case 'filament_used': return `Filament used: ${event.millimetres != null ? `${(event.millimetres / 1000).toFixed(2)} m` : 'unknown'}`;
    default: return event?.type ?? 'event';
  }
}

export const EVENT_KINDS = [
  'state_changed', 'job_started', 'job_paused', 'job_resumed', 'job_finished', 'job_cancelled',
  'job_failed', 'hms_raised', 'hms_cleared', 'print_error_raised', 'print_error_cleared',
  'active_tray_changed', 'tray_changed', 'printer_reachable', 'printer_unreachable', 'control_changed',
  'low_stock', 'filament_used', 'spool_tagged',
];

export function eventKind(kind) {
  if (['job_failed', 'hms_raised', 'print_error_raised', 'printer_unreachable'].includes(kind)) return 'danger';
  if (['job_paused', 'job_cancelled', 'control_changed', 'low_stock'].includes(kind)) return 'warn';
  if (['job_finished', 'printer_reachable', 'hms_cleared', 'print_error_cleared'].includes(kind)) return 'ok';
  if (['job_started', 'job_resumed'].includes(kind)) return 'accent';
  return 'neutral';
}

// The printer's build plate: "Plate clear", one tap after each job (operators), or who
// confirmed it. Nothing from the queue starts on a plate nobody confirmed clear.
export function PlateControl({ printer }) {
  const [busy, setBusy] = useState(false);
  const plate = printer.plate;
  const canConfirm = me.value?.role === 'operator' || me.value?.role === 'admin';
  const state = printer.state?.state;
  if (plate?.clear) {
    return html`<p class="plate plate-clear" data-testid="plate-state" data-clear="true">
      <${Badge} kind="ok">plate clear<//>
      ${plate.confirmed_by ? html` <span class="muted">confirmed by ${plate.confirmed_by}</span>` : null}
    </p>`;
  }
  const idle = state === 'idle' || state === 'finished' || state === 'failed';
  async function confirm() {
    setBusy(true);
    try {
      const answer = await api(`/printers/${encodeURIComponent(printer.id)}/plate-clear`, { method: 'POST', resource: 'PlateState' });
      const entry = printers.value.get(printer.id);
      if (entry) entry.value = { ...entry.value, plate: answer };
    } catch (error) {
      if (error.status !== 401) toast(error.message, 'error');
    } finally {
      setBusy(false);
    }
  }
  return html`<p class="plate" data-testid="plate-state" data-clear="false">
    <${Badge} kind="warn">plate not confirmed<//>
    ${canConfirm && idle ? html` <button type="button" class="btn btn-small" data-testid="plate-clear" disabled=${busy}
      onClick=${confirm} aria-label=${`Confirm the plate of ${printerName(printer)} is clear`}>Plate clear</button>` : null}
  </p>`;
}
