// The assistant (`/assistant`, `/assistant?c=<conversation>`): a chat about the farm. The
// left column lists the person's conversations; the right one shows the open one, its
// answers streamed as they come (server-sent events: which model answers and why, text,
// tool calls and their results, proposed actions), and the form to ask.
//
// What the assistant proposes to do (pause a printer, queue a file, …) waits as a pending
// action until a person allowed to do it presses Confirm or Reject here: the button's own
// POST, with the digest of exactly the action shown, is the only way to decide it. Nothing
// the model writes is read as a decision: its text is shown as text and never parsed.
//
// After each answer the conversation is fetched again, so what shows is what the hub
// stored. Actions waiting in other conversations (someone else's question that needs an
// operator) are listed under the chat.

import { html, useState, useEffect, useLayoutEffect, useRef } from './lib.js';
import { api, stream } from './api.js';
import { me, useQuery } from './store.js';
import { EmptyState, ErrorBox, Loading, confirmDialog, toast, useTitle, useUniqueId } from './ui.js';
import { dateTime, duration, relativeTime } from './format.js';

// Lists the hub answers as bare JSON arrays, shaped item by item.
const CONVERSATIONS = 'ConversationRow[]';
const PENDING_LIST = 'PendingView[]';

const DEPTHS = [['quick', 'Quick'], ['normal', 'Normal'], ['deep', 'Deep']];
const RANK = { viewer: 0, operator: 1, admin: 2 };
// How much of a tool's arguments the collapsed line shows, and of a result the block shows.
const SUMMARY_CHARS = 100;
const RESULT_CHARS = 4000;
// A new conversation's title: the start of its first message.
const TITLE_CHARS = 60;

const enc = encodeURIComponent;

function conversationUrl(id) {
  return id ? `/assistant?c=${enc(id)}` : '/assistant';
}

// `value` as indented JSON (a string that holds JSON is parsed first), cut at `limit`.
function pretty(value, limit = RESULT_CHARS) {
  let text;
  if (typeof value === 'string') {
    try {
      text = JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      text = value;
    }
  } else text = value === undefined ? '' : JSON.stringify(value, null, 2);
  if (text.length <= limit) return text;
  return `${text.slice(0, limit)}\n… ${text.length - limit} more characters`;
}

function compact(value, limit = SUMMARY_CHARS) {
  if (value == null) return '';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length <= limit ? text : `${text.slice(0, limit)}…`;
}

function money(value) {
  return value == null ? '—' : value.toFixed(2);
}

// The `datetime` attribute of a time in Unix ms (none for a value that is not one).
function iso(ms) {
  const date = new Date(ms);
  return Number.isFinite(date.getTime()) ? date.toISOString() : undefined;
}

// Re-renders every `ms` while `active` (relative times that must stay true).
function useTick(ms, active) {
  const [, setTick] = useState(0);
  useEffect(() => {
    if (!active) return undefined;
    const timer = setInterval(() => setTick((n) => n + 1), ms);
    return () => clearInterval(timer);
  }, [ms, active]);
}

