// Login (`/login`).

import { html, useState, useRef, useEffect } from './lib.js';
import { api } from './api.js';
import { me } from './store.js';
import { useTitle } from './ui.js';

export default function LoginPage({ search, navigate }) {
  useTitle('Log in');
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const nameInput = useRef(null);
  const passwordInput = useRef(null);
  useEffect(() => nameInput.current.focus(), []);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError('');
    try {
      me.value = await api('/login', { method: 'POST', body: { name: name.trim(), password }, request: 'LoginRequest', resource: 'Me' });
      navigate(safeNext(search.get('next')), { replace: true });
    } catch (failure) {
      setBusy(false);
      setError(failure.status === 401 ? 'Unknown user or wrong password.' : failure.message);
      passwordInput.current?.select();
    }
  }

  return html`<div class="login"><div class="login-card">
    <div class="login-brand"><img src="/assets/favicon.svg" alt="" width="40" height="40" /><span>kitt</span></div>
    <h1 id="login-h">Log in to the lab</h1>
    <form class="login-form" aria-labelledby="login-h" onSubmit=${submit}>
      <div class="field"><label for="login-name">User name</label>
        <input id="login-name" ref=${nameInput} type="text" name="username" autocomplete="username" required autocapitalize="none"
          spellcheck="false" data-testid="login-name" value=${name} onInput=${(e) => setName(e.currentTarget.value)} /></div>
      <div class="field"><label for="login-password">Password</label>
        <input id="login-password" ref=${passwordInput} type="password" name="password" autocomplete="current-password" required
          data-testid="login-password" value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} /></div>
      <div class="form-error" role="alert">${error}</div>
      <button type="submit" class="btn btn-primary btn-block" data-testid="login-submit" disabled=${busy}>Log in</button>
    </form>
  </div></div>`;
}

// Only a path on this site: never `//elsewhere` or `https://…`.
function safeNext(next) {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || next.startsWith('/login')) return '/';
  return next;
}
