//! The read model, derived from records in the ingest transaction: the latest state of each
//! printer, the event log, raw telemetry samples, command outcomes, agent health. Every
//! write is idempotent, so a resent record changes nothing.

use crate::db::BindDouble;
use std::collections::HashMap;

use proto::{AgentId, HeaterKind, PrinterStateV2, Record, RecordBody, SnapshotTrigger, UnixMillis};
use sqlx::Row;

use super::{
    Backend, DbError, StoredSnapshot, backend_of, execute_overlapped, record_outcome_on, values_for,
};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// A printer's newest state in a batch.
struct Latest<'a> {
    seq: i64,
    at: i64,
    state: &'a PrinterStateV2,
}

/// Records about a printer another agent owns: kept in the ingest log, not projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedPrinter {
    pub printer: String,
    pub owner: String,
    pub records: u64,
}

/// The printer a record is about, if any.
pub fn printer_of(body: &RecordBody) -> Option<&str> {
    match body {
        RecordBody::Telemetry(t) => Some(t.printer.as_str()),
        RecordBody::TelemetryV2(t) => Some(t.printer.as_str()),
        RecordBody::PrinterEvent(e) => Some(e.printer.as_str()),
        RecordBody::Snapshot(s) => Some(s.printer.as_str()),
        RecordBody::CommandResult(r) => Some(r.printer.as_str()),
        RecordBody::CameraHealth(c) => Some(c.printer.as_str()),
        RecordBody::AgentHealth(_)
        | RecordBody::AgentHealthV2(_)
        | RecordBody::AgentHealthV3(_)
        | RecordBody::PrintersApplied(_)
        | RecordBody::Discovered(_) => None,
    }
}

