//! The read model, derived from records in the ingest transaction: the latest state of each
//! printer, the event log, raw telemetry samples, command outcomes, agent health. Every
//! write is idempotent, so a resent record changes nothing.

use std::collections::HashMap;

use proto::{AgentId, Record, RecordBody};

use super::{DbError, record_outcome_on, values_for};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// A printer's newest state in a batch.
struct Latest<'a> {
    at: i64,
    state: &'a proto::PrinterState,
}

pub(super) async fn project(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    records: &[Record],
) -> Result<(), DbError> {
    let mut latest: HashMap<&str, Latest<'_>> = HashMap::new();
    let mut events = Vec::new();
    let mut samples = Vec::new();
    for record in records {
        match &record.body {
            RecordBody::Telemetry(telemetry) => {
                let printer = telemetry.printer.as_str();
                let at = record.observed_at.0;
                if latest.get(printer).is_none_or(|l| l.at <= at) {
                    latest.insert(printer, Latest { at, state: &telemetry.state });
                }
                samples.push((printer, at, &*telemetry.state));
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
                record_outcome_on(&mut **tx, result.command, &result.outcome, record.observed_at)
                    .await?;
            }
            RecordBody::AgentHealth(health) => {
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
                sqlx::query(
                    "UPDATE agents SET outbox_records = $1, outbox_bytes = $2, drops = $3, \
                     disk_free_bytes = $4 WHERE id = $5",
                )
                .bind(health.outbox_records as i64)
                .bind(health.outbox_bytes as i64)
                .bind(drops.to_string())
                .bind(health.disk_free_bytes as i64)
                .bind(agent.as_str())
                .execute(&mut **tx)
                .await?;
            }
            RecordBody::Snapshot(_) => {}
        }
    }
    for chunk in events.chunks(1000) {
        let sql = format!(
            "INSERT INTO events (agent_id, seq, printer_id, kind, at, data) VALUES {} \
             ON CONFLICT (agent_id, seq) DO NOTHING",
            values_for(tx, chunk.len(), 6)
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
        query.execute(&mut **tx).await?;
    }
    for chunk in samples.chunks(1000) {
        let sql = format!(
            "INSERT INTO telemetry (printer_id, resolution, at, state, progress_percent, layer, \
             nozzle_temp_c, bed_temp_c, chamber_temp_c) VALUES {} \
             ON CONFLICT (printer_id, resolution, at) DO NOTHING",
            values_for(tx, chunk.len(), 9)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (printer, at, state) in chunk {
            query = query
                .bind((*printer).to_owned())
                .bind(0_i64)
                .bind(*at)
                .bind(proto::json::print_state(state.state).to_owned())
                .bind(state.progress_percent.map(i64::from))
                .bind(state.layer.map(i64::from))
                .bind(state.nozzle_temp_c.map(f64::from))
                .bind(state.bed_temp_c.map(f64::from))
                .bind(state.chamber_temp_c.map(f64::from));
        }
        query.execute(&mut **tx).await?;
    }
    for (printer, latest) in latest {
        let state = proto::json::printer_state(latest.state).to_string();
        sqlx::query(
            "INSERT INTO printers (id, agent_id, model, vendor, state, state_at, updated_at) \
             VALUES ($1, $2, $3, 'bambu_lab', $4, $5, $5) \
             ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, \
             model = COALESCE(excluded.model, printers.model), state = excluded.state, \
             state_at = excluded.state_at, updated_at = excluded.updated_at \
             WHERE printers.state_at IS NULL OR printers.state_at <= excluded.state_at",
        )
        .bind(printer.to_owned())
        .bind(agent.as_str())
        .bind(latest.state.model.clone())
        .bind(state)
        .bind(latest.at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
