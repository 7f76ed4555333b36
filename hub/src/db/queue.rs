//! The print queue's storage: jobs, their history, and plate confirmations. Every state
//! change is a conditional update (it names the states it may leave) with its history row,
//! in one transaction, so two doors acting at once cannot both move a job.

use crate::db::BindDouble;
use std::collections::HashMap;

use sqlx::Row;

use super::{Db, DbError};
use proto::UnixMillis;

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub batch: String,
    pub copy: i64,
    pub copies: i64,
    pub file_id: String,
    pub plate: i64,
    pub name: String,
    pub state: String,
    pub held: bool,
    pub priority: i64,
    pub position: i64,
    pub deadline: Option<i64>,
    pub not_before: Option<i64>,
    pub needs_approval: bool,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub target_printer: Option<String>,
    pub target_model: Option<String>,
    pub nozzle: Option<f64>,
    /// JSON: `[{slot, material, color}]`.
    pub needs: String,
    pub tolerance: f64,
    pub printer_id: Option<String>,
    /// JSON: `[{slot, tray, distance}]`.
    pub mapping: Option<String>,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// Which try this is: 0, then one more with each retry.
    pub attempt: i64,
    /// The start command of this try, once sent.
    pub command_id: Option<String>,
    /// How it starts on a Bambu printer.
    pub bed_leveling: bool,
    pub flow_calibration: bool,
    pub timelapse: bool,
}

const COLUMNS: &str = "id, batch, copy, copies, file_id, plate, name, state, held, priority, \
    position, deadline, not_before, needs_approval, approved_by, approved_at, target_printer, \
    target_model, nozzle, needs, tolerance, printer_id, mapping, reason, reason_code, created_by, \
    created_at, updated_at, started_at, ended_at, attempt, command_id, bed_leveling, \
    flow_calibration, timelapse";

fn job_row(row: &sqlx::any::AnyRow) -> Result<JobRow, DbError> {
    Ok(JobRow {
        id: row.try_get(0)?,
        batch: row.try_get(1)?,
        copy: row.try_get(2)?,
        copies: row.try_get(3)?,
        file_id: row.try_get(4)?,
        plate: row.try_get(5)?,
        name: row.try_get(6)?,
        state: row.try_get(7)?,
        held: row.try_get::<i64, _>(8)? != 0,
        priority: row.try_get(9)?,
        position: row.try_get(10)?,
        deadline: row.try_get(11)?,
        not_before: row.try_get(12)?,
        needs_approval: row.try_get::<i64, _>(13)? != 0,
        approved_by: row.try_get(14)?,
        approved_at: row.try_get(15)?,
        target_printer: row.try_get(16)?,
        target_model: row.try_get(17)?,
        nozzle: row.try_get(18)?,
        needs: row.try_get(19)?,
        tolerance: row.try_get(20)?,
        printer_id: row.try_get(21)?,
        mapping: row.try_get(22)?,
        reason: row.try_get(23)?,
        reason_code: row.try_get(24)?,
        created_by: row.try_get(25)?,
        created_at: row.try_get(26)?,
        updated_at: row.try_get(27)?,
        started_at: row.try_get(28)?,
        ended_at: row.try_get(29)?,
        attempt: row.try_get(30)?,
        command_id: row.try_get(31)?,
        bed_leveling: row.try_get::<i64, _>(32)? != 0,
        flow_calibration: row.try_get::<i64, _>(33)? != 0,
        timelapse: row.try_get::<i64, _>(34)? != 0,
    })
}

/// A job of the queue that the printer's own report moved on (see [`follow_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobChange {
    pub id: i64,
    pub state: String,
    pub printer: String,
    /// The agent's record that moved it.
    pub seq: i64,
}

