// Administration (`/admin`, admins only): users, API tokens, the audit log.

import { api } from './api.js';
import { h, replaceChildren, errorBox, confirmDialog, copyButton, field, badge, toast, emptyState } from './ui.js';
import { dateTime, relativeTime } from './format.js';

const ROLES = ['viewer', 'operator', 'admin'];

export function mount(main, ctx) {
  ctx.setTitle('Admin');
  if (ctx.me?.role !== 'admin') {
    main.append(h('div', { class: 'page' }, h('h1', {}, 'Admin'),
      emptyState('This page needs the admin role', h('p', {}, `You are signed in as ${ctx.me?.name} (${ctx.me?.role}).`))));
    return { refresh() {}, onLive() {}, unmount() {} };
  }
  let users = [];
  let tokens = [];
  let refreshing = null;

  const usersBody = h('div', {});
  const tokensBody = h('div', {});
  const auditBody = h('div', {});
  const tokenResult = h('div', { 'aria-live': 'polite' });

  // Add a user.
  const userName = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', pattern: '[A-Za-z0-9._@-]{1,64}', spellcheck: 'false' });
  const userPassword = h('input', { type: 'password', name: 'password', required: true, minlength: 10, autocomplete: 'new-password' });
  const userRole = h('select', { name: 'role' }, ROLES.map((r) => h('option', { value: r, selected: r === 'viewer' }, r)));
  const userForm = h('form', { class: 'form-row' },
    field('Name', userName, 'Letters, digits and -_.@'),
    field('Password', userPassword, 'At least 10 characters'),
    field('Role', userRole),
    h('div', { class: 'field field-action' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add user')));
  userForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('/users', { method: 'POST', body: { name: userName.value.trim(), password: userPassword.value, role: userRole.value } });
      toast(`User ${userName.value.trim()} added.`, 'ok');
      userForm.reset();
      refresh();
    } catch (error) {
      toast(`Could not add the user: ${error.message}`, 'error');
    }
  });

  // Create an API token.
  const tokenUser = h('select', { name: 'user' });
  const tokenName = h('input', { type: 'text', name: 'label', autocomplete: 'off', placeholder: 'nightly script' });
  const tokenForm = h('form', { class: 'form-row' },
    field('For user', tokenUser, 'The token carries this user’s role'),
    field('Label', tokenName),
    h('div', { class: 'field field-action' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create token')));
  tokenForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const body = { user: tokenUser.value };
      if (tokenName.value.trim()) body.name = tokenName.value.trim();
      const answer = await api('/tokens', { method: 'POST', body });
      const code = h('code', {}, answer.token);
      replaceChildren(tokenResult, h('div', { class: 'banner banner-ok' },
        h('p', {}, h('strong', {}, 'Copy this token now: '), 'it is shown only once.'),
        h('div', { class: 'codeblock' }, h('pre', {}, code), copyButton(answer.token, code))));
      tokenName.value = '';
      refresh();
    } catch (error) {
      replaceChildren(tokenResult, errorBox(error));
    }
  });

  main.append(h('div', { class: 'page' },
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Admin'))),
    h('section', { class: 'panel', 'aria-labelledby': 'users-h' }, h('h2', { id: 'users-h' }, 'Users'), usersBody,
      h('h3', {}, 'Add a user'), userForm),
    h('section', { class: 'panel', 'aria-labelledby': 'tokens-h' }, h('h2', { id: 'tokens-h' }, 'API tokens'),
      h('p', { class: 'muted' }, 'For scripts: send it as “Authorization: Bearer …”.'), tokensBody,
      h('h3', {}, 'Create a token'), tokenForm, tokenResult),
    h('section', { class: 'panel', 'aria-labelledby': 'audit-h' }, h('h2', { id: 'audit-h' }, 'Audit log'), auditBody)));

  const th = (text) => h('th', { scope: 'col' }, text);
  const td = (label, ...content) => h('td', { 'data-label': label }, ...content);

  async function deleteUser(user) {
    const ok = await confirmDialog({
      title: `Delete user ${user.name}?`,
      body: h('p', {}, 'Their sessions end and their API tokens stop working.'),
      confirmLabel: 'Delete user',
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/users/${encodeURIComponent(user.name)}`, { method: 'DELETE' });
      toast(`User ${user.name} deleted.`, 'ok');
      refresh();
    } catch (error) {
      toast(`Could not delete: ${error.message}`, 'error');
    }
  }

  async function revokeToken(token) {
    const ok = await confirmDialog({
      title: `Revoke token ${token.name || token.id}?`,
      body: h('p', {}, 'Scripts using it get 401 from now on.'),
      confirmLabel: 'Revoke token',
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/tokens/${encodeURIComponent(token.id)}`, { method: 'DELETE' });
      toast('Token revoked.', 'ok');
      refresh();
    } catch (error) {
      toast(`Could not revoke: ${error.message}`, 'error');
    }
  }

  function renderUsers() {
    replaceChildren(usersBody, h('div', { class: 'table-wrap' }, h('table', { class: 'table stack', 'data-testid': 'users-table' },
      h('thead', {}, h('tr', {}, th('Name'), th('Role'), th('Created'), th('Actions'))),
      h('tbody', {}, users.map((user) => h('tr', {},
        h('th', { scope: 'row', 'data-label': 'Name' }, h('div', {}, user.name, user.name === ctx.me.name ? h('span', { class: 'muted' }, ' (you)') : null)),
        td('Role', badge(user.role, user.role === 'admin' ? 'accent' : 'neutral')),
        td('Created', dateTime(user.created_at)),
        td('Actions', user.name === ctx.me.name ? '—' : h('button', { type: 'button', class: 'btn btn-small btn-danger', onclick: () => deleteUser(user) },
          'Delete', h('span', { class: 'visually-hidden' }, ` ${user.name}`)))))))));
    const selected = tokenUser.value || ctx.me.name;
    replaceChildren(tokenUser, users.map((u) => h('option', { value: u.name, selected: u.name === selected }, `${u.name} (${u.role})`)));
  }

  function renderTokens() {
    if (!tokens.length) {
      replaceChildren(tokensBody, h('p', { class: 'muted' }, 'No API tokens.'));
      return;
    }
    replaceChildren(tokensBody, h('div', { class: 'table-wrap' }, h('table', { class: 'table stack', 'data-testid': 'tokens-table' },
      h('thead', {}, h('tr', {}, th('Token'), th('User'), th('Created'), th('Last used'), th('Status'), th('Actions'))),
      h('tbody', {}, tokens.map((token) => h('tr', {},
        h('th', { scope: 'row', 'data-label': 'Token' }, h('div', {}, token.name || 'unlabelled', h('span', { class: 'muted block mono' }, `kitt_${token.id}_…`))),
        td('User', token.user_name),
        td('Created', dateTime(token.created_at)),
        td('Last used', token.last_used_at ? relativeTime(token.last_used_at) : 'never'),
        td('Status', token.revoked_at ? badge('revoked', 'muted') : badge('active', 'ok')),
        td('Actions', token.revoked_at ? '—' : h('button', { type: 'button', class: 'btn btn-small btn-danger', onclick: () => revokeToken(token) },
          'Revoke', h('span', { class: 'visually-hidden' }, ` token ${token.name || token.id}`)))))))));
  }

  function renderAudit(entries) {
    if (!entries.length) {
      replaceChildren(auditBody, h('p', { class: 'muted' }, 'Nothing yet.'));
      return;
    }
    replaceChildren(auditBody, h('div', { class: 'table-wrap' }, h('table', { class: 'table stack' },
      h('thead', {}, h('tr', {}, th('When'), th('Who'), th('What'), th('Status'), th('Detail'))),
      h('tbody', {}, entries.map((entry) => h('tr', {},
        td('When', dateTime(entry.at)),
        td('Who', entry.actor),
        td('What', h('span', { class: 'mono' }, entry.action)),
        td('Status', badge(String(entry.status), entry.status < 400 ? 'ok' : 'danger')),
        td('Detail', entry.detail ?? '')))))));
  }

  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const [u, t, a] = await Promise.all([api('/users'), api('/tokens'), api('/audit?limit=50')]);
        users = u.users;
        tokens = t.tokens;
        renderUsers();
        renderTokens();
        renderAudit(a.audit);
      } catch (error) {
        if (error.status !== 401) replaceChildren(usersBody, errorBox(error));
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  return { refresh, onLive() {}, unmount() {} };
}
