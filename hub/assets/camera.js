// The printer page's camera parts: the camera pane (health, live view, take a snapshot),
// the snapshot history grouped by job, and `useSnapshots`, the data both show.
//
// Live view is an `<img>` on the hub's MJPEG stream: the hub starts the agent's stream for
// the first viewer and stops it when the last connection closes, so the image's `src` is
// removed (which closes the connection) whenever the live view goes away: stopped, the
// camera gone, or the page left.

import { html, useState, useRef, useLayoutEffect } from './lib.js';
import { api, path, query } from './api.js';
import { useQuery, useLive } from './store.js';
import { Badge, VisuallyHidden } from './ui.js';
import { clock, count, dateTime, relativeTime } from './format.js';
import { markLoaded, markFailed, triggerLabel, isActive } from './widgets.js';

const CAMERA_STATES = {
  idle: ['idle', 'neutral', 'An on-demand camera: it connects when a snapshot or live view needs it'],
  connecting: ['connecting', 'accent', 'The agent is connecting to the camera'],
  streaming: ['streaming', 'ok', 'Frames are arriving at the agent'],
  failed: ['failed', 'danger', 'The last attempt failed; the agent retries on its own'],
};

// The printer's snapshots, newest first (at most `limit`): fetched, then extended by
// `snapshot` messages (shown at once with what the printer's state suggests, then completed
// from the API, which knows the job, layer and event). `add(row)` adds one taken here.
export function useSnapshots(printerId, state, limit) {
  const latestState = useRef(state);
  latestState.current = state;
  const enriching = useRef({ busy: false, again: false });
  const fetched = useQuery(
    () => api(`${path.printer(printerId)}/snapshots${query({ limit })}`, { resource: 'SnapshotList' }),
    [printerId],
  );
  const [extra, setExtra] = useState([]);

  // Rows seen since the fetch (the newest `limit`), merged over the fetched ones below.
  function merge(rows) {
    setExtra((current) => {
      const byId = new Map(current.map((s) => [s.id, s]));
      for (const row of rows) byId.set(row.id, { ...byId.get(row.id), ...row });
      return [...byId.values()].sort((a, b) => b.captured_at - a.captured_at).slice(0, limit);
    });
  }

  async function enrich() {
    const flags = enriching.current;
    if (flags.busy) {
      flags.again = true;
      return;
    }
    flags.busy = true;
    try {
      const answer = await api(`${path.printer(printerId)}/snapshots${query({ limit: 10 })}`, { resource: 'SnapshotList' });
      merge(answer.snapshots);
    } catch {
      // The provisional row stays.
    } finally {
      flags.busy = false;
      if (flags.again) {
        flags.again = false;
        enrich();
      }
    }
  }

  useLive((message) => {
    if (message.type !== 'snapshot' || message.printer !== printerId) return;
    const current = latestState.current;
    const printing = isActive(current);
    const known = extra.concat(fetched.data?.snapshots ?? []);
    const sameJob = known.find((s) => s.job_name && s.job_name === current?.job_name);
    if (!known.some((s) => s.id === message.id)) {
      merge([{
        id: message.id,
        camera_id: message.camera,
        trigger: message.trigger,
        captured_at: message.captured_at,
        layer: message.trigger === 'layer' ? current?.layer ?? null : null,
        job_name: printing ? current?.job_name ?? null : null,
        job_started_at: printing ? sameJob?.job_started_at ?? null : null,
        event_id: null,
        url: path.snapshotImage(message.id),
      }]);
    }
    enrich();
  });

  // The fetched rows, completed and extended by the ones seen since.
  const byId = new Map((fetched.data?.snapshots ?? []).map((s) => [s.id, s]));
  for (const row of extra) byId.set(row.id, { ...byId.get(row.id), ...row });
  const snapshots = [...byId.values()]
    .sort((a, b) => b.captured_at - a.captured_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
    .slice(0, limit);
  return {
    list: snapshots,
    loaded: fetched.data != null,
    error: fetched.error,
    add: (row) => merge([row]),
    forEvent: (eventId) => snapshots.find((s) => s.event_id != null && s.event_id === eventId) ?? null,
  };
}

// The camera pane. `stills`: the snapshots (newest first); the newest of each camera is
// shown while live view is off. `onSnapshot(row)` is called with each snapshot taken here.
export function CameraPane({ printerId, printerLabel, canSnapshot, agentOnline, stills, onSnapshot }) {
  const cameras = useQuery(
    () => api(`${path.printer(printerId)}/cameras`, { resource: 'CameraList' }),
    [printerId],
  );
  useLive((message) => {
    if (message.type !== 'camera' || message.printer !== printerId) return;
    if (!cameras.data?.cameras.some((c) => c.camera_id === message.camera)) {
      cameras.reload();
      return;
    }
    cameras.update((data) => ({
      ...data,
      cameras: data.cameras.map((row) => (row.camera_id !== message.camera ? row : {
        ...row,
        state: message.state,
        fps: message.fps,
        last_frame_at: message.last_frame_at,
        last_error: message.last_error,
        live: message.live,
        source: message.source,
        width: message.width,
        height: message.height,
        reported_at: Date.now(),
      })),
    }));
  });

  let body;
  if (cameras.error && !cameras.data) {
    body = html`<p class="muted">Cameras cannot be shown: ${cameras.error.message}</p>`;
  } else if (!cameras.data?.cameras.length) {
    body = html`<p class="muted" data-testid="camera-empty">${cameras.data ? 'No camera has reported yet.' : 'Loading cameras…'}</p>`;
  } else {
    const newest = new Map();
    for (const snapshot of stills) if (!newest.has(snapshot.camera_id)) newest.set(snapshot.camera_id, snapshot);
    body = cameras.data.cameras.map((row) => html`<${Camera} key=${row.camera_id} row=${row} printerId=${printerId}
      printerLabel=${printerLabel} canSnapshot=${canSnapshot} agentOnline=${agentOnline}
      still=${newest.get(row.camera_id)} onSnapshot=${onSnapshot} />`);
  }
  return html`<div data-testid="camera-pane"><div class="cameras">${body}</div></div>`;
}

function Camera({ row, printerId, printerLabel, canSnapshot, agentOnline, still, onSnapshot }) {
  const [live, setLive] = useState(false);
  const [taking, setTaking] = useState(false);
  const [result, setResult] = useState(null);
  const [roundTrip, setRoundTrip] = useState(null);
  const titleId = `camera-${row.camera_id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const [label, kind, help] = CAMERA_STATES[row.state] ?? [row.state ?? 'unknown', 'muted', ''];
  const tripMs = roundTrip ?? row.snapshot_round_trip_ms;

  const parts = [];
  if (row.state === 'streaming' || row.fps > 0) parts.push(`${row.fps.toFixed(row.fps < 10 ? 1 : 0)} fps`);
  if (row.width > 0 && row.height > 0) parts.push(`${row.width}×${row.height}`);
  parts.push(row.last_frame_at != null ? `last frame ${relativeTime(row.last_frame_at)}` : 'no frame yet');
  if (row.live) parts.push('streaming live to the hub');
  if (tripMs != null) parts.push(`snapshot round trip ${count(tripMs)} ms`);

  function startLive() {
    setResult(null);
    setLive(true);
  }

  function liveFailed() {
    setLive(false);
    setResult({ kind: 'error', text: 'Live view stopped: the camera or its agent cannot be reached.' });
  }

  async function takeSnapshot() {
    setTaking(true);
    setResult({ kind: '', text: 'Taking a snapshot…' });
    try {
      const answer = await api(`${path.printer(printerId)}/cameras/${encodeURIComponent(row.camera_id)}/snapshot`,
        { method: 'POST', resource: 'SnapshotTaken' });
      setRoundTrip(answer.round_trip_ms);
      setResult({ kind: 'ok', text: `Snapshot taken in ${count(answer.round_trip_ms)} ms. `, url: answer.snapshot?.url });
      if (answer.snapshot) onSnapshot(answer.snapshot);
    } catch (error) {
      setResult({ kind: 'error', text: `No snapshot: ${error.message}` });
    } finally {
      setTaking(false);
    }
  }

  let view;
  if (live) {
    view = html`<${LiveView} src=${path.cameraLive(printerId, row.camera_id)}
      alt=${`Live view of camera ${row.camera_id} of ${printerLabel}`} onFail=${liveFailed} />
      <span class="camera-live-badge" aria-hidden="true">Live</span>`;
  } else if (still) {
    view = html`<img class="snapshot" decoding="async" data-testid="camera-still" data-snapshot-id=${still.id}
      alt=${`Last snapshot of camera ${row.camera_id} of ${printerLabel}: ${triggerLabel(still)} at ${clock(still.captured_at)}`}
      onLoad=${markLoaded} onError=${markFailed} src=${still.url} />`;
  } else {
    view = html`<p class="camera-placeholder">No snapshot yet</p>`;
  }

  return html`<article class="camera" data-testid="camera" data-camera-id=${row.camera_id} aria-labelledby=${titleId}>
    <div class="camera-view">${view}</div>
    <div class="camera-side">
      <div class="camera-head">
        <h3 class="camera-title" id=${titleId}>Camera ${row.camera_id}</h3>
        <span><${Badge} kind=${kind} data-testid="camera-state" data-state=${row.state} title=${help}>${label}<//></span>
      </div>
      <p class="camera-health" data-testid="camera-health" title=${row.reported_at != null ? `Reported ${dateTime(row.reported_at)}` : ''}>${parts.join(' · ')}</p>
      <p class="camera-error" data-testid="camera-error" hidden=${!row.last_error}>${row.last_error ? `Last error: ${plainError(row.last_error)}` : ''}</p>
      <p class="camera-source muted" hidden=${!row.source}>${row.source ?? ''}</p>
      <div class="button-row">
        <button type="button" class="btn" aria-pressed=${live ? 'true' : 'false'} data-testid="camera-live-toggle"
          disabled=${!agentOnline && !live} onClick=${() => (live ? setLive(false) : startLive())}>Watch live</button>
        ${canSnapshot ? html`<button type="button" class="btn" data-testid="camera-snapshot"
          disabled=${!agentOnline || taking} onClick=${takeSnapshot}>Take snapshot</button>` : null}
      </div>
      <p class="hint" hidden=${agentOnline}>${agentOnline ? '' : 'The agent is offline: this is the camera’s last report, and live view and snapshots wait for it.'}</p>
      <p class=${`camera-result${result?.kind ? ` camera-result-${result.kind}` : ''}`} role="status" data-testid="camera-snapshot-result">
        ${result?.text}${result?.url ? html`<a href=${result.url} target="_blank" rel="noopener">Open it<${VisuallyHidden}> (in a new tab)<//></a>` : null}
      </p>
    </div>
  </article>`;
}

// The MJPEG live view. Its `src` is removed before the element goes, which closes the
// connection (a detached image could otherwise keep loading).
function LiveView({ src, alt, onFail }) {
  const img = useRef(null);
  useLayoutEffect(() => {
    const element = img.current;
    return () => element.removeAttribute('src');
  }, []);
  function failed(event) {
    markFailed(event);
    onFail();
  }
  return html`<img class="snapshot camera-live" alt=${alt} data-testid="camera-live" ref=${img}
    onLoad=${markLoaded} onError=${failed} src=${src} />`;
}

// A camera's error as a sentence: "The last snapshot could not be taken: the camera is off."
export function plainError(text) {
  const notTaken = /^snapshot not taken: ([\s\S]*)$/.exec(text);
  const sentence = notTaken ? `The last snapshot could not be taken: ${notTaken[1]}` : text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

// The snapshot history, newest first, grouped by job. `snapshots`: what `useSnapshots` gives.
export function SnapshotTimeline({ snapshots }) {
  let body;
  if (snapshots.error && !snapshots.loaded) {
    body = html`<p class="muted">Snapshots cannot be shown: ${snapshots.error.message}</p>`;
  } else if (!snapshots.loaded) {
    body = html`<p class="muted">Loading snapshots…</p>`;
  } else if (!snapshots.list.length) {
    body = html`<p class="muted">No snapshots yet. Cameras take them as jobs start, pause, fail and finish, and while printing.</p>`;
  } else {
    const groups = new Map();
    for (const snapshot of snapshots.list) {
      const key = snapshot.job_started_at != null || snapshot.job_name ? `${snapshot.job_started_at ?? ''}|${snapshot.job_name ?? ''}` : 'none';
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(snapshot);
    }
    body = [...groups.entries()].map(([key, list]) => html`<section key=${key} class="snapshot-group" data-testid="snapshot-group">
      <h3 class="snapshot-job">${key === 'none' ? 'No job' : jobTitle(list[0])}</h3>
      <ul class="thumbs">${list.map((snapshot) => html`<${Thumb} key=${snapshot.id} snapshot=${snapshot} />`)}</ul>
    </section>`);
  }
  return html`<div data-testid="snapshot-list"><div class="snapshot-groups">${body}</div></div>`;
}

function jobTitle(snapshot) {
  const name = snapshot.job_name || 'Unnamed job';
  return snapshot.job_started_at != null
    ? html`${name}<span class="muted snapshot-job-start"> · started ${dateTime(snapshot.job_started_at)}</span>`
    : name;
}

function Thumb({ snapshot }) {
  const label = triggerLabel(snapshot);
  return html`<li class="thumb" data-testid="snapshot-item" data-snapshot-id=${snapshot.id}>
    <a class="thumb-link" href=${snapshot.url} target="_blank" rel="noopener">
      <img class="thumb-img" loading="lazy" decoding="async" src=${snapshot.url}
        alt=${`${label}, ${dateTime(snapshot.captured_at)}, camera ${snapshot.camera_id} (full size in a new tab)`} />
    </a>
    <p class="thumb-caption">
      <span class="thumb-trigger" data-testid="snapshot-trigger">${label}</span>
      <time datetime=${new Date(snapshot.captured_at).toISOString()} title=${dateTime(snapshot.captured_at)}>${clock(snapshot.captured_at)}</time>
    </p>
  </li>`;
}
