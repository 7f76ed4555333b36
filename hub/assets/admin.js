// Administration (`/admin`, admins only): users, API tokens, the audit log.

import { html, useState } from './lib.js';
import { api } from './api.js';
import { me, useQuery } from './store.js';
import { Badge, CodeBlock, EmptyState, ErrorBox, Field, VisuallyHidden, confirmDialog, toast, useTitle } from './ui.js';
import { dateTime, relativeTime } from './format.js';

const ROLES = ['viewer', 'operator', 'admin'];

export default function AdminPage() {
  useTitle('Admin');
  const user = me.value;
  if (user?.role !== 'admin') {
    return html`<div class="page"><h1>Admin</h1>
      <${EmptyState} title="This page needs the admin role"><p>You are signed in as ${user?.name} (${user?.role}).</p><//>
    </div>`;
  }
  return html`<${Admin} me=${user} />`;
}

function Admin({ me: user }) {
  const data = useQuery(async () => {
    const [users, tokens, audit] = await Promise.all([
      api('/users', { resource: 'UserList' }),
      api('/tokens', { resource: 'TokenList' }),
      api('/audit?limit=50', { resource: 'AuditLog' }),
    ]);
    return { users: users.users, tokens: tokens.tokens, audit: audit.audit };
  }, []);
  const users = data.data?.users ?? [];
  return html`<div class="page">
    <div class="page-head"><div><h1>Admin</h1></div></div>
    <section class="panel" aria-labelledby="users-h"><h2 id="users-h">Users</h2>
      <div>${data.error ? html`<${ErrorBox} error=${data.error} />` : html`<${Users} users=${users} me=${user} reload=${data.reload} />`}</div>
      <h3>Add a user</h3>
      <${AddUser} reload=${data.reload} />
    </section>
    <section class="panel" aria-labelledby="tokens-h"><h2 id="tokens-h">API tokens</h2>
      <p class="muted">For scripts: send it as “Authorization: Bearer …”.</p>
      <div><${Tokens} tokens=${data.data?.tokens} reload=${data.reload} /></div>
      <h3>Create a token</h3>
      <${CreateToken} users=${users} me=${user} reload=${data.reload} />
    </section>
    <section class="panel" aria-labelledby="audit-h"><h2 id="audit-h">Audit log</h2>
      <div><${Audit} entries=${data.data?.audit} /></div>
    </section>
  </div>`;
}

const th = (text) => html`<th scope="col">${text}</th>`;

