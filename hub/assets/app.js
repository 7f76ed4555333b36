// The dashboard's entry point: the route table, the session, the top bar.
//
// A page is one module whose default export is a component `Page({ params, search,
// navigate })`; adding a page is that module plus one entry in ROUTES (and its path in
// `PAGES` in hub/src/web.rs, which serves the shell there). Pages render from the store
// (`store.js`) and their own queries; nothing polls (but the scheduler page, for a run asked
// for there, until it ends).

import { html, render, signal, useEffect } from './lib.js';
import { api, onUnauthorized } from './api.js';
import * as store from './store.js';
import { ErrorBox, Loading, Toasts } from './ui.js';
import FleetPage from './fleet.js';
import PrinterPage from './printer.js';
import AgentsPage from './agents.js';
import EventsPage from './events.js';
import FilesPage from './files.js';
import QueuePage from './queue.js';
import InventoryPage from './inventory.js';
import OutcomesPage from './outcomes.js';
import AnalyticsPage from './analytics.js';
import AssistantPage from './assistant.js';
import MemoryPage from './memory.js';
import SchedulerPage from './scheduler.js';
import AdminPage from './admin.js';
import AccountPage from './account.js';
import LoginPage from './login.js';

// A Content-Security-Policy violation (an inline style or script slipping in) is counted on
// `<html data-csp-violations>`, where the browser test looks, and logged.
document.addEventListener('securitypolicyviolation', (event) => {
  const root = document.documentElement;
  root.dataset.cspViolations = String(Number(root.dataset.cspViolations ?? 0) + 1);
  console.error(`Content-Security-Policy: ${event.violatedDirective} refused ${event.blockedURI || 'inline code'}`);
});

const ROUTES = [
  { pattern: /^\/$/, page: FleetPage, nav: 'fleet' },
  { pattern: /^\/printers\/([^/]+)$/, page: PrinterPage, nav: 'fleet' },
  { pattern: /^\/agents$/, page: AgentsPage, nav: 'agents' },
  { pattern: /^\/events$/, page: EventsPage, nav: 'events' },
  { pattern: /^\/queue$/, page: QueuePage, nav: 'queue' },
  { pattern: /^\/files$/, page: FilesPage, nav: 'files' },
  { pattern: /^\/inventory$/, page: InventoryPage, nav: 'inventory' },
  { pattern: /^\/outcomes$/, page: OutcomesPage, nav: 'outcomes' },
  { pattern: /^\/analytics$/, page: AnalyticsPage, nav: 'analytics' },
  { pattern: /^\/assistant$/, page: AssistantPage, nav: 'assistant' },
  { pattern: /^\/memory$/, page: MemoryPage, nav: 'memory' },
  { pattern: /^\/scheduler$/, page: SchedulerPage, nav: 'scheduler' },
  { pattern: /^\/admin$/, page: AdminPage, nav: 'admin' },
  { pattern: /^\/account$/, page: AccountPage },
  { pattern: /^\/login$/, page: LoginPage, public: true },
];

const NAV = [
  { key: 'fleet', href: '/', label: 'Fleet' },
  { key: 'queue', href: '/queue', label: 'Queue' },
  { key: 'files', href: '/files', label: 'Files' },
  { key: 'inventory', href: '/inventory', label: 'Inventory' },
  { key: 'outcomes', href: '/outcomes', label: 'Outcomes' },
  { key: 'analytics', href: '/analytics', label: 'Analytics' },
  { key: 'assistant', href: '/assistant', label: 'Assistant' },
  { key: 'memory', href: '/memory', label: 'Memory' },
  { key: 'events', href: '/events', label: 'Events' },
  { key: 'agents', href: '/agents', label: 'Agents' },
  { key: 'scheduler', href: '/scheduler', label: 'Scheduler' },
  { key: 'admin', href: '/admin', label: 'Admin', role: 'admin' },
];

const STATUS_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Not connected',
};

// Where the browser is.
const here = signal({ pathname: location.pathname, search: location.search });
// Whether a signed-in page may show: the session is known and the store started.
const ready = signal(false);
// Why the session could not be checked (not a 401), if so.
const sessionError = signal(null);