/// Follows the queue's jobs through what their printers report, in the ingest's
/// transaction (so exactly once, in the agent's order, whatever is resent): a job start
/// on a printer whose job of the queue was sent its start moves that job to `printing`;
/// a job end moves it to `finished`, `failed` or `cancelled` with the printer's reason.
/// Records about printers the agent does not own (`foreign`) are left out.
pub(super) async fn follow_jobs(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    records: &[proto::Record],
    foreign: &HashMap<&str, String>,
    now: UnixMillis,
) -> Result<Vec<JobChange>, DbError> {
    use proto::{JobOutcome, PrinterEventKind, RecordBody};
    let mut changes = Vec::new();
    for record in records {
        let RecordBody::PrinterEvent(event) = &record.body else { continue };
        let printer = event.printer.as_str();
        if foreign.contains_key(printer) {
            continue;
        }
        let (from, to, detail): (&[&str], &str, String) = match &event.kind {
            PrinterEventKind::JobStarted { job_name, .. } => (
                &["uploading", "starting"],
                "printing",
                match job_name {
                    Some(name) => format!("the printer started {name:?}"),
                    None => "the printer started it".into(),
                },
            ),
            PrinterEventKind::JobFinished { outcome, .. } => {
                let from: &[&str] = &["starting", "printing"];
                match outcome {
                    JobOutcome::Succeeded => (from, "finished", "the print finished".into()),
                    JobOutcome::Cancelled => (from, "cancelled", "cancelled on the printer".into()),
                    JobOutcome::Failed { print_error, hms } => {
                        let mut detail = "the print failed on the printer".to_owned();
                        if let Some(code) = print_error {
                            detail.push_str(&format!(" (error {code:08X})"));
                        }
                        if !hms.is_empty() {
                            detail.push_str(&format!(", {} HMS alert(s) active", hms.len()));
                        }
                        (from, "failed", detail)
                    }
                }
            }
            _ => continue,
        };
        // A printer holds at most one job of the queue; only one whose start was sent.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, state FROM jobs WHERE printer_id = $1 AND state IN {} \
             AND command_id IS NOT NULL ORDER BY id LIMIT 1",
            in_list(from)
        )))
        .bind(printer)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { continue };
        let (id, mut state): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        let actor = format!("printer {printer}");
        if state != "printing" && to != "printing" {
            // An end of a job whose start the agent never saw (the printer went from idle to
            // finished between two of its reports): it printed, and the history says so.
            let started = sqlx::query(
                "UPDATE jobs SET started_at = $1, state = 'printing', updated_at = $1 \
                 WHERE id = $2 AND state = $3",
            )
            .bind(now.0)
            .bind(id)
            .bind(state.as_str())
            .execute(&mut **tx)
            .await?;
            if started.rows_affected() == 1 {
                let detail = "the printer ended it before reporting its start";
                history(tx, id, Some(&state), "printing", &actor, Some(detail), now.0).await?;
                state = "printing".to_owned();
            }
        }
        let set = match to {
            "printing" => "started_at = $2, ",
            "finished" => "ended_at = $2, reason = NULL, ",
            _ => "ended_at = $2, reason = $5, ",
        };
        let sql = format!(
            "UPDATE jobs SET {set}state = $1, updated_at = $2 WHERE id = $3 AND state = $4"
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to)
            .bind(now.0)
            .bind(id)
            .bind(state.as_str());
        if set.contains("$5") {
            update = update.bind(detail.as_str());
        }
        if update.execute(&mut **tx).await?.rows_affected() == 1 {
            history(tx, id, Some(&state), to, &actor, Some(&detail), now.0).await?;
            changes.push(JobChange {
                id,
                state: to.to_owned(),
                printer: printer.to_owned(),
                seq: record.seq.0 as i64,
            });
        }
    }
    Ok(changes)
}

/// A job's file on its way to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    pub job: i64,
    /// The file's SHA-256 (its id).
    pub file_id: String,
    pub size: u64,
    pub name: String,
}

/// One change in a job's life.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct HistoryRow {
    pub at: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    /// A user, or `dispatcher`.
    pub actor: String,
    pub detail: Option<String>,
}

/// A plate confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Clearance {
    pub printer_id: String,
    pub agent_id: String,
    pub through_seq: i64,
    pub confirmed_by: String,
    pub confirmed_at: i64,
}

/// States a job is in while it holds its printer.
pub const ACTIVE: &[&str] = &["assigned", "transferring", "uploading", "starting", "printing"];
/// States a job ends in.
pub const DONE: &[&str] = &["finished", "failed", "cancelled"];

fn in_list(states: &[&str]) -> String {
    let quoted: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
    format!("({})", quoted.join(", "))
}