function Users({ users, me: user, reload }) {
  const [reset, setReset] = useState(null);
  async function resetPassword(row) {
    const ok = await confirmDialog({
      title: `Reset the password of ${row.name}?`,
      body: html`<p>A new password is generated and shown once. Their sessions end and their API tokens stop working.</p>`,
      confirmLabel: 'Reset password',
      danger: true,
    });
    if (!ok) return;
    try {
      const answer = await api(`/users/${encodeURIComponent(row.name)}/password`, { method: 'POST', body: {}, request: 'PasswordReset', resource: 'PasswordResetDone' });
      setReset({ name: row.name, password: answer.password, sessions: answer.sessions_ended, tokens: answer.tokens_revoked });
      reload();
    } catch (error) {
      toast(`Could not reset: ${error.message}`, 'error');
    }
  }
  async function remove(row) {
    const ok = await confirmDialog({
      title: `Delete user ${row.name}?`,
      body: html`<p>Their sessions end and their API tokens stop working.</p>`,
      confirmLabel: 'Delete user',
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/users/${encodeURIComponent(row.name)}`, { method: 'DELETE' });
      toast(`User ${row.name} deleted.`, 'ok');
      reload();
    } catch (error) {
      toast(`Could not delete: ${error.message}`, 'error');
    }
  }
  return html`<div class="table-wrap"><table class="table stack" data-testid="users-table">
    <thead><tr>${th('Name')}${th('Role')}${th('Created')}${th('Actions')}</tr></thead>
    <tbody>${users.map((row) => html`<tr key=${row.name}>
      <th scope="row" data-label="Name"><div>${row.name}${row.name === user.name ? html`<span class="muted"> (you)</span>` : null}</div></th>
      <td data-label="Role"><${Badge} kind=${row.role === 'admin' ? 'accent' : 'neutral'}>${row.role}<//></td>
      <td data-label="Created">${dateTime(row.created_at)}</td>
      <td data-label="Actions">${row.name === user.name ? html`<a href="/account">Change your password</a>` : html`<button type="button" class="btn btn-small" onClick=${() => resetPassword(row)}>
        Reset password<${VisuallyHidden}> of ${row.name}<//></button> <button type="button" class="btn btn-small btn-danger" onClick=${() => remove(row)}>
        Delete<${VisuallyHidden}> ${row.name}<//></button>`}</td>
    </tr>`)}</tbody>
  </table></div>
  <div aria-live="polite">${reset ? html`<div class="banner banner-ok" data-testid="password-reset">
    <p><strong>New password for ${reset.name}, shown only once: </strong>${reset.sessions} sessions ended, ${reset.tokens} API tokens revoked.</p>
    <${CodeBlock} text=${reset.password} />
  </div>` : null}</div>`;
}

function AddUser({ reload }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState('viewer');
  async function submit(event) {
    event.preventDefault();
    try {
      await api('/users', { method: 'POST', body: { name: name.trim(), password, role }, request: 'UserRequest' });
      toast(`User ${name.trim()} added.`, 'ok');
      setName('');
      setPassword('');
      setRole('viewer');
      reload();
    } catch (error) {
      toast(`Could not add the user: ${error.message}`, 'error');
    }
  }
  return html`<form class="form-row" onSubmit=${submit}>
    <${Field} label="Name" hint="Letters, digits and -_.@" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} type="text" name="name"
      required autocomplete="off" pattern="[A-Za-z0-9._@-]{1,64}" spellcheck="false" value=${name} onInput=${(e) => setName(e.currentTarget.value)} />`} />
    <${Field} label="Password" hint="At least 10 characters" control=${(id, hint) => html`<input id=${id} aria-describedby=${hint} type="password" name="password"
      required minlength="10" autocomplete="new-password" value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} />`} />
    <${Field} label="Role" control=${(id) => html`<select id=${id} name="role" value=${role} onChange=${(e) => setRole(e.currentTarget.value)}>
      ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
    </select>`} />
    <div class="field field-action"><button type="submit" class="btn btn-primary">Add user</button></div>
  </form>`;
}

function Tokens({ tokens, reload }) {
  if (!tokens) return null;
  if (!tokens.length) return html`<p class="muted">No API tokens.</p>`;
  async function revoke(token) {
    const ok = await confirmDialog({
      title: `Revoke token ${token.name || token.id}?`,
      body: html`<p>Scripts using it get 401 from now on.</p>`,
      confirmLabel: 'Revoke token',
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/tokens/${encodeURIComponent(token.id)}`, { method: 'DELETE' });
      toast('Token revoked.', 'ok');
      reload();
    } catch (error) {
      toast(`Could not revoke: ${error.message}`, 'error');
    }
  }
  return html`<div class="table-wrap"><table class="table stack" data-testid="tokens-table">
    <thead><tr>${th('Token')}${th('User')}${th('Created')}${th('Last used')}${th('Status')}${th('Actions')}</tr></thead>
    <tbody>${tokens.map((token) => html`<tr key=${token.id}>
      <th scope="row" data-label="Token"><div>${token.name || 'unlabelled'}<span class="muted block mono">kitt_${token.id}_…</span></div></th>
      <td data-label="User">${token.user_name}</td>
      <td data-label="Created">${dateTime(token.created_at)}</td>
      <td data-label="Last used">${token.last_used_at ? relativeTime(token.last_used_at) : 'never'}</td>
      <td data-label="Status">${token.revoked_at ? html`<${Badge} kind="muted">revoked<//>` : html`<${Badge} kind="ok">active<//>`}</td>
      <td data-label="Actions">${token.revoked_at ? '—' : html`<button type="button" class="btn btn-small btn-danger" onClick=${() => revoke(token)}>
        Revoke<${VisuallyHidden}> token ${token.name || token.id}<//></button>`}</td>
    </tr>`)}</tbody>
  </table></div>`;
}

function CreateToken({ users, me: user, reload }) {
  const [owner, setOwner] = useState(null);
  const [label, setLabel] = useState('');
  const [result, setResult] = useState(null);
  const selected = owner ?? user.name;
  async function submit(event) {
    event.preventDefault();
    try {
      const body = { user: selected };
      if (label.trim()) body.name = label.trim();
      const answer = await api('/tokens', { method: 'POST', body, request: 'TokenRequest', resource: 'CreatedToken' });
      setResult({ token: answer.token });
      setLabel('');
      reload();
    } catch (error) {
      setResult({ error });
    }
  }
  return html`<form class="form-row" onSubmit=${submit}>
      <${Field} label="For user" hint="The token carries this user’s role" control=${(id, hint) => html`<select id=${id} aria-describedby=${hint}
        name="user" data-testid="token-user" value=${selected} onChange=${(e) => setOwner(e.currentTarget.value)}>
        ${users.map((u) => html`<option key=${u.name} value=${u.name}>${u.name} (${u.role})</option>`)}
      </select>`} />
      <${Field} label="Label" control=${(id) => html`<input id=${id} type="text" name="label" data-testid="token-label" autocomplete="off"
        placeholder="nightly script" value=${label} onInput=${(e) => setLabel(e.currentTarget.value)} />`} />
      <div class="field field-action"><button type="submit" class="btn btn-primary" data-testid="token-create">Create token</button></div>
    </form>
    <div aria-live="polite">
      ${result?.error ? html`<${ErrorBox} error=${result.error} />` : null}
      ${result?.token ? html`<div class="banner banner-ok" data-testid="token-created">
        <p><strong>Copy this token now: </strong>it is shown only once.</p>
        <${CodeBlock} text=${result.token} />
      </div>` : null}
    </div>`;
}

function Audit({ entries }) {
  if (!entries) return null;
  if (!entries.length) return html`<p class="muted">Nothing yet.</p>`;
  return html`<div class="table-wrap"><table class="table stack">
    <thead><tr>${th('When')}${th('Who')}${th('What')}${th('Status')}${th('Detail')}</tr></thead>
    <tbody>${entries.map((entry, index) => html`<tr key=${index}>
      <td data-label="When">${dateTime(entry.at)}</td>
      <td data-label="Who">${entry.actor}</td>
      <td data-label="What"><span class="mono">${entry.action}</span></td>
      <td data-label="Status"><${Badge} kind=${entry.status < 400 ? 'ok' : 'danger'}>${String(entry.status)}<//></td>
      <td data-label="Detail">${entry.detail ?? ''}</td>
    </tr>`)}</tbody>
  </table></div>`;
}
