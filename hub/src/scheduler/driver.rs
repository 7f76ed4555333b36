//! The scheduler's driver: thin async code around the pure decisions in `super`.
//!
//! Every replica runs one. At each look (every `tick`, or at once when woken: a job added,
//! changed or triggered here) it reads the jobs and the database's clock, claims what is due
//! (`super::due`; the claim's primary key picks one replica), and takes over runs whose
//! holder's lease lapsed. A run holds its lease while it works (renewed every third of it);
//! when a renewal finds the run no longer its own, the work is dropped. Shutting down gives
//! every run back at once so another replica takes it over without waiting for the lease.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::jobs::{Action, Job};
use crate::db::Db;
use crate::db::scheduler::{Effect, Renewal, RunEnd, RunKey};

/// How a run's work ended.
#[derive(Debug)]
pub enum Finish {
    /// Done; the run is to be ended with this result.
    Done(String),
    /// Done, and the run was ended with its side effect (and this result) in one
    /// transaction.
    Ended(String),
    /// Done, but the run was no longer ours when its side effect was to be written:
    /// nothing was written.
    Lost,
    /// Its end (and side effect) could not be written (the database away or overloaded):
    /// given back to be run again, by any replica, up to `MAX_ATTEMPTS` times.
    Retry(String),
}

/// How many times a run is attempted when its end cannot be written.
pub const MAX_ATTEMPTS: i64 = 5;

/// What runs a job's action: everything the built-in actions reach.
#[derive(Clone)]
pub struct Runner {
    pub db: Db,
    pub services: crate::service::Services,
    pub snapshots: crate::camera::SnapshotStore,
    pub retention: crate::config::Retention,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

/// The scheduler of one replica.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    /// This process: the replica's name and a per-start suffix, so a restarted replica never
    /// mistakes its previous life's runs for its own.
    holder: String,
    tick: Duration,
    wake: Notify,
    runner: Runner,
}

impl Scheduler {
    /// A scheduler recording its runs as `holder` (`<replica>/<per-start suffix>`).
    pub fn new(db: Db, holder: String, tick: Duration, runner: Runner) -> Scheduler {
        Scheduler { inner: Arc::new(Inner { db, holder, tick, wake: Notify::new(), runner }) }
    }

    /// Who this replica's runs are recorded as.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// Look again now (a job was added, changed or triggered).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs until `shutdown`, then gives back the runs still going.
    pub async fn run(self, shutdown: CancellationToken) {
        let stop_runs = CancellationToken::new();
        let mut running: JoinSet<RunKey> = JoinSet::new();
        let mut mine: HashSet<RunKey> = HashSet::new();
        let mut broken: HashMap<String, String> = HashMap::new();
        loop {
            while let Some(done) = running.try_join_next() {
                if let Ok(key) = done {
                    mine.remove(&key);
                }
            }
            if let Err(error) = self.look(&mut running, &mut mine, &mut broken, &stop_runs).await {
                tracing::warn!(%error, "The scheduler could not look at its jobs; it tries again.");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(self.inner.tick) => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(key) = done {
                        mine.remove(&key);
                    }
                }
            }
        }
        stop_runs.cancel();
        while running.join_next().await.is_some() {}
    }

    /// One look: claim what is due, take over what lapsed.
    async fn look(
        &self,
        running: &mut JoinSet<RunKey>,
        mine: &mut HashSet<RunKey>,
        broken: &mut HashMap<String, String>,
        stop: &CancellationToken,
    ) -> Result<(), crate::db::DbError> {
        let db = &self.inner.db;
        let now = db.clock().await?;
        let mut jobs = HashMap::new();
        for row in db.scheduler_jobs().await? {
            match Job::from_row(&row) {
                Ok(job) => {
                    broken.remove(&row.name);
                    jobs.insert(row.name.clone(), job);
                }
                Err(error) => {
                    if broken.insert(row.name.clone(), error.clone()).as_ref() != Some(&error) {
                        tracing::warn!(job = %row.name, %error, "A stored job cannot run.");
                    }
                }
            }
        }
        for job in jobs.values().filter(|job| !job.paused) {
            let due =
                super::due(&job.schedule, job.misfire, job.created_at, job.last_occurrence, now);
            for occurrence in due {
                let claimed =
                    db.claim_run(&job.name, occurrence, &self.inner.holder, job.lease_ms).await?;
                if let Some(fence) = claimed {
                    let key = RunKey { job: job.name.clone(), occurrence, manual: false };
                    self.start(running, mine, Held { key, fence, attempt: 1 }, job, stop);
                }
            }
        }
        for lapsed in db.lapsed_runs().await? {
            if mine.contains(&lapsed.key) {
                // Still ours and working: its renewal was late, not lost.
                continue;
            }
            let Some(job) = jobs.get(&lapsed.key.job) else { continue };
            let taken = db
                .take_over_run(&lapsed.key, lapsed.fence, &self.inner.holder, job.lease_ms)
                .await?;
            if let Some(fence) = taken {
                if lapsed.attempts > 0 {
                    tracing::info!(
                        job = %job.name, occurrence = lapsed.key.occurrence, from = %lapsed.holder,
                        "Took over a run whose holder's lease lapsed."
                    );
                }
                let held = Held { key: lapsed.key, fence, attempt: lapsed.attempts + 1 };
                self.start(running, mine, held, job, stop);
            }
        }
        Ok(())
    }

    fn start(
        &self,
        running: &mut JoinSet<RunKey>,
        mine: &mut HashSet<RunKey>,
        held: Held,
        job: &Job,
        stop: &CancellationToken,
    ) {
        mine.insert(held.key.clone());
        self.inner.announce(&held.key, "running", None);
        let inner = self.inner.clone();
        let (action, lease_ms, stop) = (job.action, job.lease_ms, stop.clone());
        running.spawn(async move {
            use futures_util::FutureExt;
            let run = execute(&inner, &held.key, held.fence, held.attempt, action, lease_ms, stop);
            // A run that panicked still hands its key back, so this replica forgets it and
            // takes it over like any other once its lease lapses.
            if std::panic::AssertUnwindSafe(run).catch_unwind().await.is_err() {
                tracing::error!(job = %held.key.job, occurrence = held.key.occurrence,
                    "A scheduled run panicked; it is run again once its lease lapses.");
            }
            held.key
        });
    }
}