impl Db {
    /// Stores new jobs (one request's copies), each with its "queued" history row. Jobs
    /// are placed after every job of the queue. Returns their ids.
    pub async fn insert_jobs(&self, jobs: &[JobRow], actor: &str) -> Result<Vec<i64>, DbError> {
        // Every statement writes (the position is a subselect of the insert): see
        // `transition` for why a transaction here never begins with a read.
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            let sql = "INSERT INTO jobs (batch, copy, copies, file_id, plate, name, state, held, priority, \
                 position, deadline, not_before, needs_approval, target_printer, target_model, \
                 nozzle, needs, tolerance, created_by, created_at, updated_at, bed_leveling, \
                 flow_calibration, timelapse) VALUES ($1, $2, $3, \
                 $4, $5, $6, 'queued', $7, $8, (SELECT COALESCE(MAX(position), 0) + 1 FROM jobs), \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18, $19, $20, $21) RETURNING id";
            let id: i64 = sqlx::query(sql)
                .bind(job.batch.as_str())
                .bind(job.copy)
                .bind(job.copies)
                .bind(job.file_id.as_str())
                .bind(job.plate)
                .bind(job.name.as_str())
                .bind(i64::from(job.held))
                .bind(job.priority)
                .bind(job.deadline)
                .bind(job.not_before)
                .bind(i64::from(job.needs_approval))
                .bind(job.target_printer.as_deref())
                .bind(job.target_model.as_deref())
                .bind_f64(job.nozzle)
                .bind(job.needs.as_str())
                .bind(job.tolerance)
                .bind(actor)
                .bind(job.created_at)
                .bind(i64::from(job.bed_leveling))
                .bind(i64::from(job.flow_calibration))
                .bind(i64::from(job.timelapse))
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            history(&mut tx, id, None, "queued", actor, None, job.created_at).await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRow>, DbError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(job_row).transpose()
    }

