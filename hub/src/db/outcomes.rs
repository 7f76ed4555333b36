//! Outcomes and usage, written in the ingest's transaction: every print a printer reports
//! is followed from its start to its end (`prints_in_progress`, gathering what the printer
//! said meanwhile), and its end becomes an outcome, once per `(agent, seq)` of the end's
//! record, whatever is resent, replayed or restarted. The same transaction deducts what the
//! print used from the spools its slots held, so a deduction happens exactly when its
//! outcome is created. Tagged spools (Bambu's RFID, `tray_uuid`) are linked to their slots
//! here too.

use crate::db::BindDouble;
use std::collections::HashMap;

use proto::{JobOutcome, PrinterEventKind, PrinterStateV2, Record, RecordBody};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::DbError;
use super::queue::JobChange;
use crate::inventory::usage::{self, SlotUsage};
use crate::inventory::weight_from_length;
use crate::outcomes::{Ending, Evidence, classify};
use crate::queue::matching::{Mapped, TrayRef};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// What the ingest did to outcomes and spools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Followed {
    /// New outcomes' ids.
    pub outcomes: Vec<i64>,
    /// Spools whose weight or slot changed.
    pub spools: Vec<i64>,
}

/// The costs of a print's hours: kept in `inventory_settings` under [`COSTS_KEY`] (the
/// hub's configuration writes it at each start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// Per kWh, in the inventory's currency.
    pub electricity_per_kwh: f64,
    /// A printer's average draw while printing, when not named below.
    pub default_watts: f64,
    /// By printer id.
    #[serde(default)]
    pub printer_watts: HashMap<String, f64>,
}

impl Default for Costs {
    fn default() -> Costs {
        Costs { electricity_per_kwh: 0.0, default_watts: 120.0, printer_watts: HashMap::new() }
    }
}

pub const COSTS_KEY: &str = "kitt_costs";

/// A print in progress, as kept between batches.
#[derive(Debug, Clone)]
struct InProgress {
    start_seq: i64,
    /// `None`: its start was never reported (the agent came up mid-print).
    started_at: Option<i64>,
    name: Option<String>,
    evidence: Evidence,
}

/// What the printer's state said at a moment: progress, sensors, tagged trays.
#[derive(Debug, Clone, Default)]
struct Moment {
    progress: Option<u8>,
    layer: Option<u32>,
    total_layers: Option<u32>,
    /// A filament sensor that is on says "no filament".
    runout: bool,
    /// `(unit, slot) → tray_uuid`.
    tags: Vec<(Option<u8>, u8, String)>,
}

impl Moment {
    fn of(state: &PrinterStateV2) -> Moment {
        let runout = state
            .klipper()
            .is_some_and(|k| k.sensors.iter().any(|s| s.enabled && s.detected == Some(false)));
        Moment {
            progress: state.progress_percent,
            layer: state.layer,
            total_layers: state.total_layers,
            runout,
            tags: state
                .filament
                .iter()
                .filter_map(|f| Some((f.unit, f.tray.slot, f.tray.tray_uuid.clone()?)))
                .collect(),
        }
    }

