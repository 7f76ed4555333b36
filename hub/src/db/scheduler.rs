//! The scheduler's storage (migration 0018): jobs, runs, fences, and the side effects of the
//! built-in actions that live in the database. Every time that decides who runs what is the
//! database's clock ([`Db::now_sql`]): PostgreSQL's `clock_timestamp()`, so replicas whose
//! own clocks are off still agree; on SQLite, the one hub's clock.
//!
//! Each change of a run is one conditional statement: a claim inserts (the primary key picks
//! one winner), a takeover and a renewal update only under the fence the caller holds, and
//! a run ends only under its fence and while it runs. A side effect kept in the database is
//! written in the transaction that ends the run ([`Db::end_run_with`]), after the
//! conditional update has locked the row: a frozen holder that wakes after a takeover
//! finds no row to update and writes nothing.

use sqlx::Row;

use super::{Backend, Db, DbError};

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub name: String,
    pub action: String,
    /// The action's parameters, JSON.
    pub params: String,
    pub description: String,
    pub cron: Option<String>,
    pub every_ms: Option<i64>,
    pub at_ms: Option<i64>,
    pub time_zone: String,
    pub misfire: String,
    pub lease_ms: i64,
    pub paused: bool,
    pub builtin: bool,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_occurrence: Option<i64>,
}

const JOB: &str = "name, action, params, description, cron, every_ms, at_ms, time_zone, \
    misfire, lease_ms, paused, builtin, created_by, created_at, updated_at, last_occurrence";

fn job_row(row: &sqlx::any::AnyRow) -> Result<JobRow, DbError> {
    Ok(JobRow {
        name: row.try_get(0)?,
        action: row.try_get(1)?,
        params: row.try_get(2)?,
        description: row.try_get(3)?,
        cron: row.try_get(4)?,
        every_ms: row.try_get(5)?,
        at_ms: row.try_get(6)?,
        time_zone: row.try_get(7)?,
        misfire: row.try_get(8)?,
        lease_ms: row.try_get(9)?,
        paused: row.try_get::<i32, _>(10)? != 0,
        builtin: row.try_get::<i32, _>(11)? != 0,
        created_by: row.try_get(12)?,
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
        last_occurrence: row.try_get(15)?,
    })
}

/// One run: an occurrence of a job, by its schedule or by hand.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub job: String,
    pub occurrence: i64,
    pub manual: bool,
}

/// A run as stored: its history row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub key: RunKey,
    pub triggered_by: Option<String>,
    pub holder: String,
    pub fence: i64,
    pub lease_until: i64,
    pub state: String,
    pub attempts: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub result: Option<String>,
}

/// What a lease renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still this holder's: the lease runs on.
    Renewed,
    /// Ended under this holder's fence (its own work's end committed meanwhile).
    Ended,
    /// Taken over by another replica (or gone): this holder's work is to be dropped.
    Lost,
}

const RUN: &str = "job, occurrence, manual, triggered_by, holder, fence, lease_until, state, \
    attempts, started_at, ended_at, result";

fn run_row(row: &sqlx::any::AnyRow) -> Result<RunRow, DbError> {
    Ok(RunRow {
        key: RunKey {
            job: row.try_get(0)?,
            occurrence: row.try_get(1)?,
            manual: row.try_get::<i32, _>(2)? != 0,
        },
        triggered_by: row.try_get(3)?,
        holder: row.try_get(4)?,
        fence: row.try_get(5)?,
        lease_until: row.try_get(6)?,
        state: row.try_get(7)?,
        attempts: row.try_get::<i32, _>(8)?.into(),
        started_at: row.try_get(9)?,
        ended_at: row.try_get(10)?,
        result: row.try_get(11)?,
    })
}

/// A row of the `mark` action's side effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkRow {
    pub job: String,
    pub occurrence: i64,
    pub holder: String,
    pub fence: i64,
    /// The database's clock when the mark was written.
    pub written_at: i64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Succeeded,
    Failed,
}

impl RunEnd {
    pub fn name(self) -> &'static str {
        match self {
            RunEnd::Succeeded => "succeeded",
            RunEnd::Failed => "failed",
        }
    }
}

/// The key's `WHERE` conditions, with the key at `$1`–`$3`.
const KEY: &str = "job = $1 AND occurrence = $2 AND manual = $3";