/// A run this replica holds: its key, its fence, and which attempt this is.
struct Held {
    key: RunKey,
    fence: i64,
    attempt: i64,
}

/// One run: the action's work under a renewed lease.
async fn execute(
    inner: &Inner,
    key: &RunKey,
    fence: i64,
    attempt: i64,
    action: Action,
    lease_ms: i64,
    stop: CancellationToken,
) {
    let db = &inner.db;
    let span = tracing::info_span!("run", job = %key.job, occurrence = key.occurrence, fence);
    let _entered = span.enter();
    drop(_entered);
    let params = match db.scheduler_job(&key.job).await {
        Ok(Some(row)) => row.params,
        _ => "{}".into(),
    };
    let work = inner.runner.run(action, key, fence, &inner.holder, &params);
    tokio::pin!(work);
    let every = Duration::from_millis((lease_ms / 3).max(100) as u64);
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The renewal under way, polled beside the work rather than instead of it: the work's
    // end holds the run's row until it commits, and a renewal awaited on its own would wait
    // for that row while the work that holds it is never polled again.
    let mut renewal: Option<std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>>> = None;
    let finish = loop {
        tokio::select! {
            // Work that finished is ended (under its fence) before a renewal is looked at: a
            // replica frozen past its lease that wakes with its work done tries to write, and
            // the fence refuses it, rather than that depending on which is polled first.
            biased;
            finish = &mut work => break finish,
            renewed = async { renewal.as_mut().expect("a renewal under way").await },
                if renewal.is_some() => {
                renewal = None;
                match renewed {
                    Ok(Renewal::Renewed) => {}
                    // Its own end committed: the work returns at its next poll.
                    Ok(Renewal::Ended) => {}
                    Ok(Renewal::Lost) => {
                        tracing::warn!(job = %key.job, occurrence = key.occurrence,
                            "This replica lost its run (its lease lapsed and another took it over); its work is dropped.");
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "Cannot renew a run's lease; trying again."),
                }
            }
            _ = renew.tick(), if renewal.is_none() => {
                renewal = Some(Box::pin(db.renew_run(key, fence, lease_ms)));
            }
            () = stop.cancelled() => {
                drop(renewal.take());
                match db.release_run(key, fence).await {
                    Ok(_) => tracing::info!(job = %key.job, occurrence = key.occurrence,
                        "Gave back a run on shutdown; another replica takes it over."),
                    Err(error) => tracing::warn!(%error, "Cannot give back a run; its lease will lapse."),
                }
                return;
            }
        }
    };
    drop(renewal);
    let (end, result, ended) = match finish {
        Ok(Finish::Done(result)) => {
            let ended = db.end_run(key, fence, RunEnd::Succeeded, &result).await;
            (RunEnd::Succeeded, result, ended)
        }
        Ok(Finish::Ended(result)) => (RunEnd::Succeeded, result, Ok(true)),
        Ok(Finish::Lost) => (RunEnd::Succeeded, String::new(), Ok(false)),
        Ok(Finish::Retry(reason)) if attempt < MAX_ATTEMPTS => {
            tracing::warn!(job = %key.job, occurrence = key.occurrence, attempt, %reason,
                "A run could not record its end; given back to be run again.");
            // If even that fails, its lease lapses and it is taken over all the same.
            let _ = db.release_run(key, fence).await;
            return;
        }
        Ok(Finish::Retry(reason)) => {
            let result = format!("gave up after {attempt} attempts: {reason}");
            let ended = db.end_run(key, fence, RunEnd::Failed, &result).await;
            (RunEnd::Failed, result, ended)
        }
        Err(error) => {
            tracing::warn!(job = %key.job, %error, "A scheduled run failed.");
            let ended = db.end_run(key, fence, RunEnd::Failed, &error).await;
            (RunEnd::Failed, error, ended)
        }
    };
    match ended {
        Ok(true) => inner.announce(key, end.name(), Some(result)),
        Ok(false) => tracing::warn!(job = %key.job, occurrence = key.occurrence,
            "A run ended after another replica took it over; what it did was not recorded."),
        Err(error) => tracing::warn!(%error, job = %key.job,
            "Cannot record a run's end; another replica will run it again once its lease lapses."),
    }
}

