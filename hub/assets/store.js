// The dashboard's one client-side store: the REST snapshot of the fleet and agents, kept
// current by the WebSocket, as signals that pages render from.
//
// - The WebSocket opens first, then the snapshot is fetched, so nothing between the two is
//   lost. The socket reconnects with backoff, resuming after the last message's cursor (on
//   any hub replica): the hub sends what was missed first. After `lagged` (it could not), or
//   a reconnect without a cursor, the store fetches the snapshot again and bumps `epoch`,
//   which makes every page query (`useQuery`, `useLiveList`) fetch again.
// - Each printer is its own signal inside `printers`; the map itself changes only when
//   printers come or go. A `printer_state` message therefore re-renders the components that
//   read that one printer, and Preact keeps their elements.
// - A newer state never gives way to an older one: a snapshot answer that raced a live
//   update keeps the live state (newest by `received_at`, the hub's clock) and the newest
//   camera snapshot.
// - Page-specific data (an event query, a printer's cameras, telemetry) is fetched by the
//   page through `useQuery`/`useLiveList`, which re-run on `epoch`, and extended with
//   `useLive` handlers; the messages they get are shaped (`schema.js`) like everything else.

import { signal, batch, useState, useEffect, useRef, useCallback } from './lib.js';
import { api, Live } from './api.js';
import { shape, LIVE } from './schema.js';

// The signed-in user (`Me`), or null.
export const me = signal(null);
// The live connection: `connecting`, `live`, `reconnecting` or `stopped`.
export const connection = signal('stopped');
// Bumped when data fetched before may have missed updates (a reconnect, `lagged`).
export const epoch = signal(0);
// Printer id → signal of the `Printer`.
export const printers = signal(new Map());
// Whether the fleet snapshot has arrived, and the error of the last attempt.
export const fleet = signal({ loaded: false, error: null });
// The `Agent` list, null until loaded; the error of the last attempt.
export const agents = signal(null);
export const agentsError = signal(null);
// Command id → outcome (`succeeded`, `failed: …`), from `command_result` messages.
export const commandResults = signal(new Map());

const COMMAND_RESULTS_KEPT = 200;
let liveCount = 0;
const listeners = new Set();
let running = false;

const live = new Live({
  onMessage: receive,
  onOpen(reconnected) {
    if (reconnected) resync();
  },
  onStatus(status) {
    connection.value = status;
  },
  onTrouble() {
    // A 401 here ends the session (see `onUnauthorized` in app.js).
    api('/me').catch(() => {});
  },
});

// Starts the live connection and the snapshot; resolves once the socket is open (or after
// two seconds regardless: the snapshot is fetched again when it opens later).
export async function start() {
  if (running) return;
  running = true;
  if (live.start()) await live.ready(2000);
  loadFleet();
  loadAgents();
}

// Stops everything and forgets the data (logging out, the session ended).
export function stop() {
  running = false;
  live.stop();
  batch(() => {
    printers.value = new Map();
    fleet.value = { loaded: false, error: null };
    agents.value = null;
    agentsError.value = null;
    commandResults.value = new Map();
  });
}

// Fetches the snapshot again and tells every page query to do the same.
export function resync() {
  if (!running) return;
  epoch.value += 1;
  loadFleet();
  loadAgents();
}

// `handler(message)` for every shaped WebSocket message; returns the unsubscribe function.
export function onLive(handler) {
  listeners.add(handler);
  return () => listeners.delete(handler);
}

// --- hooks for pages ---

// `handler(message)` for every WebSocket message while the component is mounted.
export function useLive(handler) {
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => onLive((message) => latest.current(message)), []);
}

// `refresh()` after a WebSocket message that `matches`, at most once every `everyMs`: a burst
// (a canary's runs every second, a hundred agents reconnecting) is one read, not a hundred.
export function useLiveRefresh(matches, refresh, everyMs) {
  const timer = useRef(null);
  useLive((message) => {
    if (timer.current || !matches(message)) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      refresh();
    }, everyMs);
  });
  useEffect(() => () => clearTimeout(timer.current), []);
}

