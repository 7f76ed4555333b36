// The assistant's memory (`/memory`): what it remembers (reviewed prints, documents,
// conversations, each printer's notable events of a day) and its last sync, a search by
// meaning for anyone signed in, and the documents. An admin adds Markdown, plain text or a
// PDF (the file itself is the request's body, not a form), replaces or deletes one, and has
// the memory indexed again. `?document=<id>` opens that document. When the hub has no
// embedding model the memory is off: the page says so and only lists the documents.

import { Fragment, html, useEffect, useRef, useState } from './lib.js';
import { api, path, query, upload } from './api.js';
import { me, printers, useQuery } from './store.js';
import { Badge, EmptyState, ErrorBox, Field, Loading, VisuallyHidden, confirmDialog, toast, useTitle } from './ui.js';
import { bytes, count, dateTime, relativeTime } from './format.js';
import { printerName } from './widgets.js';

// What the memory holds, by kind: one, several.
const KINDS = {
  outcome: ['reviewed print', 'reviewed prints'],
  document: ['document', 'documents'],
  conversation: ['conversation', 'conversations'],
  events: ['day of printer events', 'days of printer events'],
};
const FORMATS = { markdown: 'Markdown', text: 'Text', pdf: 'PDF' };
// The hub takes at most this much (20 MiB).
const MAX_BYTES = 20 * 1024 * 1024;
const ACCEPT = '.md,.markdown,.txt,.pdf,text/markdown,text/plain,application/pdf';
const TYPES = { md: 'text/markdown', markdown: 'text/markdown', txt: 'text/plain', pdf: 'application/pdf' };
const KNOWN_TYPES = ['text/markdown', 'text/x-markdown', 'text/plain', 'application/pdf'];
// A document's text is shown up to this many characters.
const SHOWN_CHARS = 200000;

function plural(n, [one, many]) {
  return `${count(n)} ${n === 1 ? one : many}`;
}

function sentence(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : '';
}

// The file's type as the hub reads it: the browser's when it is one the hub knows, else from
// the name's extension (browsers often give none for Markdown).
function contentType(file) {
  if (KNOWN_TYPES.includes(file.type)) return file.type;
  const extension = file.name.includes('.') ? file.name.split('.').pop().toLowerCase() : '';
  return TYPES[extension] ?? (file.type || 'application/octet-stream');
}

function tooLarge(file) {
  return file.size > MAX_BYTES ? `${file.name} is ${bytes(file.size)}; a document is at most 20 MiB` : null;
}

// "1 added, 0 updated, 0 removed, 40 unchanged; 3 pieces embedded in 120 ms"
function syncText(sync) {
  return `${count(sync.added)} added, ${count(sync.updated)} updated, ${count(sync.removed)} removed, `
    + `${count(sync.unchanged)} unchanged; ${plural(sync.pieces, ['piece', 'pieces'])} embedded in ${count(sync.took_ms)} ms`;
}

// Tells what a sync after a change did, when it stopped short.
function syncToast(done, sync) {
  if (sync?.error) toast(`${done}, but indexing stopped short: ${sync.error}`, 'error');
  else toast(`${done} and indexed`, 'ok');
}

// A link the hub gave that stays on this dashboard (a path), or null.
function sameOrigin(link) {
  return typeof link === 'string' && link.startsWith('/') && !link.startsWith('//') && !link.startsWith('/\\') ? link : null;
}

function printerLabel(id) {
  const printer = printers.value.get(id)?.value;
  return printer ? printerName(printer) : id;
}

function knownPrinters() {
  return [...printers.value.values()].map((p) => p.value).sort((a, b) => printerName(a).localeCompare(printerName(b)));
}

export default function MemoryPage({ search }) {
  useTitle('Memory');
  const wanted = search.get('document') || null;
  const isAdmin = me.value?.role === 'admin';
  const overview = useQuery(() => api('/memory', { resource: 'MemoryView' }), []);
  const documents = useQuery(() => api('/memory/documents', { resource: 'DocumentsView' }), []);
  const off = overview.error?.status === 503;
  const on = Boolean(overview.data) && !overview.error;
  const changed = () => {
    overview.reload();
    documents.reload();
  };
  return html`<div class="page">
    <div class="page-head"><div><h1>Memory</h1>
      <p class="muted">What the assistant remembers and finds by meaning: reviewed prints, documents, conversations and each printer's notable events.</p>
    </div>
    ${isAdmin && on ? html`<${Reindex} onDone=${overview.reload} />` : null}</div>
    <${Summary} overview=${overview} />
    ${off ? null : html`<${Search} />`}
    <section class="panel" aria-labelledby="memory-documents-h"><h2 id="memory-documents-h">Documents</h2>
      <p class="muted">Manuals, guides and notes the assistant reads from: Markdown, plain text or PDF.</p>
      ${isAdmin && on ? html`<${AddDocument} onAdded=${changed} />` : null}
      <${Documents} documents=${documents} wanted=${wanted} canEdit=${isAdmin && on} onChanged=${changed} />
    </section>
  </div>`;
}

