// The hub's REST API and live WebSocket: the only code that talks to the hub.
//
// Every answer is cut to the fields `schema.js` declares for it (`shape`): `api(path,
// { resource })` names what the answer is. Pages read API objects only through the store
// (`store.js`) and these answers.

import { shape } from './schema.js';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

let unauthorized = () => {};

// Called on any 401 from the API (except the login call itself).
export function onUnauthorized(handler) {
  unauthorized = handler;
}

// Sends a request with the session's credentials; a body is JSON, cut to what `request`
// (its name in `schema.js`'s FIELDS) declares. Returns the response and its JSON (null for
// none; for `streamed`, null for a 2xx answer, whose body the caller reads). A 401 (except
// on `login` itself) ends the session. `signal` aborts it.
async function send(url, { method = 'GET', body, request, login = false, accept = 'application/json', streamed = false, signal } = {}) {
  const init = { method, headers: { Accept: accept }, credentials: 'same-origin', signal };
  if (body !== undefined) {
    if (!request) throw new Error(`a body for ${url} needs its request name`);
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(shape(request, body));
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    if (signal?.aborted) throw new ApiError(0, 'aborted', 'the request was cancelled');
    throw new ApiError(0, 'network', 'the hub cannot be reached; check the connection');
  }
  if (response.status === 401 && !login) {
    unauthorized();
    throw new ApiError(401, 'unauthorized', 'your session has ended; log in again');
  }
  if (response.status === 204 || (streamed && response.ok)) return { response, data: null };
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { response, data };
}

// `resource`: the name in `schema.js`'s FIELDS of what the answer is; null for an answer
// the dashboard does not read. `request`: the name of what `body` is.
export async function api(path, { method = 'GET', body, request, resource = null } = {}) {
  const { response, data } = await send(`/api/v1${path}`, { method, body, request, login: path === '/login' });
  if (!response.ok) throw failure(response, data);
  return resource ? shape(resource, data) : null;
}

// The ApiError of a non-2xx answer from `/api/v1`, from its `{"error": {code, message}}`.
function failure(response, data) {
  const error = shape('ErrorBody', data)?.error;
  return new ApiError(response.status, error?.code ?? 'http', error?.message ?? `the hub answered ${response.status}`,
    response.headers.get('Retry-After'));
}

// POSTs `body` (cut to `request`) to `path` asking for server-sent events, and calls
// `onEvent(event)` with each event's JSON `data`, shaped as `resource`, as it arrives.
// Resolves when the hub ends the stream; rejects with an ApiError for a non-2xx answer (as
// `api` does), for a connection cut off midway, or when `signal` aborts it. Events whose
// data is not JSON are skipped; `event:`, `id:` and `retry:` lines are not used.
export async function stream(path, { body, request, resource, onEvent, signal }) {
  const { response, data } = await send(`/api/v1${path}`, {
    method: 'POST', body, request, accept: 'text/event-stream', streamed: true, signal,
  });
  if (!response.ok) throw failure(response, data);
  if (!response.body) throw new ApiError(response.status, 'http', 'the hub sent no stream');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let lines = [];
  const dispatch = () => {
    if (!lines.length) return;
    const text = lines.join('\n');
    lines = [];
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      return;
    }
    onEvent(shape(resource, event));
  };
  // One line of the stream (the WHATWG rules): a blank line ends an event, `:` starts a
  // comment, one space after the field's colon is dropped, `data:` lines join with `\n`.
  const line = (text) => {
    if (text === '') dispatch();
    else if (!text.startsWith(':')) {
      const colon = text.indexOf(':');
      const field = colon < 0 ? text : text.slice(0, colon);
      const value = colon < 0 ? '' : text.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') lines.push(value);
    }
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // A line ends at CRLF, LF or CR; a CR last in the buffer waits for a possible LF.
      const end = /\r\n|\r(?!$)|\n/g;
      let start = 0;
      let found;
      while ((found = end.exec(buffer))) {
        line(buffer.slice(start, found.index));
        start = found.index + found[0].length;
      }
      buffer = buffer.slice(start);
    }
  } catch {
    if (signal?.aborted) throw new ApiError(0, 'aborted', 'the answer was cancelled');
    throw new ApiError(0, 'network', 'the connection to the hub was cut off before the answer ended');
  }
  buffer += decoder.decode();
  for (const text of buffer.split(/\r\n|\r|\n/)) line(text);
  dispatch();
}