export default function AssistantPage({ search, navigate }) {
  useTitle('Assistant');
  const open = search.get('c') || null;
  const conversations = useQuery(() => api('/assistant/conversations', { resource: CONVERSATIONS }), []);
  const models = useQuery(() => api('/assistant/models', { resource: 'ModelsView' }), []);
  const waiting = useQuery(() => api('/assistant/pending?undecided=true', { resource: PENDING_LIST }), []);
  const detail = useQuery(
    () => (open ? api(`/assistant/conversations/${enc(open)}`, { resource: 'ConversationView' }) : Promise.resolve(null)),
    [open],
  );
  // The answer streaming now: `{ conversation, after, question, items, streaming }`; `after`
  // is the last stored message id when it was asked (later stored ones show once it ends).
  const [live, setLive] = useState(null);
  // Errors of the last answer, kept once the conversation is fetched again.
  const [lastErrors, setLastErrors] = useState([]);
  // The last answer's model, tokens and cost (from its `done` event).
  const [lastRun, setLastRun] = useState(null);
  const [creating, setCreating] = useState(false);
  const openRef = useRef(open);
  openRef.current = open;
  const abort = useRef(null);
  const mounted = useRef(true);
  const input = useRef(null);
  useEffect(() => () => {
    mounted.current = false;
    abort.current?.abort();
  }, []);

  const streaming = Boolean(live?.streaming);
  // The last answer's line and errors belong to the conversation they were in.
  useEffect(() => {
    setLastRun(null);
    setLastErrors([]);
  }, [open]);

  async function newConversation() {
    setCreating(true);
    try {
      const created = await api('/assistant/conversations', {
        method: 'POST', request: 'NewConversation', body: {}, resource: 'ConversationRow',
      });
      conversations.reload();
      navigate(conversationUrl(created.id));
      input.current?.focus();
    } catch (error) {
      if (error.status !== 401) toast(`Could not start a conversation: ${error.message}`, 'error');
    } finally {
      if (mounted.current) setCreating(false);
    }
  }

  async function removeConversation(conversation) {
    const sure = await confirmDialog({
      title: `Delete “${conversation.title || 'Untitled'}”?`,
      body: 'The conversation and its messages are removed. Actions already confirmed stay done.',
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!sure) return;
    if (live?.conversation === conversation.id) abort.current?.abort();
    try {
      await api(`/assistant/conversations/${enc(conversation.id)}`, { method: 'DELETE' });
      toast('Conversation deleted');
      if (openRef.current === conversation.id) navigate(conversationUrl(null), { replace: true });
      conversations.reload();
      waiting.reload();
    } catch (error) {
      if (error.status !== 401) toast(`Could not delete the conversation: ${error.message}`, 'error');
    }
  }

  // Fetches the conversation again after an answer and lets the stored messages replace
  // the streamed ones in one render.
  async function settle(id, errors) {
    conversations.reload();
    waiting.reload();
    models.reload();
    let fresh = null;
    const all = [...errors];
    try {
      fresh = await api(`/assistant/conversations/${enc(id)}`, { resource: 'ConversationView' });
    } catch (error) {
      if (error.status === 401) return;
      all.push(error);
    }
    if (!mounted.current) return;
    if (fresh && openRef.current === id) detail.update(() => fresh);
    setLastErrors(all);
    setLive(null);
  }

  // Sends `content`: creates the conversation first when none is open, then streams the
  // answer. Returns false when the hub took nothing (the caller gives the text back).
  async function ask(content, depth) {
    if (streaming || !content) return false;
    let id = open;
    setLastErrors([]);
    if (!id) {
      try {
        const created = await api('/assistant/conversations', {
          method: 'POST', request: 'NewConversation', body: { title: content.slice(0, TITLE_CHARS) }, resource: 'ConversationRow',
        });
        id = created.id;
      } catch (error) {
        if (error.status !== 401) setLastErrors([error]);
        return false;
      }
      navigate(conversationUrl(id), { replace: true });
      conversations.reload();
    }
    const known = detail.data?.conversation?.id === id ? detail.data.messages : [];
    const after = known.reduce((most, m) => Math.max(most, m.id), 0);
    const controller = new AbortController();
    abort.current = controller;
    // Only this call changes the streamed answer while it runs; `current` is what it shows.
    let current = { conversation: id, after, streaming: true, question: content, items: [] };
    setLastRun(null);
    setLive(current);
    const errors = [];
    try {
      await stream(`/assistant/conversations/${enc(id)}/messages`, {
        body: { content, depth },
        request: 'NewMessage',
        resource: 'AssistantEvent',
        signal: controller.signal,
        onEvent: (event) => {
          if (!mounted.current) return;
          if (event?.type === 'done') {
            setLastRun({ tier: event.tier, finish: event.finish, usage: event.usage, cost: event.cost });
          }
          current = { ...current, items: applyEvent(current.items, event) };
          setLive(current);
        },
      });
    } catch (error) {
      if (error.code === 'aborted' || error.status === 401) {
        if (mounted.current) setLive(null);
        return true;
      }
      errors.push(error);
    } finally {
      if (abort.current === controller) abort.current = null;
    }
    if (!mounted.current) return true;
    setLive({ ...current, streaming: false });
    const said = current.items.filter((item) => item.kind === 'error').map((item) => ({ message: item.message }));
    await settle(id, [...said, ...errors]);
    // A refused question (rate limit, no model, a bad request) was not stored.
    return !errors.some((error) => error.status >= 400);
  }

  const list = conversations.data;
  const elsewhere = (waiting.data ?? []).filter((p) => p.state === 'pending' && p.conversation_id !== open);
  return html`<div class="page">
    <div class="page-head"><div><h1>Assistant</h1>
      <p class="muted">Ask about the farm: what is printing, what failed and why, what is left on the spools. It can propose actions; a person confirms them.</p>
      <${ModelsLine} models=${models} />
    </div></div>
    <div class="chat">
      <nav class="panel chat-list" aria-labelledby="conversations-h">
        <div class="chat-list-head"><h2 id="conversations-h">Conversations</h2>
          <button type="button" class="btn btn-small btn-primary" data-testid="new-conversation" disabled=${creating}
            onClick=${newConversation}>New conversation</button></div>
        ${!list
          ? (conversations.error ? html`<${ErrorBox} error=${conversations.error} />` : html`<${Loading}>Loading conversations…<//>`)
          : !list.length
            ? html`<p class="muted">No conversations yet: ask something to start one.</p>`
            : html`<ul class="chat-conversations">
              ${list.map((c) => html`<li key=${c.id} class="chat-conversation" data-testid="conversation-item" data-conversation=${c.id}>
                <a href=${conversationUrl(c.id)} aria-current=${c.id === open ? 'page' : undefined}>
                  <span class="chat-conversation-title">${c.title || 'Untitled'}</span>
                  <time class="chat-conversation-time" datetime=${iso(c.updated_at)} title=${dateTime(c.updated_at)}>${relativeTime(c.updated_at)}</time>
                </a>
                <button type="button" class="btn btn-ghost btn-small" data-testid="conversation-delete"
                  aria-label=${`Delete ${c.title || 'Untitled'}`} onClick=${() => removeConversation(c)}>Delete</button>
              </li>`)}
            </ul>`}
      </nav>
      <${Conversation} open=${open} detail=${detail} live=${live} lastErrors=${lastErrors} lastRun=${lastRun}
        streaming=${streaming} ask=${ask} input=${input} onDecided=${() => { detail.reload(); waiting.reload(); }} />
    </div>
    ${elsewhere.length ? html`<section class="panel chat-elsewhere" aria-labelledby="elsewhere-h" data-testid="pending-elsewhere">
      <h2 id="elsewhere-h">Waiting for a decision</h2>
      <p class="muted">Actions the assistant proposed in other conversations.</p>
      <div class="chat-elsewhere-list">
        ${elsewhere.map((p) => html`<${PendingCard} key=${p.id} pending=${p} onDecided=${() => { waiting.reload(); detail.reload(); }}
          link=${list?.some((c) => c.id === p.conversation_id) ? conversationUrl(p.conversation_id) : null} />`)}
      </div>
    </section>` : null}
  </div>`;
}

// "Models: smollm2 (local) · …; paid tiers off".
function ModelsLine({ models }) {
  const data = models.data;
  if (!data) {
    return models.error ? html`<p class="muted chat-models" data-testid="assistant-models">Models: unknown (${models.error.message})</p>` : null;
  }
  const paid = data.paid_enabled
    ? `paid tiers on: spent ${money(data.spent_this_month)} of ${money(data.monthly_budget)} this month`
    : 'paid tiers off';
  return html`<p class="muted chat-models" data-testid="assistant-models">Models: ${data.tiers.length
    ? data.tiers.map((t, i) => {
      let state = '';
      if (t.cooling_down_s) state = `, cooling down for ${duration(t.cooling_down_s)}`;
      else if (!t.ready) state = t.error ? `, not ready: ${compact(t.error, 80)}` : ', not ready';
      return html`${i ? ' · ' : ''}<span title=${t.model ?? undefined}>${t.name} (${t.kind}${state})</span>`;
    })
    : 'none configured'}; ${paid}</p>`;
}

// The items of the open conversation as stored: messages in order, each tool call with its
// result under it, each pending action under the call of its tool that proposed it (the
// n-th action of a tool under the n-th call of it), else where its time puts it.
function storedItems(conversation, liveAnswer) {
  const messages = conversation.messages.filter((m) => !liveAnswer || m.id <= liveAnswer.after);
  const livePending = new Set((liveAnswer?.items ?? []).filter((i) => i.kind === 'pending').map((i) => i.pending.id));
  const results = new Map();
  const calls = new Set();
  for (const m of messages) {
    if (m.speaker === 'tool' && m.tool_call_id) results.set(m.tool_call_id, m);
    for (const call of m.tool_calls ?? []) calls.add(call.id);
  }
  const items = [];
  for (const m of messages) {
    const at = m.created_at;
    if (m.speaker === 'user') items.push({ kind: 'user', key: `m${m.id}`, at, text: m.content });
    else if (m.speaker === 'assistant') {
      items.push({ kind: 'answer', key: `m${m.id}`, at, text: m.content, tier: m.tier, why: m.why });
      for (const call of m.tool_calls ?? []) {
        const result = results.get(call.id);
        items.push({
          kind: 'tool', key: `c${m.id}-${call.id}`, at, id: call.id, name: call.name, arguments: call.arguments,
          result: result ? result.content : undefined,
        });
      }
    } else if (m.speaker === 'tool' && !(m.tool_call_id && calls.has(m.tool_call_id))) {
      items.push({ kind: 'tool', key: `m${m.id}`, at, id: m.tool_call_id, name: m.tool_name ?? 'tool', arguments: null, result: m.content });
    }
  }
  const proposed = conversation.pending.filter((p) => !livePending.has(p.id)).sort((a, b) => a.created_at - b.created_at);
  const used = new Set();
  for (const p of proposed) {
    const item = { kind: 'pending', key: `p${p.id}`, at: p.created_at, pending: p };
    const call = items.findIndex((i) => i.kind === 'tool' && i.name === p.tool && !used.has(i));
    if (call >= 0) {
      used.add(items[call]);
      items.splice(call + 1, 0, item);
      continue;
    }
    const place = items.findIndex((i) => i.at > p.created_at);
    if (place < 0) items.push(item);
    else items.splice(place, 0, item);
  }
  return items;
}

function modelNote(tier, why) {
  return why ? `${tier}: ${why}` : tier;
}

let liveCount = 0;

// The streamed items after one more event.
function applyEvent(items, event) {
  if (!event || typeof event.type !== 'string') return items;
  const key = `live-${++liveCount}`;
  const last = items[items.length - 1];
  switch (event.type) {
    case 'model':
      return [...items, { kind: 'answer', key, text: '', tier: event.tier, why: event.why }];
    case 'fallback':
      return [...items, { kind: 'note', key, text: `${event.tier} failed (${event.error ?? 'no reason given'}); trying the next model` }];
    case 'text': {
      if (last?.kind === 'answer') return [...items.slice(0, -1), { ...last, text: last.text + (event.text ?? '') }];
      const tier = [...items].reverse().find((i) => i.kind === 'answer')?.tier ?? null;
      return [...items, { kind: 'answer', key, text: event.text ?? '', tier, why: null }];
    }
    case 'tool_call':
      return [...items, { kind: 'tool', key, id: event.id, name: event.name, arguments: event.arguments, result: undefined }];
    case 'tool_result': {
      const at = items.findIndex((i) => i.kind === 'tool' && i.id === event.id && i.result === undefined);
      const done = { result: event.result ?? null, ok: event.ok };
      if (at < 0) return [...items, { kind: 'tool', key, id: event.id, name: event.name, arguments: null, ...done }];
      return items.map((item, i) => (i === at ? { ...item, ...done } : item));
    }
    case 'pending':
      return event.pending ? [...items, { kind: 'pending', key, pending: event.pending }] : items;
    case 'error':
      return [...items, { kind: 'error', key, message: event.message ?? 'the assistant failed' }];
    default:
      return items;
  }
}

function Conversation({ open, detail, live, lastErrors, lastRun, streaming, ask, input, onDecided }) {
  const data = detail.data?.conversation?.id === open ? detail.data : null;
  const shownLive = live && live.conversation === open ? live : null;
  const items = data ? storedItems(data, shownLive) : [];
  const log = useRef(null);
  // Whether the log follows the newest item (the reader has not scrolled up).
  const stick = useRef(true);
  const shownFor = useRef(open);
  const lastItem = shownLive?.items[shownLive.items.length - 1];
  useLayoutEffect(() => {
    if (shownFor.current !== open) {
      shownFor.current = open;
      stick.current = true;
    }
    if (stick.current && log.current) log.current.scrollTop = log.current.scrollHeight;
  }, [items.length, shownLive?.items.length, lastItem?.text, lastItem?.result, open]);
  function scrolled() {
    const box = log.current;
    stick.current = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }
  let title = 'New conversation';
  if (open) title = data?.conversation.title || (detail.loading ? 'Loading…' : 'Untitled');
  let body = null;
  if (open && !data && !shownLive) {
    body = detail.error ? html`<${ErrorBox} error=${detail.error} />` : html`<${Loading}>Loading the conversation…<//>`;
  } else if (!items.length && !shownLive) {
    body = html`<${EmptyState} title="Ask the assistant">
      <p>For example: “What is printing right now?”, “Why did the last print on the X1C fail?”, “How much PLA is left?”.</p>
    <//>`;
  }
  return html`<section class="panel chat-main" aria-labelledby="conversation-h" data-testid="assistant-conversation">
    <h2 id="conversation-h" class="chat-title">${title}</h2>
    <div class="chat-log" ref=${log} onScroll=${scrolled} tabindex="0" role="region" aria-label="Messages" data-testid="assistant-log">
      ${body}
      ${items.map((item) => html`<${Item} key=${item.key} item=${item} streaming=${false} onDecided=${onDecided} />`)}
      ${shownLive ? html`<${Item} key="question" item=${{ kind: 'user', text: shownLive.question }} streaming=${false} onDecided=${onDecided} />` : null}
      <div class="chat-live" aria-live="polite" aria-busy=${shownLive?.streaming ? 'true' : 'false'}>
        ${shownLive?.items.map((item) => html`<${Item} key=${item.key} item=${item} streaming=${shownLive.streaming} onDecided=${onDecided} />`)}
        ${shownLive?.streaming && !(lastItem?.kind === 'answer' && lastItem.text) ? html`<p class="chat-note">The assistant is working…</p>` : null}
      </div>
      ${!shownLive ? lastErrors.map((error, i) => html`<${ErrorBox} key=${`e${i}`} error=${error} />`) : null}
    </div>
    <p class="chat-status muted" role="status">${streaming
      ? 'The assistant is answering…'
      : lastRun ? runLine(lastRun) : ''}</p>
    <${AskForm} ask=${ask} streaming=${streaming} input=${input} />
  </section>`;
}