function Summary({ overview }) {
  const error = overview.error;
  if (error?.status === 503) {
    return html`<div class="banner banner-warn" role="status" data-testid="memory-off">${sentence(error.message)}.</div>`;
  }
  if (error) return html`<${ErrorBox} error=${error} />`;
  const m = overview.data;
  if (!m) return html`<${Loading}>Loading the memory…<//>`;
  const items = m.items ?? {};
  const kinds = [...Object.keys(KINDS), ...Object.keys(items).filter((k) => !(k in KINDS)).sort()];
  const counts = kinds.map((k) => plural(items[k] ?? 0, KINDS[k] ?? [k, k])).join(', ');
  const last = m.last_sync;
  let sync = 'Not synced yet.';
  if (last) {
    sync = html`Last sync <time datetime=${new Date(last.at).toISOString()} title=${dateTime(last.at)}>${relativeTime(last.at)}</time>: ${last.error
      ? html`<span class="warn-text" data-testid="memory-sync-error">stopped short: ${last.error}</span>`
      : syncText(last)}.`;
  }
  return html`<p class="memory-summary" data-testid="memory-summary">
    <span class="strong">${sentence(m.engine)} engine</span> · ${counts} · ${plural(m.pieces, ['piece', 'pieces'])} of text. ${sync}
  </p>`;
}

// The two re-index buttons (admin).
function Reindex({ onDone }) {
  const [busy, setBusy] = useState(null);
  async function run(full) {
    if (full) {
      const sure = await confirmDialog({
        title: 'Re-index everything?',
        body: 'Every item is embedded again, not only what changed: this takes longer.',
        confirmLabel: 'Re-index everything',
      });
      if (!sure) return;
    }
    setBusy(full ? 'full' : 'changes');
    try {
      const sync = await api('/memory/reindex', { method: 'POST', request: 'ReindexBody', body: { full }, resource: 'SyncReport' });
      if (sync.error) toast(`The re-index stopped short: ${sync.error}`, 'error');
      else toast(`Re-indexed: ${syncText(sync)}`, 'ok');
      onDone();
    } catch (error) {
      if (error.status !== 401) toast(`Could not re-index: ${error.message}`, 'error');
    } finally {
      setBusy(null);
    }
  }
  return html`<div class="page-actions">
    <button type="button" class="btn" disabled=${Boolean(busy)} onClick=${() => run(false)} data-testid="memory-reindex">
      ${busy === 'changes' ? 'Re-indexing…' : 'Re-index changes'}</button>
    <button type="button" class="btn" disabled=${Boolean(busy)} onClick=${() => run(true)} data-testid="memory-reindex-full">
      ${busy === 'full' ? 'Re-indexing…' : 'Re-index everything'}</button>
  </div>`;
}

function Search() {
  const [text, setText] = useState('');
  const [result, setResult] = useState({ busy: false, asked: '', hits: null, error: null });
  const turn = useRef(0);
  async function submit(event) {
    event.preventDefault();
    const asked = text.trim();
    if (!asked) return;
    const mine = ++turn.current;
    setResult((r) => ({ ...r, busy: true, error: null }));
    try {
      const answer = await api('/memory/search', {
        method: 'POST', request: 'SearchBody', body: { query: asked, limit: 10 }, resource: 'SearchView',
      });
      if (mine === turn.current) setResult({ busy: false, asked, hits: answer.hits ?? [], error: null });
    } catch (error) {
      if (mine === turn.current) setResult((r) => ({ ...r, busy: false, error: error.status === 401 ? null : error }));
    }
  }
  let found = null;
  if (result.hits && !result.hits.length) found = html`<p class="muted" data-testid="memory-no-hits">Nothing in the memory is close to “${result.asked}”.</p>`;
  else if (result.hits) {
    found = html`<ol class="memory-hits" data-testid="memory-hits" aria-label=${`What the memory holds about “${result.asked}”, closest first`}>
      ${result.hits.map((hit) => html`<${HitItem} key=${hit.key} hit=${hit} />`)}
    </ol>`;
  }
  return html`<section class="panel" aria-labelledby="memory-search-h"><h2 id="memory-search-h">Search</h2>
    <form class="form-row" role="search" aria-label="Search the memory" onSubmit=${submit}>
      <${Field} label="Look for" hint="In words: the search is by meaning, not by exact text" control=${(id, hint) => html`<input
        id=${id} type="search" name="query" maxlength="2000" aria-describedby=${hint} value=${text}
        onInput=${(e) => setText(e.currentTarget.value)} data-testid="memory-query" />`} />
      <div class="field field-action">
        <button type="submit" class="btn btn-primary" disabled=${result.busy || !text.trim()} data-testid="memory-search">${result.busy ? 'Searching…' : 'Search'}</button>
      </div>
    </form>
    <div aria-live="polite">${result.error ? html`<${ErrorBox} error=${result.error} />` : found}</div>
  </section>`;
}

