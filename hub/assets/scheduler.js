// The scheduler (`/scheduler`): the hub's own jobs and an admin's canaries, each with its
// schedule in words, its next run and how its last run went; `?job=<name>` opens that job's
// history (when each run was due, who asked for it, the replica that ran it, the takeovers,
// how long it took, the result); and the newest daily health report. Anyone signed in reads.
// An admin pauses, resumes and runs a job now, adds a canary (`mark`) job and deletes one
// that is not the hub's own. Live: a run starting or ending on any replica (`scheduler_run`
// over the WebSocket) reads the page again, at most once every LIVE_READ_MS; a run asked for
// here is announced (a toast) when its end arrives. Refresh reads everything again, and so
// does every action.

import { html, useCallback, useEffect, useRef, useState } from './lib.js';
import { api, path, query } from './api.js';
import { me, onLive, printers, useLiveRefresh, useQuery } from './store.js';
import {
  Badge, EmptyState, ErrorBox, Field, Loading, VisuallyHidden, confirmDialog, toast, useTitle, useUniqueId,
} from './ui.js';
import { count, dateTime, duration, relativeTime } from './format.js';
import { printerName } from './widgets.js';

const RUN_KIND = { succeeded: 'ok', failed: 'danger', running: 'accent' };
const MISFIRE = {
  run_latest: 'after a time no hub ran, it runs once for what it missed',
  run_all: 'after a time no hub ran, it runs once for each occurrence it missed',
  skip: 'after a time no hub ran, it skips what it missed',
};
// Interval units, largest first: size in ms, one, several.
const UNITS = [[86400000, 'day', 'd'], [3600000, 'hour', 'h'], [60000, 'minute', 'min'], [1000, 'second', 's']];
// The runs a job's history shows, newest first.
const HISTORY_RUNS = 50;
// A run asked for here is waited for this long at most.
const FOLLOW_FOR_MS = 5 * 60 * 1000;
// Runs starting and ending read the page again at most this often (a canary may run every
// second).
const LIVE_READ_MS = 2000;
// The time zones the browser knows, offered for a cron job's (the hub checks the name).
const TIME_ZONES = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];

function jobPath(name) {
  return `/scheduler${query({ job: name })}`;
}

function iso(ms) {
  return new Date(ms).toISOString();
}

// "every 30 s", "every 15 min", "every hour"
function interval(ms) {
  for (const [size, one, short] of UNITS) {
    if (ms % size === 0) return ms === size ? `every ${one}` : `every ${count(ms / size)} ${short}`;
  }
  return `every ${count(ms)} ms`;
}

// A schedule in words: "every 30 s", "cron 0 7 * * * (UTC)", "once at 3 May 2025, 07:00:00".
function scheduleText(schedule) {
  if (schedule?.every_ms != null) return interval(schedule.every_ms);
  if (schedule?.cron) return `cron ${schedule.cron} (${schedule.time_zone ?? 'UTC'})`;
  if (schedule?.at != null) return `once at ${dateTime(schedule.at)}`;
  return '—';
}