// `load()` when mounted, when `deps` change and after each `epoch`. Returns `{ data, error,
// loading, update, reload }`; `update(fn)` replaces the data with `fn(data)` (for live
// changes), `reload()` fetches again.
export function useQuery(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [again, setAgain] = useState(0);
  const round = epoch.value;
  useEffect(() => {
    let current = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => { if (current) setState({ data, error: null, loading: false }); },
      (error) => { if (current && error.status !== 401) setState((s) => ({ ...s, error, loading: false })); },
    );
    return () => { current = false; };
  }, [...deps, round, again]);
  const update = useCallback((fn) => setState((s) => ({ ...s, data: fn(s.data) })), []);
  const reload = useCallback(() => setAgain((n) => n + 1), []);
  return { ...state, update, reload };
}

// A list, newest first, fetched with `load()` (→ `{ items, more }`) like `useQuery` and
// extended live: `accept(message)` returns the item a WebSocket message puts in front, or
// null; each such item gets a `liveKey` unique in the page, for lists to key it by. Items
// arriving while a fetch is in flight are kept and put in front of its answer unless it has
// them already (`key(item)`), and a live item the list already holds is not added twice
// (events are keyed by their id, which the REST list and the WebSocket share). Returns `{ items, more, error, append }`; `append(items,
// more)` adds an older page.
export function useLiveList({ load, accept, key, limit = Infinity }, deps) {
  const [state, setState] = useState({ items: null, more: null, error: null });
  const early = useRef(null);
  const round = epoch.value;
  useEffect(() => {
    let current = true;
    early.current = [];
    load().then(
      ({ items, more }) => {
        if (!current) return;
        const known = new Set(items.map(key));
        const arrived = early.current.filter((item) => !known.has(key(item)));
        early.current = null;
        setState({ items: [...arrived, ...items].slice(0, limit), more, error: null });
      },
      (error) => {
        if (!current) return;
        early.current = null;
        if (error.status !== 401) setState((s) => ({ ...s, error }));
      },
    );
    return () => { current = false; };
  }, [...deps, round]);
  useLive((message) => {
    const item = accept(message);
    if (!item) return;
    item.liveKey = `live-${++liveCount}`;
    if (early.current) early.current.unshift(item);
    else {
      setState((s) => (s.items?.some((known) => key(known) === key(item))
        ? s
        : { ...s, items: [item, ...(s.items ?? [])].slice(0, limit) }));
    }
  });
  const append = useCallback((items, more) => setState((s) => ({ ...s, items: [...(s.items ?? []), ...items], more })), []);
  return { ...state, append };
}

// --- the snapshot ---

let fleetLoading = null;
let fleetAgain = false;

// One fetch at a time; a call during one fetches once more after it.
export function loadFleet() {
  if (fleetLoading) {
    fleetAgain = true;
    return fleetLoading;
  }
  fleetLoading = api('/printers', { resource: 'PrinterList' })
    .then((answer) => {
      if (!running) return;
      batch(() => {
        mergePrinters(answer.printers);
        fleet.value = { loaded: true, error: null };
      });
    })
    .catch((error) => {
      if (running && error.status !== 401) fleet.value = { ...fleet.value, error };
    })
    .finally(() => {
      fleetLoading = null;
      if (fleetAgain) {
        fleetAgain = false;
        loadFleet();
      }
    });
  return fleetLoading;
}

let agentsLoading = null;
let agentsAgain = false;