/// The owners of the printers in `records` that `agent` does not own. A printer nobody
/// owns yet is claimed for `agent` here, awaiting approval (a hello claims first in
/// practice; this covers records that arrive without one).
async fn foreign_printers<'r>(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    records: &'r [Record],
    now: UnixMillis,
) -> Result<HashMap<&'r str, String>, DbError> {
    let mut seen: Vec<&str> = records.iter().filter_map(|r| printer_of(&r.body)).collect();
    seen.sort_unstable();
    seen.dedup();
    let mut foreign = HashMap::new();
    for printer in seen {
        let owner = sqlx::query("SELECT agent_id FROM printers WHERE id = $1")
            .bind(printer)
            .fetch_optional(&mut **tx)
            .await?;
        match owner {
            Some(row) => {
                let owner: String = row.try_get(0)?;
                if owner != agent.as_str() {
                    foreign.insert(printer, owner);
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO printers (id, agent_id, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(printer)
                .bind(agent.as_str())
                .bind(now.0)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(foreign)
}

/// Counts records refused per printer on the refused agent's claim.
async fn count_refused(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    refused: &[RefusedPrinter],
    now: UnixMillis,
) -> Result<(), DbError> {
    for refused in refused {
        sqlx::query(
            "INSERT INTO printer_claims (printer_id, agent_id, first_at, last_at, \
             refused_records) VALUES ($1, $2, $3, $3, $4) ON CONFLICT (printer_id, agent_id) \
             DO UPDATE SET last_at = excluded.last_at, \
             refused_records = printer_claims.refused_records + excluded.refused_records",
        )
        .bind(refused.printer.as_str())
        .bind(agent.as_str())
        .bind(now.0)
        .bind(refused.records as i64)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// What a projection did besides writing the read model.
pub(super) struct Projected {
    pub refused: Vec<RefusedPrinter>,
    /// Each new event's id, by its record's seq.
    pub event_ids: Vec<(proto::Seq, i64)>,
    /// Jobs of the queue the printers' reports moved on.
    pub jobs: Vec<super::queue::JobChange>,
    /// Outcomes created and spools changed.
    pub followed: super::outcomes::Followed,
}

/// Projects `records` into the read model, except records about printers `agent` does not
/// own, which are returned (counted) instead.
pub(super) async fn project(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    records: &[Record],
    stored: &[StoredSnapshot],
    now: UnixMillis,
) -> Result<Projected, DbError> {
    let foreign = foreign_printers(tx, agent, records, now).await?;
    let mut refused: HashMap<&str, u64> = HashMap::new();
    // A version-4 agent's telemetry, in the neutral terms the read model keeps (owned here,
    // so that both kinds are borrowed alike below).
    let converted: HashMap<proto::Seq, PrinterStateV2> = records
        .iter()
        .filter_map(|record| match &record.body {
            RecordBody::Telemetry(t) => Some((record.seq, PrinterStateV2::from_v1(&t.state))),
            _ => None,
        })
        .collect();
    let mut latest: HashMap<&str, Latest<'_>> = HashMap::new();
    let mut events: Vec<EventRow<'_>> = Vec::new();
    let mut samples = Vec::new();
    let mut snapshots = Vec::new();
    for record in records {
        if let Some(printer) = printer_of(&record.body)
            && foreign.contains_key(printer)
        {
            *refused.entry(printer).or_default() += 1;
            continue;
        }
        match &record.body {
            RecordBody::Telemetry(_) | RecordBody::TelemetryV2(_) => {
                let (printer, state) = match &record.body {
                    RecordBody::TelemetryV2(t) => (t.printer.as_str(), &*t.state),
                    RecordBody::Telemetry(t) => match converted.get(&record.seq) {
                        Some(state) => (t.printer.as_str(), state),
                        None => continue,
                    },
                    _ => continue,
                };
                let at = record.observed_at.0;
                // Newest by the agent's order, not its clock, which may have stepped.
                let seq = record.seq.0 as i64;
                if latest.get(printer).is_none_or(|l| l.seq < seq) {
                    latest.insert(printer, Latest { seq, at, state });
                }
                samples.push((printer, at, state));
            }
            RecordBody::PrinterEvent(event) => {
                let data = proto::json::printer_event(&event.kind);
                let kind = data["type"].as_str().unwrap_or("unknown").to_owned();
                events.push((
                    record.seq.0 as i64,
                    event.printer.as_str(),
                    kind,
                    record.observed_at.0,
                    data.to_string(),
                ));
            }
            RecordBody::CommandResult(result) => {
                let (command, outcome, at) = (result.command, &result.outcome, record.observed_at);
                record_outcome_on(&mut **tx, agent, command, outcome, at).await?;
            }
            RecordBody::AgentHealth(health) => agent_health(tx, agent, health, None, None).await?,
            RecordBody::AgentHealthV2(v2) => {
                agent_health(tx, agent, &v2.health, Some(&v2.counters), None).await?;
            }
            RecordBody::AgentHealthV3(v3) => {
                let (health, clock) = (&v3.health, v3.clock.as_ref());
                agent_health(tx, agent, &health.health, Some(&health.counters), clock).await?;
            }
            RecordBody::Snapshot(chunk) => {
                if let Some(file) = stored.iter().find(|s| s.id == chunk.snapshot)
                    && chunk.chunk_index + 1 == chunk.chunk_count
                {
                    snapshots.push((chunk, file));
                }
            }
            RecordBody::CameraHealth(health) => {
                camera_health(tx, agent, health, record.observed_at).await?;
            }
            RecordBody::PrintersApplied(applied) => {
                super::managed::applied(tx, agent, applied, record.observed_at).await?;
            }
            RecordBody::Discovered(found) => {
                super::managed::discovered(tx, agent, found, record.observed_at).await?;
            }
        }
    }
    let event_ids = insert_events(tx, agent, &events).await?;
    // A snapshot can reach the hub before the event that triggered it (the camera and the
    // printer link append to the outbox independently): link those now.
    for (seq, printer, kind, at, data) in &events {
        if let Some(trigger) = snapshot_trigger_of(kind) {
            link_earlier_snapshots(tx, agent, *seq, printer, trigger, *at, data).await?;
        }
    }
    let samples: Vec<_> = samples.chunks(1000).collect();
    let backend = backend_of(tx);
    execute_overlapped(tx, samples.len(), |i| {
        let chunk = samples[i];
        let sql = format!(
            "INSERT INTO telemetry (printer_id, resolution, at, state, progress_percent, layer, \
             nozzle_temp_c, bed_temp_c, chamber_temp_c, received_at) VALUES {} \
             ON CONFLICT (printer_id, resolution, at) DO NOTHING",
            values_for(backend, chunk.len(), 10)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (printer, at, state) in chunk {
            let temp = |kind| state.heater(kind, 0).and_then(|h| h.temp_c).map(f64::from);
            query = query
                .bind((*printer).to_owned())
                .bind(0_i64)
                .bind(*at)
                .bind(proto::json::print_state(state.state).to_owned())
                .bind(state.progress_percent.map(i64::from))
                .bind(state.layer.map(i64::from))
                .bind_f64(temp(HeaterKind::Nozzle))
                .bind_f64(temp(HeaterKind::Bed))
                .bind_f64(temp(HeaterKind::Chamber))
                .bind(now.0);
        }
        query
    })
    .await?;
    // After the events, so a snapshot links to the event in its own batch.
    for (chunk, file) in snapshots {
        snapshot(tx, agent, chunk, file).await?;
    }
    // Tags first: a spool made from what its tag says, before the state's trays link it.
    let mut spools = super::outcomes::apply_spool_tags(tx, records, &foreign, now.0).await?;
    for (printer, latest) in latest {
        spools.extend(super::outcomes::link_tagged_spools(tx, printer, latest.state, now.0).await?);
        // The row exists (claimed above) and is this agent's; the owner never changes here.
        let state = proto::json::printer_state_v2(latest.state).to_string();
        // Ordered by the owner's seq, not by `state_at`: the agent's clock can step back (a
        // Pi that rebooted hours behind), and a state stamped earlier can still be newer.
        sqlx::query(
            "UPDATE printers SET model = COALESCE($1, model), state = $2, state_at = $3, \
             updated_at = $7, state_seq = $6 WHERE id = $4 AND agent_id = $5 \
             AND (state_seq IS NULL OR state_seq < $6)",
        )
        .bind(latest.state.model.clone())
        .bind(state)
        .bind(latest.at)
        .bind(printer.to_owned())
        .bind(agent.as_str())
        .bind(latest.seq)
        .bind(now.0)
        .execute(&mut **tx)
        .await?;
    }
    let refused: Vec<RefusedPrinter> = refused
        .into_iter()
        .map(|(printer, records)| RefusedPrinter {
            printer: printer.to_owned(),
            owner: foreign[printer].clone(),
            records,
        })
        .collect();
    count_refused(tx, agent, &refused, now).await?;
    // New events only: a resent one moved its job when it first came.
    let new_events: std::collections::HashSet<proto::Seq> =
        event_ids.iter().map(|(seq, _)| *seq).collect();
    let fresh: Vec<Record> =
        records.iter().filter(|r| new_events.contains(&r.seq)).cloned().collect();
    let jobs = super::queue::follow_jobs(tx, &fresh, &foreign, now).await?;
    let mut followed =
        super::outcomes::follow_prints(tx, agent.as_str(), records, &fresh, &foreign, &jobs, now.0)
            .await?;
    followed.spools.extend(spools);
    Ok(Projected { refused, event_ids, jobs, followed })
}

/// An event as the event log stores it: seq, printer, kind, time, JSON.
type EventRow<'a> = (i64, &'a str, String, i64, String);

/// Inserts events into the log, each `(agent, seq)` once; returns the id each new one got, by
/// seq (a resent one, stored before, gets none).
///
/// PostgreSQL says with `RETURNING`. On SQLite that costs a row per event through the
/// driver's row conversion (a sixth of the ingest's time in a catch-up), so the ids are
/// worked out instead: the writer inserts alone, and each new row takes the largest rowid so
/// far plus one (the log's `AUTOINCREMENT` counter included), so the rows these statements
/// add have consecutive ids in `VALUES` order, ending at `last_insert_rowid()`. When a resent
/// event made them skip rows, the new rows are read back by that id range.
async fn insert_events(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    events: &[EventRow<'_>],
) -> Result<Vec<(proto::Seq, i64)>, DbError> {
    let backend = backend_of(tx);
    let chunks: Vec<&[EventRow<'_>]> = events.chunks(1000).collect();
    let statement = |i: usize| {
        let chunk = chunks[i];
        let sql = format!(
            "INSERT INTO events (agent_id, seq, printer_id, kind, at, data) VALUES {} \
             ON CONFLICT (agent_id, seq) DO NOTHING{}",
            values_for(backend, chunk.len(), 6),
            if backend == Backend::Postgres { " RETURNING seq, id" } else { "" }
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (seq, printer, kind, at, data) in chunk {
            query = query
                .bind(agent.as_str().to_owned())
                .bind(*seq)
                .bind((*printer).to_owned())
                .bind(kind.clone())
                .bind(*at)
                .bind(data.clone());
        }
        query
    };
    let seq_and_id = |row: &sqlx::any::AnyRow| -> Result<(proto::Seq, i64), DbError> {
        Ok((proto::Seq(row.try_get::<i64, _>(0)? as u64), row.try_get(1)?))
    };
    if backend == Backend::Postgres {
        let mut ids = Vec::with_capacity(events.len());
        for i in 0..chunks.len() {
            for row in statement(i).fetch_all(&mut **tx).await? {
                ids.push(seq_and_id(&row)?);
            }
        }
        return Ok(ids);
    }
    let inserted = execute_overlapped(tx, chunks.len(), statement).await? as i64;
    if inserted == 0 {
        return Ok(Vec::new());
    }
    let last: i64 =
        sqlx::query("SELECT last_insert_rowid()").fetch_one(&mut **tx).await?.try_get(0)?;
    let first = last - inserted + 1;
    if inserted == events.len() as i64 {
        let ids = events.iter().zip(first..);
        return Ok(ids.map(|(event, id)| (proto::Seq(event.0 as u64), id)).collect());
    }
    let rows = sqlx::query("SELECT seq, id FROM events WHERE id >= $1 AND id <= $2 ORDER BY id")
        .bind(first)
        .bind(last)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(seq_and_id).collect()
}

/// The snapshot trigger (as stored) an event kind causes, if any: the inverse of
/// [`trigger_events`].
fn snapshot_trigger_of(kind: &str) -> Option<&'static str> {
    match kind {
        "job_started" => Some("job_started"),
        "job_paused" => Some("paused"),
        "job_failed" | "job_cancelled" => Some("failed"),
        "job_finished" => Some("finished"),
        _ => None,
    }
}

/// Links snapshots stored before their triggering event arrived: those of `trigger` taken
/// within a minute after the event get its id, and for a job start, every snapshot of that
/// minute gets the job.
async fn link_earlier_snapshots(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    seq: i64,
    printer: &str,
    trigger: &str,
    at: i64,
    data: &str,
) -> Result<(), DbError> {
    let until = at + 60_000;
    sqlx::query(
        "UPDATE snapshots SET event_id = (SELECT id FROM events WHERE agent_id = $1 AND seq = $2) \
         WHERE printer_id = $3 AND trigger = $4 AND event_id IS NULL \
         AND captured_at >= $5 AND captured_at <= $6",
    )
    .bind(agent.as_str())
    .bind(seq)
    .bind(printer)
    .bind(trigger)
    .bind(at)
    .bind(until)
    .execute(&mut **tx)
    .await?;
    if trigger == "job_started" {
        let name = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v["job_name"].as_str().map(str::to_owned));
        sqlx::query(
            "UPDATE snapshots SET job_name = $1, job_started_at = $2 WHERE printer_id = $3 \
             AND job_started_at IS NULL AND captured_at >= $2 AND captured_at <= $4",
        )
        .bind(name)
        .bind(at)
        .bind(printer)
        .bind(until)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The event kinds a snapshot trigger belongs to.
fn trigger_events(trigger: SnapshotTrigger) -> &'static [&'static str] {
    match trigger {
        SnapshotTrigger::JobStarted => &["job_started"],
        SnapshotTrigger::Paused => &["job_paused"],
        SnapshotTrigger::Failed => &["job_failed", "job_cancelled"],
        SnapshotTrigger::Finished => &["job_finished"],
        _ => &[],
    }
}

pub fn trigger_name(trigger: SnapshotTrigger) -> &'static str {
    match trigger {
        SnapshotTrigger::JobStarted => "job_started",
        SnapshotTrigger::FirstLayerDone => "first_layer_done",
        SnapshotTrigger::Interval => "interval",
        SnapshotTrigger::Layer(_) => "layer",
        SnapshotTrigger::Paused => "paused",
        SnapshotTrigger::Failed => "failed",
        SnapshotTrigger::Finished => "finished",
        SnapshotTrigger::Requested => "requested",
    }
}

/// Records a whole snapshot, linked to the job in progress (the printer's latest
/// `job_started` at or before it) and to the event that triggered it.
async fn snapshot(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    chunk: &proto::SnapshotChunk,
    file: &StoredSnapshot,
) -> Result<(), DbError> {
    let printer = chunk.printer.as_str();
    let at = chunk.captured_at.0;
    let job = sqlx::query(
        "SELECT id, at, data FROM events WHERE printer_id = $1 AND kind = 'job_started' \
         AND at <= $2 ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(printer)
    .bind(at)
    .fetch_optional(&mut **tx)
    .await?;
    let (job_started_at, job_name) = match job {
        Some(row) => {
            let data: String = row.try_get(2)?;
            let name = serde_json::from_str::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v["job_name"].as_str().map(str::to_owned));
            (Some(row.try_get::<i64, _>(1)?), name)
        }
        None => (None, None),
    };
    let kinds = trigger_events(chunk.trigger);
    let mut event_id: Option<i64> = None;
    for kind in kinds {
        let row = sqlx::query(
            "SELECT id, at FROM events WHERE printer_id = $1 AND kind = $2 AND at <= $3 \
             ORDER BY at DESC, id DESC LIMIT 1",
        )
        .bind(printer)
        .bind(*kind)
        .bind(at)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = row {
            // The event that triggered it is moments older (the camera answers within
            // seconds); an older one belongs to another moment.
            let event_at: i64 = row.try_get(1)?;
            if at - event_at <= 60_000 {
                event_id = Some(row.try_get(0)?);
                break;
            }
        }
    }
    let layer = match chunk.trigger {
        SnapshotTrigger::Layer(layer) => Some(i64::from(layer)),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO snapshots (id, agent_id, printer_id, camera_id, trigger, layer, \
         captured_at, bytes, sha256, path, job_name, job_started_at, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(chunk.snapshot.to_string())
    .bind(agent.as_str())
    .bind(printer)
    .bind(chunk.camera.as_str())
    .bind(trigger_name(chunk.trigger))
    .bind(layer)
    .bind(at)
    .bind(file.bytes as i64)
    .bind(hex::encode(chunk.sha256))
    .bind(file.path.clone())
    .bind(job_name)
    .bind(job_started_at)
    .bind(event_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub fn camera_state_name(state: proto::CameraState) -> &'static str {
    match state {
        proto::CameraState::Idle => "idle",
        proto::CameraState::Connecting => "connecting",
        proto::CameraState::Streaming => "streaming",
        proto::CameraState::Failed => "failed",
    }
}

/// The agent's newest health: outbox depth, drops, disk, and its counters (`NULL` from an
/// agent that sends only the older `AgentHealth`).
async fn agent_health(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    health: &proto::AgentHealth,
    counters: Option<&proto::AgentCounters>,
    clock: Option<&proto::ClockOffset>,
) -> Result<(), DbError> {
    // Older agents and a first health record before any session say nothing of the clock:
    // the last measurement stands.
    if let Some(clock) = clock {
        sqlx::query(
            "UPDATE agents SET clock_offset_ms = $1, clock_uncertainty_ms = $2, \
             clock_measured_at = $3 WHERE id = $4",
        )
        .bind(clock.offset_ms)
        .bind(i64::from(clock.uncertainty_ms))
        .bind(clock.measured_at.0)
        .bind(agent.as_str())
        .execute(&mut **tx)
        .await?;
    }
    let drops = serde_json::Value::Array(
        health
            .drops
            .iter()
            .map(|d| {
                serde_json::json!({
                    "class": format!("{:?}", d.class).to_lowercase(),
                    "reason": format!("{:?}", d.reason).to_lowercase(),
                    "count": d.count,
                })
            })
            .collect(),
    );
    let counters = counters.map(|c| {
        serde_json::json!({
            "hub_reconnects": c.hub_reconnects,
            "hub_protocol_errors": c.hub_protocol_errors,
            "commands_refused": c.commands_refused,
            "printers": c.printers.iter().map(|p| serde_json::json!({
                "printer": p.printer.as_str(),
                "link_errors": p.link_errors,
                "bad_payloads": p.bad_payloads,
                "camera_errors": p.camera_errors,
            })).collect::<Vec<_>>(),
        })
        .to_string()
    });
    sqlx::query(
        "UPDATE agents SET outbox_records = $1, outbox_bytes = $2, drops = $3, \
         disk_free_bytes = $4, counters = $5 WHERE id = $6",
    )
    .bind(health.outbox_records as i64)
    .bind(health.outbox_bytes as i64)
    .bind(drops.to_string())
    .bind(health.disk_free_bytes as i64)
    .bind(counters)
    .bind(agent.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn camera_health(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    health: &proto::CameraHealth,
    at: proto::UnixMillis,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO cameras (printer_id, camera_id, agent_id, source, state, fps_milli, \
         last_frame_at, width, height, frames_total, last_error, live, reported_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (printer_id, camera_id) DO UPDATE SET agent_id = excluded.agent_id, \
         source = excluded.source, state = excluded.state, fps_milli = excluded.fps_milli, \
         last_frame_at = excluded.last_frame_at, width = excluded.width, \
         height = excluded.height, frames_total = excluded.frames_total, \
         last_error = excluded.last_error, live = excluded.live, \
         reported_at = excluded.reported_at \
         WHERE cameras.reported_at <= excluded.reported_at",
    )
    .bind(health.printer.as_str())
    .bind(health.camera.as_str())
    .bind(agent.as_str())
    .bind(health.source.clone())
    .bind(camera_state_name(health.state))
    .bind(i64::from(health.fps_milli))
    .bind(health.last_frame_at.map(|t| t.0))
    .bind(i64::from(health.width))
    .bind(i64::from(health.height))
    .bind(health.frames_total as i64)
    .bind(health.last_error.clone())
    .bind(i64::from(health.live))
    .bind(at.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
