// The dashboard's entry point: routing, the session, the live connection.
//
// Each page module exports `mount(main, ctx)` and returns `{ refresh, onLive, unmount }`:
// `refresh` fetches over REST (on mount, after a reconnect and after `lagged`), `onLive`
// applies one WebSocket message. Pages never poll.

import { api, onUnauthorized, Live } from './api.js';
import { h, replaceChildren, errorBox } from './ui.js';
import * as fleet from './fleet.js';
import * as printer from './printer.js';
import * as agents from './agents.js';
import * as events from './events.js';
import * as admin from './admin.js';
import * as login from './login.js';

const ROUTES = [
  { pattern: /^\/$/, page: fleet, nav: 'fleet' },
  { pattern: /^\/printers\/([^/]+)$/, page: printer, nav: 'fleet' },
  { pattern: /^\/agents$/, page: agents, nav: 'agents' },
  { pattern: /^\/events$/, page: events, nav: 'events' },
  { pattern: /^\/admin$/, page: admin, nav: 'admin' },
  { pattern: /^\/login$/, page: login, public: true },
];

const STATUS_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Not connected',
};

const main = document.getElementById('main');
const indicator = document.getElementById('live');
const who = document.getElementById('who');
const logoutButton = document.getElementById('logout');

let me = null;
let current = null;
let firstRender = true;
let renderCount = 0;

const live = new Live({
  onMessage(message) {
    if (message.type === 'lagged') {
      current?.refresh?.();
      return;
    }
    current?.onLive?.(message);
  },
  onOpen(reconnected) {
    // Whatever happened while we were away is only in the REST API.
    if (reconnected) current?.refresh?.();
  },
  onStatus(status) {
    indicator.dataset.state = status;
    indicator.querySelector('.live-text').textContent = STATUS_TEXT[status] ?? status;
  },
  onTrouble() {
    // A 401 here sends the browser to the login page.
    api('/me').catch(() => {});
  },
});

onUnauthorized(() => {
  if (location.pathname === '/login') return;
  me = null;
  live.stop();
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
});

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

function match(pathname) {
  for (const route of ROUTES) {
    const found = pathname.match(route.pattern);
    if (found) return { route, params: found.slice(1).map(decodeURIComponent) };
  }
  return null;
}

async function render() {
  const render = ++renderCount;
  const stale = () => render !== renderCount;
  current?.unmount?.();
  current = null;
  const found = match(location.pathname);
  document.body.classList.toggle('public', Boolean(found?.route.public));
  if (!found) {
    setNav(null);
    document.title = 'Not found · kitt';
    replaceChildren(main, h('div', { class: 'page' }, h('h1', {}, 'Page not found'),
      h('p', {}, h('a', { href: '/' }, 'Back to the fleet'))));
    return;
  }
  if (!found.route.public && !me) {
    try {
      me = await api('/me');
    } catch (error) {
      if (error.status !== 401 && !stale()) replaceChildren(main, h('div', { class: 'page' }, errorBox(error)));
      return;
    }
    if (stale()) return;
  }
  if (found.route.public) {
    live.stop();
  } else {
    // Subscribe before the first fetch, so nothing between the two is lost. Later
    // navigations do not wait: a reconnect refetches anyway.
    if (live.start()) {
      await live.ready(2000);
      if (stale()) return;
    }
  }
  showSession();
  setNav(found.route.nav);
  const ctx = {
    me,
    params: found.params,
    search: new URLSearchParams(location.search),
    navigate,
    setTitle: (title) => { document.title = title ? `${title} · kitt` : 'kitt'; },
    onLogin(user) {
      me = user;
    },
  };
  replaceChildren(main);
  current = found.route.page.mount(main, ctx);
  current?.refresh?.();
  if (!firstRender && !main.contains(document.activeElement)) {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }
  firstRender = false;
}

function showSession() {
  const signedIn = Boolean(me) && location.pathname !== '/login';
  who.textContent = signedIn ? `${me.name} · ${me.role}` : '';
  logoutButton.hidden = !signedIn;
  document.querySelector('[data-nav="admin"]').hidden = !(signedIn && me.role === 'admin');
}

function setNav(active) {
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

logoutButton.addEventListener('click', async () => {
  try {
    await api('/logout', { method: 'POST' });
  } catch {
    // The session is gone either way.
  }
  me = null;
  live.stop();
  navigate('/login');
});

// Same-origin links to dashboard pages are routed here, without a page load.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  event.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) return;
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener('popstate', () => render());

render();