impl Db {
    /// The database's clock as an SQL expression (Unix ms).
    pub(crate) fn now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    /// The database's clock, Unix ms.
    pub async fn clock(&self) -> Result<i64, DbError> {
        let sql = format!("SELECT {}", self.now_sql());
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await?)
    }

    /// Every job.
    pub async fn scheduler_jobs(&self) -> Result<Vec<JobRow>, DbError> {
        let sql = format!("SELECT {JOB} FROM scheduler_jobs ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(job_row).collect()
    }

    pub async fn scheduler_job(&self, name: &str) -> Result<Option<JobRow>, DbError> {
        let sql = format!("SELECT {JOB} FROM scheduler_jobs WHERE name = $1");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(job_row).transpose()
    }

    /// Adds a job; `false` when one of that name exists.
    pub async fn insert_scheduler_job(&self, job: &JobRow) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO scheduler_jobs (name, action, params, description, cron, every_ms, \
             at_ms, time_zone, misfire, lease_ms, paused, builtin, created_by, created_at, \
             updated_at, last_occurrence) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&job.name)
        .bind(&job.action)
        .bind(&job.params)
        .bind(&job.description)
        .bind(job.cron.as_deref())
        .bind(job.every_ms)
        .bind(job.at_ms)
        .bind(&job.time_zone)
        .bind(&job.misfire)
        .bind(job.lease_ms)
        .bind(i32::from(job.paused))
        .bind(i32::from(job.builtin))
        .bind(&job.created_by)
        .bind(job.created_at)
        .bind(job.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A built-in job as the configuration says now: added when missing, its schedule and
    /// description brought up to date when they differ. Whether an admin paused it, and its
    /// last occurrence, are kept, so a restart never runs anything again.
    pub async fn put_builtin_job(&self, job: &JobRow) -> Result<(), DbError> {
        if self.insert_scheduler_job(job).await? {
            return Ok(());
        }
        let Some(stored) = self.scheduler_job(&job.name).await? else { return Ok(()) };
        let same = JobRow {
            paused: stored.paused,
            created_by: stored.created_by.clone(),
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            last_occurrence: stored.last_occurrence,
            ..job.clone()
        };
        if same == stored {
            return Ok(());
        }
        self.update_scheduler_job(job).await?;
        Ok(())
    }

    /// Changes a job's schedule, parameters and description (not its action); `false` when
    /// there is no such job.
    pub async fn update_scheduler_job(&self, job: &JobRow) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE scheduler_jobs SET params = $2, description = $3, cron = $4, \
             every_ms = $5, at_ms = $6, time_zone = $7, misfire = $8, lease_ms = $9, \
             updated_at = $10 WHERE name = $1",
        )
        .bind(&job.name)
        .bind(&job.params)
        .bind(&job.description)
        .bind(job.cron.as_deref())
        .bind(job.every_ms)
        .bind(job.at_ms)
        .bind(&job.time_zone)
        .bind(&job.misfire)
        .bind(job.lease_ms)
        .bind(job.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pauses or resumes a job; `false` when there is no such job.
    pub async fn pause_scheduler_job(
        &self,
        name: &str,
        paused: bool,
        at: i64,
    ) -> Result<bool, DbError> {
        let done =
            sqlx::query("UPDATE scheduler_jobs SET paused = $2, updated_at = $3 WHERE name = $1")
                .bind(name)
                .bind(i32::from(paused))
                .bind(at)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a job and its history; `false` when there is no such job.
    pub async fn delete_scheduler_job(&self, name: &str) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM scheduler_runs WHERE job = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM scheduler_jobs WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// A fresh fence, larger than every one given before.
    async fn next_fence(&self, tx: &mut sqlx::AnyConnection) -> Result<i64, DbError> {
        let fence = match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar("SELECT nextval('scheduler_fences')").fetch_one(&mut *tx).await?
            }
            Backend::Sqlite => {
                sqlx::query_scalar(
                    "UPDATE scheduler_fences SET value = value + 1 WHERE id = 1 RETURNING value",
                )
                .fetch_one(&mut *tx)
                .await?
            }
        };
        Ok(fence)
    }

    /// Claims a scheduled occurrence for `holder`: its fence, or `None` when another replica
    /// has it (or had it). The job's last occurrence moves in the same transaction.
    pub async fn claim_run(
        &self,
        job: &str,
        occurrence: i64,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.begin_write().await?;
        let fence = self.next_fence(&mut tx).await?;
        let now = self.now_sql();
        let sql = format!(
            "INSERT INTO scheduler_runs (job, occurrence, manual, triggered_by, holder, fence, \
             lease_until, state, attempts, started_at) \
             VALUES ($1, $2, 0, NULL, $3, $4, {now} + $5, 'running', 1, {now}) \
             ON CONFLICT (job, occurrence, manual) DO NOTHING"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .bind(occurrence)
            .bind(holder)
            .bind(fence)
            .bind(lease_ms)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE scheduler_jobs SET last_occurrence = $2 WHERE name = $1 \
             AND (last_occurrence IS NULL OR last_occurrence < $2)",
        )
        .bind(job)
        .bind(occurrence)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(fence))
    }

    /// Asks for a run now, by hand: a run that waits for any replica to take it over (no
    /// holder, a lapsed lease). Its occurrence is the database's time of the request.
    pub async fn trigger_run(&self, job: &str, by: &str) -> Result<i64, DbError> {
        let now = self.now_sql();
        // Two triggers in one millisecond are two runs: the later one moves on a millisecond.
        let sql = format!(
            "INSERT INTO scheduler_runs (job, occurrence, manual, triggered_by, holder, fence, \
             lease_until, state, attempts, started_at) \
             SELECT $1, (SELECT CASE WHEN MAX(occurrence) >= {now} THEN MAX(occurrence) + 1 \
             ELSE {now} END FROM scheduler_runs WHERE job = $1 AND manual = 1), \
             1, $2, '', 0, 0, 'running', 0, {now} RETURNING occurrence"
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .bind(by)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Runs whose holder's lease lapsed (killed, frozen, shut down) and manual runs nobody
    /// has taken yet.
    pub async fn lapsed_runs(&self) -> Result<Vec<RunRow>, DbError> {
        let sql = format!(
            "SELECT {RUN} FROM scheduler_runs WHERE state = 'running' AND lease_until < {} \
             ORDER BY occurrence LIMIT 100",
            self.now_sql()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }

    /// Takes over a run whose lease lapsed, under the fence seen: the new fence, or `None`
    /// when another replica got there first (or the holder renewed or ended it).
    pub async fn take_over_run(
        &self,
        key: &RunKey,
        stale_fence: i64,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.begin_write().await?;
        let now = self.now_sql();
        if self.backend == Backend::Postgres {
            // A row another transaction holds is being ended or taken over right now: it is
            // skipped rather than waited for, so one stuck holder cannot stall this replica's
            // whole look (SQLite's `BEGIN IMMEDIATE` already holds the only write lock).
            let sql = format!(
                "SELECT 1 FROM scheduler_runs WHERE {KEY} AND fence = $4 AND state = 'running' \
                 AND lease_until < {now} FOR UPDATE SKIP LOCKED"
            );
            let free: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(&key.job)
                .bind(key.occurrence)
                .bind(i32::from(key.manual))
                .bind(stale_fence)
                .fetch_optional(&mut *tx)
                .await?;
            if free.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let fence = self.next_fence(&mut tx).await?;
        let sql = format!(
            "UPDATE scheduler_runs SET holder = $5, fence = $6, lease_until = {now} + $7, \
             attempts = attempts + 1, started_at = CASE WHEN attempts = 0 THEN {now} ELSE started_at END \
             WHERE {KEY} AND fence = $4 AND state = 'running' AND lease_until < {now}"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.job)
            .bind(key.occurrence)
            .bind(i32::from(key.manual))
            .bind(stale_fence)
            .bind(holder)
            .bind(fence)
            .bind(lease_ms)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(fence))
    }

    /// Renews the lease under `fence`.
    ///
    /// On PostgreSQL this waits for a transaction holding the run's row: when that is this
    /// holder's own end (its work finished while the renewal was under way), the answer is
    /// [`Renewal::Ended`], not [`Renewal::Lost`].
    pub async fn renew_run(
        &self,
        key: &RunKey,
        fence: i64,
        lease_ms: i64,
    ) -> Result<Renewal, DbError> {
        let sql = format!(
            "UPDATE scheduler_runs SET lease_until = {} + $5 \
             WHERE {KEY} AND fence = $4 AND state = 'running'",
            self.now_sql()
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.job)
            .bind(key.occurrence)
            .bind(i32::from(key.manual))
            .bind(fence)
            .bind(lease_ms)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(Renewal::Renewed);
        }
        let sql = format!("SELECT fence, state FROM scheduler_runs WHERE {KEY}");
        let row: Option<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&key.job)
            .bind(key.occurrence)
            .bind(i32::from(key.manual))
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some((now_fence, state)) if now_fence == fence && state != "running" => Renewal::Ended,
            _ => Renewal::Lost,
        })
    }

    /// Gives back a run at once (a replica shutting down): its lease ends now, so another
    /// replica takes it over at its next look instead of after the lease.
    pub async fn release_run(&self, key: &RunKey, fence: i64) -> Result<bool, DbError> {
        let sql = format!(
            "UPDATE scheduler_runs SET lease_until = 0 WHERE {KEY} AND fence = $4 AND state = 'running'"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.job)
            .bind(key.occurrence)
            .bind(i32::from(key.manual))
            .bind(fence)
            .execute(&self.pool)
            .await;
        Ok(done?.rows_affected() == 1)
    }

    /// Ends a run under `fence`; `false` when it was no longer this holder's (taken over
    /// after its lease lapsed), and nothing was written.
    pub async fn end_run(
        &self,
        key: &RunKey,
        fence: i64,
        end: RunEnd,
        result: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let ended = self.end_run_in(&mut tx, key, fence, end, result).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn end_run_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        key: &RunKey,
        fence: i64,
        end: RunEnd,
        result: &str,
    ) -> Result<bool, DbError> {
        let sql = format!(
            "UPDATE scheduler_runs SET state = $5, ended_at = {}, result = $6 \
             WHERE {KEY} AND fence = $4 AND state = 'running'",
            self.now_sql()
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.job)
            .bind(key.occurrence)
            .bind(i32::from(key.manual))
            .bind(fence)
            .bind(end.name())
            .bind(result)
            .execute(&mut *tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a run under `fence` and writes its side effect in the same transaction: the
    /// effect only when the run was still this holder's. `false`: nothing was written.
    pub async fn end_run_with(
        &self,
        key: &RunKey,
        fence: i64,
        result: &str,
        effect: Effect<'_>,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        if !self.end_run_in(&mut tx, key, fence, RunEnd::Succeeded, result).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        let now = self.now_sql();
        match effect {
            Effect::Mark { holder } => {
                let sql = format!(
                    "INSERT INTO scheduler_marks (job, occurrence, holder, fence, written_at) \
                     VALUES ($1, $2, $3, $4, {now})"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&key.job)
                    .bind(key.occurrence)
                    .bind(holder)
                    .bind(fence)
                    .execute(&mut *tx)
                    .await?;
            }
            Effect::HealthReport { report } => {
                let sql = format!(
                    "INSERT INTO health_reports (job, occurrence, created_at, report) \
                     VALUES ($1, $2, {now}, $3) ON CONFLICT (job, occurrence) DO NOTHING"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&key.job)
                    .bind(key.occurrence)
                    .bind(report)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A job's runs, newest first.
    pub async fn scheduler_runs(&self, job: &str, limit: i64) -> Result<Vec<RunRow>, DbError> {
        let sql = format!(
            "SELECT {RUN} FROM scheduler_runs WHERE job = $1 \
             ORDER BY started_at DESC, occurrence DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_row).collect()
    }

    /// Forgets ended runs that started before `before`.
    pub async fn prune_scheduler_runs(&self, before: i64) -> Result<u64, DbError> {
        let done =
            sqlx::query("DELETE FROM scheduler_runs WHERE state <> 'running' AND started_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    /// Removes sessions past their expiry and enrollment tokens that expired unused a
    /// week ago or more (until then enrolling with one says it expired): (sessions, tokens)
    /// removed.
    pub async fn prune_expired(&self, now: i64) -> Result<(u64, u64), DbError> {
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let tokens =
            sqlx::query("DELETE FROM enrollment_tokens WHERE used_at IS NULL AND expires_at < $1")
                .bind(now - 7 * 86_400_000)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok((sessions, tokens))
    }

    /// How many rows the `mark` action wrote.
    pub async fn scheduler_mark_count(&self) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM scheduler_marks").fetch_one(&self.pool).await?)
    }

    /// Every row the `mark` action wrote, oldest first.
    pub async fn scheduler_marks(&self) -> Result<Vec<MarkRow>, DbError> {
        let rows = sqlx::query(
            "SELECT job, occurrence, holder, fence, written_at FROM scheduler_marks ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MarkRow {
                    job: row.try_get(0)?,
                    occurrence: row.try_get(1)?,
                    holder: row.try_get(2)?,
                    fence: row.try_get(3)?,
                    written_at: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// The newest health reports, newest first: (occurrence, created_at, JSON).
    pub async fn health_reports(&self, limit: i64) -> Result<Vec<(i64, i64, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT occurrence, created_at, report FROM health_reports \
             ORDER BY created_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    /// The database's own upkeep: statistics refreshed (PostgreSQL's `ANALYZE`; SQLite's
    /// `PRAGMA optimize` and a WAL checkpoint that truncates the log).
    pub async fn maintain(&self) -> Result<(), DbError> {
        match self.backend {
            Backend::Postgres => {
                sqlx::query("ANALYZE").execute(&self.pool).await?;
            }
            Backend::Sqlite => {
                sqlx::query("PRAGMA optimize").execute(&self.pool).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
            }
        }
        Ok(())
    }
}

/// A side effect written in the transaction that ends its run.
#[derive(Debug, Clone, Copy)]
pub enum Effect<'a> {
    /// The `mark` action's row.
    Mark { holder: &'a str },
    /// The daily health report, JSON.
    HealthReport { report: &'a str },
}
