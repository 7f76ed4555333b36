//! Ingest: a batch of records checked by the connection's [`IngestSession`], snapshot chunks
//! fsynced, the batch committed (records, read model and watermark in one transaction), live
//! updates published, and only then the cumulative ack sent.
//!
//! A connection has at most one batch committing at a time, and reads and decodes the agent's
//! next messages meanwhile (up to [`MAX_BATCH_RECORDS`]): the writer gets the next batch as
//! soon as it is free, and, one commit at a time, a batch never commits after an earlier one
//! of the same connection failed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

use proto::{AgentId, HubMessage, PrinterStateV2, Record, RecordBody, Seq, UnixMillis};

use super::close_code;
use super::server::{ConnectionError, Shared};
use super::session::IngestSession;
use crate::camera::SnapshotError;
use crate::db::StoredSnapshot;
use crate::live::{LiveHub, LiveUpdate};
use crate::metrics::Source;
use proto_io as frames;

/// The most records one commit takes from a connection.
pub(super) const MAX_BATCH_RECORDS: usize = 20_000;

/// A batch the database has committed, not yet acknowledged.
pub(super) struct Commit {
    records: Vec<Record>,
    watermark: Seq,
    committed: Committed,
    /// When the batch's first message arrived (live updates are stamped with it).
    received: Instant,
}

/// Stores `fresh` (records the connection's [`IngestSession`] accepted, in order): snapshot
/// chunks fsynced, then one commit of the records, the read model and the watermark.
/// Acknowledges nothing: [`acknowledge`] does, after this returns. On failure nothing is
/// acknowledged and the connection is closed; the agent resends from the watermark.
///
/// It borrows neither the stream nor the session, so the connection can read and decode
/// the agent's next messages while this commits (the SQLite writer is the catch-up's
/// bottleneck; it should never wait for the next batch's decoding).
pub(super) async fn commit(
    shared: &Shared,
    agent: &AgentId,
    fresh: Vec<Record>,
    received: Instant,
    connection: &quinn::Connection,
) -> Result<Commit, ConnectionError> {
    let stored = match store_snapshots(shared, &fresh).await {
        Ok(stored) => stored,
        Err(error) => {
            // Nothing is acknowledged; the agent resends once the disk has room again.
            tracing::error!(%agent, %error, "Cannot store snapshot chunks.");
            shared.metrics.ingest_failed("snapshot_storage");
            connection.close(close_code::INTERNAL.into(), b"hub snapshot storage unavailable");
            return Err(ConnectionError::Protocol(error.to_string()));
        }
    };
    let now = UnixMillis::now();
    let started = Instant::now();
    let ingested = match shared.db.ingest_with(agent, &fresh, now, stored.clone()).await {
        Ok(ingested) => ingested,
        Err(error) => {
            shared.metrics.ingest_failed("database");
            // Nothing is acknowledged; the agent resends from the watermark next time.
            connection.close(close_code::INTERNAL.into(), b"hub storage unavailable");
            return Err(error.into());
        }
    };
    shared.metrics.ingest_committed(fresh.len(), started.elapsed());
    for refused in &ingested.refused {
        let detail = format_args!(
            "{} records from agent {agent} about printer {}, which belongs to agent {}; \
             kept in the ingest log, not shown",
            refused.records, refused.printer, refused.owner
        );
        shared.metrics.refused(Source::Sync, "printer_not_owned", &detail);
    }
    let refused: HashSet<String> =
        ingested.refused.into_iter().map(|refused| refused.printer).collect();
    let event_ids: HashMap<Seq, i64> = ingested.event_ids.into_iter().collect();
    Ok(Commit {
        records: fresh,
        watermark: ingested.watermark,
        committed: Committed {
            refused,
            event_ids,
            stored,
            received_at: now,
            jobs: ingested.jobs,
            spools: ingested.followed.spools,
        },
        received,
    })
}

/// After a [`commit`]: publishes live updates of what was committed, then sends the
/// cumulative ack.
pub(super) async fn acknowledge(
    shared: &Shared,
    agent: &AgentId,
    session: &mut IngestSession,
    commit: Commit,
    send: &mut quinn::SendStream,
) -> Result<(), ConnectionError> {
    let Commit { records, watermark, committed, received } = commit;
    publish(&shared.live, agent, &records, &committed, received);
    shared.changed();
    if let Some(through) = session.committed_through(watermark) {
        frames::write(send, &HubMessage::Ack(proto::Ack { through })).await?;
    }
    Ok(())
}

/// What the commit did besides storing, for [`publish`].
struct Committed {
    /// Printers whose records from this agent were refused: not shown either.
    refused: HashSet<String>,
    /// Each new event's id in the event log, by seq.
    event_ids: HashMap<Seq, i64>,
    stored: Vec<StoredSnapshot>,
    /// When the hub received them (its clock).
    received_at: UnixMillis,
    /// Jobs of the queue the printers' reports moved on.
    jobs: Vec<crate::db::queue::JobChange>,
    /// Spools whose weight or slot the commit changed.
    spools: Vec<i64>,
}