function runLine(run) {
  const parts = [`Answered by ${run.tier ?? 'the assistant'}`];
  if (run.usage) parts.push(`${run.usage.prompt_tokens} + ${run.usage.completion_tokens} tokens`);
  if (run.cost) parts.push(`cost ${money(run.cost)}`);
  if (run.finish === 'length') parts.push('cut short at the length limit');
  return parts.join(' · ');
}

function Item({ item, streaming, onDecided }) {
  switch (item.kind) {
    case 'user':
      return html`<div class="chat-msg chat-msg-user"><span class="visually-hidden">You said:</span>
        <div class="chat-bubble chat-bubble-user" data-testid="user-message">${item.text}</div></div>`;
    case 'answer':
      return html`<div class="chat-msg">
        ${item.tier ? html`<p class="chat-meta">${modelNote(item.tier, item.why)}</p>` : null}
        ${item.text
          ? html`<span class="visually-hidden">The assistant said:</span>
            <div class="chat-bubble chat-bubble-assistant" data-testid="assistant-answer" data-tier=${item.tier ?? undefined}>${item.text}</div>`
          : null}
      </div>`;
    case 'note':
      return html`<p class="chat-note">${item.text}</p>`;
    case 'tool':
      return html`<${ToolBlock} item=${item} streaming=${streaming} />`;
    case 'pending':
      return html`<${PendingCard} pending=${item.pending} onDecided=${onDecided} />`;
    case 'error':
      return html`<div class="banner banner-error" role="alert">${item.message}</div>`;
    default:
      return null;
  }
}