let entering = 0;
let firstPage = true;

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  locationChanged();
}

function locationChanged() {
  here.value = { pathname: location.pathname, search: location.search };
  enter();
}

function match(pathname) {
  for (const route of ROUTES) {
    const found = pathname.match(route.pattern);
    if (found) return { route, params: found.slice(1).map(decodeURIComponent) };
  }
  return null;
}

// Checks the session and starts the store before a signed-in page shows; stops it on a
// public one.
async function enter() {
  const turn = ++entering;
  const found = match(location.pathname);
  document.body.classList.toggle('public', Boolean(found?.route.public));
  if (!found) return;
  if (found.route.public) {
    store.stop();
    ready.value = false;
    return;
  }
  if (ready.value) return;
  sessionError.value = null;
  if (!store.me.value) {
    try {
      store.me.value = await api('/me', { resource: 'Me' });
    } catch (error) {
      if (error.status !== 401 && turn === entering) sessionError.value = error;
      return;
    }
  }
  if (turn !== entering) return;
  await store.start();
  if (turn === entering) ready.value = true;
}

onUnauthorized(() => {
  if (location.pathname === '/login') return;
  store.me.value = null;
  store.stop();
  ready.value = false;
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
});

async function logout() {
  try {
    await api('/logout', { method: 'POST' });
  } catch {
    // The session is gone either way.
  }
  store.me.value = null;
  store.stop();
  ready.value = false;
  navigate('/login');
}

function Main() {
  const { pathname, search } = here.value;
  const found = match(pathname);
  const shown = Boolean(found && (found.route.public || ready.value));
  useEffect(() => {
    if (!shown) return;
    const main = document.getElementById('main');
    if (!firstPage && !main.contains(document.activeElement)) {
      const heading = main.querySelector('h1');
      if (heading) {
        heading.setAttribute('tabindex', '-1');
        heading.focus();
      }
    }
    firstPage = false;
  }, [pathname, search, shown]);
  if (!found) {
    document.title = 'Not found · kitt';
    return html`<div class="page"><h1>Page not found</h1><p><a href="/">Back to the fleet</a></p></div>`;
  }
  if (!shown) {
    const error = sessionError.value;
    return error ? html`<div class="page"><${ErrorBox} error=${error} /></div>` : html`<${Loading}>Loading…<//>`;
  }
  const Page = found.route.page;
  return html`<${Page} key=${pathname} params=${found.params} search=${new URLSearchParams(search)} navigate=${navigate} />`;
}

function Topbar() {
  const { pathname } = here.value;
  const found = match(pathname);
  const user = store.me.value;
  const signedIn = Boolean(user) && !found?.route.public;
  const status = store.connection.value;
  return html`
    <a class="brand" href="/" aria-label="kitt: fleet overview"><img src="/assets/favicon.svg" alt="" width="24" height="24" /><span>kitt</span></a>
    <nav class="nav" id="nav" aria-label="Main">
      ${NAV.map((item) => html`<a key=${item.key} href=${item.href} data-nav=${item.key}
        aria-current=${found?.route.nav === item.key ? 'page' : undefined}
        hidden=${Boolean(item.role) && !(signedIn && user.role === item.role)}>${item.label}</a>`)}
    </nav>
    <div class="topbar-end">
      <span class="live" id="live" data-testid="live-indicator" data-state=${status} role="status" aria-live="polite"><span class="dot" aria-hidden="true"></span><span class="live-text">${STATUS_TEXT[status] ?? status}</span></span>
      <span class="who" id="who">${signedIn ? html`<a href="/account" title="Your account">${user.name} · ${user.role}</a>` : ''}</span>
      <button type="button" class="btn btn-ghost btn-small" id="logout" hidden=${!signedIn} onClick=${logout}>Log out</button>
    </div>`;
}

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

window.addEventListener('popstate', locationChanged);

function mount(id, component) {
  const element = document.getElementById(id);
  element.replaceChildren();
  render(html`<${component} />`, element);
}

mount('topbar', Topbar);
mount('main', Main);
mount('toasts', Toasts);
enter();
