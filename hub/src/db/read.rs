//! Queries behind the HTTP API. Every filter is a bound parameter; nothing from a request is
//! ever spliced into SQL text.

use proto::UnixMillis;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{Db, DbError};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PrinterRow {
    pub id: String,
    pub agent_id: String,
    pub name: Option<String>,
    pub model: Option<String>,
    pub vendor: Option<String>,
    /// The normalised state, when one has arrived.
    pub state: Option<crate::service::views::PrinterState>,
    /// When the agent observed the state (its clock, which can be off: see the agent's
    /// `clock`).
    pub state_at: Option<i64>,
    /// When the hub received the state (its clock): how fresh it is.
    pub received_at: Option<i64>,
    /// When an admin (or the agent's enrollment token) approved the owning agent's claim;
    /// `null` while the printer awaits approval and takes no commands.
    pub approved_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Event)]
pub struct EventRow {
    pub id: i64,
    pub printer_id: Option<String>,
    pub agent_id: String,
    pub kind: String,
    pub at: i64,
    pub event: crate::service::views::EventBody,
}

/// What `GET /events` may filter on.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub printer: Option<String>,
    pub kind: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Only events with an id below this (paging backwards).
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sample {
    pub at: i64,
    pub state: Option<String>,
    pub progress_percent: Option<i64>,
    pub layer: Option<i64>,
    pub nozzle_temp_c: Option<f64>,
    pub bed_temp_c: Option<f64>,
    pub chamber_temp_c: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommandRow {
    pub id: String,
    pub agent_id: String,
    pub printer_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub delivered_at: Option<i64>,
    pub outcome: Option<String>,
    pub outcome_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentDetail {
    pub id: String,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub software: Option<String>,
    pub enrolled_at: i64,
    pub certificate_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub acked_through: i64,
    pub last_seen_at: Option<i64>,
    pub outbox_records: Option<i64>,
    pub outbox_bytes: Option<i64>,
    /// What its outbox dropped to make room, by record class and reason (cumulative).
    pub drops: Vec<DropCount>,
    pub disk_free_bytes: Option<i64>,
    /// The agent's own counters since it started (agents of wire version 3 and later).
    pub counters: Option<AgentCounters>,
    /// The agent's clock against the hub's (agents of wire version 4 and later), as of its
    /// latest health record.
    pub clock: Option<AgentClock>,
}

/// How far an agent's clock is from the hub's. Expiries and the plate check follow the hub's
/// clock whatever it reads; the times the agent stamps on its records (events, telemetry,
/// snapshots) are off by as much.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentClock {
    /// The hub's clock minus the agent's, in milliseconds: positive when the agent is behind.
    pub offset_ms: i64,
    /// The true offset lies within `offset_ms ± uncertainty_ms` (half the round trip).
    pub uncertainty_ms: i64,
    /// When it was measured, on the agent's clock.
    pub measured_at: i64,
    /// More than [`CLOCK_OFF_MS`] off, beyond the uncertainty: the dashboard flags it.
    pub off: bool,
}

/// How far off an agent's clock may be before it is flagged: a few seconds, beyond what
/// NTP leaves and the measurement's own uncertainty.
pub const CLOCK_OFF_MS: i64 = 5_000;

impl AgentClock {
    fn new(offset_ms: i64, uncertainty_ms: i64, measured_at: i64) -> AgentClock {
        let off = offset_ms.saturating_abs().saturating_sub(uncertainty_ms.max(0)) > CLOCK_OFF_MS;
        AgentClock { offset_ms, uncertainty_ms, measured_at, off }
    }
}

/// Records an agent's outbox dropped, of one class for one reason.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Drop)]
pub struct DropCount {
    /// The record class: `telemetry`, `snapshot`, …
    pub class: String,
    /// Why: `capacity`, …
    pub reason: String,
    pub count: u64,
}

/// What an agent counted since it started, from its newest health report.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AgentCounters {
    pub hub_reconnects: u64,
    pub hub_protocol_errors: u64,
    pub commands_refused: u64,
    pub printers: Vec<PrinterCounters>,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PrinterCounters {
    pub printer: String,
    /// Printer connection failures (TLS, MQTT, refused access code).
    pub link_errors: u64,
    /// Printer messages that were not valid reports (malformed JSON and the like).
    pub bad_payloads: u64,
    /// Camera stream failures.
    pub camera_errors: u64,
}

/// How far behind `now` the downsampling mark stays (see `fold`).
const FOLD_GRACE_MS: i64 = 60_000;

const PRINTER_COLUMNS: &str =
    "id, agent_id, name, model, vendor, state, state_at, approved_at, updated_at";

fn printer_row(row: &sqlx::any::AnyRow) -> Result<PrinterRow, DbError> {
    let state: Option<String> = row.try_get(5)?;
    let state_present = state.is_some();
    Ok(PrinterRow {
        id: row.try_get(0)?,
        agent_id: row.try_get(1)?,
        name: row.try_get(2)?,
        model: row.try_get(3)?,
        vendor: row.try_get(4)?,
        state: state
            .and_then(|s| serde_json::from_str(&s).ok())
            .and_then(crate::service::views::PrinterState::from_json),
        state_at: row.try_get(6)?,
        approved_at: row.try_get(7)?,
        received_at: if state_present { row.try_get(8)? } else { None },
    })
}

impl Db {
    pub async fn printers(&self) -> Result<Vec<PrinterRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PRINTER_COLUMNS} FROM printers ORDER BY COALESCE(name, id)"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(printer_row).collect()
    }

    pub async fn printer(&self, id: &str) -> Result<Option<PrinterRow>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PRINTER_COLUMNS} FROM printers WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(printer_row).transpose()
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, DbError> {
        // A fixed statement: each filter is either bound or disabled by a NULL.
        let rows = sqlx::query(
            "SELECT id, printer_id, agent_id, kind, at, data FROM events \
             WHERE ($1 IS NULL OR printer_id = $1) AND ($2 IS NULL OR kind = $2) \
             AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at <= $4) \
             AND ($5 IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(filter.printer.clone())
        .bind(filter.kind.clone())
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.before_id)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get(5)?;
                Ok(EventRow {
                    id: row.try_get(0)?,
                    printer_id: row.try_get(1)?,
                    agent_id: row.try_get(2)?,
                    kind: row.try_get(3)?,
                    at: row.try_get(4)?,
                    event: crate::service::views::EventBody::from_json(
                        serde_json::from_str(&data).unwrap_or(Value::Null),
                    ),
                })
            })
            .collect()
    }

    /// Samples of one resolution (0 raw, 60 one-minute, 900 fifteen-minute) in a range: the
    /// newest `limit` of them, in time order.
    pub async fn telemetry(
        &self,
        printer: &str,
        resolution: i64,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Sample>, DbError> {
        let rows = sqlx::query(
            "SELECT at, state, progress_percent, layer, nozzle_temp_c, bed_temp_c, chamber_temp_c \
             FROM telemetry WHERE printer_id = $1 AND resolution = $2 AND at >= $3 AND at <= $4 \
             ORDER BY at DESC LIMIT $5",
        )
        .bind(printer)
        .bind(resolution)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        // The newest samples when the range holds more than the limit, oldest first.
        rows.iter()
            .rev()
            .map(|row| {
                Ok(Sample {
                    at: row.try_get(0)?,
                    state: row.try_get(1)?,
                    progress_percent: row.try_get(2)?,
                    layer: row.try_get(3)?,
                    nozzle_temp_c: row.try_get(4)?,
                    bed_temp_c: row.try_get(5)?,
                    chamber_temp_c: row.try_get(6)?,
                })
            })
            .collect()
    }

    /// Folds samples of resolution `from` into buckets of `bucket_ms` at resolution `to`,
    /// incrementally: only the buckets that gained samples since the last run (by the hub's
    /// receipt time, so an agent's late catch-up is folded too) or were still open then are
    /// (re)computed, in one transaction with the moved mark. A bucket's state, progress and
    /// layer are its last sample's (a job that ended in the bucket shows as ended); the
    /// temperatures are averages.
    async fn fold(
        &self,
        from: i64,
        to: i64,
        bucket_ms: i64,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        // Closed buckets only: everything older than a full bucket ago.
        let closed_before = (now.0 - bucket_ms) / bucket_ms * bucket_ms;
        let mut tx = self.begin_write().await?;
        let mark = sqlx::query(
            "SELECT received_before, open_from FROM downsample_marks WHERE source = $1",
        )
        .bind(from)
        .fetch_optional(&mut *tx)
        .await?;
        let (received_before, open_from) = match mark {
            Some(row) => (row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?),
            None => (i64::MIN, i64::MIN),
        };
        sqlx::query(
            "INSERT INTO telemetry (printer_id, resolution, at, state, progress_percent, layer, \
             nozzle_temp_c, bed_temp_c, chamber_temp_c, received_at) \
             SELECT g.printer_id, $1, g.bucket, l.state, l.progress_percent, l.layer, \
             g.nozzle, g.bed, g.chamber, $2 \
             FROM (SELECT t.printer_id AS printer_id, d.bucket AS bucket, MAX(t.at) AS last_at, \
                   AVG(t.nozzle_temp_c) AS nozzle, AVG(t.bed_temp_c) AS bed, \
                   AVG(t.chamber_temp_c) AS chamber \
                   FROM (SELECT DISTINCT printer_id, (at / $3) * $3 AS bucket FROM telemetry \
                         WHERE resolution = $4 AND at < $5 AND received_at >= $6 \
                         UNION \
                         SELECT DISTINCT printer_id, (at / $3) * $3 AS bucket FROM telemetry \
                         WHERE resolution = $4 AND at < $5 AND at >= $7) d \
                   JOIN telemetry t ON t.printer_id = d.printer_id AND t.resolution = $4 \
                        AND t.at >= d.bucket AND t.at < d.bucket + $3 \
                   GROUP BY t.printer_id, d.bucket) g \
             JOIN telemetry l ON l.printer_id = g.printer_id AND l.resolution = $4 \
                  AND l.at = g.last_at \
             WHERE true \
             ON CONFLICT (printer_id, resolution, at) DO UPDATE SET state = excluded.state, \
             progress_percent = excluded.progress_percent, layer = excluded.layer, \
             nozzle_temp_c = excluded.nozzle_temp_c, bed_temp_c = excluded.bed_temp_c, \
             chamber_temp_c = excluded.chamber_temp_c, received_at = excluded.received_at",
        )
        .bind(to)
        .bind(now.0)
        .bind(bucket_ms)
        .bind(from)
        .bind(closed_before)
        .bind(received_before)
        .bind(open_from)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO downsample_marks (source, received_before, open_from) VALUES ($1, $2, $3) \
             ON CONFLICT (source) DO UPDATE SET received_before = excluded.received_before, \
             open_from = excluded.open_from",
        )
        .bind(from)
        // A minute of grace: an ingest transaction that stamped its samples just before
        // `now` may commit after this one read; its buckets are folded again next time.
        .bind(now.0 - FOLD_GRACE_MS)
        .bind(closed_before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Folds raw samples into one-minute buckets and one-minute buckets into fifteen-minute
    /// buckets, incrementally (see `fold`: averages of the temperatures, the last sample's
    /// state, progress and layer), then deletes what is
    /// past its retention, and telemetry and health bodies in the ingest log older than the
    /// raw retention. Idempotent; run periodically.
    pub async fn downsample(
        &self,
        raw_keep_ms: i64,
        minute_keep_ms: i64,
        quarter_keep_ms: i64,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        for (from, to, bucket_ms, keep_ms) in
            [(0_i64, 60_i64, 60_000_i64, raw_keep_ms), (60, 900, 900_000, minute_keep_ms)]
        {
            self.fold(from, to, bucket_ms, now).await?;
            // Only what was folded may go: samples of buckets still open stay.
            let closed_before = (now.0 - bucket_ms) / bucket_ms * bucket_ms;
            sqlx::query("DELETE FROM telemetry WHERE resolution = $1 AND at < $2 AND at < $3")
                .bind(from)
                .bind(now.0 - keep_ms)
                .bind(closed_before)
                .execute(&self.pool)
                .await?;
        }
        sqlx::query("DELETE FROM telemetry WHERE resolution = 900 AND at < $1")
            .bind(now.0 - quarter_keep_ms)
            .execute(&self.pool)
            .await?;
        // The ingest log keeps telemetry and health bodies as long as raw samples; their
        // content lives on in the read model. Exactly-once does not need the old rows: an
        // agent resumes above its watermark, which only moves forward.
        sqlx::query(
            "DELETE FROM records WHERE kind IN ('telemetry', 'health') AND received_at < $1",
        )
        .bind(now.0 - raw_keep_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn commands(
        &self,
        printer: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CommandRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, agent_id, printer_id, created_at, expires_at, delivered_at, outcome, outcome_at \
             FROM commands WHERE ($1 IS NULL OR printer_id = $1) ORDER BY created_at DESC LIMIT $2",
        )
        .bind(printer.map(str::to_owned))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(command_row).collect()
    }

    pub async fn command(&self, id: &str) -> Result<Option<CommandRow>, DbError> {
        let row = sqlx::query(
            "SELECT id, agent_id, printer_id, created_at, expires_at, delivered_at, outcome, outcome_at \
             FROM commands WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(command_row).transpose()
    }

    pub async fn agent_details(&self) -> Result<Vec<AgentDetail>, DbError> {
        let rows = sqlx::query(
            "SELECT id, name, hostname, software, enrolled_at, cert_not_after, revoked_at, \
             acked_through, last_seen_at, outbox_records, outbox_bytes, drops, disk_free_bytes, \
             counters, clock_offset_ms, clock_uncertainty_ms, clock_measured_at \
             FROM agents ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let drops: Option<String> = row.try_get(11)?;
                Ok(AgentDetail {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    hostname: row.try_get(2)?,
                    software: row.try_get(3)?,
                    enrolled_at: row.try_get(4)?,
                    certificate_expires_at: row.try_get(5)?,
                    revoked_at: row.try_get(6)?,
                    acked_through: row.try_get(7)?,
                    last_seen_at: row.try_get(8)?,
                    outbox_records: row.try_get(9)?,
                    outbox_bytes: row.try_get(10)?,
                    drops: drops.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
                    disk_free_bytes: row.try_get(12)?,
                    counters: row
                        .try_get::<Option<String>, _>(13)?
                        .and_then(|c| serde_json::from_str(&c).ok()),
                    clock: match (row.try_get(14)?, row.try_get(15)?, row.try_get(16)?) {
                        (Some(offset), Some(uncertainty), Some(at)) => {
                            Some(AgentClock::new(offset, uncertainty, at))
                        }
                        _ => None,
                    },
                })
            })
            .collect()
    }
}

fn command_row(row: &sqlx::any::AnyRow) -> Result<CommandRow, DbError> {
    Ok(CommandRow {
        id: row.try_get(0)?,
        agent_id: row.try_get(1)?,
        printer_id: row.try_get(2)?,
        created_at: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        delivered_at: row.try_get(5)?,
        outcome: row.try_get(6)?,
        outcome_at: row.try_get(7)?,
    })
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    #[test]
    fn a_clock_is_flagged_when_it_is_off_by_more_than_a_few_seconds_beyond_the_uncertainty() {
        assert!(!AgentClock::new(0, 3, 0).off);
        assert!(!AgentClock::new(-4_000, 3, 0).off);
        assert!(!AgentClock::new(6_000, 2_000, 0).off, "within the measurement's uncertainty");
        assert!(AgentClock::new(10_800_000, 3, 0).off);
        assert!(AgentClock::new(-10_800_000, 3, 0).off);
        assert!(AgentClock::new(i64::MIN, 0, 0).off);
    }
}