function HitItem({ hit }) {
  const link = sameOrigin(hit.link);
  const facts = [
    hit.printer ? printerLabel(hit.printer) : null,
    hit.material,
    hit.at ? dateTime(hit.at) : null,
  ].filter(Boolean);
  return html`<li class="memory-hit" data-testid="memory-hit" data-kind=${hit.kind}>
    <div class="memory-hit-head">
      ${link ? html`<a class="memory-hit-title" href=${link}>${hit.title}</a>` : html`<span class="memory-hit-title">${hit.title}</span>`}
      <${Badge} kind="neutral">${hit.kind}<//>
      <span class="muted" title="Similarity to the search: 1 is the closest">score ${Number.isFinite(hit.score) ? hit.score.toFixed(2) : '—'}</span>
    </div>
    <p class="memory-hit-text">${hit.text}</p>
    ${facts.length ? html`<p class="muted memory-hit-facts">${facts.join(' · ')}</p>` : null}
  </li>`;
}

// The upload form (admin): the file, then its title, printer and material.
function AddDocument({ onAdded }) {
  const [file, setFile] = useState(null);
  const [title, setTitle] = useState('');
  const [printer, setPrinter] = useState('');
  const [material, setMaterial] = useState('');
  // An operator's note, written here rather than uploaded: kept like a Markdown document.
  const [note, setNote] = useState('');
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState(null);
  const known = knownPrinters();

  async function submit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const body = file ?? (note.trim() ? new Blob([note], { type: 'text/markdown' }) : null);
    if (!body) return;
    const large = tooLarge(body);
    if (large) {
      setError({ message: large });
      return;
    }
    setError(null);
    setProgress({ sent: 0, total: body.size });
    const named = title.trim() || (file ? file.name.slice(0, 200) : `Note of ${new Date().toLocaleDateString()}`);
    try {
      const { data } = await upload(`/memory/documents${query({ title: named, printer, material: material.trim() })}`, body, {
        resource: 'DocumentAdded',
        contentType: file ? contentType(file) : 'text/markdown',
        onProgress: (sent, total) => setProgress({ sent, total }),
      });
      syncToast(`${data?.document?.title ?? named} added`, data?.sync);
      form.reset();
      setFile(null);
      setTitle('');
      setPrinter('');
      setMaterial('');
      setNote('');
      onAdded();
    } catch (failure) {
      if (failure.status !== 401) setError(failure);
    } finally {
      setProgress(null);
    }
  }

  const percent = progress && progress.total ? Math.min(100, Math.round((progress.sent / progress.total) * 100)) : 0;
  return html`<form class="upload" aria-labelledby="memory-add-h" onSubmit=${submit} data-testid="memory-add">
    <h3 id="memory-add-h">Add a document</h3>
    <div class="form-row">
      <${Field} label="Document" hint="Markdown (.md), text (.txt) or PDF; at most 20 MiB" control=${(id, hint) => html`<input
        id=${id} type="file" name="file" accept=${ACCEPT} aria-describedby=${hint} data-testid="memory-file"
        onChange=${(e) => setFile(e.currentTarget.files?.[0] ?? null)} />`} />
      <${Field} label="Title (optional)" hint="The file's name when empty" control=${(id, hint) => html`<input
        id=${id} type="text" name="title" maxlength="200" aria-describedby=${hint} value=${title} placeholder=${file?.name ?? ''}
        onInput=${(e) => setTitle(e.currentTarget.value)} data-testid="memory-title" />`} />
      <${Field} label="About printer (optional)" hint="Only questions about it find the document" control=${(id, hint) => html`<select
        id=${id} name="printer" aria-describedby=${hint} value=${printer} onChange=${(e) => setPrinter(e.currentTarget.value)}>
        <option value="">Any printer</option>
        ${known.map((p) => html`<option key=${p.id} value=${p.id}>${printerName(p)}</option>`)}
      </select>`} />
      <${Field} label="Material (optional)" hint="PETG, PLA…" control=${(id, hint) => html`<input
        id=${id} type="text" name="material" maxlength="40" class="input-small" aria-describedby=${hint} value=${material}
        onInput=${(e) => setMaterial(e.currentTarget.value)} />`} />
      <${Field} label="Or write a note" hint="Markdown; the assistant reads it like a document" control=${(id, hint) => html`<textarea
        id=${id} name="note" rows="3" maxlength="20000" aria-describedby=${hint} value=${note} disabled=${Boolean(file)}
        onInput=${(e) => setNote(e.currentTarget.value)} data-testid="memory-note"></textarea>`} />
      <div class="field field-action">
        <button type="submit" class="btn btn-primary" disabled=${!(file || note.trim()) || Boolean(progress)} data-testid="memory-add-submit">${file || !note.trim() ? 'Add document' : 'Add note'}</button>
      </div>
    </div>
    ${progress ? html`<div class="upload-progress" data-testid="memory-upload-progress">
      <progress max="100" value=${percent} aria-label="Upload progress">${percent}%</progress>
      <span class="muted">${percent < 100 ? `${bytes(progress.sent)} of ${bytes(progress.total)}` : 'Reading and indexing the document…'}</span>
    </div>` : null}
    ${error ? html`<${ErrorBox} error=${error} />` : null}
  </form>`;
}