    /// From the read model's JSON (`proto::json::printer_state_v2`).
    fn of_json(state: &serde_json::Value) -> Moment {
        let num = |key: &str| state[key].as_u64();
        let runout = state["klipper"]["sensors"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["enabled"] == true && s["detected"] == false));
        let tags = state["filament"]
            .as_array()
            .map(|slots| {
                slots
                    .iter()
                    .filter_map(|f| {
                        let unit = f["unit"].as_u64().and_then(|u| u8::try_from(u).ok());
                        let slot = u8::try_from(f["tray"]["slot"].as_u64()?).ok()?;
                        Some((unit, slot, f["tray"]["tray_uuid"].as_str()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Moment {
            progress: num("progress_percent").and_then(|p| u8::try_from(p).ok()),
            layer: num("layer").and_then(|l| u32::try_from(l).ok()),
            total_layers: num("total_layers").and_then(|l| u32::try_from(l).ok()),
            runout,
            tags,
        }
    }
}

/// The printer's state just before `seq`: the newest in this batch, else the read model's.
async fn moment(
    tx: &mut Tx<'_>,
    records: &[Record],
    printer: &str,
    seq: u64,
) -> Result<Moment, DbError> {
    let in_batch = records.iter().rev().filter(|r| r.seq.0 <= seq).find_map(|r| match &r.body {
        RecordBody::TelemetryV2(t) if t.printer.as_str() == printer => Some(Moment::of(&t.state)),
        RecordBody::Telemetry(t) if t.printer.as_str() == printer => {
            Some(Moment::of(&PrinterStateV2::from_v1(&t.state)))
        }
        _ => None,
    });
    if let Some(moment) = in_batch {
        return Ok(moment);
    }
    let row = sqlx::query("SELECT state FROM printers WHERE id = $1")
        .bind(printer)
        .fetch_optional(&mut **tx)
        .await?;
    let state: Option<String> = match row {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    Ok(state
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .map(|s| Moment::of_json(&s))
        .unwrap_or_default())
}

async fn load(tx: &mut Tx<'_>, printer: &str) -> Result<Option<InProgress>, DbError> {
    let row = sqlx::query(
        "SELECT start_seq, started_at, name, evidence FROM prints_in_progress WHERE printer_id = $1",
    )
    .bind(printer)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        let evidence: String = row.try_get(3)?;
        Ok(InProgress {
            start_seq: row.try_get(0)?,
            started_at: row.try_get(1)?,
            name: row.try_get(2)?,
            evidence: serde_json::from_str(&evidence).unwrap_or_default(),
        })
    })
    .transpose()
}

async fn store(
    tx: &mut Tx<'_>,
    printer: &str,
    agent: &str,
    print: Option<&InProgress>,
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM prints_in_progress WHERE printer_id = $1")
        .bind(printer)
        .execute(&mut **tx)
        .await?;
    if let Some(print) = print {
        sqlx::query(
            "INSERT INTO prints_in_progress (printer_id, agent_id, start_seq, started_at, name, \
             evidence) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(printer)
        .bind(agent)
        .bind(print.start_seq)
        .bind(print.started_at)
        .bind(print.name.as_deref())
        .bind(serde_json::to_string(&print.evidence).unwrap_or_else(|_| "{}".into()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Follows prints through `fresh` (this batch's new events, in the agent's order; `all` is
/// the whole batch, for the printer's state at each moment). `jobs`: what the queue's
/// follower did with the same events, to link an end to its job.
pub(super) async fn follow_prints(
    tx: &mut Tx<'_>,
    agent: &str,
    all: &[Record],
    fresh: &[Record],
    foreign: &HashMap<&str, String>,
    jobs: &[JobChange],
    now: i64,
) -> Result<Followed, DbError> {
    let mut followed = Followed::default();
    // printer → (its print in progress, changed since loaded).
    let mut prints: HashMap<String, (Option<InProgress>, bool)> = HashMap::new();
    for record in fresh {
        let RecordBody::PrinterEvent(event) = &record.body else { continue };
        let printer = event.printer.as_str();
        if foreign.contains_key(printer) {
            continue;
        }
        let relevant = matches!(
            event.kind,
            PrinterEventKind::JobStarted { .. }
                | PrinterEventKind::JobFinished { .. }
                | PrinterEventKind::JobPaused { .. }
                | PrinterEventKind::JobResumed
                | PrinterEventKind::HmsRaised(_)
                | PrinterEventKind::PrintErrorRaised { .. }
                | PrinterEventKind::PrintErrorCleared { .. }
                | PrinterEventKind::Fault { .. }
                | PrinterEventKind::FilamentUsed { .. }
        );
        if !relevant {
            continue;
        }
        if !prints.contains_key(printer) {
            let loaded = load(tx, printer).await?;
            prints.insert(printer.to_owned(), (loaded, false));
        }
        let Some((print, dirty)) = prints.get_mut(printer) else { continue };
        match &event.kind {
            PrinterEventKind::JobStarted { job_name, .. } => {
                *print = Some(InProgress {
                    start_seq: record.seq.0 as i64,
                    started_at: Some(record.observed_at.0),
                    name: job_name.clone(),
                    evidence: Evidence::default(),
                });
                *dirty = true;
            }
            PrinterEventKind::JobFinished { job_name, outcome } => {
                let ended = print.take();
                *dirty = true;
                let end = End {
                    agent,
                    printer,
                    seq: record.seq.0,
                    at: record.observed_at.0,
                    name: job_name.clone().or_else(|| ended.as_ref().and_then(|p| p.name.clone())),
                    outcome,
                    job: jobs.iter().find(|c| c.seq == record.seq.0 as i64).map(|c| c.id),
                };
                if let Some((id, spools)) = finish(tx, all, end, ended, now).await? {
                    followed.outcomes.push(id);
                    followed.spools.extend(spools);
                }
            }
            kind => {
                // A print whose start was never reported (the agent came up mid-print) is
                // followed from what it says now.
                let print = print.get_or_insert_with(|| InProgress {
                    start_seq: record.seq.0 as i64,
                    started_at: None,
                    name: None,
                    evidence: Evidence::default(),
                });
                print.evidence.observe(kind);
                if matches!(kind, PrinterEventKind::JobPaused { .. })
                    && moment(tx, all, printer, record.seq.0).await?.runout
                {
                    print.evidence.runout_seen = true;
                }
                *dirty = true;
            }
        }
    }
    for (printer, (print, dirty)) in &prints {
        if *dirty {
            store(tx, printer, agent, print.as_ref()).await?;
        }
    }
    Ok(followed)
}

/// A print's end, as its record says it.
struct End<'a> {
    agent: &'a str,
    printer: &'a str,
    seq: u64,
    at: i64,
    name: Option<String>,
    outcome: &'a JobOutcome,
    job: Option<i64>,
}

/// Creates the outcome of a print's end and deducts its usage; `None` when this end's
/// outcome exists already.
async fn finish(
    tx: &mut Tx<'_>,
    all: &[Record],
    end: End<'_>,
    print: Option<InProgress>,
    now: i64,
) -> Result<Option<(i64, Vec<i64>)>, DbError> {
    let mut evidence = print.as_ref().map(|p| p.evidence.clone()).unwrap_or_default();
    evidence.observe_end(end.outcome);
    let ending = match end.outcome {
        JobOutcome::Succeeded => Ending::Success,
        JobOutcome::Cancelled => Ending::Cancelled,
        JobOutcome::Failed { .. } => Ending::Failed,
    };
    let classified = classify(ending, &evidence);
    let at_end = moment(tx, all, end.printer, end.seq).await?;
    let fraction = usage::fraction_made(
        ending == Ending::Success,
        at_end.progress,
        at_end.layer,
        at_end.total_layers,
    );
    // The queue's job: its file's plate, the slots it was mapped to, who asked for it.
    let mut planned: Vec<SlotUsage> = Vec::new();
    let mut requested_by = None;
    let mut started_at = print.as_ref().and_then(|p| p.started_at);
    if let Some(job) = end.job {
        let row = sqlx::query(
            "SELECT j.plate, j.mapping, j.created_by, j.started_at, f.meta FROM jobs j \
             JOIN files f ON f.id = j.file_id WHERE j.id = $1",
        )
        .bind(job)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = row {
            let plate: i64 = row.try_get(0)?;
            let mapping: Option<String> = row.try_get(1)?;
            requested_by = Some(row.try_get::<String, _>(2)?);
            started_at = started_at.or(row.try_get::<Option<i64>, _>(3)?);
            let meta: String = row.try_get(4)?;
            let meta: Option<printfile::PrintFile> = serde_json::from_str(&meta).ok();
            let mapping: Vec<Mapped> =
                mapping.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default();
            if let (Some(meta), Some(fraction)) = (meta, fraction)
                && let Some(plate) = meta.plates.iter().find(|p| i64::from(p.index) == plate)
            {
                planned = usage::planned(plate, &mapping, fraction);
            }
        }
    }
    // What the printer counted beats what the file planned (a Klipper printer's extruder
    // count: one extruder, so one slot, the job's or the printer's only one).
    if let Some(mm) = evidence.filament_mm.filter(|mm| *mm > 0.0) {
        let first = planned.first();
        planned = vec![SlotUsage {
            tray: first.map_or(TrayRef::External, |u| u.tray),
            grams: 0.0,
            length_mm: Some(mm),
            material: first.and_then(|u| u.material.clone()),
            color: first.and_then(|u| u.color.clone()),
        }];
    }
    let costs = costs_in(tx).await?;
    let duration_s = started_at.map(|s| ((end.at - s) / 1000).max(0));
    let watts = costs.printer_watts.get(end.printer).copied().unwrap_or(costs.default_watts);
    let energy_kwh = duration_s.map(|d| usage::energy_kwh(watts, d as f64));
    let energy_cost = energy_kwh.map(|kwh| kwh * costs.electricity_per_kwh);
    let evidence_json = serde_json::to_string(&evidence).unwrap_or_else(|_| "{}".into());
    let inserted = sqlx::query(
        "INSERT INTO outcomes (printer_id, agent_id, end_seq, job_id, name, result, reason, \
         reason_rule, evidence, started_at, ended_at, duration_s, progress, material, \
         requested_by, filament_g, energy_kwh, energy_cost) VALUES ($1, $2, $3, $4, $5, $6, \
         $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, $16, $17) \
         ON CONFLICT (agent_id, end_seq) DO NOTHING RETURNING id",
    )
    .bind(end.printer)
    .bind(end.agent)
    .bind(end.seq as i64)
    .bind(end.job)
    .bind(end.name.as_deref())
    .bind(ending.as_str())
    .bind(classified.as_ref().map(|c| c.reason.as_str()))
    .bind(classified.as_ref().map(|c| c.rule.as_str()))
    .bind(evidence_json)
    .bind(started_at)
    .bind(end.at)
    .bind(duration_s)
    .bind_f64(fraction)
    .bind(planned.first().and_then(|u| u.material.clone()))
    .bind(requested_by)
    .bind_f64(energy_kwh)
    .bind_f64(energy_cost)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = inserted else { return Ok(None) };
    let id: i64 = row.try_get(0)?;
    // A Spoolman client that reports this printer's usage (its Moonraker) deducts it: kitt
    // records the usage and leaves the spools to it, so nothing counts twice.
    let reported_by_client = sqlx::query(
        "SELECT id FROM spoolman_clients WHERE printer_id = $1 AND revoked_at IS NULL LIMIT 1",
    )
    .bind(end.printer)
    .fetch_optional(&mut **tx)
    .await?
    .is_some();
    let mut spools = Vec::new();
    let mut deducted: Vec<(i64, f64)> = Vec::new();
    let (mut grams_total, mut cost_total) = (0.0, None::<f64>);
    for slot_use in &planned {
        let (unit, slot) = match slot_use.tray {
            TrayRef::Unit { unit, slot } => (Some(unit), slot),
            TrayRef::External => (None, 0),
        };
        let spool = spool_in_slot(tx, end.printer, unit, slot, &at_end).await?;
        let mut grams = slot_use.grams;
        let mut cost = None;
        if let Some(spool) = &spool {
            if let Some(mm) = slot_use.length_mm {
                grams += weight_from_length(mm, spool.diameter, spool.density);
            }
            if !reported_by_client {
                sqlx::query(super::inventory::USE_SPOOL)
                    .bind(grams)
                    .bind(now / 1000 * 1000)
                    .bind(spool.id)
                    .execute(&mut **tx)
                    .await?;
                spools.push(spool.id);
                deducted.push((spool.id, grams));
            }
            cost = usage::filament_cost(
                grams,
                spool.price,
                spool.initial_weight,
                spool.filament_price,
                spool.filament_weight,
            );
        } else if let Some(mm) = slot_use.length_mm {
            grams += weight_from_length(mm, 1.75, 1.24);
        }
        grams_total += grams;
        if let Some(cost) = cost {
            cost_total = Some(cost_total.unwrap_or(0.0) + cost);
        }
        sqlx::query(
            "INSERT INTO outcome_usage (outcome_id, unit, slot, spool_id, material, color, grams, \
             length_mm, cost, deducted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(unit.map_or(-1, i64::from))
        .bind(i64::from(slot))
        .bind(spool.as_ref().map(|s| s.id))
        .bind(slot_use.material.as_deref())
        .bind(slot_use.color.as_deref())
        .bind(grams)
        .bind_f64(slot_use.length_mm)
        .bind_f64(cost)
        .bind(i64::from(spool.is_some() && !reported_by_client))
        .execute(&mut **tx)
        .await?;
    }
    low_stock_events(tx, &deducted, id, end.printer, end.at).await?;
    sqlx::query("UPDATE outcomes SET filament_g = $1, filament_cost = $2 WHERE id = $3")
        .bind(grams_total)
        .bind_f64(cost_total)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(Some((id, spools)))
}

/// Days of stock below which a filament is low, at the last 30 days' pace.
pub const LOW_STOCK_DAYS: f64 = 7.0;

/// A `low_stock` event for each filament this print's deductions took below the low-stock
/// threshold, or to fewer than [`LOW_STOCK_DAYS`] of stock at the last 30 days' pace (in the
/// event log, as the hub's own: agent `hub:stock`).
async fn low_stock_events(
    tx: &mut Tx<'_>,
    deducted: &[(i64, f64)],
    outcome: i64,
    printer: &str,
    at: i64,
) -> Result<(), DbError> {
    if deducted.is_empty() {
        return Ok(());
    }
    let threshold = sqlx::query("SELECT value FROM inventory_settings WHERE key = $1")
        .bind(crate::service::inventory::LOW_STOCK_KEY)
        .fetch_optional(&mut **tx)
        .await?
        .and_then(|row| row.try_get::<String, _>(0).ok())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(crate::service::inventory::DEFAULT_LOW_STOCK_G);
    let mut by_filament: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for (spool, grams) in deducted {
        let row = sqlx::query("SELECT filament_id FROM spools WHERE id = $1")
            .bind(*spool)
            .fetch_one(&mut **tx)
            .await?;
        *by_filament.entry(row.try_get::<i64, _>(0)?).or_default() += grams;
    }
    for (n, (filament, grams)) in by_filament.into_iter().enumerate() {
        let rows = sqlx::query(
            "SELECT s.initial_weight, f.weight, s.used_weight, f.name, f.material, f.color_hex \
             FROM spools s JOIN filaments f ON f.id = s.filament_id \
             WHERE s.filament_id = $1 AND s.archived = 0",
        )
        .bind(filament)
        .fetch_all(&mut **tx)
        .await?;
        let mut after = 0.0;
        let mut label = String::new();
        for row in &rows {
            let initial: Option<f64> = row.try_get::<Option<f64>, _>(0)?.or(row.try_get(1)?);
            let used: f64 = row.try_get(2)?;
            after += initial.map_or(0.0, |i| (i - used).max(0.0));
            let name: Option<String> = row.try_get(3)?;
            let material: Option<String> = row.try_get(4)?;
            let color: Option<String> = row.try_get(5)?;
            label = [name.or(material), color.map(|c| format!("#{c}"))]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
        }
        if rows.is_empty() {
            continue;
        }
        // The last 30 days' pace, this print included, and before it.
        let used_30d: f64 = sqlx::query(
            "SELECT COALESCE(SUM(u.grams), 0.0) FROM outcome_usage u \
             JOIN outcomes o ON o.id = u.outcome_id JOIN spools s ON s.id = u.spool_id \
             WHERE s.filament_id = $1 AND o.ended_at >= $2 AND u.deducted = 1",
        )
        .bind(filament)
        .bind(at - 30 * 86_400_000)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        let days_after = crate::service::inventory::days_to_empty(after, used_30d, 30.0);
        let days_before =
            crate::service::inventory::days_to_empty(after + grams, used_30d - grams, 30.0);
        let soon = |days: Option<f64>| days.is_some_and(|d| d < LOW_STOCK_DAYS);
        let reason = if after < threshold && after + grams >= threshold {
            format!("{label}: {after:.0} g left, below {threshold:.0} g")
        } else if soon(days_after) && !soon(days_before) {
            format!(
                "{label}: about {:.0} days left at the last 30 days' pace ({after:.0} g)",
                days_after.unwrap_or(0.0)
            )
        } else {
            continue;
        };
        let data = serde_json::json!({
            "type": "low_stock",
            "filament_id": filament,
            "reason": reason,
            "remaining_g": after,
            "threshold_g": threshold,
            "days_to_empty": days_after,
        });
        sqlx::query(
            "INSERT INTO events (agent_id, seq, printer_id, kind, at, data) \
             VALUES ('hub:stock', $1, $2, 'low_stock', $3, $4)",
        )
        .bind(outcome * 64 + n as i64)
        .bind(printer)
        .bind(at)
        .bind(data.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A spool and what its cost and conversions need.
struct SlotSpool {
    id: i64,
    price: Option<f64>,
    initial_weight: Option<f64>,
    filament_price: Option<f64>,
    filament_weight: Option<f64>,
    density: f64,
    diameter: f64,
}

/// The spool in a slot: the one assigned to it, else the one whose RFID the tray reports.
async fn spool_in_slot(
    tx: &mut Tx<'_>,
    printer: &str,
    unit: Option<u8>,
    slot: u8,
    at_end: &Moment,
) -> Result<Option<SlotSpool>, DbError> {
    const COLUMNS: &str = "s.id, s.price, s.initial_weight, f.price, f.weight, f.density, \
        f.diameter FROM spools s JOIN filaments f ON f.id = s.filament_id";
    let sql = format!(
        "SELECT {COLUMNS} JOIN spool_slots p ON p.spool_id = s.id \
         WHERE p.printer_id = $1 AND p.unit = $2 AND p.slot = $3"
    );
    let mut row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(printer)
        .bind(unit.map_or(-1, i64::from))
        .bind(i64::from(slot))
        .fetch_optional(&mut **tx)
        .await?;
    if row.is_none()
        && let Some((_, _, tag)) = at_end.tags.iter().find(|(u, s, _)| *u == unit && *s == slot)
    {
        let sql = format!("SELECT {COLUMNS} WHERE s.rfid = $1");
        row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tag.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    }
    row.map(|row| {
        Ok(SlotSpool {
            id: row.try_get(0)?,
            price: row.try_get(1)?,
            initial_weight: row.try_get(2)?,
            filament_price: row.try_get(3)?,
            filament_weight: row.try_get(4)?,
            density: row.try_get(5)?,
            diameter: row.try_get(6)?,
        })
    })
    .transpose()
}

async fn costs_in(tx: &mut Tx<'_>) -> Result<Costs, DbError> {
    let row = sqlx::query("SELECT value FROM inventory_settings WHERE key = $1")
        .bind(COSTS_KEY)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(row) => serde_json::from_str(&row.try_get::<String, _>(0)?).unwrap_or_default(),
        None => Costs::default(),
    })
}

/// Links the tagged spools a printer reports to their slots: a tray whose RFID
/// (`tray_uuid`) names a known spool puts that spool in the slot; an unknown one becomes a
/// spool of a filament made from what the printer says (material, colour, a 1 kg spool
/// whose remaining weight follows the printer's percentage). Returns the spools changed.
pub(super) async fn link_tagged_spools(
    tx: &mut Tx<'_>,
    printer: &str,
    state: &PrinterStateV2,
    now: i64,
) -> Result<Vec<i64>, DbError> {
    let tagged: Vec<&proto::FilamentSlot> =
        state.filament.iter().filter(|f| f.tray.tray_uuid.is_some()).collect();
    if tagged.is_empty() {
        return Ok(Vec::new());
    }
    let linked: Vec<(i64, i64, Option<String>)> = sqlx::query(
        "SELECT p.unit, p.slot, s.rfid FROM spool_slots p JOIN spools s ON s.id = p.spool_id \
         WHERE p.printer_id = $1",
    )
    .bind(printer)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
    .collect::<Result<_, DbError>>()?;
    let mut changed = Vec::new();
    for slot in tagged {
        let Some(tag) = slot.tray.tray_uuid.as_deref() else { continue };
        let (unit, index) = (slot.unit.map_or(-1, i64::from), i64::from(slot.tray.slot));
        if linked
            .iter()
            .any(|(u, s, rfid)| *u == unit && *s == index && rfid.as_deref() == Some(tag))
        {
            continue;
        }
        let known = sqlx::query("SELECT id FROM spools WHERE rfid = $1")
            .bind(tag)
            .fetch_optional(&mut **tx)
            .await?;
        let id = match known {
            Some(row) => row.try_get::<i64, _>(0)?,
            None => match TagInfo::of_tray(slot) {
                Some(info) => create_tagged(tx, &info, now).await?,
                None => continue,
            },
        };
        super::inventory::assign_slot_in(
            tx,
            printer,
            slot.unit,
            slot.tray.slot,
            Some(id),
            "rfid",
            now,
        )
        .await?;
        changed.push(id);
    }
    Ok(changed)
}

/// What a tagged spool is known by: its tag's words where the printer sent them
/// ([`proto::SpoolTag`]), else the tray's.
struct TagInfo<'a> {
    tag: &'a str,
    material: Option<String>,
    /// `RRGGBB`.
    color: Option<String>,
    product: Option<String>,
    weight_g: f64,
    diameter_mm: f64,
    remain_percent: Option<u8>,
}

impl TagInfo<'_> {
    fn of_tray(slot: &proto::FilamentSlot) -> Option<TagInfo<'_>> {
        Some(TagInfo {
            tag: slot.tray.tray_uuid.as_deref()?,
            material: slot.tray.material.clone(),
            color: slot.tray.color.map(|c| c.to_hex().trim_start_matches('#').to_owned()),
            product: None,
            weight_g: 1000.0,
            diameter_mm: 1.75,
            remain_percent: slot.tray.remain_percent,
        })
    }

    fn of_tag(tag: &proto::SpoolTag) -> TagInfo<'_> {
        TagInfo {
            tag: &tag.tray_uuid,
            material: tag.material.clone(),
            color: tag.color.map(|c| c.to_hex().trim_start_matches('#').to_owned()),
            product: tag.product.clone(),
            weight_g: tag.weight_g.map_or(1000.0, f64::from),
            diameter_mm: tag.diameter_um.map_or(1.75, |um| f64::from(um) / 1000.0),
            remain_percent: tag.remain_percent,
        }
    }
}

/// Makes the spools that tags reported in this batch name and the hub does not know yet,
/// with what their tags say (product line, net weight, diameter); returns them.
pub(super) async fn apply_spool_tags(
    tx: &mut Tx<'_>,
    records: &[Record],
    foreign: &HashMap<&str, String>,
    now: i64,
) -> Result<Vec<i64>, DbError> {
    let mut made = Vec::new();
    for record in records {
        let RecordBody::PrinterEvent(event) = &record.body else { continue };
        let PrinterEventKind::SpoolTagged(tag) = &event.kind else { continue };
        if foreign.contains_key(event.printer.as_str()) {
            continue;
        }
        let known = sqlx::query("SELECT id FROM spools WHERE rfid = $1")
            .bind(tag.tray_uuid.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        if known.is_none() {
            made.push(create_tagged(tx, &TagInfo::of_tag(tag), now).await?);
        }
    }
    Ok(made)
}

/// A spool (and its filament, unless one of the same product or material and colour
/// exists) from a tag: a Bambu Lab spool, since only its spools carry the tags its
/// printers read.
async fn create_tagged(tx: &mut Tx<'_>, info: &TagInfo<'_>, now: i64) -> Result<i64, DbError> {
    let material = info.material.clone();
    let color = info.color.clone();
    let key = format!(
        "kitt:rfid:{}:{}",
        info.product.as_deref().or(material.as_deref()).unwrap_or("?"),
        color.as_deref().unwrap_or("?")
    );
    let existing =
        sqlx::query("SELECT id FROM filaments WHERE external_id = $1 ORDER BY id LIMIT 1")
            .bind(key.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    let registered = now / 1000 * 1000;
    let filament: i64 = match existing {
        Some(row) => row.try_get(0)?,
        None => {
            // Only Bambu Lab's own spools carry the tags its printers read (their empty
            // spool: 250 g).
            let vendor =
                sqlx::query("SELECT id FROM vendors WHERE name = 'Bambu Lab' ORDER BY id LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?;
            let vendor: i64 = match vendor {
                Some(row) => row.try_get(0)?,
                None => sqlx::query(
                    "INSERT INTO vendors (registered, name, empty_spool_weight, extra, comment) \
                     VALUES ($1, 'Bambu Lab', 250, '{}', 'Made for the RFID-tagged spools its \
                     printers read.') RETURNING id",
                )
                .bind(registered)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?,
            };
            // PLA's density unless the material says otherwise.
            let density = match material.as_deref().map(str::to_ascii_uppercase).as_deref() {
                Some(m) if m.starts_with("PETG") => 1.27,
                Some(m) if m.starts_with("ABS") => 1.04,
                Some(m) if m.starts_with("ASA") => 1.07,
                Some(m) if m.starts_with("TPU") => 1.21,
                Some(m) if m.starts_with("PC") => 1.2,
                _ => 1.24,
            };
            let name = info.product.clone().or_else(|| material.clone());
            sqlx::query(
                "INSERT INTO filaments (registered, name, material, density, diameter, weight, \
                 color_hex, external_id, extra, comment, vendor_id, spool_weight) VALUES ($1, $2, \
                 $3, $4, $5, $6, $7, $8, '{}', 'Created from a tagged spool a printer \
                 reported.', $9, 250) RETURNING id",
            )
            .bind(registered)
            .bind(name.unwrap_or_else(|| "Tagged spool".into()))
            .bind(material.as_deref())
            .bind(density)
            .bind(info.diameter_mm)
            .bind(info.weight_g)
            .bind(color.as_deref())
            .bind(key.as_str())
            .bind(vendor)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?
        }
    };
    let used = info
        .remain_percent
        .map_or(0.0, |p| info.weight_g * (100.0 - f64::from(p.min(100))) / 100.0);
    let id: i64 = sqlx::query(
        "INSERT INTO spools (registered, filament_id, initial_weight, used_weight, archived, \
         extra, rfid, comment) VALUES ($1, $2, $3, $4, 0, '{}', $5, \
         'Created from its RFID tag.') RETURNING id",
    )
    .bind(registered)
    .bind(filament)
    .bind(info.weight_g)
    .bind(used)
    .bind(info.tag)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    Ok(id)
}

/// A stored outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRow {
    pub id: i64,
    pub printer_id: String,
    pub job_id: Option<i64>,
    pub name: Option<String>,
    pub result: String,
    pub reason: Option<String>,
    pub reason_rule: Option<String>,
    pub evidence: String,
    pub started_at: Option<i64>,
    pub ended_at: i64,
    pub duration_s: Option<i64>,
    pub progress: Option<f64>,
    pub material: Option<String>,
    pub requested_by: Option<String>,
    pub filament_g: f64,
    pub filament_cost: Option<f64>,
    pub energy_kwh: Option<f64>,
    pub energy_cost: Option<f64>,
    pub review_reason: Option<String>,
    pub quality: Option<i64>,
    pub aspects: Option<String>,
    pub notes: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<i64>,
}

const OUTCOME: &str = "id, printer_id, job_id, name, result, reason, reason_rule, evidence, \
    started_at, ended_at, duration_s, progress, material, requested_by, filament_g, \
    filament_cost, energy_kwh, energy_cost, review_reason, quality, aspects, notes, \
    reviewed_by, reviewed_at";

fn outcome_row(row: &sqlx::any::AnyRow) -> Result<OutcomeRow, DbError> {
    Ok(OutcomeRow {
        id: row.try_get(0)?,
        printer_id: row.try_get(1)?,
        job_id: row.try_get(2)?,
        name: row.try_get(3)?,
        result: row.try_get(4)?,
        reason: row.try_get(5)?,
        reason_rule: row.try_get(6)?,
        evidence: row.try_get(7)?,
        started_at: row.try_get(8)?,
        ended_at: row.try_get(9)?,
        duration_s: row.try_get(10)?,
        progress: row.try_get(11)?,
        material: row.try_get(12)?,
        requested_by: row.try_get(13)?,
        filament_g: row.try_get(14)?,
        filament_cost: row.try_get(15)?,
        energy_kwh: row.try_get(16)?,
        energy_cost: row.try_get(17)?,
        review_reason: row.try_get(18)?,
        quality: row.try_get(19)?,
        aspects: row.try_get(20)?,
        notes: row.try_get(21)?,
        reviewed_by: row.try_get(22)?,
        reviewed_at: row.try_get(23)?,
    })
}

/// What a print used from one slot.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub unit: Option<u8>,
    pub slot: u8,
    pub spool_id: Option<i64>,
    pub material: Option<String>,
    pub color: Option<String>,
    pub grams: f64,
    pub length_mm: Option<f64>,
    pub cost: Option<f64>,
    /// Taken off the spool by the hub (not when the printer's own Spoolman client reports it).
    pub deducted: bool,
}

/// An operator's review of an outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub reason: Option<String>,
    pub quality: Option<i64>,
    /// JSON object.
    pub aspects: Option<String>,
    pub notes: Option<String>,
    pub by: String,
    pub at: i64,
}

impl super::Db {
    /// Outcomes newest first, ended in `[from, to)`, optionally of one printer.
    pub async fn outcomes(
        &self,
        printer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<OutcomeRow>, DbError> {
        let sql = format!(
            "SELECT {OUTCOME} FROM outcomes WHERE ended_at >= $1 AND ended_at < $2 \
             AND ($3 IS NULL OR printer_id = $3) ORDER BY ended_at DESC, id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .bind(printer)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(outcome_row).collect()
    }

    /// Stores an outcome as given, once per `(agent, seq)` (what `kitt-hub demo` seeds its
    /// farm's history with; prints that end reach the table through the ingest). Answers
    /// whether it was new.
    pub async fn insert_outcome(
        &self,
        row: &OutcomeRow,
        agent: &str,
        seq: i64,
    ) -> Result<bool, DbError> {
        use super::BindDouble;
        let done = sqlx::query(
            "INSERT INTO outcomes (printer_id, agent_id, end_seq, job_id, name, result, reason, \
             reason_rule, evidence, started_at, ended_at, duration_s, progress, material, \
             requested_by, filament_g, filament_cost, energy_kwh, energy_cost, review_reason, \
             quality, aspects, notes, reviewed_by, reviewed_at) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
             $24, $25) ON CONFLICT (agent_id, end_seq) DO NOTHING",
        )
        .bind(&row.printer_id)
        .bind(agent)
        .bind(seq)
        .bind(row.job_id)
        .bind(row.name.as_deref())
        .bind(&row.result)
        .bind(row.reason.as_deref())
        .bind(row.reason_rule.as_deref())
        .bind(&row.evidence)
        .bind(row.started_at)
        .bind(row.ended_at)
        .bind(row.duration_s)
        .bind_f64(row.progress)
        .bind(row.material.as_deref())
        .bind(row.requested_by.as_deref())
        .bind(row.filament_g)
        .bind_f64(row.filament_cost)
        .bind_f64(row.energy_kwh)
        .bind_f64(row.energy_cost)
        .bind(row.review_reason.as_deref())
        .bind(row.quality)
        .bind(row.aspects.as_deref())
        .bind(row.notes.as_deref())
        .bind(row.reviewed_by.as_deref())
        .bind(row.reviewed_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn outcome(&self, id: i64) -> Result<Option<OutcomeRow>, DbError> {
        let sql = format!("SELECT {OUTCOME} FROM outcomes WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(outcome_row).transpose()
    }

    /// The outcome of a queue's job, if its print ended.
    pub async fn outcome_of_job(&self, job: i64) -> Result<Option<OutcomeRow>, DbError> {
        let sql =
            format!("SELECT {OUTCOME} FROM outcomes WHERE job_id = $1 ORDER BY id DESC LIMIT 1");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(job).fetch_optional(&self.pool).await?;
        row.as_ref().map(outcome_row).transpose()
    }

    pub async fn outcome_usage(&self, id: i64) -> Result<Vec<UsageRow>, DbError> {
        let rows = sqlx::query(
            "SELECT unit, slot, spool_id, material, color, grams, length_mm, cost, deducted \
             FROM outcome_usage WHERE outcome_id = $1 ORDER BY unit, slot",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    unit: u8::try_from(row.try_get::<i64, _>(0)?).ok(),
                    slot: u8::try_from(row.try_get::<i64, _>(1)?).unwrap_or(u8::MAX),
                    spool_id: row.try_get(2)?,
                    material: row.try_get(3)?,
                    color: row.try_get(4)?,
                    grams: row.try_get(5)?,
                    length_mm: row.try_get(6)?,
                    cost: row.try_get(7)?,
                    deducted: row.try_get::<i64, _>(8)? != 0,
                })
            })
            .collect()
    }

    /// Records a review; `false` when there is no such outcome.
    pub async fn review_outcome(&self, id: i64, review: &Review) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE outcomes SET review_reason = $1, quality = $2, aspects = $3, notes = $4, \
             reviewed_by = $5, reviewed_at = $6 WHERE id = $7",
        )
        .bind(review.reason.as_deref())
        .bind(review.quality)
        .bind(review.aspects.as_deref())
        .bind(review.notes.as_deref())
        .bind(review.by.as_str())
        .bind(review.at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Snapshot ids of a printer taken in `[from, to]`, oldest first.
    pub async fn snapshots_between(
        &self,
        printer: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT id FROM snapshots WHERE printer_id = $1 AND captured_at >= $2 \
             AND captured_at <= $3 ORDER BY captured_at LIMIT 200",
        )
        .bind(printer)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }
}