// How long a run took: "40 ms", "2.5 s", "3 min".
function took(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${count(ms)} ms`;
  if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
  return duration(ms / 1000);
}

// A manual run nobody has taken yet: no replica holds it.
function waiting(run) {
  return run.state === 'running' && !run.holder;
}

function printerLabel(id) {
  const printer = printers.value.get(id)?.value;
  return printer ? printerName(printer) : id;
}

// The report in the page's own names.
function reportOf(report) {
  return {
    summary: report?.summary ?? '',
    from: report?.from ?? null,
    to: report?.to ?? null,
    failedPrints: report?.not_successful ?? [],
    lowStock: report?.low_stock ?? [],
    failedRuns: report?.failed_runs ?? [],
  };
}

export default function SchedulerPage({ search, navigate }) {
  useTitle('Scheduler');
  const wanted = search.get('job') || null;
  const isAdmin = me.value?.role === 'admin';
  // Bumped to read everything again: Refresh, each action, the end of a followed run.
  const [round, setRound] = useState(0);
  const refresh = useCallback(() => setRound((n) => n + 1), []);
  // A run started or ended somewhere: read again, once for all that arrive within LIVE_READ_MS.
  useLiveRefresh((message) => message.type === 'scheduler_run', refresh, LIVE_READ_MS);
  const jobs = useQuery(() => api('/scheduler/jobs', { resource: 'ScheduledJobs' }), [round]);
  const reports = useQuery(() => api('/scheduler/reports', { resource: 'HealthReportsView' }), [round]);
  // Runs asked for here that have not ended yet: `{ job, occurrence, since }`.
  const [followed, setFollowed] = useState([]);
  const triggered = (job, occurrence) => {
    setFollowed((runs) => [...runs, { job, occurrence, since: Date.now() }]);
    refresh();
  };
  const ended = (one, run) => {
    setFollowed((runs) => runs.filter((r) => r !== one));
    if (run) toast(`${one.job} ${run.state}${run.result ? `: ${run.result}` : ''}`, run.state === 'succeeded' ? 'ok' : 'error');
    else toast(`No replica has taken ${one.job}'s run yet; Refresh shows it once one has`, 'error');
    refresh();
  };
  const deleted = (name) => {
    if (name === wanted) navigate('/scheduler', { replace: true });
    refresh();
  };

  const data = jobs.data;
  const list = data?.jobs ?? null;
  let body;
  if (!list) body = jobs.error ? html`<${ErrorBox} error=${jobs.error} />` : html`<${Loading}>Loading the jobs…<//>`;
  else if (!list.length) body = html`<${EmptyState} title="No jobs"><p>The hub adds its own jobs when it starts.</p><//>`;
  else {
    body = html`<${JobTable} jobs=${list} now=${data.now} wanted=${wanted} isAdmin=${isAdmin}
      onChanged=${refresh} onTriggered=${triggered} onDeleted=${deleted} />`;
  }
  const paused = list?.filter((j) => j.paused).length ?? 0;
  let here = '';
  if (data && data.running_here) here = 'This replica runs jobs: each due run goes to whichever replica takes it first.';
  else if (data) here = 'This replica does not run jobs ([scheduler] enabled = false): the other replicas run them.';
  return html`<div class="page">
    <div class="page-head"><div><h1>Scheduler</h1>
      <p class="muted">The hub's own jobs and canaries: when each runs next and how its last run went.</p>
      <p class="muted" data-testid="scheduler-here" aria-live="polite">${here}${list ? ` ${count(list.length)} ${list.length === 1 ? 'job' : 'jobs'}, ${count(paused)} paused.` : ''}</p>
    </div>
    <div class="page-actions">
      <button type="button" class="btn" disabled=${jobs.loading || reports.loading} onClick=${refresh} data-testid="scheduler-refresh">Refresh</button>
    </div></div>
    <section class="panel" aria-labelledby="scheduler-jobs-h"><h2 id="scheduler-jobs-h">Jobs</h2>
      <p class="muted">A job's name opens its history.${isAdmin ? ' Run now runs it once, on whichever replica takes it first (a paused job too).' : ''}</p>
      ${body}
    </section>
    ${wanted ? html`<${History} key=${wanted} name=${wanted} round=${round} />` : null}
    ${followed.map((one) => html`<${Follower} key=${`${one.job} ${one.occurrence}`} followed=${one} onEnded=${(run) => ended(one, run)} />`)}
    <${HealthReport} reports=${reports} />
    ${isAdmin ? html`<${AddCanary} onAdded=${refresh} />` : null}
  </div>`;
}

function JobTable({ jobs, now, wanted, isAdmin, onChanged, onTriggered, onDeleted }) {
  return html`<div class="table-wrap"><table class="table stack" data-testid="scheduler-jobs">
    <caption class="visually-hidden">Scheduled jobs; a job's name opens its history</caption>
    <thead><tr><th scope="col">Job</th><th scope="col">What it does</th><th scope="col">Schedule</th>
      <th scope="col">Next run</th><th scope="col">Last run</th>${isAdmin ? html`<th scope="col">Actions</th>` : null}</tr></thead>
    <tbody>${jobs.map((job) => html`<${JobRow} key=${job.name} job=${job} now=${now} selected=${job.name === wanted}
      isAdmin=${isAdmin} onChanged=${onChanged} onTriggered=${onTriggered} onDeleted=${onDeleted} />`)}</tbody>
  </table></div>`;
}