impl Inner {
    /// Tells dashboards (`scheduler_run`, through the cluster's log on replicas) that a run
    /// of this replica's started or ended.
    fn announce(&self, key: &RunKey, state: &str, result: Option<String>) {
        let replica = self.holder.split('/').next().unwrap_or_default().to_owned();
        self.runner.services.live.publish(crate::live::LiveUpdate::SchedulerRun {
            job: key.job.clone(),
            occurrence: key.occurrence,
            manual: key.manual,
            state: state.to_owned(),
            replica,
            result,
        });
    }
}

impl Runner {
    /// Runs `action` for one run.
    pub async fn run(
        &self,
        action: Action,
        key: &RunKey,
        fence: i64,
        holder: &str,
        params: &str,
    ) -> Result<Finish, String> {
        let now = proto::UnixMillis::now();
        match action {
            Action::Mark => {
                let params: serde_json::Value = serde_json::from_str(params).unwrap_or_default();
                // An optional stretch of work before the mark, so a run can outlast a lease.
                if let Some(ms) = params.get("work_ms").and_then(|v| v.as_u64()) {
                    tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
                }
                let result = format!("marked by {holder}");
                Ok(match self.db.end_run_with(key, fence, &result, Effect::Mark { holder }).await {
                    Ok(true) => Finish::Ended(result),
                    Ok(false) => Finish::Lost,
                    Err(error) => Finish::Retry(error.to_string()),
                })
            }
            Action::Command => {
                let params: serde_json::Value =
                    serde_json::from_str(params).map_err(|e| format!("params: {e}"))?;
                let params = super::jobs::CommandParams::parse(&params)?;
                let principal = crate::service::Principal::internal(
                    format!("scheduler:{}", key.job),
                    crate::service::Role::Operator,
                );
                let id =
                    proto::CommandId(super::command_id(&key.job, key.occurrence, key.manual, 0));
                let request = crate::service::CommandRequest::new(params.command.clone());
                let issued = self
                    .services
                    .commands
                    .issue_as(&principal, &params.printer, request, id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Finish::Done(format!(
                    "sent {} to {} as command {}{}",
                    crate::service::commands::action_name(&params.command),
                    params.printer,
                    issued.command.id,
                    if issued.agent_online { "" } else { " (its agent is offline: it waits)" }
                )))
            }
            Action::QueueSweep => {
                let next =
                    self.services.queue.dispatch_once(now).await.map_err(|e| e.to_string())?;
                Ok(Finish::Done(match next {
                    Some(at) => format!("dispatched; the next job falls due at {at}"),
                    None => "dispatched".into(),
                }))
            }
            Action::TelemetryRetention => {
                let r = &self.retention;
                self.db
                    .downsample(
                        r.raw.as_millis() as i64,
                        r.minute.as_millis() as i64,
                        r.quarter_hour.as_millis() as i64,
                        now,
                    )
                    .await
                    .map_err(|e| format!("downsampling: {e}"))?;
                let paths = self
                    .db
                    .expired_snapshots(
                        now.plus_millis(-(r.snapshots.as_millis() as i64)),
                        now.plus_millis(-(r.milestone_snapshots.as_millis() as i64)),
                    )
                    .await
                    .map_err(|e| format!("snapshot retention: {e}"))?;
                for path in &paths {
                    self.snapshots.remove(path);
                }
                // A snapshot whose last chunk never came (dropped at the agent) is abandoned.
                let partial = self.snapshots.sweep_partials(Duration::from_secs(86_400));
                Ok(Finish::Done(format!(
                    "telemetry downsampled; {} expired snapshots and {partial} abandoned parts removed",
                    paths.len()
                )))
            }
            Action::MeasureOutcomes => {
                let principal =
                    crate::service::Principal::internal("scheduler", crate::service::Role::Viewer);
                let rows = self
                    .db
                    .outcomes(None, now.0 - 30 * 86_400_000, now.0 + 1)
                    .await
                    .map_err(|e| e.to_string())?;
                let rate = |since: i64| {
                    let in_period: Vec<_> = rows.iter().filter(|r| r.ended_at >= since).collect();
                    let ok = in_period.iter().filter(|r| r.result == "success").count();
                    (ok, in_period.len())
                };
                let (ok7, all7) = rate(now.0 - 7 * 86_400_000);
                let (ok30, all30) = rate(now.0 - 30 * 86_400_000);
                let estimate = self
                    .services
                    .outcomes
                    .estimate(
                        &principal,
                        &crate::service::outcomes::EstimateQuery { printer: None, material: None },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let percent = |ok: usize, all: usize| {
                    if all == 0 {
                        "no prints".to_owned()
                    } else {
                        format!("{:.0} % of {all}", 100.0 * ok as f64 / all as f64)
                    }
                };
                Ok(Finish::Done(format!(
                    "success over 7 days: {}; over 30 days: {}; estimate: {}",
                    percent(ok7, all7),
                    percent(ok30, all30),
                    match estimate.accuracy {
                        Some(accuracy) => format!(
                            "{:.0} % accurate (leave-one-out, {} reviewed)",
                            accuracy * 100.0,
                            estimate.reviewed_outcomes
                        ),
                        None => estimate.message,
                    }
                )))
            }
            Action::CertificateSweep => {
                let soon = now.0 + 2 * 86_400_000;
                let agents = self.db.agents().await.map_err(|e| e.to_string())?;
                let expiring: Vec<String> = agents
                    .iter()
                    .filter(|a| a.revoked_at.is_none() && a.cert_not_after.0 < soon)
                    .map(|a| a.name.clone().unwrap_or_else(|| a.id.to_string()))
                    .collect();
                let (sessions, tokens) =
                    self.db.prune_expired(now.0).await.map_err(|e| e.to_string())?;
                let logins = self.db.prune_login_failures().await.map_err(|e| e.to_string())?;
                if !expiring.is_empty() {
                    tracing::warn!(agents = ?expiring, "Agents' certificates run out within two days: they renew when they connect; an agent that stays away must be enrolled again.");
                }
                Ok(Finish::Done(format!(
                    "{} certificates run out within two days{}; removed {sessions} expired sessions, {tokens} expired enrollment tokens and {logins} lapsed login failures",
                    expiring.len(),
                    if expiring.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", expiring.join(", "))
                    }
                )))
            }
            Action::LowStock => {
                let principal =
                    crate::service::Principal::internal("scheduler", crate::service::Role::Viewer);
                let view = self
                    .services
                    .inventory
                    .overview(&principal)
                    .await
                    .map_err(|e| e.to_string())?;
                let low: Vec<String> = view
                    .filaments
                    .iter()
                    .filter(|f| {
                        f.low
                            || f.days_to_empty
                                .is_some_and(|d| d < crate::db::outcomes::LOW_STOCK_DAYS)
                    })
                    .map(|f| format!("{} ({:.0} g)", f.name, f.remaining_g))
                    .collect();
                Ok(Finish::Done(if low.is_empty() {
                    "no filament is low".into()
                } else {
                    format!("{} low: {}", low.len(), low.join(", "))
                }))
            }
            Action::HealthReport => {
                let report = self.health_report(now.0).await?;
                let text = serde_json::to_string(&report).map_err(|e| e.to_string())?;
                let summary = report.summary.clone();
                let effect = Effect::HealthReport { report: &text };
                Ok(match self.db.end_run_with(key, fence, &summary, effect).await {
                    Ok(true) => Finish::Ended(summary),
                    Ok(false) => Finish::Lost,
                    Err(error) => Finish::Retry(error.to_string()),
                })
            }
            Action::Maintenance => {
                self.db.maintain().await.map_err(|e| e.to_string())?;
                let pruned = self
                    .db
                    .prune_scheduler_runs(now.0 - 30 * 86_400_000)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Finish::Done(format!("statistics refreshed; {pruned} old runs pruned")))
            }
        }
    }

    /// The farm's last day.
    async fn health_report(&self, now: i64) -> Result<HealthReport, String> {
        let day_ago = now - 86_400_000;
        let printers = self.services.fleet.printers().await.map_err(|e| e.to_string())?;
        let agents = self.services.fleet.agents().await.map_err(|e| e.to_string())?;
        let outcomes = self.db.outcomes(None, day_ago, now + 1).await.map_err(|e| e.to_string())?;
        let not_successful: Vec<ReportedPrint> = outcomes
            .iter()
            .filter(|o| o.result != "success")
            .map(|o| ReportedPrint {
                id: o.id,
                printer: o.printer_id.clone(),
                result: o.result.clone(),
                reason: o.reason.clone(),
            })
            .collect();
        let principal =
            crate::service::Principal::internal("scheduler", crate::service::Role::Viewer);
        let stock =
            self.services.inventory.overview(&principal).await.map_err(|e| e.to_string())?;
        let low_stock: Vec<String> =
            stock.filaments.iter().filter(|f| f.low).map(|f| f.name.clone()).collect();
        let mut failed_runs = Vec::new();
        for job in self.db.scheduler_jobs().await.map_err(|e| e.to_string())? {
            for run in self.db.scheduler_runs(&job.name, 200).await.map_err(|e| e.to_string())? {
                if run.state == "failed" && run.started_at >= day_ago {
                    failed_runs.push(ReportedRun {
                        job: job.name.clone(),
                        occurrence: run.key.occurrence,
                        result: run.result.unwrap_or_default(),
                    });
                }
            }
        }
        let seen_today = |a: &crate::service::fleet::Agent| {
            a.online || a.detail.last_seen_at.is_some_and(|t| t >= day_ago)
        };
        let agents_seen = agents.iter().filter(|a| seen_today(a)).count();
        let summary = format!(
            "{} printers, {} agents ({agents_seen} seen in the last day); {} prints ended, {} not successfully; {} filaments low; {} scheduled runs failed",
            printers.len(),
            agents.len(),
            outcomes.len(),
            not_successful.len(),
            low_stock.len(),
            failed_runs.len()
        );
        Ok(HealthReport {
            from: day_ago,
            to: now,
            summary,
            printers: printers.len(),
            agents: agents.len(),
            agents_seen,
            prints: outcomes.len(),
            not_successful,
            low_stock,
            failed_runs,
        })
    }
}

/// The daily health report: the farm's last day.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// The day it covers (Unix ms).
    pub from: i64,
    pub to: i64,
    /// The report in one sentence.
    pub summary: String,
    pub printers: usize,
    pub agents: usize,
    /// Agents connected or seen within the day.
    pub agents_seen: usize,
    /// Prints that ended within the day.
    pub prints: usize,
    /// Those that did not succeed.
    pub not_successful: Vec<ReportedPrint>,
    /// Filaments below the low-stock threshold, by name.
    pub low_stock: Vec<String>,
    /// Scheduled runs that failed within the day.
    pub failed_runs: Vec<ReportedRun>,
}

/// A print that did not succeed, in a health report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReportedPrint {
    /// The outcome's id.
    pub id: i64,
    pub printer: String,
    /// `failed` or `cancelled`.
    pub result: String,
    pub reason: Option<String>,
}

/// A scheduled run that failed, in a health report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReportedRun {
    pub job: String,
    pub occurrence: i64,
    pub result: String,
}