function ToolBlock({ item, streaming }) {
  const failed = item.ok === false;
  let result;
  if (item.result !== undefined) {
    result = html`<details class="chat-tool-result" data-testid="tool-result">
      <summary>${failed ? 'Result: failed' : 'Result'}</summary>
      <pre class="chat-json">${pretty(item.result)}</pre>
    </details>`;
  } else result = html`<p class="chat-note">${streaming ? 'Running…' : 'No result recorded.'}</p>`;
  return html`<details class=${failed ? 'chat-tool chat-tool-failed' : 'chat-tool'} data-testid="tool-call" data-tool=${item.name}>
    <summary><span class="strong">Tool: ${item.name}</span><span class="mono">(${compact(item.arguments)})</span></summary>
    ${item.arguments != null ? html`<pre class="chat-json">${pretty(item.arguments)}</pre>` : null}
    ${result}
  </details>`;
}

// A proposed action: what it does, the exact tool and arguments, when it expires, and the
// buttons that decide it (each its own request with the digest shown).
function PendingCard({ pending, onDecided, link = null }) {
  const [decided, setDecided] = useState(null);
  const [busy, setBusy] = useState(null);
  const [error, setError] = useState(null);
  const titleId = useUniqueId('pending');
  const noteId = useUniqueId('pending-note');
  // The hub's newer answer (after the conversation is fetched again) wins over ours.
  useEffect(() => { setDecided(null); }, [pending]);
  const p = decided ?? pending;
  const undecided = p.state === 'pending';
  useTick(15000, undecided);
  const now = Date.now();
  const expired = undecided && p.expires_at <= now;
  const role = me.value?.role;
  const needed = p.needed_role ?? 'operator';
  const mayConfirm = (role === 'operator' || role === 'admin') && RANK[role] >= (RANK[needed] ?? RANK.operator);

  async function decide(kind) {
    setBusy(kind);
    setError(null);
    try {
      const view = await api(`/assistant/pending/${enc(p.id)}/${kind}`, {
        method: 'POST', request: 'DecisionBody', body: { digest: p.digest }, resource: 'PendingView',
      });
      setDecided(view);
      onDecided?.();
    } catch (failure) {
      if (failure.status === 401) return;
      setError(failure);
      // Expired or decided meanwhile: show what the hub holds now.
      if (failure.status === 409 || failure.status === 410) onDecided?.();
    } finally {
      setBusy(null);
    }
  }

  let note = null;
  if (undecided && !mayConfirm) note = `needs an ${needed}`;
  else if (expired) note = 'expired: ask the assistant again';
  return html`<article class="card chat-pending" data-testid="pending-card" data-state=${p.state} data-pending=${p.id} aria-labelledby=${titleId}>
    <p class="chat-pending-summary" id=${titleId}><strong>${p.summary}</strong></p>
    <p class="card-meta">
      <span>Action <code class="mono">${p.tool}</code></span>
      <span>asked by ${p.requested_by}</span>
      ${undecided ? html`<span>${expired ? 'expired' : 'expires'} <time datetime=${iso(p.expires_at)} title=${dateTime(p.expires_at)}>${relativeTime(p.expires_at, now)}</time></span>` : null}
      ${link ? html`<a href=${link}>Open the conversation</a>` : null}
    </p>
    ${p.arguments != null ? html`<pre class="chat-json" aria-label="Arguments">${pretty(p.arguments)}</pre>` : null}
    <p class="chat-pending-state" role="status">State: <span class="strong" data-testid="pending-state">${p.state}</span>${p.decided_by
      ? html` <span class="muted">by ${p.decided_by}${p.decided_at ? ` ${relativeTime(p.decided_at, now)}` : ''}</span>` : null}</p>
    ${undecided ? html`<div class="button-row">
      <button type="button" class="btn btn-primary" data-testid="pending-confirm" disabled=${Boolean(busy) || !mayConfirm || expired}
        aria-describedby=${note ? noteId : undefined} onClick=${() => decide('confirm')}>${busy === 'confirm' ? 'Confirming…' : 'Confirm'}</button>
      <button type="button" class="btn" data-testid="pending-reject" disabled=${Boolean(busy)}
        onClick=${() => decide('reject')}>${busy === 'reject' ? 'Rejecting…' : 'Reject'}</button>
      ${note ? html`<span class="muted" id=${noteId}>${note}</span>` : null}
    </div>` : null}
    ${p.state === 'confirmed' && p.error ? html`<p class="chat-pending-error" data-testid="pending-error">It failed: ${p.error}</p>` : null}
    ${p.state === 'confirmed' && !p.error && p.result != null ? html`<details class="chat-tool-result" data-testid="pending-result">
      <summary>Result</summary><pre class="chat-json">${pretty(p.result)}</pre></details>` : null}
    ${error ? html`<p class="form-error" role="alert">${error.message}</p>` : null}
  </article>`;
}