function Documents({ documents, wanted, canEdit, onChanged }) {
  const [open, setOpen] = useState(() => new Set(wanted ? [wanted] : []));
  useEffect(() => {
    if (wanted) setOpen((shown) => (shown.has(wanted) ? shown : new Set([...shown, wanted])));
  }, [wanted]);
  const toggle = (id) => setOpen((shown) => {
    const next = new Set(shown);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    return next;
  });

  const list = documents.data?.documents ?? null;
  if (!list) return documents.error ? html`<${ErrorBox} error=${documents.error} />` : html`<${Loading}>Loading documents…<//>`;
  const missing = wanted && !list.some((d) => d.id === wanted)
    ? html`<div class="banner banner-warn" role="status">There is no document ${wanted} (any more).</div>`
    : null;
  if (!list.length) {
    return html`${missing}<${EmptyState} title="No documents yet">
      <p>${canEdit ? 'Add a manual, a guide or notes above.' : 'An admin adds manuals, guides and notes here.'}</p>
    <//>`;
  }
  const columns = canEdit ? 8 : 7;
  return html`${missing}<div class="table-wrap"><table class="table stack" data-testid="memory-documents">
    <caption class="visually-hidden">Documents in the memory, newest change first</caption>
    <thead><tr><th scope="col">Title</th><th scope="col">Format</th><th scope="col">Printer</th><th scope="col">Material</th>
      <th scope="col">Size</th><th scope="col">Updated</th><th scope="col">Added by</th>${canEdit ? html`<th scope="col">Actions</th>` : null}</tr></thead>
    <tbody>${list.map((doc) => html`<${DocumentRows} key=${doc.id} doc=${doc} open=${open.has(doc.id)} focus=${doc.id === wanted}
      columns=${columns} canEdit=${canEdit} onToggle=${() => toggle(doc.id)} onChanged=${onChanged} />`)}</tbody>
  </table></div>`;
}