/// Tells live subscribers what was just committed: each printer's newest state and every
/// event.
fn publish(
    live: &LiveHub,
    agent: &AgentId,
    records: &[proto::Record],
    committed: &Committed,
    received: Instant,
) {
    let Committed { refused, event_ids, stored, received_at, jobs, spools } = committed;
    let mut spools = spools.clone();
    spools.sort_unstable();
    spools.dedup();
    live.spools_changed(spools);
    if live.subscribers() == 0 {
        return;
    }
    for job in jobs {
        live.publish(LiveUpdate::Job {
            id: job.id,
            state: job.state.clone(),
            printer: Some(job.printer.clone()),
        });
    }
    // Records about another agent's printer were not projected: nor are they shown.
    let shown = |record: &&proto::Record| {
        crate::db::printer_of(&record.body).is_none_or(|printer| !refused.contains(printer))
    };
    // Each printer's newest state first (whatever the order of states and the events that
    // led to it), then every event and result in order.
    let mut newest: HashMap<&str, (i64, Cow<'_, PrinterStateV2>)> = HashMap::new();
    let mut others = Vec::new();
    for record in records.iter().filter(shown) {
        match &record.body {
            RecordBody::Telemetry(t) => {
                let state = Cow::Owned(PrinterStateV2::from_v1(&t.state));
                newest.insert(t.printer.as_str(), (record.observed_at.0, state));
            }
            RecordBody::TelemetryV2(t) => {
                newest.insert(t.printer.as_str(), (record.observed_at.0, Cow::Borrowed(&*t.state)));
            }
            RecordBody::PrinterEvent(e) => {
                let Some(&id) = event_ids.get(&record.seq) else {
                    // Stored before (a resend); its live message went out then.
                    continue;
                };
                others.push(LiveUpdate::Event {
                    id,
                    printer: e.printer.to_string(),
                    agent: agent.to_string(),
                    at: record.observed_at.0,
                    event: proto::json::printer_event(&e.kind),
                });
            }
            RecordBody::CommandResult(r) => others.push(LiveUpdate::CommandResult {
                command: r.command.to_string(),
                printer: r.printer.to_string(),
                outcome: crate::db::outcome_text(&r.outcome),
            }),
            RecordBody::Snapshot(chunk) => {
                if chunk.chunk_index + 1 == chunk.chunk_count
                    && let Some(file) = stored.iter().find(|s| s.id == chunk.snapshot)
                {
                    others.push(LiveUpdate::Snapshot {
                        id: chunk.snapshot.to_string(),
                        printer: chunk.printer.to_string(),
                        camera: chunk.camera.to_string(),
                        trigger: crate::db::trigger_name(chunk.trigger).to_owned(),
                        captured_at: chunk.captured_at.0,
                        bytes: file.bytes,
                    });
                }
            }
            RecordBody::CameraHealth(health) => others.push(LiveUpdate::Camera {
                printer: health.printer.to_string(),
                camera: health.camera.to_string(),
                state: crate::db::camera_state_name(health.state).to_owned(),
                fps: f64::from(health.fps_milli) / 1000.0,
                last_frame_at: health.last_frame_at.map(|t| t.0),
                last_error: health.last_error.clone(),
                live: health.live,
                source: health.source.clone(),
                width: health.width,
                height: health.height,
                frames_total: health.frames_total,
            }),
            RecordBody::AgentHealth(_)
            | RecordBody::AgentHealthV2(_)
            | RecordBody::AgentHealthV3(_)
            | RecordBody::PrintersApplied(_)
            | RecordBody::Discovered(_) => {}
        }
    }
    for (printer, (at, state)) in newest {
        let update = LiveUpdate::PrinterState {
            printer: printer.to_owned(),
            at,
            received_at: received_at.0,
            state: proto::json::printer_state_v2(&state),
        };
        live.publish_received(update, received);
    }
    for update in others {
        live.publish_received(update, received);
    }
}

/// Writes every snapshot chunk in `records` to disk (fsynced) before the ingest commits;
/// returns the snapshots that are now whole. A snapshot that cannot be assembled (a chunk
/// dropped at the agent, a hash that does not match) is logged and left out; only a storage
/// failure is an error.
async fn store_snapshots(
    shared: &Shared,
    records: &[proto::Record],
) -> Result<Vec<StoredSnapshot>, SnapshotError> {
    let chunks: Vec<proto::SnapshotChunk> = records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Snapshot(chunk) => Some(chunk.clone()),
            _ => None,
        })
        .collect();
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let Some(store) = shared.snapshots.clone() else { return Ok(Vec::new()) };
    let metrics = shared.metrics.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let mut stored = Vec::new();
        for chunk in &chunks {
            match store.put_chunk(chunk) {
                Ok(Some(file)) => stored.push(StoredSnapshot {
                    id: chunk.snapshot,
                    path: file.path,
                    bytes: file.bytes,
                }),
                Ok(None) => {}
                Err(SnapshotError::Invalid { id, detail }) => {
                    metrics.refused(
                        Source::Snapshot,
                        "unassembled",
                        &format_args!("snapshot {id} of {}: {detail}", chunk.printer),
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Ok(stored)
    })
    .await
    .map_err(|e| SnapshotError::Io {
        path: std::path::PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })??;
    Ok(stored)
}