export function loadAgents() {
  if (agentsLoading) {
    agentsAgain = true;
    return agentsLoading;
  }
  agentsLoading = api('/agents', { resource: 'AgentList' })
    .then((answer) => {
      if (!running) return;
      batch(() => {
        agents.value = answer.agents;
        agentsError.value = null;
      });
    })
    .catch((error) => {
      if (running && error.status !== 401) agentsError.value = error;
    })
    .finally(() => {
      agentsLoading = null;
      if (agentsAgain) {
        agentsAgain = false;
        loadAgents();
      }
    });
  return agentsLoading;
}

function mergePrinters(rows) {
  const current = printers.value;
  const next = new Map();
  let membership = rows.length !== current.size;
  for (const row of rows) {
    const existing = current.get(row.id);
    if (!existing) {
      next.set(row.id, signal(row));
      membership = true;
      continue;
    }
    const old = existing.value;
    // Newest by the hub's clock: the agent's (`state_at`) can be hours off or step back.
    const keepState = (old.received_at ?? -Infinity) > (row.received_at ?? -Infinity);
    existing.value = {
      ...row,
      ...(keepState ? { state: old.state, state_at: old.state_at, received_at: old.received_at } : {}),
      latest_snapshot: newerSnapshot(old.latest_snapshot, row.latest_snapshot),
    };
    next.set(row.id, existing);
  }
  if (membership) printers.value = next;
}

function newerSnapshot(a, b) {
  if (!a) return b ?? null;
  if (!b) return a;
  return a.captured_at > b.captured_at ? a : b;
}

// --- live updates ---

function receive(raw) {
  const resource = LIVE[raw?.type];
  if (!resource) return;
  const message = shape(resource, raw);
  batch(() => {
    apply(message);
    for (const listener of listeners) listener(message);
  });
}

function apply(message) {
  switch (message.type) {
    case 'lagged':
      resync();
      break;
    case 'printer_state': {
      const printer = printers.value.get(message.printer);
      if (!printer) {
        loadFleet();
        return;
      }
      const old = printer.value;
      if ((old.received_at ?? -Infinity) > message.received_at) return;
      printer.value = {
        ...old, state: message.state, state_at: message.at, received_at: message.received_at,
        model: old.model || message.state?.model || null,
      };
      break;
    }
    case 'agent': {
      for (const printer of printers.value.values()) {
        if (printer.value.agent_id === message.agent && printer.value.agent_online !== message.online) {
          printer.value = { ...printer.value, agent_online: message.online };
        }
      }
      const list = agents.value;
      const agent = list?.find((a) => a.id === message.agent);
      // A new agent, or one whose health changed while away: the REST view has it all.
      if (list && (!agent || agent.online !== message.online)) loadAgents();
      break;
    }
    case 'snapshot': {
      const printer = printers.value.get(message.printer);
      if (!printer) return;
      const latest = newerSnapshot(printer.value.latest_snapshot, {
        id: message.id,
        captured_at: message.captured_at,
        trigger: message.trigger,
        layer: null,
        url: `/api/v1/snapshots/${encodeURIComponent(message.id)}`,
      });
      if (latest !== printer.value.latest_snapshot) printer.value = { ...printer.value, latest_snapshot: latest };
      break;
    }
    case 'plate': {
      const printer = printers.value.get(message.printer);
      if (printer) printer.value = { ...printer.value, plate: { ...(printer.value.plate ?? {}), clear: message.clear } };
      break;
    }
    case 'event': {
      // A job's end leaves something on the plate: a person confirms it clear again (the
      // hub's rule; its answer after the next fetch agrees).
      const printer = printers.value.get(message.printer);
      if (printer && ['job_finished', 'job_failed', 'job_cancelled'].includes(message.event?.type)) {
        printer.value = { ...printer.value, plate: { ...(printer.value.plate ?? {}), clear: false } };
      }
      break;
    }
    case 'command_result': {
      const results = new Map(commandResults.value);
      results.set(message.command, message.outcome);
      while (results.size > COMMAND_RESULTS_KEPT) results.delete(results.keys().next().value);
      commandResults.value = results;
      break;
    }
    default:
      break;
  }
}