function JobRow({ job, now, selected, isAdmin, onChanged, onTriggered, onDeleted }) {
  const last = job.last_run;
  let next = html`<span class="muted">none</span>`;
  if (job.paused) next = html`<span class="muted">paused</span>`;
  else if (job.next_run != null) {
    next = html`<time datetime=${iso(job.next_run)} title=${dateTime(job.next_run)}>${job.next_run <= now ? 'due now' : relativeTime(job.next_run, now)}</time>`;
  }
  return html`<tr class=${selected ? 'row-selected' : undefined} data-testid="scheduler-job" data-job=${job.name}>
    <th scope="row" data-label="Job"><div>
      <a href=${jobPath(job.name)} aria-current=${selected ? 'true' : undefined}>${job.name}</a>
      ${job.paused ? html` <${Badge} kind="warn">paused<//>` : null}
    </div></th>
    <td data-label="What it does"><div>
      ${job.description ? html`${job.description}<br />` : null}
      <span class="muted">${job.builtin ? "The hub's own job." : `A ${job.action} job added by ${job.created_by}.`}</span>
      ${job.problem ? html`<br /><span class="warn-text" data-testid="scheduler-problem">Cannot run: ${job.problem}</span>` : null}
    </div></td>
    <td data-label="Schedule"><span title=${MISFIRE[job.schedule?.misfire]}>${scheduleText(job.schedule)}</span></td>
    <td data-label="Next run">${next}</td>
    <td data-label="Last run">${last ? html`<div class="scheduler-result">
      <${RunState} run=${last} /> <time class="muted" datetime=${iso(last.started_at)} title=${dateTime(last.started_at)}>${relativeTime(last.started_at, now)}</time>
      ${last.result ? html`<br /><span>${last.result}</span>` : null}
    </div>` : html`<span class="muted">never</span>`}</td>
    ${isAdmin ? html`<td data-label="Actions"><${JobActions} job=${job}
      onChanged=${onChanged} onTriggered=${onTriggered} onDeleted=${onDeleted} /></td>` : null}
  </tr>`;
}

function RunState({ run }) {
  if (waiting(run)) return html`<${Badge} kind="neutral">waiting<//>`;
  return html`<${Badge} kind=${RUN_KIND[run.state] ?? 'neutral'}>${run.state}<//>`;
}

