// One printer (`/printers/<id>`): live state, controls, cameras, alerts, charts, snapshots,
// timeline.

import { api, query } from './api.js';
import { h, replaceChildren, errorBox, confirmDialog, coalesce, field, badge, emptyState } from './ui.js';
import { clock, dateTime, duration, relativeTime, temperature } from './format.js';
import { ChartPanel, lineChart } from './chart.js';
import { cameraPane, snapshotTimeline } from './camera.js';
import { hmsText, moduleName, severityKind, sortAlerts, wikiUrl, printErrorText } from './hms.js';
import {
  printerName, stateBadge, agentBadge, progressBar, progressSummary, amsSwatches, isActive,
  describeEvent, eventKind, trayDescription, swatch, triggerLabel,
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

export function mount(main, ctx) {
  const id = ctx.params[0];
  const canCommand = (ROLE_RANK[ctx.me?.role] ?? 0) >= ROLE_RANK.operator;
  let printer = null;
  let samples = [];
  let range = RANGES[1];
  let rangeTo = Date.now();
  let timeline = [];
  const commands = [];
  const results = new Map();
  let refreshing = null;

  // --- layout, built once; the live parts are filled in by render functions ---
  const title = h('h1', {}, id);
  const headBadges = h('div', { class: 'head-badges' });
  const banner = h('div', { class: 'banner-slot' });
  const now = h('div', { class: 'now' });
  const alerts = h('div', {});
  const ams = h('div', {});
  const timelineList = h('ol', { class: 'timeline' });
  const tempChart = h('div', { class: 'chart-box' });
  const progressChart = h('div', { class: 'chart-box' });
  const rangeSelect = h('select', { id: 'chart-range' },
    RANGES.map((r) => h('option', { value: r.key, selected: r === range }, r.label)));
  const outcomes = h('ol', { class: 'outcomes', 'aria-live': 'polite', 'aria-label': 'Command outcomes' });
  const controls = buildControls();
  const cameras = cameraPane({
    printerId: id,
    printerLabel: () => (printer ? printerName(printer) : id),
    canSnapshot: canCommand,
    onSnapshot: (row) => snapshots.add(row),
    onUnknownCamera: () => loadCameras(),
  });
  const snapshots = snapshotTimeline({
    printerId: id,
    limit: SNAPSHOT_LIMIT,
    onChange() {
      cameras.setStills(snapshots.list());
      renderTimeline();
    },
  });
  const page = h('div', { class: 'page' },
    h('p', { class: 'crumbs' }, h('a', { href: '/' }, '← Fleet')),
    h('div', { class: 'page-head' }, h('div', {}, title, headBadges)),
    banner,
    h('div', { class: 'printer-grid' },
      h('section', { class: 'panel', 'aria-labelledby': 'now-h' }, h('h2', { id: 'now-h' }, 'Now'), now),
      h('section', { class: 'panel', 'aria-labelledby': 'controls-h' }, h('h2', { id: 'controls-h' }, 'Controls'), controls.root, outcomes),
      h('section', { class: 'panel panel-wide', 'aria-labelledby': 'cameras-h' }, h('h2', { id: 'cameras-h' }, 'Camera'), cameras.root),
      h('section', { class: 'panel', 'aria-labelledby': 'alerts-h' }, h('h2', { id: 'alerts-h' }, 'Alerts'), alerts),
      h('section', { class: 'panel', 'aria-labelledby': 'ams-h' }, h('h2', { id: 'ams-h' }, 'Filament'), ams),
      h('section', { class: 'panel panel-wide', 'aria-labelledby': 'charts-h' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'charts-h' }, 'History'), field('Range', rangeSelect)),
        h('h3', {}, 'Temperatures'), tempChart,
        h('h3', {}, 'Progress'), progressChart),
      h('section', { class: 'panel panel-wide', 'aria-labelledby': 'snapshots-h', 'data-testid': 'snapshot-timeline' },
        h('h2', { id: 'snapshots-h' }, 'Snapshots'), snapshots.root),
      h('section', { class: 'panel panel-wide', 'aria-labelledby': 'timeline-h' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'timeline-h' }, 'Timeline'),
          h('a', { href: `/events${query({ printer: id })}` }, 'All events of this printer')),
        timelineList)));
  const body = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  main.append(body);

  const temps = new ChartPanel(tempChart, (width) => lineChart({
    series: [
      { name: 'Nozzle', cls: 'series-nozzle', points: samples.map((s) => [s.at, s.nozzle_temp_c]) },
      { name: 'Bed', cls: 'series-bed', points: samples.map((s) => [s.at, s.bed_temp_c]) },
      { name: 'Chamber', cls: 'series-chamber', points: samples.map((s) => [s.at, s.chamber_temp_c]) },
    ],
    from: rangeTo - range.ms, to: rangeTo, unit: '°', width, gapMs: gapFor(range),
    label: chartLabel('Temperatures', [['nozzle', 'nozzle_temp_c'], ['bed', 'bed_temp_c'], ['chamber', 'chamber_temp_c']], ' °C'),
  }));
  const progress = new ChartPanel(progressChart, (width) => lineChart({
    series: [{ name: 'Progress', cls: 'series-progress', points: samples.map((s) => [s.at, s.progress_percent]) }],
    from: rangeTo - range.ms, to: rangeTo, yMin: 0, yMax: 100, unit: '%', width, height: 150, gapMs: gapFor(range),
    label: chartLabel('Progress', [['progress', 'progress_percent']], '%'),
  }));
  const legend = h('ul', { class: 'legend' },
    [['Nozzle', 'series-nozzle'], ['Bed', 'series-bed'], ['Chamber', 'series-chamber']]
      .map(([name, cls]) => h('li', {}, h('span', { class: `legend-key ${cls}` }), name)));
  tempChart.after(legend);

  function chartLabel(name, fields, unit) {
    const last = samples.at(-1);
    const values = fields.filter(([, key]) => last?.[key] != null).map(([label, key]) => `${label} ${Math.round(last[key])}${unit}`);
    return `${name} over the last ${range.label}${values.length ? `; latest: ${values.join(', ')}` : '; no data'}`;
  }

  rangeSelect.addEventListener('change', () => {
    range = RANGES.find((r) => r.key === rangeSelect.value) ?? RANGES[1];
    loadTelemetry();
  });

  // --- controls ---
  function buildControls() {
    const button = (label, attrs, onclick, cls = 'btn') => h('button', { type: 'button', class: cls, ...attrs, onclick }, label);
    const pause = button('Pause', { 'data-testid': 'cmd-pause' }, () => send({ action: 'pause' }, 'Pause'));
    const resume = button('Resume', { 'data-testid': 'cmd-resume' }, () => send({ action: 'resume' }, 'Resume'));
    const stop = button('Stop', { 'data-testid': 'cmd-stop' }, async () => {
      const ok = await confirmDialog({
        title: `Stop the print on ${printer ? printerName(printer) : id}?`,
        body: h('p', {}, 'The job is cancelled and cannot be resumed.'),
        confirmLabel: 'Stop the print',
        danger: true,
      });
      if (ok) send({ action: 'stop' }, 'Stop');
    }, 'btn btn-danger');
    const lightOn = button('Light on', { 'data-testid': 'cmd-light-on' }, () => send({ action: 'set_light', node: 'chamber_light', mode: 'on' }, 'Light on'));
    const lightOff = button('Light off', { 'data-testid': 'cmd-light-off' }, () => send({ action: 'set_light', node: 'chamber_light', mode: 'off' }, 'Light off'));
    const speed = h('select', { id: 'speed-level' },
      ['silent', 'standard', 'sport', 'ludicrous'].map((level) => h('option', { value: level }, level)));
    const setSpeed = button('Set speed', { 'data-testid': 'cmd-speed' }, () => send({ action: 'set_speed', level: speed.value }, `Speed: ${speed.value}`));
    const note = h('p', { class: 'hint', id: 'controls-note' });
    const root = h('div', { class: 'controls' },
      h('div', { class: 'button-row' }, pause, resume, stop),
      h('div', { class: 'button-row' }, lightOn, lightOff),
      h('div', { class: 'button-row align-end' }, field('Speed level', speed), setSpeed),
      note);
    return { root, pause, resume, stop, lightOn, lightOff, speed, setSpeed, note, speedTouched: false };
  }
  controls.speed.addEventListener('change', () => { controls.speedTouched = true; });

  function updateControls() {
    const state = printer?.state;
    const readOnly = state?.control === 'read_only';
    const unreachable = state?.state === 'offline' || !state;
    const blocked = !canCommand || readOnly || unreachable;
    const s = state?.state;
    controls.pause.disabled = blocked || !['printing', 'preparing'].includes(s);
    controls.resume.disabled = blocked || s !== 'paused';
    controls.stop.disabled = blocked || !['printing', 'preparing', 'paused'].includes(s);
    for (const el of [controls.lightOn, controls.lightOff, controls.speed, controls.setSpeed]) el.disabled = blocked;
    if (state?.speed_level && !controls.speedTouched && document.activeElement !== controls.speed) controls.speed.value = state.speed_level;
    let note = '';
    if (!canCommand) note = `Your role (${ctx.me?.role ?? 'viewer'}) can watch but not send commands.`;
    else if (readOnly) note = 'Commands are off: the printer is read-only.';
    else if (unreachable) note = 'Commands are off: the printer is not reachable.';
    else if (!printer.agent_online) note = 'The agent is offline: a command is held until it returns or expires (60 s).';
    controls.note.textContent = note;
    controls.note.hidden = !note;
  }

  async function send(body, label) {
    const entry = { label, at: Date.now(), id: null, status: 'sending…', kind: 'pending' };
    commands.unshift(entry);
    commands.splice(8);
    renderOutcomes();
    try {
      const response = await api(`/printers/${encodeURIComponent(id)}/commands`, { method: 'POST', body: { ...body, expires_in_s: 60 } });
      entry.id = response.id;
      entry.status = response.status === 'sent' ? 'sent; waiting for the printer…' : response.status;
      const early = results.get(response.id);
      if (early) applyOutcome(entry, early);
    } catch (error) {
      entry.status = `not sent: ${error.message}`;
      entry.kind = 'error';
    }
    renderOutcomes();
  }

  function applyOutcome(entry, outcome) {
    entry.status = outcome;
    entry.kind = outcome === 'succeeded' ? 'ok' : 'error';
  }

  function renderOutcomes() {
    replaceChildren(outcomes, commands.map((c) => h('li', { class: `outcome outcome-${c.kind}`, 'data-testid': 'command-outcome' },
      h('span', { class: 'outcome-time' }, clock(c.at)), ' ',
      h('strong', {}, c.label), ': ', c.status)));
  }

  // --- live state ---
  function renderHead() {
    title.textContent = printerName(printer);
    ctx.setTitle(printerName(printer));
    const state = printer.state;
    replaceChildren(headBadges,
      stateBadge(state),
      agentBadge(printer.agent_online),
      state?.state === 'offline' ? badge('printer unreachable', 'danger') : null,
      h('span', { class: 'muted' }, [printer.name ? printer.id : null, printer.model || state?.model, state?.firmware ? `firmware ${state.firmware}` : null].filter(Boolean).join(' · ')));
    const readOnly = state?.control === 'read_only';
    replaceChildren(banner, readOnly
      ? h('div', { class: 'banner banner-warn', role: 'status', 'data-testid': 'read-only-banner' },
        h('strong', {}, 'Read-only: '), 'enable Developer Mode in LAN-only mode on the printer to allow commands from kitt.')
      : null);
  }

  function renderNow() {
    const state = printer.state;
    if (!state) {
      replaceChildren(now, h('p', { class: 'muted' }, 'No state received from this printer yet.'));
      return;
    }
    const active = isActive(state);
    const row = (label, value) => (value == null || value === '' ? null : [h('dt', {}, label), h('dd', {}, value)]);
    const fans = Object.entries(state.fans ?? {}).map(([name, pct]) => `${name.replace('_', ' ')} ${pct}%`).join(', ');
    const lights = Object.entries(state.lights ?? {}).map(([name, mode]) => `${name.replace(/_/g, ' ')} ${mode}`).join(', ');
    replaceChildren(now,
      h('p', { class: 'job-name' }, state.job_name || (active ? 'Unnamed job' : 'No job')),
      state.stage?.name && active ? h('p', { class: 'job-stage' }, state.stage.name) : null,
      progressBar(state.progress_percent),
      h('p', { class: 'progress-meta' }, progressSummary(state)),
      h('dl', { class: 'facts' },
        row('Nozzle', temperature(state.nozzle_temp_c, state.nozzle_target_c)),
        row('Bed', temperature(state.bed_temp_c, state.bed_target_c)),
        state.chamber_temp_c != null ? row('Chamber', temperature(state.chamber_temp_c)) : null,
        active && state.remaining_s != null ? row('Time left', duration(state.remaining_s)) : null,
        row('Speed', state.speed_level),
        row('Fans', fans),
        row('Lights', lights),
        state.door_open != null ? row('Door', state.door_open ? 'open' : 'closed') : null,
        row('Control', state.control === 'available' ? 'commands allowed' : state.control === 'read_only' ? 'read-only' : 'unknown'),
        row('Last report', printer.state_at ? `${relativeTime(printer.state_at)} (${dateTime(printer.state_at)})` : null)));
  }

  let lastAlerts = null;
  function renderAlerts() {
    const state = printer.state;
    const key = JSON.stringify([state?.hms ?? [], state?.print_error ?? null]);
    if (key === lastAlerts) return;
    lastAlerts = key;
    const list = sortAlerts(state?.hms);
    if (!list.length && !state?.print_error) {
      replaceChildren(alerts, h('p', { class: 'muted' }, 'No active alerts.'));
      return;
    }
    const link = (code) => h('a', { href: wikiUrl(code), target: '_blank', rel: 'noopener noreferrer' }, code,
      h('span', { class: 'visually-hidden' }, ' (opens the Bambu Lab wiki)'));
    replaceChildren(alerts, h('div', { class: 'table-wrap' }, h('table', { class: 'table stack' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Severity'), h('th', { scope: 'col' }, 'Code'), h('th', { scope: 'col' }, 'What it means'))),
      h('tbody', {},
        state?.print_error ? h('tr', {},
          h('td', { 'data-label': 'Severity' }, badge('print error', 'danger')),
          h('td', { 'data-label': 'Code' }, link(state.print_error)),
          h('td', { 'data-label': 'What it means' }, printErrorText(state.print_error) ?? 'See the wiki page for this code.')) : null,
        list.map((alert) => h('tr', {},
          h('td', { 'data-label': 'Severity' }, badge(alert.severity, severityKind(alert.severity))),
          h('td', { 'data-label': 'Code' }, link(alert.code)),
          h('td', { 'data-label': 'What it means' }, hmsText(alert.code) ?? `An alert from the ${moduleName(alert.module)}; see the wiki page for this code.`)))))));
  }

  function renderAms() {
    const state = printer.state;
    const units = state?.ams ?? [];
    if (!units.length && !state?.external_spool) {
      replaceChildren(ams, h('p', { class: 'muted' }, 'No AMS or spool information.'));
      return;
    }
    replaceChildren(ams, amsSwatches(state),
      h('ul', { class: 'tray-list' },
        units.flatMap((unit) => (unit.trays ?? []).map((tray) => h('li', {},
          swatch(tray), h('span', {}, `AMS ${unit.id + 1} slot ${tray.slot + 1}: ${trayDescription(tray)}`)))),
        units.filter((u) => u.humidity != null).map((unit) => h('li', { class: 'muted' },
          `AMS ${unit.id + 1}: humidity level ${unit.humidity}${unit.temp_c != null ? `, ${Math.round(unit.temp_c)} °C` : ''}`))));
  }

  const renderLive = coalesce(() => {
    if (!printer) return;
    renderHead();
    renderNow();
    renderAlerts();
    renderAms();
    updateControls();
    cameras.setAgentOnline(printer.agent_online);
    cameras.tick();
  });

  function renderTimeline() {
    if (!timeline.length) {
      replaceChildren(timelineList, h('li', { class: 'muted' }, 'No events yet.'));
      return;
    }
    replaceChildren(timelineList, timeline.map((event) => h('li', { class: `timeline-item timeline-${eventKind(event.kind)}` },
      h('time', { datetime: new Date(event.at).toISOString(), title: dateTime(event.at) }, clock(event.at)),
      ' ',
      h('span', {}, describeEvent(event.event)),
      eventSnapshot(event))));
  }

  // The snapshot a camera took for this event, if any, as a small link to the image.
  function eventSnapshot(event) {
    const shot = event.id != null ? snapshots.forEvent(event.id) : null;
    if (!shot) return null;
    return h('a', { class: 'timeline-snapshot', href: shot.url, target: '_blank', rel: 'noopener' },
      h('img', { class: 'thumb-img', loading: 'lazy', decoding: 'async', src: shot.url,
        alt: `Snapshot: ${triggerLabel(shot)}, ${clock(shot.captured_at)} (full size in a new tab)` }));
  }

  async function loadCameras() {
    try {
      const answer = await api(`/printers/${encodeURIComponent(id)}/cameras`);
      cameras.setCameras(answer.cameras);
    } catch (error) {
      if (error.status !== 401) cameras.failed(error);
    }
  }

  async function loadSnapshots() {
    try {
      const answer = await api(`/printers/${encodeURIComponent(id)}/snapshots${query({ limit: SNAPSHOT_LIMIT })}`);
      snapshots.set(answer.snapshots);
    } catch (error) {
      if (error.status !== 401) snapshots.failed(error);
    }
  }

  // --- data ---
  // The last hour raw, anything older at the range's resolution: `auto` would pick raw for
  // up to 6 h, more samples at 1 Hz than one answer holds (the oldest come first).
  async function loadTelemetry() {
    rangeTo = Date.now();
    const from = rangeTo - range.ms;
    const recentFrom = Math.max(from, rangeTo - 3600e3);
    const path = `/printers/${encodeURIComponent(id)}/telemetry`;
    const requests = [api(`${path}${query({ from: recentFrom, to: rangeTo, resolution: 'raw', limit: 20000 })}`)];
    if (from < recentFrom) {
      const resolution = range.ms > 24 * 3600e3 ? '15m' : '1m';
      requests.unshift(api(`${path}${query({ from, to: recentFrom - 1, resolution, limit: 20000 })}`));
    }
    try {
      const answers = await Promise.all(requests);
      samples = answers.flatMap((answer) => answer.samples);
    } catch (error) {
      if (error.status === 401) return;
      samples = [];
    }
    temps.render();
    progress.render();
  }

  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const [row, events] = await Promise.all([
          api(`/printers/${encodeURIComponent(id)}`),
          api(`/events${query({ printer: id, limit: TIMELINE_LIMIT })}`),
        ]);
        printer = row;
        timeline = events.events;
        if (!page.isConnected) replaceChildren(body, page);
        lastAlerts = null;
        renderLive();
        renderTimeline();
        await Promise.all([loadCameras(), loadSnapshots(), loadTelemetry()]);
      } catch (error) {
        if (error.status === 404) {
          ctx.setTitle('Unknown printer');
          replaceChildren(body, emptyState(`No printer “${id}”`, h('p', {}, h('a', { href: '/' }, 'Back to the fleet'))));
        } else if (error.status !== 401) {
          replaceChildren(body, errorBox(error));
        }
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  const redrawCharts = coalesce(() => {
    temps.render();
    progress.render();
  });

  function onLive(message) {
    if (message.type === 'agent') {
      if (printer && message.agent === printer.agent_id) {
        printer.agent_online = message.online;
        renderLive();
      }
      return;
    }
    if (message.printer !== id) return;
    if (message.type === 'printer_state') {
      if (!printer) {
        refresh();
        return;
      }
      printer.state = message.state;
      printer.state_at = message.at;
      renderLive();
      // Extend the charts while they show "now".
      if (Date.now() - rangeTo < range.ms) {
        const s = message.state;
        samples.push({ at: message.at, state: s.state, progress_percent: s.progress_percent, layer: s.layer,
          nozzle_temp_c: s.nozzle_temp_c, bed_temp_c: s.bed_temp_c, chamber_temp_c: s.chamber_temp_c });
        rangeTo = Math.max(rangeTo, message.at);
        while (samples.length && samples[0].at < rangeTo - range.ms) samples.shift();
        redrawCharts();
      }
    } else if (message.type === 'event') {
      timeline.unshift({ at: message.at, kind: message.event?.type, event: message.event, printer_id: message.printer });
      timeline.splice(TIMELINE_LIMIT);
      renderTimeline();
    } else if (message.type === 'camera') {
      cameras.onCamera(message);
    } else if (message.type === 'snapshot') {
      snapshots.onMessage(message, printer?.state);
    } else if (message.type === 'command_result') {
      results.set(message.command, message.outcome);
      const entry = commands.find((c) => c.id === message.command);
      if (entry) {
        applyOutcome(entry, message.outcome);
        renderOutcomes();
      }
    }
  }

  return {
    refresh,
    onLive,
    unmount() {
      cameras.stop();
      temps.disconnect();
      progress.disconnect();
    },
  };
}

// Lines break where samples are further apart than a few resolution steps.
function gapFor(range) {
  return range.ms > 24 * 3600e3 ? 60 * 60e3 : 5 * 60e3;
}