function DocumentRows({ doc, open, focus, columns, canEdit, onToggle, onChanged }) {
  const textId = `memory-text-${doc.id}`;
  const [deleting, setDeleting] = useState(false);

  async function remove() {
    const sure = await confirmDialog({
      title: `Delete ${doc.title}?`,
      body: 'It is removed from the memory: the assistant no longer reads from it.',
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!sure) return;
    setDeleting(true);
    try {
      await api(`/memory/documents/${encodeURIComponent(doc.id)}`, { method: 'DELETE' });
      toast(`${doc.title} deleted`, 'ok');
      onChanged();
    } catch (error) {
      if (error.status !== 401) toast(`Could not delete ${doc.title}: ${error.message}`, 'error');
      setDeleting(false);
    }
  }

  return html`<${Fragment}>
    <tr class="memory-doc" data-testid="memory-document" data-document=${doc.id}>
      <th scope="row" data-label="Title"><div><button type="button" class="link-button" aria-expanded=${open ? 'true' : 'false'}
        aria-controls=${open ? textId : undefined} onClick=${onToggle} data-testid="memory-document-title">${doc.title}</button></div></th>
      <td data-label="Format"><div><${Badge} kind="neutral">${FORMATS[doc.format] ?? doc.format}<//></div></td>
      <td data-label="Printer">${doc.printer_id ? html`<a href=${path.printer(doc.printer_id)}>${printerLabel(doc.printer_id)}</a>` : html`<span class="muted">any</span>`}</td>
      <td data-label="Material">${doc.material ?? html`<span class="muted">any</span>`}</td>
      <td data-label="Size"><div>${bytes(doc.bytes)}<span class="muted"> · ${plural(doc.chars, ['character', 'characters'])}</span></div></td>
      <td data-label="Updated"><time datetime=${new Date(doc.updated_at).toISOString()}>${dateTime(doc.updated_at)}</time></td>
      <td data-label="Added by">${doc.created_by}</td>
      ${canEdit ? html`<td data-label="Actions"><div class="job-actions">
        <${ReplaceButton} doc=${doc} onReplaced=${onChanged} />
        <button type="button" class="btn btn-small btn-danger" disabled=${deleting} onClick=${remove} data-testid="memory-delete">
          Delete<${VisuallyHidden}> ${doc.title}<//></button>
      </div></td>` : null}
    </tr>
    ${open ? html`<tr class="memory-doc-row"><td colspan=${columns} class="memory-doc-cell" id=${textId}>
      <${DocumentText} doc=${doc} focus=${focus} />
    </td></tr>` : null}
  <//>`;
}

// "Replace" (admin): a file input that looks like a button; the new file's text replaces
// the document's, its title, printer and material stay.
function ReplaceButton({ doc, onReplaced }) {
  const [busy, setBusy] = useState(false);
  async function chosen(event) {
    const input = event.currentTarget;
    const file = input.files?.[0] ?? null;
    input.value = '';
    if (!file) return;
    const large = tooLarge(file);
    if (large) {
      toast(large, 'error');
      return;
    }
    const sure = await confirmDialog({
      title: `Replace ${doc.title}?`,
      body: `Its text becomes that of ${file.name}; its title, printer and material stay.`,
      confirmLabel: 'Replace',
    });
    if (!sure) return;
    setBusy(true);
    try {
      const where = `/memory/documents/${encodeURIComponent(doc.id)}${query({ title: doc.title, printer: doc.printer_id, material: doc.material })}`;
      const { data } = await upload(where, file, { method: 'PUT', resource: 'DocumentAdded', contentType: contentType(file) });
      syncToast(`${doc.title} replaced`, data?.sync);
      onReplaced();
    } catch (error) {
      if (error.status !== 401) toast(`Could not replace ${doc.title}: ${error.message}`, 'error');
    } finally {
      setBusy(false);
    }
  }
  return html`<label class="btn btn-small file-button">
    ${busy ? 'Replacing…' : 'Replace'}<${VisuallyHidden}> ${doc.title} with a file<//>
    <input type="file" class="visually-hidden" accept=${ACCEPT} disabled=${busy} onChange=${chosen} data-testid="memory-replace" />
  </label>`;
}

function DocumentText({ doc, focus }) {
  const one = useQuery(
    () => api(`/memory/documents/${encodeURIComponent(doc.id)}`, { resource: 'DocumentView' }),
    [doc.id, doc.updated_at],
  );
  const box = useRef(null);
  const loaded = Boolean(one.data);
  // Opened from a link (`?document=`): bring it into view once its text is there.
  useEffect(() => {
    if (focus && loaded) box.current?.closest('tr')?.previousElementSibling?.scrollIntoView({ block: 'start' });
  }, [focus, loaded]);
  if (!one.data) return one.error ? html`<${ErrorBox} error=${one.error} />` : html`<${Loading}>Loading ${doc.title}…<//>`;
  const text = one.data.content ?? '';
  const cut = text.length > SHOWN_CHARS;
  return html`<div ref=${box} data-testid="memory-document-text">
    ${cut ? html`<p class="muted">The first ${count(SHOWN_CHARS)} characters of ${count(text.length)}.</p>` : null}
    <pre class="memory-doc-content" tabindex="0" role="region" aria-label=${`Text of ${doc.title}`}>${cut ? text.slice(0, SHOWN_CHARS) : text}</pre>
  </div>`;
}
