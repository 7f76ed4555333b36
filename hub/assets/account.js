// Your account (`/account`, everyone signed in): change your own password.

import { html, useState } from './lib.js';
import { api } from './api.js';
import { me } from './store.js';
import { ErrorBox, Field, useTitle } from './ui.js';

export default function AccountPage() {
  useTitle('Account');
  const user = me.value;
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [result, setResult] = useState(null);
  async function submit(event) {
    event.preventDefault();
    setResult(null);
    try {
      const body = { current_password: current, new_password: next };
      const answer = await api('/me/password', { method: 'POST', body, request: 'PasswordChange', resource: 'PasswordChanged' });
      setResult({ ended: answer.sessions_ended });
      setCurrent('');
      setNext('');
    } catch (error) {
      setResult({ error });
    }
  }
  return html`<div class="page">
    <div class="page-head"><div><h1>Account</h1><p class="muted">${user?.name} · ${user?.role}</p></div></div>
    <section class="panel" aria-labelledby="password-h"><h2 id="password-h">Change your password</h2>
      <form class="form-row" onSubmit=${submit}>
        <${Field} label="Current password" control=${(id) => html`<input id=${id} type="password" name="current-password" required
          autocomplete="current-password" data-testid="current-password" value=${current} onInput=${(e) => setCurrent(e.currentTarget.value)} />`} />
        <${Field} label="New password" hint="At least 10 characters" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} type="password"
          name="new-password" required minlength="10" autocomplete="new-password" data-testid="new-password" value=${next}
          onInput=${(e) => setNext(e.currentTarget.value)} />`} />
        <div class="field field-action"><button type="submit" class="btn btn-primary" data-testid="change-password">Change password</button></div>
      </form>
      <div aria-live="polite">
        ${result?.error ? html`<${ErrorBox} error=${result.error} />` : null}
        ${result && !result.error ? html`<div class="banner banner-ok" data-testid="password-changed">
          <p>Password changed. ${result.ended === 1 ? 'One other session of yours was ended.' : `${result.ended} other sessions of yours were ended.`} API tokens keep working.</p>
        </div>` : null}
      </div>
    </section>
  </div>`;
}