// Uploads `file` to `path` with `method`: as the `file` part of a multipart form, or, given
// `contentType`, as the request's whole body with that type (a memory document). `fetch`
// reports no upload progress, so this uses XMLHttpRequest: `onProgress(sent, total)` follows
// the bytes sent. Resolves `{ data, status }` (data shaped as `resource`); rejects with an
// ApiError.
export function upload(path, file, { resource, onProgress = () => {}, method = 'POST', contentType = null }) {
  return new Promise((resolve, reject) => {
    let body = file;
    if (!contentType) {
      body = new FormData();
      body.append('file', file, file.name);
    }
    const request = new XMLHttpRequest();
    request.open(method, `/api/v1${path}`);
    request.setRequestHeader('Accept', 'application/json');
    if (contentType) request.setRequestHeader('Content-Type', contentType);
    request.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    request.addEventListener('error', () => reject(new ApiError(0, 'network', 'the upload was cut off; check the connection and try again')));
    request.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'the upload was cancelled')));
    request.addEventListener('load', () => {
      let data = null;
      try {
        data = JSON.parse(request.responseText);
      } catch {
        data = null;
      }
      if (request.status === 401) {
        unauthorized();
        reject(new ApiError(401, 'unauthorized', 'your session has ended; log in again'));
      } else if (request.status < 200 || request.status >= 300) {
        const error = shape('ErrorBody', data)?.error;
        reject(new ApiError(request.status, error?.code ?? 'http', error?.message ?? `the hub answered ${request.status}`));
      } else {
        resolve({ data: shape(resource, data), status: request.status });
      }
    });
    request.send(body);
  });
}

// The inventory's Spoolman door (`/spoolman/api/v1`), with the session's credentials: the
// same API Spoolman's clients use. Its errors are Spoolman's: `{"message"}`, or FastAPI's
// `{"detail": [...]}` for a request it could not read.
export async function spoolman(path, { method = 'GET', body, request, resource = null } = {}) {
  const { response, data } = await send(`/spoolman/api/v1${path}`, { method, body, request });
  if (!response.ok) {
    const detail = Array.isArray(data?.detail) ? data.detail.map((d) => `${(d.loc ?? []).slice(1).join('.')}: ${d.msg}`).join('; ') : null;
    const message = typeof data?.message === 'string' ? data.message : detail ?? `the hub answered ${response.status}`;
    throw new ApiError(response.status, 'spoolman', message);
  }
  return resource ? shape(resource, data) : null;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value != null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export const path = {
  printer: (id) => `/printers/${encodeURIComponent(id)}`,
  snapshotImage: (id) => `/api/v1/snapshots/${encodeURIComponent(id)}`,
  cameraLive: (printer, camera) => `/api/v1/printers/${encodeURIComponent(printer)}/cameras/${encodeURIComponent(camera)}/live`,
};

const MIN_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

// The live WebSocket: reconnects with jittered exponential backoff and reports its status
// (`connecting`, `live`, `reconnecting`, `stopped`). Messages are passed on parsed, as
// they came; the store shapes them. Each message's `cursor` is kept, and a reconnect (to
// the same hub or, behind a load balancer, another replica) resumes after it
// (`?after=`): the hub sends what was missed first, or `lagged` when it no longer can.
export class Live {
  constructor({ onMessage, onOpen, onStatus, onTrouble }) {
    this.onMessage = onMessage;
    this.onOpen = onOpen;
    this.onStatus = onStatus;
    this.onTrouble = onTrouble;
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.everOpened = false;
    this.running = false;
    this.status = 'stopped';
    this.waiters = [];
    // The newest message's cursor: where a reconnect resumes.
    this.cursor = null;
    window.addEventListener('online', () => this.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.retryNow();
    });
  }

  // Returns true when this call started it.
  start() {
    if (this.running) return false;
    this.running = true;
    this.everOpened = false;
    this.attempt = 0;
    this.cursor = null;
    this.connect();
    return true;
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.setStatus('stopped');
  }

  // Resolves once open, or after `timeoutMs` regardless.
  ready(timeoutMs) {
    if (this.status === 'live') return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.waiters.push(() => { clearTimeout(timer); resolve(true); });
    });
  }

  retryNow() {
    if (this.running && !this.ws && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.connect();
    }
  }

  connect() {
    this.timer = null;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      const after = this.cursor == null ? '' : `?after=${this.cursor}`;
      ws = new WebSocket(`${scheme}//${location.host}/api/v1/ws${after}`);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.setStatus(this.everOpened ? 'reconnecting' : 'connecting');
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      // A reconnect that resumes from a cursor misses nothing (the hub says `lagged` if it
      // would); one without a cursor must read everything again.
      const reconnected = this.everOpened && this.cursor == null;
      this.everOpened = true;
      this.attempt = 0;
      this.setStatus('live');
      for (const waiter of this.waiters.splice(0)) waiter();
      this.onOpen(reconnected);
    });
    ws.addEventListener('message', (event) => {
      if (this.ws !== ws) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (Number.isSafeInteger(message?.cursor)) this.cursor = message.cursor;
      this.onMessage(message);
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.running) return;
      this.setStatus('reconnecting');
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    const ceiling = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.timer = setTimeout(() => this.connect(), delay);
    // A refused upgrade looks like a drop: after a few, check whether the session ended.
    if (this.attempt === 2 || this.attempt % 5 === 0) this.onTrouble();
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.onStatus(status);
  }
}
