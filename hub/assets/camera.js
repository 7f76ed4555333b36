// The printer page's camera parts: the camera pane (health, live view, take a snapshot) and
// the snapshot history grouped by job.
//
// Live view is an `<img>` on the hub's MJPEG stream: the hub starts the agent's stream for
// the first viewer and stops it when the last connection closes, so the image's `src` is
// removed (which closes the connection) whenever live view stops, the camera goes away or
// the page is left (`stop()`).

import { api } from './api.js';
import { h, replaceChildren, badge, visuallyHidden } from './ui.js';
import { clock, count, dateTime, relativeTime } from './format.js';
import { markLoading, triggerLabel } from './widgets.js';

const CAMERA_STATES = {
  idle: ['idle', 'neutral', 'An on-demand camera: it connects when a snapshot or live view needs it'],
  connecting: ['connecting', 'accent', 'The agent is connecting to the camera'],
  streaming: ['streaming', 'ok', 'Frames are arriving at the agent'],
  failed: ['failed', 'danger', 'The last attempt failed; the agent retries on its own'],
};

// The camera pane. `onSnapshot(row)` is called with each snapshot taken from here.
export function cameraPane({ printerId, printerLabel, canSnapshot, onSnapshot, onUnknownCamera }) {
  const list = h('div', { class: 'cameras' });
  const root = h('div', { 'data-testid': 'camera-pane' }, list);
  const cameras = new Map();
  const stills = new Map();
  let agentOnline = true;
  let loaded = false;

  function setCameras(rows) {
    loaded = true;
    const seen = new Set();
    for (const row of rows) {
      seen.add(row.camera_id);
      const camera = cameras.get(row.camera_id);
      if (camera) camera.row = row;
      else cameras.set(row.camera_id, buildCamera(row));
    }
    for (const [id, camera] of cameras) {
      if (seen.has(id)) continue;
      stopLive(camera);
      cameras.delete(id);
    }
    layout();
  }

  // The set of cameras changed: lay the pane out again. The camera elements are kept, so a
  // running live view goes on.
  function layout() {
    if (!cameras.size) {
      replaceChildren(list, h('p', { class: 'muted', 'data-testid': 'camera-empty' },
        loaded ? 'No camera has reported yet.' : 'Loading cameras…'));
      return;
    }
    const roots = [...cameras.values()].map((camera) => camera.root);
    // Moving a live image about is harmless, but there is no need to.
    if (roots.length !== list.children.length || roots.some((el, i) => list.children[i] !== el)) replaceChildren(list, roots);
    for (const camera of cameras.values()) {
      renderHealth(camera);
      renderView(camera);
    }
  }

  function buildCamera(row) {
    const camera = {
      row,
      live: null,
      still: null,
      stateSlot: h('span', {}),
      health: h('p', { class: 'camera-health', 'data-testid': 'camera-health' }),
      error: h('p', { class: 'camera-error', 'data-testid': 'camera-error' }),
      note: h('p', { class: 'hint' }),
      view: h('div', { class: 'camera-view' }),
      result: h('p', { class: 'camera-result', role: 'status', 'data-testid': 'camera-snapshot-result' }),
      source: h('p', { class: 'camera-source muted' }),
    };
    camera.toggle = h('button', {
      type: 'button', class: 'btn', 'aria-pressed': 'false', 'data-testid': 'camera-live-toggle',
      onclick: () => (camera.live ? stopLive(camera) : startLive(camera)),
    }, 'Watch live');
    camera.take = canSnapshot
      ? h('button', { type: 'button', class: 'btn', 'data-testid': 'camera-snapshot', onclick: () => takeSnapshot(camera) }, 'Take snapshot')
      : null;
    const titleId = `camera-${Math.random().toString(36).slice(2)}`;
    camera.root = h('article', { class: 'camera', 'data-testid': 'camera', 'data-camera-id': row.camera_id, 'aria-labelledby': titleId },
      camera.view,
      h('div', { class: 'camera-side' },
        h('div', { class: 'camera-head' }, h('h3', { class: 'camera-title', id: titleId }, `Camera ${row.camera_id}`), camera.stateSlot),
        camera.health,
        camera.error,
        camera.source,
        h('div', { class: 'button-row' }, camera.toggle, camera.take),
        camera.note,
        camera.result));
    return camera;
  }

  function renderHealth(camera) {
    const row = camera.row;
    const [label, kind, help] = CAMERA_STATES[row.state] ?? [row.state ?? 'unknown', 'muted', ''];
    const current = camera.stateSlot.firstChild;
    if (current?.dataset.state !== row.state) {
      replaceChildren(camera.stateSlot, badge(label, kind, { 'data-testid': 'camera-state', 'data-state': row.state, title: help }));
    }
    const parts = [];
    if (row.state === 'streaming' || row.fps > 0) parts.push(`${row.fps.toFixed(row.fps < 10 ? 1 : 0)} fps`);
    if (row.width > 0 && row.height > 0) parts.push(`${row.width}×${row.height}`);
    parts.push(row.last_frame_at != null ? `last frame ${relativeTime(row.last_frame_at)}` : 'no frame yet');
    if (row.live) parts.push('streaming live to the hub');
    if (row.snapshot_round_trip_ms != null) parts.push(`snapshot round trip ${count(row.snapshot_round_trip_ms)} ms`);
    camera.health.textContent = parts.join(' · ');
    camera.health.title = row.reported_at != null ? `Reported ${dateTime(row.reported_at)}` : '';
    camera.error.textContent = row.last_error ? `Last error: ${plainError(row.last_error)}` : '';
    camera.error.hidden = !row.last_error;
    camera.source.textContent = row.source ?? '';
    camera.source.hidden = !row.source;
    camera.toggle.disabled = !agentOnline && !camera.live;
    if (camera.take) camera.take.disabled = !agentOnline || camera.taking;
    camera.note.textContent = agentOnline ? '' : 'The agent is offline: this is the camera’s last report, and live view and snapshots wait for it.';
    camera.note.hidden = agentOnline;
  }

  function renderView(camera) {
    if (camera.live) {
      if (!camera.view.contains(camera.live)) {
        replaceChildren(camera.view, camera.live, h('span', { class: 'camera-live-badge', 'aria-hidden': 'true' }, 'Live'));
      }
      return;
    }
    const snapshot = stills.get(camera.row.camera_id);
    if (!snapshot) {
      replaceChildren(camera.view, h('p', { class: 'camera-placeholder' }, 'No snapshot yet'));
      return;
    }
    if (!camera.still) {
      camera.still = markLoading(h('img', { class: 'snapshot', decoding: 'async', 'data-testid': 'camera-still' }));
    }
    if (camera.still.dataset.snapshotId !== snapshot.id) {
      camera.still.dataset.snapshotId = snapshot.id;
      camera.still.alt = `Last snapshot of camera ${camera.row.camera_id} of ${printerLabel()}: ${triggerLabel(snapshot)} at ${clock(snapshot.captured_at)}`;
      camera.still.src = snapshot.url;
    }
    if (!camera.view.contains(camera.still)) replaceChildren(camera.view, camera.still);
  }

  function startLive(camera) {
    const id = camera.row.camera_id;
    const img = markLoading(h('img', {
      class: 'snapshot camera-live',
      alt: `Live view of camera ${id} of ${printerLabel()}`,
      'data-testid': 'camera-live',
    }));
    img.addEventListener('error', () => {
      if (camera.live !== img) return;
      stopLive(camera);
      camera.result.textContent = 'Live view stopped: the camera or its agent cannot be reached.';
      camera.result.className = 'camera-result camera-result-error';
    });
    img.src = `/api/v1/printers/${encodeURIComponent(printerId)}/cameras/${encodeURIComponent(id)}/live`;
    camera.live = img;
    camera.toggle.setAttribute('aria-pressed', 'true');
    camera.result.textContent = '';
    renderView(camera);
  }

  function stopLive(camera) {
    const img = camera.live;
    if (!img) return;
    camera.live = null;
    // Dropping the source closes the MJPEG connection; the hub stops the agent's stream
    // when the last viewer has gone.
    img.removeAttribute('src');
    img.remove();
    camera.toggle.setAttribute('aria-pressed', 'false');
    renderView(camera);
    renderHealth(camera);
  }

  async function takeSnapshot(camera) {
    const id = camera.row.camera_id;
    camera.taking = true;
    renderHealth(camera);
    camera.result.className = 'camera-result';
    camera.result.textContent = 'Taking a snapshot…';
    try {
      const answer = await api(`/printers/${encodeURIComponent(printerId)}/cameras/${encodeURIComponent(id)}/snapshot`, { method: 'POST' });
      camera.row.snapshot_round_trip_ms = answer.round_trip_ms;
      camera.row.snapshot_round_trip_at = Date.now();
      camera.result.className = 'camera-result camera-result-ok';
      replaceChildren(camera.result, `Snapshot taken in ${count(answer.round_trip_ms)} ms. `,
        answer.snapshot?.url
          ? h('a', { href: answer.snapshot.url, target: '_blank', rel: 'noopener' }, 'Open it', visuallyHidden(' (in a new tab)'))
          : null);
      if (answer.snapshot) onSnapshot(answer.snapshot);
    } catch (error) {
      camera.result.className = 'camera-result camera-result-error';
      camera.result.textContent = `No snapshot: ${error.message}`;
    } finally {
      camera.taking = false;
      renderHealth(camera);
    }
  }

  layout();

  return {
    root,
    setCameras,
    failed(error) {
      for (const camera of cameras.values()) stopLive(camera);
      cameras.clear();
      replaceChildren(list, h('p', { class: 'muted' }, `Cameras cannot be shown: ${error.message}`));
    },
    // A `camera` WebSocket message for this printer.
    onCamera(message) {
      const camera = cameras.get(message.camera);
      if (!camera) {
        onUnknownCamera();
        return;
      }
      const row = camera.row;
      row.state = message.state;
      row.fps = message.fps;
      row.last_frame_at = message.last_frame_at;
      row.last_error = message.last_error;
      row.live = message.live;
      row.reported_at = Date.now();
      renderHealth(camera);
    },
    // The newest snapshot of each camera, shown while live view is off.
    setStills(snapshots) {
      stills.clear();
      for (const snapshot of snapshots) {
        if (!stills.has(snapshot.camera_id)) stills.set(snapshot.camera_id, snapshot);
      }
      for (const camera of cameras.values()) renderView(camera);
    },
    setAgentOnline(online) {
      agentOnline = online;
      for (const camera of cameras.values()) renderHealth(camera);
    },
    // Keeps "last frame 5 seconds ago" current; called with the page's live updates.
    tick() {
      for (const camera of cameras.values()) renderHealth(camera);
    },
    stop() {
      for (const camera of cameras.values()) stopLive(camera);
    },
  };
}

