//! Snapshots and camera health: the queries behind the camera API and retention.

use serde::Serialize;
use sqlx::Row;

use super::{Db, DbError};
use proto::UnixMillis;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SnapshotRow {
    pub id: String,
    pub agent_id: String,
    pub printer_id: String,
    pub camera_id: String,
    pub trigger: String,
    pub layer: Option<i64>,
    pub captured_at: i64,
    pub bytes: i64,
    pub sha256: String,
    #[serde(skip)]
    pub path: String,
    pub job_name: Option<String>,
    pub job_started_at: Option<i64>,
    pub event_id: Option<i64>,
}

/// What `GET /printers/{id}/snapshots` may filter on.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub printer: String,
    /// Only snapshots of the job that started at this time (`job_started_at`).
    pub job_started_at: Option<i64>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// A printer's newest snapshot, for the fleet view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = SnapshotSummary)]
pub struct LatestSnapshot {
    pub id: String,
    pub captured_at: i64,
    pub trigger: String,
    pub layer: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CameraRow {
    pub printer_id: String,
    pub camera_id: String,
    pub agent_id: String,
    pub source: String,
    pub state: String,
    pub fps: f64,
    pub last_frame_at: Option<i64>,
    pub width: i64,
    pub height: i64,
    pub frames_total: i64,
    pub last_error: Option<String>,
    pub live: bool,
    pub reported_at: i64,
}

const SNAPSHOT_COLUMNS: &str = "id, agent_id, printer_id, camera_id, trigger, layer, \
    captured_at, bytes, sha256, path, job_name, job_started_at, event_id";

/// Triggers kept for the milestone retention; the rest go sooner.
const MILESTONES: &str = "('job_started', 'first_layer_done', 'paused', 'failed', 'finished')";

fn snapshot_row(row: &sqlx::any::AnyRow) -> Result<SnapshotRow, DbError> {
    Ok(SnapshotRow {
        id: row.try_get(0)?,
        agent_id: row.try_get(1)?,
        printer_id: row.try_get(2)?,
        camera_id: row.try_get(3)?,
        trigger: row.try_get(4)?,
        layer: row.try_get(5)?,
        captured_at: row.try_get(6)?,
        bytes: row.try_get(7)?,
        sha256: row.try_get(8)?,
        path: row.try_get(9)?,
        job_name: row.try_get(10)?,
        job_started_at: row.try_get(11)?,
        event_id: row.try_get(12)?,
    })
}

impl Db {
    /// Snapshots of a printer, newest first.
    pub async fn snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<SnapshotRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE printer_id = $1 \
             AND ($2 IS NULL OR job_started_at = $2) AND ($3 IS NULL OR captured_at < $3) \
             ORDER BY captured_at DESC, id DESC LIMIT $4"
        )))
        .bind(filter.printer.clone())
        .bind(filter.job_started_at)
        .bind(filter.before)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot_row).collect()
    }

    pub async fn snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(snapshot_row).transpose()
    }

    /// Each printer's newest snapshot, by printer id. One
    /// indexed lookup per printer (a fleet is tens of printers; the table is millions).
    pub async fn latest_snapshots(
        &self,
        printers: &[String],
    ) -> Result<std::collections::HashMap<String, LatestSnapshot>, DbError> {
        let mut latest = std::collections::HashMap::new();
        for printer in printers {
            let row = sqlx::query(
                "SELECT id, captured_at, trigger, layer FROM snapshots WHERE printer_id = $1 \
                 ORDER BY captured_at DESC LIMIT 1",
            )
            .bind(printer.as_str())
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                latest.insert(
                    printer.clone(),
                    LatestSnapshot {
                        id: row.try_get(0)?,
                        captured_at: row.try_get(1)?,
                        trigger: row.try_get(2)?,
                        layer: row.try_get(3)?,
                    },
                );
            }
        }
        Ok(latest)
    }

    /// The cameras of a printer with their last reported health.
    pub async fn cameras(&self, printer: &str) -> Result<Vec<CameraRow>, DbError> {
        let rows = sqlx::query(
            "SELECT printer_id, camera_id, agent_id, source, state, fps_milli, last_frame_at, \
             width, height, frames_total, last_error, live, reported_at FROM cameras \
             WHERE printer_id = $1 ORDER BY camera_id",
        )
        .bind(printer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CameraRow {
                    printer_id: row.try_get(0)?,
                    camera_id: row.try_get(1)?,
                    agent_id: row.try_get(2)?,
                    source: row.try_get(3)?,
                    state: row.try_get(4)?,
                    fps: row.try_get::<i64, _>(5)? as f64 / 1000.0,
                    last_frame_at: row.try_get(6)?,
                    width: row.try_get(7)?,
                    height: row.try_get(8)?,
                    frames_total: row.try_get(9)?,
                    last_error: row.try_get(10)?,
                    live: row.try_get::<i64, _>(11)? != 0,
                    reported_at: row.try_get(12)?,
                })
            })
            .collect()
    }

    /// Deletes snapshots past their retention and returns their files' paths, for removal.
    pub async fn expired_snapshots(
        &self,
        others_before: UnixMillis,
        milestones_before: UnixMillis,
    ) -> Result<Vec<String>, DbError> {
        let condition = format!(
            "(trigger IN {MILESTONES} AND captured_at < $1) \
             OR (trigger NOT IN {MILESTONES} AND captured_at < $2)"
        );
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT path FROM snapshots WHERE {condition}"
        )))
        .bind(milestones_before.0)
        .bind(others_before.0)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM snapshots WHERE {condition}")))
            .bind(milestones_before.0)
            .bind(others_before.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}
