// Login (`/login`).

import { api } from './api.js';
import { h, replaceChildren } from './ui.js';

export function mount(main, ctx) {
  ctx.setTitle('Log in');
  const name = h('input', { id: 'login-name', type: 'text', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false', 'data-testid': 'login-name' });
  const password = h('input', { id: 'login-password', type: 'password', name: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' }, 'Log in');
  const error = h('div', { class: 'form-error', role: 'alert' });
  const form = h('form', { class: 'login-form', 'aria-labelledby': 'login-h' },
    h('div', { class: 'field' }, h('label', { for: 'login-name' }, 'User name'), name),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
    error,
    submit);
  main.append(h('div', { class: 'login' },
    h('div', { class: 'login-card' },
      h('div', { class: 'login-brand' }, h('img', { src: '/assets/favicon.svg', alt: '', width: 40, height: 40 }), h('span', {}, 'kitt')),
      h('h1', { id: 'login-h' }, 'Log in to the lab'),
      form)));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    replaceChildren(error);
    try {
      const user = await api('/login', { method: 'POST', body: { name: name.value.trim(), password: password.value } });
      ctx.onLogin(user);
      ctx.navigate(safeNext(ctx.search.get('next')), { replace: true });
    } catch (failure) {
      error.textContent = failure.status === 401 ? 'Unknown user or wrong password.' : failure.message;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  name.focus();
  return { refresh() {}, onLive() {}, unmount() {} };
}

// Only a path on this site: never `//elsewhere` or `https://…`.
function safeNext(next) {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || next.startsWith('/login')) return '/';
  return next;
}
