// Pieces of printer display shared by the fleet and printer pages.

import { h, badge, visuallyHidden } from './ui.js';
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

export function stateBadge(state) {
  const value = state?.state ?? null;
  return badge(stateLabel(value), STATE_KIND[value] ?? 'muted', { 'data-testid': 'printer-state', 'data-state': value ?? 'none' });
}

export function agentBadge(online) {
  return online
    ? badge('agent online', 'ok', { title: 'The edge agent is connected to the hub' })
    : badge('agent offline', 'danger', { title: 'The edge agent is not connected: the state shown may be old' });
}

export function progressBar(percent, label = 'Print progress') {
  const value = Math.max(0, Math.min(100, Math.round(percent ?? 0)));
  const bar = h('div', { class: 'progress-fill' });
  bar.style.width = `${value}%`;
  return h('div', {
    class: 'progress',
    role: 'progressbar',
    'aria-label': label,
    'aria-valuemin': 0,
    'aria-valuemax': 100,
    'aria-valuenow': value,
    'aria-valuetext': `${value}%`,
    'data-testid': 'progress',
  }, bar);
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

export function temperatures(state) {
  const row = (name, current, target) => [h('dt', {}, name), h('dd', {}, temperature(current, target))];
  return h('dl', { class: 'temps' },
    row('Nozzle', state?.nozzle_temp_c, state?.nozzle_target_c),
    row('Bed', state?.bed_temp_c, state?.bed_target_c),
    state?.chamber_temp_c != null ? row('Chamber', state.chamber_temp_c) : null);
}

export function trayDescription(tray) {
  const parts = [tray.material || 'empty'];
  if (tray.color) parts.push(tray.color);
  if (tray.remain_percent != null && tray.remain_percent >= 0) parts.push(`${tray.remain_percent}% left`);
  return parts.join(', ');
}

export function swatch(tray, active) {
  const el = h('span', { class: `swatch${tray.color ? '' : ' swatch-empty'}${active ? ' swatch-active' : ''}`, title: trayDescription(tray) });
  if (tray.color && /^#[0-9a-fA-F]{6,8}$/.test(tray.color)) el.style.backgroundColor = tray.color.slice(0, 7);
  return el;
}

function isActiveTray(state, unit, tray) {
  const active = state?.active_tray;
  return active && typeof active === 'object' && active.ams === unit.id && active.slot === tray.slot;
}

// One row of swatches per AMS unit, plus the external spool.
export function amsSwatches(state) {
  const units = state?.ams ?? [];
  if (!units.length && !state?.external_spool) return null;
  return h('div', { class: 'ams' },
    units.map((unit) => h('div', { class: 'ams-unit' },
      h('span', { class: 'ams-label' }, `AMS ${unit.id + 1}`),
      h('ul', { class: 'swatches', 'aria-label': `AMS ${unit.id + 1} trays` },
        (unit.trays ?? []).map((tray) => h('li', {},
          swatch(tray, isActiveTray(state, unit, tray)),
          visuallyHidden(`Slot ${tray.slot + 1}: ${trayDescription(tray)}${isActiveTray(state, unit, tray) ? ' (in use)' : ''}`)))))),
    state?.external_spool ? h('div', { class: 'ams-unit' },
      h('span', { class: 'ams-label' }, 'Spool'),
      h('ul', { class: 'swatches', 'aria-label': 'External spool' },
        h('li', {}, swatch(state.external_spool, state.active_tray === 'external'),
          visuallyHidden(`External spool: ${trayDescription(state.external_spool)}`)))) : null);
}

// A compact list of active HMS alerts, most severe first.
export function alertList(state, { limit = Infinity } = {}) {
  const alerts = sortAlerts(state?.hms);
  if (!alerts.length && !state?.print_error) return null;
  const items = alerts.slice(0, limit).map((alert) => h('li', { class: `alert alert-${severityKind(alert.severity)}` },
    h('span', { class: 'alert-severity' }, alert.severity),
    ' ',
    h('a', { href: wikiUrl(alert.code), target: '_blank', rel: 'noopener noreferrer' }, alert.code,
      visuallyHidden(' (opens the Bambu Lab wiki)')),
    ' ',
    h('span', { class: 'alert-text' }, hmsText(alert.code) ?? `Alert from the ${moduleName(alert.module)}.`)));
  if (alerts.length > limit) items.push(h('li', { class: 'alert alert-more' }, `and ${alerts.length - limit} more`));
  if (state?.print_error) {
    items.unshift(h('li', { class: 'alert alert-danger' },
      h('span', { class: 'alert-severity' }, 'print error'), ' ',
      h('a', { href: wikiUrl(state.print_error), target: '_blank', rel: 'noopener noreferrer' }, state.print_error,
        visuallyHidden(' (opens the Bambu Lab wiki)'))));
  }
  return h('ul', { class: 'alerts', 'aria-label': 'Active alerts' }, items);
}

// The printer's newest camera snapshot (`printer.latest_snapshot`) as a lazy 16:9 image, or
// null when it has none. `data-loaded` is set once the image has loaded (or failed), so
// tests and styles can tell; changing `src` later keeps the old picture until the new loads.
export function snapshot(printer) {
  const latest = printer.latest_snapshot;
  if (!latest?.url) return null;
  const img = h('img', { class: 'snapshot', loading: 'lazy', decoding: 'async', 'data-testid': 'fleet-snapshot' });
  markLoading(img);
  setSnapshot(img, printer);
  return img;
}

// Points a `snapshot()` image at the printer's newest snapshot; a no-op when it shows it.
export function setSnapshot(img, printer) {
  const latest = printer.latest_snapshot;
  if (!latest?.url || img.dataset.snapshotId === latest.id) return;
  img.dataset.snapshotId = latest.id;
  img.alt = `Camera snapshot of ${printerName(printer)} at ${clock(latest.captured_at)} (${triggerLabel(latest)})`;
  img.title = `${triggerLabel(latest)} · ${dateTime(latest.captured_at)}`;
  img.src = latest.url;
}

// Sets `data-loaded` to "true" or "error" as an image loads; for an MJPEG stream, once its
// first frame is in.
export function markLoading(img) {
  img.addEventListener('load', () => { img.dataset.loaded = 'true'; });
  img.addEventListener('error', () => { img.dataset.loaded = 'error'; });
  return img;
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
    default: return event?.type ?? 'event';
  }
}

export const EVENT_KINDS = [
  'state_changed', 'job_started', 'job_paused', 'job_resumed', 'job_finished', 'job_cancelled',
  'job_failed', 'hms_raised', 'hms_cleared', 'print_error_raised', 'print_error_cleared',
  'active_tray_changed', 'tray_changed', 'printer_reachable', 'printer_unreachable', 'control_changed',
];

export function eventKind(kind) {
  if (['job_failed', 'hms_raised', 'print_error_raised', 'printer_unreachable'].includes(kind)) return 'danger';
  if (['job_paused', 'job_cancelled', 'control_changed'].includes(kind)) return 'warn';
  if (['job_finished', 'printer_reachable', 'hms_cleared', 'print_error_cleared'].includes(kind)) return 'ok';
  if (['job_started', 'job_resumed'].includes(kind)) return 'accent';
  return 'neutral';
}
