// Small shared components: fields, badges, empty states, errors, dialogs, toasts, copying.
// Styles are set through classes or style objects (the CSSOM), never through an inline
// `style` attribute string: the Content-Security-Policy forbids those.

import { html, render, signal, useState, useRef, useEffect } from './lib.js';

let idCount = 0;

// An id unique in the document, kept for the component's life.
export function useUniqueId(prefix) {
  const [id] = useState(() => `${prefix}-${++idCount}`);
  return id;
}

export function VisuallyHidden({ children }) {
  return html`<span class="visually-hidden">${children}</span>`;
}

export function Badge({ kind, children, ...attrs }) {
  return html`<span ...${attrs} class=${`badge badge-${kind}`}>${children}</span>`;
}

// A labelled form field: `control(id, describedBy)` renders the control with the id the
// label points at.
export function Field({ label, hint, id, control }) {
  const generated = useUniqueId('f');
  const controlId = id ?? generated;
  const hintId = hint ? `${controlId}-hint` : undefined;
  return html`<div class="field">
    <label for=${controlId}>${label}</label>
    ${control(controlId, hintId)}
    ${hint ? html`<span class="hint" id=${hintId}>${hint}</span>` : null}
  </div>`;
}

export function EmptyState({ title, children }) {
  return html`<div class="empty"><p class="empty-title">${title}</p>${children}</div>`;
}

export function ErrorBox({ error }) {
  return html`<div class="banner banner-error" role="alert">${error?.message ?? String(error)}</div>`;
}

export function Loading({ children }) {
  return html`<p class="loading">${children}</p>`;
}

// A modal confirmation. Resolves true when confirmed. Focus starts on "Cancel".
export function confirmDialog({ title, body, confirmLabel = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const host = document.createElement('div');
    document.body.append(host);
    const done = (result) => {
      render(null, host);
      host.remove();
      resolve(result);
    };
    render(html`<${ConfirmDialog} title=${title} body=${body} confirmLabel=${confirmLabel} danger=${danger} onDone=${done} />`, host);
  });
}

function ConfirmDialog({ title, body, confirmLabel, danger, onDone }) {
  const dialog = useRef(null);
  const cancel = useRef(null);
  const result = useRef(false);
  const titleId = useUniqueId('dialog-title');
  useEffect(() => {
    dialog.current.showModal();
    cancel.current.focus();
  }, []);
  return html`<dialog class="dialog" aria-labelledby=${titleId} ref=${dialog} onClose=${() => onDone(result.current)}>
    <h2 id=${titleId}>${title}</h2>
    ${body ? html`<div class="dialog-body">${body}</div>` : null}
    <div class="dialog-actions">
      <button type="button" class="btn" value="cancel" ref=${cancel} onClick=${() => dialog.current.close()}>Cancel</button>
      <button type="button" class=${danger ? 'btn btn-danger' : 'btn btn-primary'} value="ok"
        onClick=${() => { result.current = true; dialog.current.close(); }}>${confirmLabel}</button>
    </div>
  </dialog>`;
}

// Toasts: short messages in the corner, read out by screen readers (`Toasts` renders them
// into the shell's `#toasts` live region).
const toasts = signal([]);
let toastCount = 0;

export function toast(message, kind = 'info') {
  const id = ++toastCount;
  toasts.value = [...toasts.value, { id, message, kind }];
  setTimeout(() => { toasts.value = toasts.value.filter((t) => t.id !== id); }, kind === 'error' ? 9000 : 5000);
}

export function Toasts() {
  return toasts.value.map((t) => html`<div key=${t.id} class=${`toast toast-${t.kind}`}>${t.message}</div>`);
}

// A button that copies `text`; falls back to selecting the element `fallback` points at
// where the clipboard API is not available (plain http outside localhost).
export function CopyButton({ text, fallback }) {
  const [label, setLabel] = useState('Copy');
  useEffect(() => {
    if (label === 'Copy') return undefined;
    const timer = setTimeout(() => setLabel('Copy'), 2500);
    return () => clearTimeout(timer);
  }, [label]);
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
      setLabel('Copied');
    } catch {
      if (fallback?.current) {
        const range = document.createRange();
        range.selectNodeContents(fallback.current);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      setLabel('Selected: press Ctrl+C');
    }
  }
  return html`<button type="button" class="btn btn-small" onClick=${copy}>${label}</button>`;
}

// A block of code with a copy button.
export function CodeBlock({ text }) {
  const code = useRef(null);
  return html`<div class="codeblock"><pre><code ref=${code}>${text}</code></pre><${CopyButton} text=${text} fallback=${code} /></div>`;
}

// Sets the document's title while the page shows.
export function useTitle(title) {
  useEffect(() => {
    document.title = title ? `${title} · kitt` : 'kitt';
  }, [title]);
}