// A camera's error as a sentence: "The last snapshot could not be taken: the camera is off."
export function plainError(text) {
  const notTaken = /^snapshot not taken: ([\s\S]*)$/.exec(text);
  const sentence = notTaken ? `The last snapshot could not be taken: ${notTaken[1]}` : text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

// The snapshot history, newest first, grouped by job. `onChange()` follows every change.
export function snapshotTimeline({ printerId, limit, onChange }) {
  const body = h('div', { class: 'snapshot-groups' }, h('p', { class: 'muted' }, 'Loading snapshots…'));
  let snapshots = [];
  const items = new Map();
  let enriching = null;
  let enrichAgain = false;

  function render() {
    if (!snapshots.length) {
      replaceChildren(body, h('p', { class: 'muted' }, 'No snapshots yet. Cameras take them as jobs start, pause, fail and finish, and while printing.'));
      return;
    }
    const groups = new Map();
    for (const snapshot of snapshots) {
      const key = snapshot.job_started_at != null || snapshot.job_name ? `${snapshot.job_started_at ?? ''}|${snapshot.job_name ?? ''}` : 'none';
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(snapshot);
    }
    const live = new Set(snapshots.map((s) => s.id));
    for (const id of items.keys()) if (!live.has(id)) items.delete(id);
    replaceChildren(body, [...groups.entries()].map(([key, list]) => h('section', { class: 'snapshot-group', 'data-testid': 'snapshot-group' },
      h('h3', { class: 'snapshot-job' }, key === 'none' ? 'No job' : jobTitle(list[0])),
      h('ul', { class: 'thumbs' }, list.map(item)))));
  }

  function jobTitle(snapshot) {
    const name = snapshot.job_name || 'Unnamed job';
    return snapshot.job_started_at != null ? [name, h('span', { class: 'muted snapshot-job-start' }, ` · started ${dateTime(snapshot.job_started_at)}`)] : name;
  }

  // One thumbnail, built once per snapshot (and again when its row is completed).
  function item(snapshot) {
    const key = `${snapshot.trigger}|${snapshot.layer}|${snapshot.camera_id}`;
    const cached = items.get(snapshot.id);
    if (cached?.key === key) return cached.el;
    const label = triggerLabel(snapshot);
    const el = h('li', { class: 'thumb', 'data-testid': 'snapshot-item', 'data-snapshot-id': snapshot.id },
      h('a', { class: 'thumb-link', href: snapshot.url, target: '_blank', rel: 'noopener' },
        h('img', {
          class: 'thumb-img', loading: 'lazy', decoding: 'async', src: snapshot.url,
          alt: `${label}, ${dateTime(snapshot.captured_at)}, camera ${snapshot.camera_id} (full size in a new tab)`,
        })),
      h('p', { class: 'thumb-caption' },
        h('span', { class: 'thumb-trigger', 'data-testid': 'snapshot-trigger' }, label),
        h('time', { datetime: new Date(snapshot.captured_at).toISOString(), title: dateTime(snapshot.captured_at) }, clock(snapshot.captured_at))));
    items.set(snapshot.id, { key, el });
    return el;
  }

  function merge(rows) {
    const byId = new Map(snapshots.map((s) => [s.id, s]));
    for (const row of rows) byId.set(row.id, { ...byId.get(row.id), ...row });
    snapshots = [...byId.values()]
      .sort((a, b) => b.captured_at - a.captured_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
      .slice(0, limit);
    render();
    onChange();
  }

  // Fetches the newest rows, which carry what a WebSocket message leaves out (job, layer,
  // event). Runs once more if more arrived meanwhile.
  async function enrich() {
    if (enriching) {
      enrichAgain = true;
      return;
    }
    enriching = api(`/printers/${encodeURIComponent(printerId)}/snapshots?limit=10`)
      .then((answer) => merge(answer.snapshots))
      .catch(() => {})
      .finally(() => {
        enriching = null;
        if (enrichAgain) {
          enrichAgain = false;
          enrich();
        }
      });
  }

  return {
    root: h('div', { 'data-testid': 'snapshot-list' }, body),
    // The answer of `GET /printers/{id}/snapshots`, or an error.
    set(rows) {
      snapshots = [];
      items.clear();
      merge(rows);
    },
    failed(error) {
      replaceChildren(body, h('p', { class: 'muted' }, `Snapshots cannot be shown: ${error.message}`));
    },
    add(row) {
      merge([row]);
    },
    // A `snapshot` WebSocket message: shown at once with what the printer's state suggests,
    // then completed from the API.
    onMessage(message, state) {
      const sameJob = snapshots.find((s) => s.job_name && s.job_name === state?.job_name);
      const printing = ['preparing', 'printing', 'paused'].includes(state?.state);
      if (!snapshots.some((s) => s.id === message.id)) {
        merge([{
          id: message.id,
          printer_id: message.printer,
          camera_id: message.camera,
          trigger: message.trigger,
          captured_at: message.captured_at,
          bytes: message.bytes,
          layer: message.trigger === 'layer' ? state?.layer ?? null : null,
          job_name: printing ? state?.job_name ?? null : null,
          job_started_at: printing ? sameJob?.job_started_at ?? null : null,
          event_id: null,
          url: `/api/v1/snapshots/${encodeURIComponent(message.id)}`,
        }]);
      }
      enrich();
    },
    list: () => snapshots,
    forEvent: (eventId) => snapshots.find((s) => s.event_id != null && s.event_id === eventId) ?? null,
  };
}