// Pause or resume, run now, and delete (not the hub's own jobs): admin.
function JobActions({ job, onChanged, onTriggered, onDeleted }) {
  const [busy, setBusy] = useState(null);
  const where = `/scheduler/jobs/${encodeURIComponent(job.name)}`;

  async function pauseOrResume() {
    const action = job.paused ? 'resume' : 'pause';
    setBusy(action);
    try {
      await api(`${where}/${action}`, { method: 'POST' });
      toast(`${job.name} ${job.paused ? 'resumed' : 'paused'}`, 'ok');
      onChanged();
    } catch (error) {
      if (error.status !== 401) toast(`Could not ${action} ${job.name}: ${error.message}`, 'error');
    } finally {
      setBusy(null);
    }
  }

  async function runNow() {
    setBusy('run');
    try {
      const asked = await api(`${where}/trigger`, { method: 'POST', resource: 'TriggeredRun' });
      toast(`${job.name} asked to run now: the first replica free takes it`, 'ok');
      onTriggered(job.name, asked.occurrence);
    } catch (error) {
      if (error.status !== 401) toast(`Could not run ${job.name}: ${error.message}`, 'error');
    } finally {
      setBusy(null);
    }
  }

  async function remove() {
    const sure = await confirmDialog({
      title: `Delete ${job.name}?`,
      body: 'The job and its history are removed.',
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!sure) return;
    setBusy('delete');
    try {
      await api(where, { method: 'DELETE' });
      toast(`${job.name} deleted`, 'ok');
      onDeleted(job.name);
    } catch (error) {
      if (error.status !== 401) toast(`Could not delete ${job.name}: ${error.message}`, 'error');
      setBusy(null);
    }
  }

  return html`<div class="job-actions">
    <button type="button" class="btn btn-small" disabled=${Boolean(busy)} onClick=${pauseOrResume} data-testid="scheduler-pause">
      ${job.paused ? 'Resume' : 'Pause'}<${VisuallyHidden}> ${job.name}<//></button>
    <button type="button" class="btn btn-small" disabled=${Boolean(busy)} onClick=${runNow} data-testid="scheduler-trigger">
      ${busy === 'run' ? 'Asking…' : 'Run now'}<${VisuallyHidden}> ${job.name}<//></button>
    ${job.builtin ? null : html`<button type="button" class="btn btn-small btn-danger" disabled=${Boolean(busy)} onClick=${remove}
      data-testid="scheduler-delete">Delete<${VisuallyHidden}> ${job.name}<//></button>`}
  </div>`;
}

// Waits for a run asked for here to end, then calls `onEnded(run)` with the run as the job's
// history has it; with null when the job is gone or no replica took the run within
// FOLLOW_FOR_MS. It reads the run when its `scheduler_run` end arrives, once at the start (it
// may have ended before this listened) and after `lagged` (its end may be among the missed).
// Renders nothing.
function Follower({ followed, onEnded }) {
  const latest = useRef(onEnded);
  latest.current = onEnded;
  useEffect(() => {
    let done = false;
    const finish = (run) => {
      if (done) return;
      done = true;
      latest.current(run);
    };
    const where = `/scheduler/jobs/${encodeURIComponent(followed.job)}${query({ limit: 20 })}`;
    async function look() {
      try {
        const detail = await api(where, { resource: 'ScheduledJobDetail' });
        const run = (detail.runs ?? []).find((r) => r.manual && r.occurrence === followed.occurrence);
        if (run && run.state !== 'running') finish(run);
      } catch (error) {
        if (error.status === 404) finish(null);
      }
    }
    const off = onLive((message) => {
      const mine = message.type === 'scheduler_run' && message.manual && message.job === followed.job
        && message.occurrence === followed.occurrence && message.state !== 'running';
      if (mine || message.type === 'lagged') look();
    });
    look();
    const timer = setTimeout(() => finish(null), Math.max(0, followed.since + FOLLOW_FOR_MS - Date.now()));
    return () => {
      done = true;
      off();
      clearTimeout(timer);
    };
  }, [followed]);
  return null;
}

// A job's runs, newest first (`?job=<name>`).
function History({ name, round }) {
  const detail = useQuery(
    () => api(`/scheduler/jobs/${encodeURIComponent(name)}${query({ limit: HISTORY_RUNS })}`, { resource: 'ScheduledJobDetail' }),
    [name, round],
  );
  const box = useRef(null);
  const loaded = Boolean(detail.data);
  // Opened from its link: bring it into view once its runs are there.
  useEffect(() => {
    if (loaded) box.current?.scrollIntoView({ block: 'nearest' });
  }, [loaded]);
  const runs = detail.data?.runs ?? null;
  let body;
  if (detail.error?.status === 404) body = html`<div class="banner banner-warn" role="status">There is no job ${name} (any more).</div>`;
  else if (detail.error) body = html`<${ErrorBox} error=${detail.error} />`;
  else if (!runs) body = html`<${Loading}>Loading the history of ${name}…<//>`;
  else if (!runs.length) body = html`<${EmptyState} title="No runs yet"><p>Its first run appears here once a replica has taken it.</p><//>`;
  else {
    body = html`<div class="table-wrap"><table class="table stack" data-testid="scheduler-history">
      <caption class="visually-hidden">Runs of ${name}, newest first</caption>
      <thead><tr><th scope="col">Due</th><th scope="col">Asked for</th><th scope="col">Replica</th><th scope="col">State</th>
        <th scope="col">Attempts</th><th scope="col">Started</th><th scope="col">Took</th><th scope="col">Result</th></tr></thead>
      <tbody>${runs.map((run) => html`<${RunRow} key=${`${run.manual} ${run.occurrence}`} run=${run} />`)}</tbody>
    </table></div>`;
  }
  return html`<section class="panel" ref=${box} aria-labelledby="scheduler-history-h" data-testid="scheduler-history-panel">
    <div class="panel-head"><h2 id="scheduler-history-h">History of ${name}</h2>
      <a href="/scheduler">Close<${VisuallyHidden}> the history of ${name}<//></a></div>
    <p class="muted">Its newest ${count(HISTORY_RUNS)} runs: when each was due (or asked for), the replica that ran it and how it went. A run taken over from a replica that was lost counts one more attempt.</p>
    ${body}
  </section>`;
}

function attempts(n) {
  if (!n) return '—';
  if (n === 1) return '1';
  return `${count(n)} (${count(n - 1)} ${n === 2 ? 'takeover' : 'takeovers'})`;
}

function RunRow({ run }) {
  const pending = waiting(run);
  return html`<tr data-testid="scheduler-run" data-state=${run.state} data-manual=${run.manual ? 'true' : 'false'}>
    <td data-label="Due"><time datetime=${iso(run.occurrence)}>${dateTime(run.occurrence)}</time></td>
    <td data-label="Asked for">${run.manual ? `by hand: ${run.triggered_by ?? 'unknown'}` : 'by the schedule'}</td>
    <td data-label="Replica">${run.holder ? html`<span class="mono">${run.holder}</span>` : html`<span class="muted">none yet</span>`}</td>
    <td data-label="State"><div><${RunState} run=${run} /></div></td>
    <td data-label="Attempts">${attempts(run.attempts)}</td>
    <td data-label="Started">${pending ? html`<span class="muted">not yet</span>`
      : html`<time datetime=${iso(run.started_at)}>${dateTime(run.started_at)}</time>`}</td>
    <td data-label="Took">${run.ended_at != null
      ? html`<span title=${`Ended ${dateTime(run.ended_at)}`}>${took(run.duration_ms)}</span>`
      : html`<span class="muted">${pending ? '—' : 'under way'}</span>`}</td>
    <td data-label="Result"><div class="scheduler-result">${run.result ?? html`<span class="muted">—</span>`}</div></td>
  </tr>`;
}

// The newest daily health report.
function HealthReport({ reports }) {
  const list = reports.data?.reports ?? null;
  let body;
  if (!list) body = reports.error ? html`<${ErrorBox} error=${reports.error} />` : html`<${Loading}>Loading the health report…<//>`;
  else if (!list.length) {
    body = html`<${EmptyState} title="No health report yet">
      <p>The daily-health-report job writes one each day; an admin can run it now.</p>
    <//>`;
  } else body = html`<${ReportBody} view=${list[0]} />`;
  return html`<section class="panel" aria-labelledby="scheduler-report-h"><h2 id="scheduler-report-h">Daily health report</h2>
    ${body}
  </section>`;
}

function ReportBody({ view }) {
  const report = reportOf(view.report);
  const span = report.from != null && report.to != null ? ` It covers ${dateTime(report.from)} to ${dateTime(report.to)}.` : '';
  return html`<div data-testid="scheduler-report">
    <p class="muted">Written <time datetime=${iso(view.created_at)} title=${dateTime(view.created_at)}>${relativeTime(view.created_at)}</time>.${span}</p>
    <p class="strong scheduler-result" data-testid="scheduler-report-summary">${report.summary || '—'}</p>
    <h3 id="scheduler-report-prints">Prints that did not succeed</h3>
    ${report.failedPrints.length ? html`<ul class="plain-list" aria-labelledby="scheduler-report-prints">
      ${report.failedPrints.map((print, i) => html`<li key=${print.id ?? i}>
        ${typeof print.printer === 'string' ? html`<a href=${path.printer(print.printer)}>${printerLabel(print.printer)}</a>` : null}
        <${Badge} kind=${print.result === 'cancelled' ? 'muted' : 'danger'}>${String(print.result ?? 'unknown')}<//>
        ${print.reason ? html`<span>${String(print.reason).replace(/_/g, ' ')}</span>` : null}
      </li>`)}
    </ul>` : html`<p class="muted">None in that day.</p>`}
    <h3 id="scheduler-report-stock">Filaments low on stock</h3>
    ${report.lowStock.length ? html`<ul class="plain-list" aria-labelledby="scheduler-report-stock">
      ${report.lowStock.map((name) => html`<li key=${name}>${name}</li>`)}
    </ul>` : html`<p class="muted">None.</p>`}
    <h3 id="scheduler-report-runs">Scheduled runs that failed</h3>
    ${report.failedRuns.length ? html`<ul class="plain-list" aria-labelledby="scheduler-report-runs">
      ${report.failedRuns.map((run, i) => html`<li key=${i} class="scheduler-result">
        ${typeof run.job === 'string' ? html`<a href=${jobPath(run.job)}>${run.job}</a>` : null}
        ${Number.isFinite(run.occurrence) ? html`<span class="muted">${dateTime(run.occurrence)}</span>` : null}
        ${run.result ? html`<span>${String(run.result)}</span>` : null}
      </li>`)}
    </ul>` : html`<p class="muted">None in that day.</p>`}
  </div>`;
}

// The form for a canary (admin): a `mark` job, every N seconds or on a cron expression.
function AddCanary({ onAdded }) {
  const [name, setName] = useState('');
  const [kind, setKind] = useState('every');
  const [seconds, setSeconds] = useState('60');
  const [cron, setCron] = useState('');
  const [zone, setZone] = useState('UTC');
  const [description, setDescription] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const zones = useUniqueId('scheduler-zones');

  async function submit(event) {
    event.preventDefault();
    const schedule = kind === 'every'
      ? { every_ms: Math.round(Number(seconds) * 1000) }
      : { cron: cron.trim(), time_zone: zone.trim() || 'UTC' };
    setBusy(true);
    setError(null);
    try {
      const job = await api('/scheduler/jobs', {
        method: 'POST',
        request: 'NewScheduledJob',
        body: { name: name.trim(), action: 'mark', schedule, description: description.trim() },
        resource: 'ScheduledJob',
      });
      toast(`${job.name} added: ${scheduleText(job.schedule)}`, 'ok');
      setName('');
      setDescription('');
      onAdded();
    } catch (failure) {
      if (failure.status !== 401) setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const ready = name.trim() && (kind === 'every' ? Number(seconds) >= 1 : cron.trim());
  return html`<section class="panel" aria-labelledby="scheduler-add-h">
    <h2 id="scheduler-add-h">Add a canary job</h2>
    <p class="muted">Each run of a canary (a <span class="mono">mark</span> job) writes one mark, so its history shows a run that came twice or not at all.</p>
    <form class="form-row" aria-labelledby="scheduler-add-h" onSubmit=${submit} data-testid="scheduler-add">
      <${Field} label="Name" hint="1–64 of a–z, 0–9, - _ . starting with a letter or digit" control=${(id, hint) => html`<input
        id=${id} type="text" name="name" maxlength="64" autocomplete="off" spellcheck="false" aria-describedby=${hint}
        value=${name} onInput=${(e) => setName(e.currentTarget.value)} data-testid="scheduler-add-name" />`} />
      <${Field} label="Schedule" control=${(id) => html`<select id=${id} name="kind" value=${kind}
          onChange=${(e) => setKind(e.currentTarget.value)} data-testid="scheduler-add-kind">
        <option value="every">Every N seconds</option>
        <option value="cron">Cron expression</option>
      </select>`} />
      ${kind === 'every' ? html`<${Field} label="Every (seconds)" hint="At least 1" control=${(id, hint) => html`<input
        id=${id} type="number" name="seconds" min="1" step="1" class="input-small" aria-describedby=${hint} value=${seconds}
        onInput=${(e) => setSeconds(e.currentTarget.value)} data-testid="scheduler-add-seconds" />`} />` : html`
      <${Field} label="Cron expression" hint="Five fields, or six with seconds first: */5 * * * *" control=${(id, hint) => html`<input
        id=${id} type="text" name="cron" maxlength="200" autocomplete="off" spellcheck="false" class="mono" aria-describedby=${hint}
        value=${cron} onInput=${(e) => setCron(e.currentTarget.value)} data-testid="scheduler-add-cron" />`} />
      <${Field} label="Time zone" hint="Its wall clock, as an IANA name: Europe/Berlin" control=${(id, hint) => html`<input
        id=${id} type="text" name="time_zone" maxlength="64" autocomplete="off" spellcheck="false" list=${zones} aria-describedby=${hint}
        value=${zone} onInput=${(e) => setZone(e.currentTarget.value)} data-testid="scheduler-add-zone" />
        <datalist id=${zones}>${TIME_ZONES.map((z) => html`<option key=${z} value=${z} />`)}</datalist>`} />`}
      <${Field} label="Description (optional)" control=${(id) => html`<input
        id=${id} type="text" name="description" maxlength="500" value=${description}
        onInput=${(e) => setDescription(e.currentTarget.value)} />`} />
      <div class="field field-action">
        <button type="submit" class="btn btn-primary" disabled=${busy || !ready} data-testid="scheduler-add-submit">${busy ? 'Adding…' : 'Add job'}</button>
      </div>
    </form>
    ${error ? html`<${ErrorBox} error=${error} />` : null}
  </section>`;
}