    /// Jobs not yet done, and the `done` most recently ended ones.
    pub async fn jobs(&self, done: i64) -> Result<Vec<JobRow>, DbError> {
        let open = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE state NOT IN {} ORDER BY id",
            in_list(DONE)
        )))
        .fetch_all(&self.pool)
        .await?;
        let ended = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE state IN {} ORDER BY updated_at DESC, id DESC LIMIT $1",
            in_list(DONE)
        )))
        .bind(done)
        .fetch_all(&self.pool)
        .await?;
        open.iter().chain(ended.iter()).map(job_row).collect()
    }

    pub async fn job_history(&self, id: i64) -> Result<Vec<HistoryRow>, DbError> {
        let rows = sqlx::query(
            "SELECT at, from_state, to_state, actor, detail FROM job_history WHERE job_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    at: r.try_get(0)?,
                    from_state: r.try_get(1)?,
                    to_state: r.try_get(2)?,
                    actor: r.try_get(3)?,
                    detail: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Moves a job from one of `from` to `to`, with its history row; `false` (nothing
    /// changed) when it was in none of them. Leaving `queued` clears why it waited; entering
    /// `queued` clears its printer and mapping.
    pub async fn transition(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        actor: &str,
        detail: Option<&str>,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        // Read first, outside the transaction: the transaction then begins with its write.
        // (On SQLite, a transaction that reads and then writes cannot wait for the write
        // lock another connection holds, it fails "database is locked" at once; one that
        // begins with a write waits, up to the busy timeout.) The update is conditional on
        // the state read, so a change in between makes it change nothing.
        let row = sqlx::query("SELECT state FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(current) = row.map(|r| r.try_get::<String, _>(0)).transpose()? else {
            return Ok(false);
        };
        if !from.contains(&current.as_str()) {
            return Ok(false);
        }
        let set = if to == "queued" {
            "printer_id = NULL, mapping = NULL, reason = NULL, reason_code = NULL, \
             started_at = NULL, ended_at = NULL, command_id = NULL, attempt = attempt + 1, "
        } else if to == "printing" {
            "started_at = $2, "
        } else if to == "finished" {
            "ended_at = $2, "
        } else if DONE.contains(&to) {
            "ended_at = $2, reason = $5, "
        } else {
            ""
        };
        let sql = format!(
            "UPDATE jobs SET {set}state = $1, updated_at = $2 WHERE id = $3 AND state = $4"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to)
            .bind(now.0)
            .bind(id)
            .bind(current.as_str());
        if set.contains("$5") {
            query = query.bind(detail);
        }
        let mut tx = self.begin_write().await?;
        let changed = query.execute(&mut *tx).await?.rows_affected() == 1;
        if changed {
            history(&mut tx, id, Some(&current), to, actor, detail, now.0).await?;
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// Gives a queued job to a printer with its filament mapping.
    pub async fn assign_job(
        &self,
        id: i64,
        printer: &str,
        mapping: &str,
        detail: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE jobs SET state = 'assigned', printer_id = $1, mapping = $2, reason = NULL, \
             reason_code = NULL, updated_at = $3 WHERE id = $4 AND state = 'queued' AND held = 0",
        )
        .bind(printer)
        .bind(mapping)
        .bind(now.0)
        .bind(id);
        let entry =
            Entry { id, from: "queued", to: "assigned", actor: "dispatcher", detail, at: now };
        self.update_with_history(update, entry).await
    }

    /// Records why a queued job waits (no history row: it is not a change of state).
    pub async fn set_job_reason(&self, id: i64, code: &str, reason: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE jobs SET reason = $1, reason_code = $2 WHERE id = $3 AND state = 'queued'",
        )
        .bind(reason)
        .bind(code)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Holds or releases a job that has not started; `false` when it had.
    pub async fn set_job_held(
        &self,
        id: i64,
        held: bool,
        actor: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE jobs SET held = $1, updated_at = $2 WHERE id = $3 AND state = 'queued' AND held <> $1",
        )
        .bind(i64::from(held))
        .bind(now.0)
        .bind(id);
        let detail = if held { "held" } else { "released" };
        self.update_with_history(update, Entry::queued(id, actor, detail, now)).await
    }

    /// A queued job's new priority; `false` when it is not queued or already has it.
    pub async fn set_job_priority(
        &self,
        id: i64,
        priority: i32,
        actor: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE jobs SET priority = $1, updated_at = $2 WHERE id = $3 AND state = 'queued' AND priority <> $1",
        )
        .bind(i64::from(priority))
        .bind(now.0)
        .bind(id);
        let detail = format!("priority set to {priority}");
        self.update_with_history(update, Entry::queued(id, actor, &detail, now)).await
    }

    pub async fn approve_job(
        &self,
        id: i64,
        actor: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE jobs SET approved_by = $1, approved_at = $2, updated_at = $2 \
             WHERE id = $3 AND needs_approval = 1 AND approved_at IS NULL AND state = 'queued'",
        )
        .bind(actor)
        .bind(now.0)
        .bind(id);
        self.update_with_history(update, Entry::queued(id, actor, "approved", now)).await
    }

    /// Sets a job's place in the queue.
    pub async fn set_job_position(
        &self,
        id: i64,
        position: i64,
        actor: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE jobs SET position = $1, updated_at = $2 WHERE id = $3 AND state = 'queued'",
        )
        .bind(position)
        .bind(now.0)
        .bind(id);
        self.update_with_history(update, Entry::queued(id, actor, "moved", now)).await
    }

    /// Runs `update`, which changes job `entry.id` or nothing, and when it changed the job
    /// writes `entry` to its history, in one transaction.
    async fn update_with_history<'q>(
        &self,
        update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        entry: Entry<'_>,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let changed = update.execute(&mut *tx).await?.rows_affected() == 1;
        if changed {
            let Entry { id, from, to, actor, detail, at } = entry;
            history(&mut tx, id, Some(from), to, actor, Some(detail), at.0).await?;
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// Jobs not yet ended that print file `file`.
    pub async fn open_jobs_of_file(&self, file: &str) -> Result<i64, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM jobs WHERE file_id = $1 AND state NOT IN {}",
            in_list(DONE)
        )))
        .bind(file)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Jobs whose file is on its way to `agent`, oldest first.
    pub async fn transfers_for(&self, agent: &str) -> Result<Vec<TransferRow>, DbError> {
        let rows = sqlx::query(
            "SELECT j.id, j.file_id, f.size, f.name FROM jobs j \
             JOIN printers p ON p.id = j.printer_id JOIN files f ON f.id = j.file_id \
             WHERE j.state = 'transferring' AND p.agent_id = $1 ORDER BY j.id",
        )
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TransferRow {
                    job: r.try_get(0)?,
                    file_id: r.try_get(1)?,
                    size: r.try_get::<i64, _>(2)? as u64,
                    name: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The end of a transfer, as `agent` reported it: `transferring` → `to` (`uploading`,
    /// or `failed` with `detail` as the reason), only for a job on one of its printers.
    pub async fn transfer_ended(
        &self,
        id: i64,
        agent: &str,
        to: &str,
        detail: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE jobs SET state = $1, updated_at = $2, \
             reason = CASE WHEN $1 = 'failed' THEN $4 ELSE reason END, \
             ended_at = CASE WHEN $1 = 'failed' THEN $2 ELSE ended_at END \
             WHERE id = $3 AND state = 'transferring' \
             AND printer_id IN (SELECT id FROM printers WHERE agent_id = $5)",
        )
        .bind(to)
        .bind(now.0)
        .bind(id)
        .bind(detail)
        .bind(agent);
        let actor = format!("agent {agent}");
        let entry = Entry { id, from: "transferring", to, actor: &actor, detail, at: now };
        self.update_with_history(update, entry).await
    }

    /// A line in a job's history that changes nothing (a transfer resumed), written only
    /// while the job is in `state`.
    pub async fn job_note(
        &self,
        id: i64,
        state: &str,
        actor: &str,
        detail: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let update = sqlx::query("UPDATE jobs SET updated_at = $1 WHERE id = $2 AND state = $3")
            .bind(now.0)
            .bind(id)
            .bind(state);
        let entry = Entry { id, from: state, to: state, actor, detail, at: now };
        self.update_with_history(update, entry).await
    }

    /// Records the start command a job's try sent; `false` if it had one already.
    pub async fn set_job_command(&self, id: i64, command: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE jobs SET command_id = $1 WHERE id = $2 AND command_id IS NULL AND state = 'uploading'",
        )
        .bind(command)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Printers holding a job of the queue now, and the job.
    pub async fn busy_printers(&self) -> Result<HashMap<String, i64>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT printer_id, id FROM jobs WHERE state IN {} AND printer_id IS NOT NULL",
            in_list(ACTIVE)
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    // --- plates ---------------------------------------------------------------------------

    pub async fn confirm_plate(&self, clearance: &Clearance) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO plate_clearances (printer_id, agent_id, through_seq, confirmed_by, confirmed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (printer_id) DO UPDATE SET \
             agent_id = excluded.agent_id, through_seq = excluded.through_seq, \
             confirmed_by = excluded.confirmed_by, confirmed_at = excluded.confirmed_at",
        )
        .bind(clearance.printer_id.as_str())
        .bind(clearance.agent_id.as_str())
        .bind(clearance.through_seq)
        .bind(clearance.confirmed_by.as_str())
        .bind(clearance.confirmed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn plate_clearances(&self) -> Result<HashMap<String, Clearance>, DbError> {
        let rows = sqlx::query(
            "SELECT printer_id, agent_id, through_seq, confirmed_by, confirmed_at FROM plate_clearances",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let c = Clearance {
                    printer_id: r.try_get(0)?,
                    agent_id: r.try_get(1)?,
                    through_seq: r.try_get(2)?,
                    confirmed_by: r.try_get(3)?,
                    confirmed_at: r.try_get(4)?,
                };
                Ok((c.printer_id.clone(), c))
            })
            .collect()
    }

    /// Each printer's last job end the hub holds: (agent, seq).
    pub async fn last_job_ends(&self) -> Result<HashMap<String, (String, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT e.printer_id, e.agent_id, e.seq FROM events e JOIN ( \
               SELECT printer_id, MAX(id) AS last FROM events \
               WHERE kind IN ('job_finished', 'job_failed', 'job_cancelled') AND printer_id IS NOT NULL \
               GROUP BY printer_id) l ON e.id = l.last",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?)))).collect()
    }
}

/// A history row to write with a change.
#[derive(Debug, Clone, Copy)]
struct Entry<'a> {
    id: i64,
    from: &'a str,
    to: &'a str,
    actor: &'a str,
    detail: &'a str,
    at: UnixMillis,
}

impl<'a> Entry<'a> {
    /// A change that leaves a queued job queued (held, released, approved, moved).
    fn queued(id: i64, actor: &'a str, detail: &'a str, at: UnixMillis) -> Entry<'a> {
        Entry { id, from: "queued", to: "queued", actor, detail, at }
    }
}

async fn history(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
    from: Option<&str>,
    to: &str,
    actor: &str,
    detail: Option<&str>,
    at: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO job_history (job_id, at, from_state, to_state, actor, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(at)
    .bind(from)
    .bind(to)
    .bind(actor)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
