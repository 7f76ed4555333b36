// Agents (`/agents`): health of each edge agent, enrollment and revocation.

import { api } from './api.js';
import { h, replaceChildren, errorBox, confirmDialog, copyButton, field, badge, emptyState, toast } from './ui.js';
import { bytes, count, dateTime, relativeTime } from './format.js';

const CERT_WARN_MS = 14 * 86400e3;

export function mount(main, ctx) {
  ctx.setTitle('Agents');
  const isAdmin = ctx.me?.role === 'admin';
  let agents = [];
  let refreshing = null;

  const enrollPanel = h('section', { class: 'panel', 'aria-labelledby': 'enroll-h', hidden: true });
  const addButton = isAdmin
    ? h('button', { type: 'button', class: 'btn btn-primary', 'aria-expanded': 'false', 'aria-controls': 'enroll-panel' }, 'Add an agent')
    : null;
  enrollPanel.id = 'enroll-panel';
  const body = h('div', {}, h('p', { class: 'loading' }, 'Loading agents…'));
  main.append(h('div', { class: 'page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Agents'), h('p', { class: 'muted' }, 'The edge agents on Raspberry Pis next to the printers.')),
      addButton),
    enrollPanel,
    body));

  if (addButton) {
    addButton.addEventListener('click', () => {
      const open = enrollPanel.hidden;
      enrollPanel.hidden = !open;
      addButton.setAttribute('aria-expanded', String(open));
      if (open) {
        buildEnroll();
        enrollPanel.querySelector('input')?.focus();
      }
    });
  }

  function buildEnroll() {
    const name = h('input', { type: 'text', name: 'name', autocomplete: 'off', pattern: '[A-Za-z0-9._-]{1,64}', spellcheck: 'false' });
    const ttl = h('select', { name: 'ttl' },
      h('option', { value: 3600 }, '1 hour'),
      h('option', { value: 86400 }, '1 day'),
      h('option', { value: 7 * 86400 }, '7 days'));
    const result = h('div', { class: 'enroll-result', 'aria-live': 'polite' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create enrollment token');
    const form = h('form', { class: 'form-row' },
      field('Agent name (optional)', name, 'Letters, digits, dot, dash, underscore; e.g. pi-x1c-01'),
      field('Token valid for', ttl),
      h('div', { class: 'field field-action' }, submit));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const body = { ttl_s: Number(ttl.value) };
        if (name.value.trim()) body.name = name.value.trim();
        const answer = await api('/enrollment-tokens', { method: 'POST', body });
        const command = `kitt-agent enroll --hub ${location.hostname}:7070 --token ${answer.token}`;
        const code = h('code', {}, command);
        replaceChildren(result,
          h('p', {}, 'On the Raspberry Pi, run (the token works once, until ', h('strong', {}, dateTime(answer.expires_at)), '):'),
          h('div', { class: 'codeblock' }, h('pre', {}, code), copyButton(command, code)),
          h('p', { class: 'hint' }, 'Port 7070 is the hub’s default agent port (UDP); use yours if it was changed.'));
      } catch (error) {
        replaceChildren(result, errorBox(error));
      } finally {
        submit.disabled = false;
      }
    });
    replaceChildren(enrollPanel, h('h2', { id: 'enroll-h' }, 'Add an agent'),
      h('p', {}, 'Create a single-use token, then run the enrollment command on the Pi. The agent appears below once it connects.'),
      form, result);
  }

  function statusCell(agent) {
    if (agent.revoked_at) return badge('revoked', 'muted');
    return agent.online ? badge('online', 'ok') : badge('offline', 'danger');
  }

  function drops(agent) {
    const list = Array.isArray(agent.drops) ? agent.drops : [];
    const total = list.reduce((sum, d) => sum + (d.count ?? 0), 0);
    if (!total) return 'none';
    return h('span', { class: 'warn-text', title: list.map((d) => `${d.class} (${d.reason}): ${d.count}`).join('; ') },
      `${count(total)} (${list.map((d) => `${d.class}: ${d.count}`).join(', ')})`);
  }

  function certificate(agent) {
    const left = agent.certificate_expires_at - Date.now();
    const text = `${dateTime(agent.certificate_expires_at)} (${relativeTime(agent.certificate_expires_at)})`;
    return left < CERT_WARN_MS && !agent.revoked_at ? h('span', { class: 'warn-text' }, text) : text;
  }

  async function revoke(agent) {
    const ok = await confirmDialog({
      title: `Revoke agent ${agent.name || agent.id}?`,
      body: h('p', {}, 'It is disconnected within seconds and can never reconnect with its certificate. To bring the Pi back, enroll it again with a new token.'),
      confirmLabel: 'Revoke',
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/agents/${encodeURIComponent(agent.id)}/revoke`, { method: 'POST' });
      toast(`Agent ${agent.name || agent.id} revoked.`, 'ok');
      refresh();
    } catch (error) {
      toast(`Could not revoke: ${error.message}`, 'error');
    }
  }

  function render() {
    if (!agents.length) {
      replaceChildren(body, emptyState('No agents yet',
        h('p', {}, isAdmin ? 'Use “Add an agent” to enroll the first Raspberry Pi.' : 'An admin can enroll the first Raspberry Pi.')));
      return;
    }
    const th = (text) => h('th', { scope: 'col' }, text);
    const td = (label, ...content) => h('td', { 'data-label': label }, ...content);
    replaceChildren(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table stack', 'data-testid': 'agents-table' },
      h('caption', { class: 'visually-hidden' }, 'Agents and their health'),
      h('thead', {}, h('tr', {}, th('Agent'), th('Status'), th('Version'), th('Last seen'), th('Outbox'), th('Drops'),
        th('Disk free'), th('Certificate expires'), isAdmin ? th('Actions') : null)),
      h('tbody', {}, agents.map((agent) => h('tr', { 'data-agent-id': agent.id },
        h('th', { scope: 'row', 'data-label': 'Agent' }, h('div', {}, h('span', { class: 'strong' }, agent.name || agent.id),
          agent.hostname ? h('span', { class: 'muted block' }, agent.hostname) : null,
          agent.name && agent.name !== agent.id ? h('span', { class: 'muted block mono' }, agent.id) : null)),
        td('Status', statusCell(agent)),
        td('Version', agent.software || '—'),
        td('Last seen', agent.online ? 'now' : h('span', { title: dateTime(agent.last_seen_at) }, relativeTime(agent.last_seen_at))),
        td('Outbox', agent.outbox_records == null ? '—' : `${count(agent.outbox_records)} records, ${bytes(agent.outbox_bytes)}`),
        td('Drops', drops(agent)),
        td('Disk free', bytes(agent.disk_free_bytes)),
        td('Certificate expires', certificate(agent)),
        isAdmin ? td('Actions', agent.revoked_at ? '—' : h('button', { type: 'button', class: 'btn btn-small btn-danger', onclick: () => revoke(agent) },
          'Revoke', h('span', { class: 'visually-hidden' }, ` ${agent.name || agent.id}`))) : null))))));
  }

  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        agents = (await api('/agents')).agents;
        render();
      } catch (error) {
        if (error.status !== 401) replaceChildren(body, errorBox(error));
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  function onLive(message) {
    if (message.type !== 'agent') return;
    const agent = agents.find((a) => a.id === message.agent);
    // A new agent, or one whose health changed while away: the REST view has it all.
    if (!agent || message.online !== agent.online) refresh();
  }

  return { refresh, onLive, unmount() {} };
}
