//! Which agent owns each printer. The first agent to announce a printer owns it; that first
//! claim waits for an admin's approval before the printer takes commands, unless the
//! enrollment token the agent redeemed named the printer. A claim by any other agent is
//! refused and remembered in `printer_claims` for admins; only an admin moves a printer.
//! Records about a printer from an agent that does not own it are kept in the ingest log
//! but never reach the read model (see `projection`).

use proto::{AgentId, CommandOutcome, PrinterInfo, UnixMillis, Vendor};
use serde::Serialize;
use sqlx::Row;

use super::{Db, DbError};

/// What became of an agent's claim on a printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The agent owns the printer (now or already); `approved` once an admin (or the
    /// enrollment token) approved it.
    Owned { approved: bool, new: bool },
    /// Another agent owns it: refused, and listed for admins.
    Refused { owner: String },
}

/// A refused claim, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = PrinterClaim)]
pub struct ClaimRow {
    pub printer_id: String,
    /// The agent that claimed the printer and was refused.
    pub agent_id: String,
    /// The agent that owns it.
    pub owner_id: String,
    pub first_at: i64,
    pub last_at: i64,
    /// Records about the printer from the refused agent, kept but not shown or used.
    pub refused_records: i64,
}

/// The stored name of a vendor.
pub fn vendor_name(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::BambuLab => "bambu_lab",
        Vendor::Moonraker => "moonraker",
        Vendor::Elegoo => "elegoo",
        Vendor::Snapmaker => "snapmaker",
    }
}

impl Db {
    /// Records `agent`'s announcement of `printer` (from its hello): the first claim creates
    /// the printer, owned by `agent`, approved if the agent's enrollment token named it; the
    /// owner's later claims refresh name, model and vendor; anyone else's is refused.
    pub async fn claim_printer(
        &self,
        agent: &AgentId,
        printer: &PrinterInfo,
        now: UnixMillis,
    ) -> Result<Claim, DbError> {
        let id = printer.id.as_str();
        let approved = self.token_named(agent, id).await?;
        // Writes first, so that SQLite takes the write lock (waiting its busy timeout) at the
        // start: a transaction that read first could not upgrade while the ingest writes.
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO printers (id, agent_id, name, model, vendor, approved_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(agent.as_str())
        .bind(printer.name.as_deref())
        .bind(printer.model.as_deref())
        .bind(vendor_name(printer.vendor))
        .bind(approved.then_some(now.0))
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(Claim::Owned { approved, new: true });
        }
        sqlx::query(
            "UPDATE printers SET name = COALESCE($1, name), model = COALESCE($2, model), \
             vendor = $3 WHERE id = $4 AND agent_id = $5",
        )
        .bind(printer.name.as_deref())
        .bind(printer.model.as_deref())
        .bind(vendor_name(printer.vendor))
        .bind(id)
        .bind(agent.as_str())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT agent_id, approved_at FROM printers WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let owner: String = row.try_get(0)?;
        let claim = if owner == agent.as_str() {
            Claim::Owned { approved: row.try_get::<Option<i64>, _>(1)?.is_some(), new: false }
        } else {
            sqlx::query(
                "INSERT INTO printer_claims (printer_id, agent_id, first_at, last_at) \
                 VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (printer_id, agent_id) DO UPDATE SET last_at = excluded.last_at",
            )
            .bind(id)
            .bind(agent.as_str())
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
            Claim::Refused { owner }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Whether the enrollment token `agent` redeemed named `printer`.
    async fn token_named(&self, agent: &AgentId, printer: &str) -> Result<bool, DbError> {
        let rows = sqlx::query("SELECT printers FROM enrollment_tokens WHERE used_by = $1")
            .bind(agent.as_str())
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let named: Option<String> = row.try_get(0)?;
            if named.is_some_and(|named| named.split_whitespace().any(|p| p == printer)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Approves the owner's claim on `printer`. `false` if there is no such printer.
    pub async fn approve_printer(&self, printer: &str, now: UnixMillis) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE printers SET approved_at = COALESCE(approved_at, $1) WHERE id = $2",
        )
        .bind(now.0)
        .bind(printer)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `printer` exists and its owner's claim is approved.
    pub async fn printer_approved(&self, printer: &str) -> Result<Option<bool>, DbError> {
        let row = sqlx::query("SELECT approved_at FROM printers WHERE id = $1")
            .bind(printer)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get::<Option<i64>, _>(0)).transpose()?.map(|at| at.is_some()))
    }

    /// Gives `printer` to `agent`, approved (an admin's action). Returns the previous owner,
    /// or `None` if there is no such printer. The refused claim, if any, is settled.
    pub async fn move_printer(
        &self,
        printer: &str,
        agent: &AgentId,
        now: UnixMillis,
    ) -> Result<Option<String>, DbError> {
        let previous = sqlx::query("SELECT agent_id FROM printers WHERE id = $1")
            .bind(printer)
            .fetch_optional(&self.pool)
            .await?;
        let Some(previous) = previous else { return Ok(None) };
        let previous: String = previous.try_get(0)?;
        // Writes first (see `claim_printer`).
        let mut tx = self.begin_write().await?;
        // The new owner's seqs are its own: its first state replaces the last one.
        sqlx::query(
            "UPDATE printers SET agent_id = $1, approved_at = $2, state_seq = NULL WHERE id = $3",
        )
        .bind(agent.as_str())
        .bind(now.0)
        .bind(printer)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM printer_claims WHERE printer_id = $1 AND agent_id = $2")
            .bind(printer)
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await?;
        // Commands not yet sent to the previous owner never will be: it no longer speaks for
        // the printer, and a start names a watermark of its records, not the new owner's.
        // One already sent keeps waiting for its answer (the printer may have acted on it).
        if previous != agent.as_str() {
            let outcome = CommandOutcome::Failed {
                detail: format!("printer {printer} moved to agent {agent} before it was sent"),
            };
            sqlx::query(
                "UPDATE commands SET outcome = $1, outcome_at = $2 WHERE printer_id = $3 \
                 AND agent_id = $4 AND outcome IS NULL AND delivered_at IS NULL",
            )
            .bind(crate::db::outcome_text(&outcome))
            .bind(now.0)
            .bind(printer)
            .bind(&previous)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(previous))
    }

    /// Every refused claim, newest first.
    pub async fn printer_claims(&self) -> Result<Vec<ClaimRow>, DbError> {
        let rows = sqlx::query(
            "SELECT c.printer_id, c.agent_id, p.agent_id, c.first_at, c.last_at, \
             c.refused_records FROM printer_claims c JOIN printers p ON p.id = c.printer_id \
             WHERE p.agent_id <> c.agent_id ORDER BY c.last_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimRow {
                    printer_id: row.try_get(0)?,
                    agent_id: row.try_get(1)?,
                    owner_id: row.try_get(2)?,
                    first_at: row.try_get(3)?,
                    last_at: row.try_get(4)?,
                    refused_records: row.try_get(5)?,
                })
            })
            .collect()
    }
}