// The message box: Enter sends, Shift+Enter starts a new line. The text stays editable while
// an answer streams; sending waits for it to end.
function AskForm({ ask, streaming, input }) {
  const [text, setText] = useState('');
  const [depth, setDepth] = useState('normal');
  const [sending, setSending] = useState(false);
  const inputId = useUniqueId('assistant-input');
  const depthId = useUniqueId('assistant-depth');
  const hintId = `${inputId}-hint`;
  const blocked = streaming || sending;

  async function submit(event) {
    event?.preventDefault();
    const content = (input.current?.value ?? text).trim();
    if (blocked || !content) return;
    setSending(true);
    setText('');
    const sent = await ask(content, depth);
    // Nothing was sent (the conversation could not be made): the text comes back.
    if (!sent) setText((now) => now || content);
    setSending(false);
  }

  function keyDown(event) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  }

  return html`<form class="chat-form" onSubmit=${submit} aria-label="Ask the assistant" data-testid="assistant-form">
    <div class="field">
      <label for=${inputId}>Message</label>
      <textarea id=${inputId} ref=${input} rows="3" maxlength="8000" data-testid="assistant-input" aria-describedby=${hintId}
        value=${text} onInput=${(e) => setText(e.currentTarget.value)} onKeyDown=${keyDown}></textarea>
      <span class="hint" id=${hintId}>Enter sends; Shift+Enter starts a new line.</span>
    </div>
    <div class="chat-form-actions">
      <div class="field"><label for=${depthId}>Depth</label>
        <select id=${depthId} value=${depth} disabled=${blocked} onChange=${(e) => setDepth(e.currentTarget.value)} data-testid="assistant-depth">
          ${DEPTHS.map(([value, label]) => html`<option value=${value}>${label}</option>`)}
        </select></div>
      <button type="submit" class="btn btn-primary" data-testid="assistant-send" disabled=${blocked}>${blocked ? 'Answering…' : 'Send'}</button>
    </div>
  </form>`;
}
