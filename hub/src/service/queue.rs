//! The print queue: jobs (a file's plate, with copies and constraints), the operators'
//! actions on them, "plate clear", and the loop that feeds the dispatcher
//! (`crate::queue::dispatch`) when something relevant changes and carries out its decision.
//!
//! States: `queued` → `assigned` (a printer chosen, its filament mapped) → `transferring`
//! (the file to the agent) → `uploading` (to the printer) → `starting` → `printing` →
//! `finished` | `failed` | `cancelled`. A job leaves `queued` only through the dispatcher;
//! every change is a history row naming who made it. What happens after `assigned` (the
//! file's delivery and the start) is the delivery's part (issue 17, items 2 and 3).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proto::UnixMillis;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::{Principal, Role, ServiceError};
use crate::db::Db;
use crate::db::queue::{Clearance, DONE, HistoryRow, JobRow};
use crate::live::LiveUpdate;
use crate::queue::dispatch::{
    Decision, FileFacts, FleetPrinter, PrinterKind, QueuedJob, Target, decide,
};
use crate::queue::matching::{DEFAULT_TOLERANCE, Mapped, Need, Rgb, Tray, TrayRef};
use crate::sync::server::SyncHandle;

/// The actor the dispatcher's changes are recorded under.
pub const DISPATCHER: &str = "dispatcher";

#[derive(Debug, Clone)]
pub struct Queue {
    db: Db,
    sync: SyncHandle,
    kick: Arc<Notify>,
}

/// A job to add: a file's plate, with what it may run on.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The file's id (`POST /files` answers it).
    pub file: String,
    /// The plate, by the file's own number; the file's first plate when left out.
    pub plate: Option<u32>,
    /// Prints of it, each a job of its own (1–100, default 1).
    pub copies: Option<u32>,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Only this printer.
    pub printer: Option<String>,
    /// Any printer of this model (Bambu's code, `C12`, or its name).
    pub model: Option<String>,
    /// Nozzle diameter, millimetres; the file's when left out.
    pub nozzle: Option<f64>,
    /// Per slot, what must be loaded; the file's filaments when left out. A slot left out
    /// of the list keeps the file's; `type` or `color` null accepts any.
    pub materials: Option<Vec<SlotMaterial>>,
    /// How far a loaded colour may be from the one asked for (CIE76 ΔE, default 20).
    pub color_tolerance: Option<f64>,
    /// Higher runs first (-100–100, default 0).
    pub priority: Option<i32>,
    /// Unix ms: prefer finishing before this.
    pub deadline: Option<i64>,
    /// Unix ms: not started before this.
    pub not_before: Option<i64>,
    /// An operator approves it before it runs.
    pub needs_approval: Option<bool>,
    /// Added on hold.
    pub held: Option<bool>,
    /// Bambu: level the bed before printing (default true).
    pub bed_leveling: Option<bool>,
    /// Bambu: calibrate the flow before printing (default false).
    pub flow_calibration: Option<bool>,
    /// Bambu: record a timelapse (default false).
    pub timelapse: Option<bool>,
}

/// What one slot needs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotMaterial {
    pub slot: u32,
    /// `PLA`, `PETG`; null: any.
    #[serde(rename = "type")]
    pub material: Option<String>,
    /// `#RRGGBB`; null: any.
    pub color: Option<String>,
}

/// A slot's filament as mapped.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlotMapping {
    pub slot: u32,
    /// `ams 1 slot 2` (both from 1), or `external`.
    pub tray: String,
    /// Bambu's tray number for `ams_mapping` (unit × 4 + slot from 0; 254 external).
    pub ams_index: i32,
    /// ΔE from the colour asked for.
    pub distance: f64,
}

/// Why a queued job waits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobWait {
    /// `held`, `awaiting_approval`, `not_before`, `no_printer_fits`, `printer_offline`,
    /// `printers_busy`, `plate_not_clear`, `filament_not_loaded`.
    pub code: String,
    pub reason: String,
}

/// A job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    /// Jobs added together (copies) share it.
    pub batch: String,
    pub copy: u32,
    pub copies: u32,
    pub file: String,
    pub file_name: Option<String>,
    pub plate: u32,
    pub name: String,
    /// `queued`, `assigned`, `transferring`, `uploading`, `starting`, `printing`,
    /// `finished`, `failed` or `cancelled`.
    pub state: String,
    pub held: bool,
    pub priority: i32,
    /// 1 for the next job to go; null for a job that is not queued.
    pub queue_place: Option<u32>,
    pub deadline: Option<i64>,
    pub not_before: Option<i64>,
    pub needs_approval: bool,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    /// The printer it must run on, if any.
    pub target_printer: Option<String>,
    /// The model it must run on, if any.
    pub target_model: Option<String>,
    pub nozzle: Option<f64>,
    pub materials: Vec<SlotMaterial>,
    pub color_tolerance: f64,
    /// The printer it was given to.
    pub printer: Option<String>,
    pub mapping: Vec<SlotMapping>,
    /// Why it waits (a queued job).
    pub waiting: Option<JobWait>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    pub estimated_s: Option<u64>,
    pub thumbnail_url: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// Which try this is: 0, then one more with each retry.
    pub attempt: u32,
    /// How it starts on a Bambu printer.
    pub bed_leveling: bool,
    pub flow_calibration: bool,
    pub timelapse: bool,
}

/// A job with its history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    pub history: Vec<HistoryRow>,
}

/// Where a job moves in the queue.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    Top,
    Up,
    Down,
    Bottom,
}

/// A printer's plate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlateState {
    pub printer: String,
    /// A person confirmed it clear since the printer's last job ended.
    pub clear: bool,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<i64>,
}

fn parse_needs(json: &str) -> Vec<Need> {
    serde_json::from_str(json).unwrap_or_default()
}

fn tray_name(tray: TrayRef) -> String {
    match tray {
        TrayRef::Unit { unit, slot } => format!("ams {} slot {}", unit + 1, slot + 1),
        TrayRef::External => "external".into(),
    }
}

/// The advisory lock the dispatching replica holds.
const DISPATCHER_LOCK: i64 = 0x006b_6974_7471_7565; // "kittque"

impl Queue {
    pub fn new(db: Db, sync: SyncHandle) -> Queue {
        Queue { db, sync, kick: Arc::new(Notify::new()) }
    }

    /// Something relevant changed: the dispatcher runs again.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Adds a job (one per copy). A file or plate that does not exist, a printer that does
    /// not, or one the file does not fit, is refused.
    pub async fn add(
        &self,
        principal: &Principal,
        request: JobRequest,
    ) -> Result<Vec<JobView>, ServiceError> {
        principal.require(Role::Operator)?;
        let file = self.db.file(&request.file).await?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no file {:?}; POST /api/v1/files uploads one",
                request.file
            ))
        })?;
        let plate = match request.plate {
            Some(n) => file.meta.plate(n).ok_or_else(|| {
                let have: Vec<String> =
                    file.meta.plates.iter().map(|p| p.index.to_string()).collect();
                ServiceError::Invalid(format!(
                    "{} has no plate {n}; its plates are {}",
                    file.name,
                    have.join(", ")
                ))
            })?,
            None => file
                .meta
                .plates
                .first()
                .ok_or_else(|| ServiceError::Invalid(format!("{} has no plates", file.name)))?,
        };
        let copies = request.copies.unwrap_or(1);
        if !(1..=100).contains(&copies) {
            return Err(ServiceError::Invalid("copies must be between 1 and 100".into()));
        }
        let priority = request.priority.unwrap_or(0);
        if !(-100..=100).contains(&priority) {
            return Err(ServiceError::Invalid("priority must be between -100 and 100".into()));
        }
        let tolerance = request.color_tolerance.unwrap_or(DEFAULT_TOLERANCE);
        if !(0.0..=100.0).contains(&tolerance) {
            return Err(ServiceError::Invalid("color_tolerance must be between 0 and 100".into()));
        }
        if let Some(nozzle) = request.nozzle
            && !(0.1..=2.0).contains(&nozzle)
        {
            return Err(ServiceError::Invalid("nozzle must be between 0.1 and 2.0 mm".into()));
        }
        if request.printer.is_some() && request.model.is_some() {
            return Err(ServiceError::Invalid("name a printer or a model, not both".into()));
        }
        if let Some(printer) = &request.printer {
            let row = self
                .db
                .printer(printer)
                .await?
                .ok_or_else(|| ServiceError::unknown_printer(printer))?;
            let model = row.state.as_ref().and_then(|s| s.model.clone()).or(row.model);
            if let printfile::models::Fit::Wrong(why) =
                printfile::models::fits(&file.meta, model.as_deref(), request.nozzle)
            {
                return Err(ServiceError::Unprocessable {
                    code: "wrong_printer",
                    message: format!("{} does not fit printer {printer}: {why}", file.name),
                });
            }
        }
        // The file's needs, with the request's changes.
        let mut needs: BTreeMap<u32, Need> = plate
            .filaments
            .iter()
            .map(|f| {
                let need = Need {
                    slot: f.slot,
                    material: f.material.clone(),
                    color: f.color.as_deref().and_then(Rgb::parse),
                };
                (f.slot, need)
            })
            .collect();
        for slot in request.materials.iter().flatten() {
            if slot.slot == 0 || slot.slot > 64 {
                return Err(ServiceError::Invalid(format!("slot {} is not 1–64", slot.slot)));
            }
            let color = match &slot.color {
                Some(text) => Some(Rgb::parse(text).ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "slot {}: {text:?} is not a colour like #FF6A13",
                        slot.slot
                    ))
                })?),
                None => None,
            };
            let material =
                slot.material.as_ref().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty());
            if material.as_ref().is_some_and(|m| m.len() > 32) {
                return Err(ServiceError::Invalid(format!(
                    "slot {}: a material name is at most 32 bytes",
                    slot.slot
                )));
            }
            needs.insert(slot.slot, Need { slot: slot.slot, material, color });
        }
        let needs: Vec<Need> = needs.into_values().collect();
        let name = request
            .name
            .clone()
            .map(|n| n.trim().chars().filter(|c| !c.is_control()).take(200).collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                let base = file
                    .name
                    .trim_end_matches(".gcode.3mf")
                    .trim_end_matches(".3mf")
                    .trim_end_matches(".gcode");
                if file.meta.plates.len() > 1 {
                    format!("{base} (plate {})", plate.index)
                } else {
                    base.to_owned()
                }
            });
        let now = UnixMillis::now();
        let batch = format!("{:016x}", rand::random::<u64>());
        let rows: Vec<JobRow> = (1..=copies)
            .map(|copy| JobRow {
                id: 0,
                batch: batch.clone(),
                copy: i64::from(copy),
                copies: i64::from(copies),
                file_id: file.id.clone(),
                plate: i64::from(plate.index),
                name: name.clone(),
                state: "queued".into(),
                held: request.held.unwrap_or(false),
                priority: i64::from(priority),
                position: 0,
                deadline: request.deadline,
                not_before: request.not_before,
                needs_approval: request.needs_approval.unwrap_or(false),
                approved_by: None,
                approved_at: None,
                target_printer: request.printer.clone(),
                target_model: request.model.clone(),
                nozzle: request.nozzle,
                needs: serde_json::to_string(&needs).unwrap_or_else(|_| "[]".into()),
                tolerance,
                printer_id: None,
                mapping: None,
                reason: None,
                reason_code: None,
                created_by: principal.name().to_owned(),
                created_at: now.0,
                updated_at: now.0,
                started_at: None,
                ended_at: None,
                attempt: 0,
                command_id: None,
                bed_leveling: request.bed_leveling.unwrap_or(true),
                flow_calibration: request.flow_calibration.unwrap_or(false),
                timelapse: request.timelapse.unwrap_or(false),
            })
            .collect();
        let ids = self.db.insert_jobs(&rows, principal.name()).await?;
        for &id in &ids {
            self.sync.live().publish(LiveUpdate::Job { id, state: "queued".into(), printer: None });
        }
        self.kick();
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            views.push(self.get(id).await?.job);
        }
        Ok(views)
    }

    /// Every job not yet done, in the order they are served, then the last 50 done.
    pub async fn list(&self) -> Result<Vec<JobView>, ServiceError> {
        let rows = self.db.jobs(50).await?;
        let places = queue_places(&rows);
        let mut files = FileCache::default();
        let mut views = Vec::with_capacity(rows.len());
        for row in &rows {
            views.push(self.view(row, places.get(&row.id).copied(), &mut files).await?);
        }
        views.sort_by_key(|v| {
            (
                v.queue_place.is_none(),
                v.queue_place,
                DONE.contains(&v.state.as_str()),
                -v.updated_at,
            )
        });
        Ok(views)
    }

    pub async fn get(&self, id: i64) -> Result<JobDetail, ServiceError> {
        let row = self.db.job(id).await?.ok_or_else(|| unknown_job(id))?;
        let place = if row.state == "queued" {
            let rows = self.db.jobs(0).await?;
            queue_places(&rows).get(&id).copied()
        } else {
            None
        };
        let job = self.view(&row, place, &mut FileCache::default()).await?;
        Ok(JobDetail { job, history: self.db.job_history(id).await? })
    }

    async fn view(
        &self,
        row: &JobRow,
        place: Option<u32>,
        files: &mut FileCache,
    ) -> Result<JobView, ServiceError> {
        let file = files.get(&self.db, &row.file_id).await?;
        let plate = file.as_ref().and_then(|f| f.meta.plate(row.plate as u32));
        let mapping: Vec<Mapped> =
            row.mapping.as_deref().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
        let waiting = (row.state == "queued")
            .then(|| match (&row.reason_code, &row.reason) {
                (Some(code), Some(reason)) => {
                    Some(JobWait { code: code.clone(), reason: reason.clone() })
                }
                _ => None,
            })
            .flatten();
        Ok(JobView {
            id: row.id,
            batch: row.batch.clone(),
            copy: row.copy as u32,
            copies: row.copies as u32,
            file: row.file_id.clone(),
            file_name: file.as_ref().map(|f| f.name.clone()),
            plate: row.plate as u32,
            name: row.name.clone(),
            state: row.state.clone(),
            held: row.held,
            priority: row.priority as i32,
            queue_place: place,
            deadline: row.deadline,
            not_before: row.not_before,
            needs_approval: row.needs_approval,
            approved_by: row.approved_by.clone(),
            approved_at: row.approved_at,
            target_printer: row.target_printer.clone(),
            target_model: row.target_model.clone(),
            nozzle: row.nozzle,
            materials: parse_needs(&row.needs)
                .into_iter()
                .map(|n| SlotMaterial {
                    slot: n.slot,
                    material: n.material,
                    color: n.color.map(Rgb::hex),
                })
                .collect(),
            color_tolerance: row.tolerance,
            printer: row.printer_id.clone(),
            mapping: mapping
                .iter()
                .map(|m| SlotMapping {
                    slot: m.slot,
                    tray: tray_name(m.tray),
                    ams_index: m.tray.bambu_index(),
                    distance: m.distance,
                })
                .collect(),
            waiting,
            reason: if DONE.contains(&row.state.as_str()) { row.reason.clone() } else { None },
            estimated_s: plate.and_then(|p| p.estimated_s),
            thumbnail_url: plate
                .and_then(|p| p.thumbnail)
                .map(|n| format!("/api/v1/files/{}/thumbnails/{n}", row.file_id)),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            ended_at: row.ended_at,
            attempt: row.attempt.max(0) as u32,
            bed_leveling: row.bed_leveling,
            flow_calibration: row.flow_calibration,
            timelapse: row.timelapse,
        })
    }

    async fn changed(&self, id: i64, done: bool) -> Result<JobDetail, ServiceError> {
        if !done {
            return Err(ServiceError::Conflict(format!("job {id} cannot do that in its state")));
        }
        let detail = self.get(id).await?;
        self.sync.live().publish(LiveUpdate::Job {
            id,
            state: detail.job.state.clone(),
            printer: detail.job.printer.clone(),
        });
        self.kick();
        Ok(detail)
    }

    async fn exists(&self, id: i64) -> Result<JobRow, ServiceError> {
        self.db.job(id).await?.ok_or_else(|| unknown_job(id))
    }

    pub async fn hold(
        &self,
        principal: &Principal,
        id: i64,
        held: bool,
    ) -> Result<JobDetail, ServiceError> {
        principal.require(Role::Operator)?;
        let row = self.exists(id).await?;
        if row.state != "queued" {
            return Err(ServiceError::Conflict(format!(
                "job {id} is {}; only a queued job is held or released",
                row.state
            )));
        }
        let done = self.db.set_job_held(id, held, principal.name(), UnixMillis::now()).await?;
        // Holding a held job (or releasing a released one) changes nothing and is no error.
        self.changed(id, done || row.held == held).await
    }

    /// A queued job's priority (-100–100; higher runs first).
    pub async fn set_priority(
        &self,
        principal: &Principal,
        id: i64,
        priority: i32,
    ) -> Result<JobDetail, ServiceError> {
        principal.require(Role::Operator)?;
        if !(-100..=100).contains(&priority) {
            return Err(ServiceError::Invalid("priority must be between -100 and 100".into()));
        }
        let row = self.exists(id).await?;
        if row.state != "queued" {
            return Err(ServiceError::Conflict(format!(
                "job {id} is {}; only a queued job's priority changes",
                row.state
            )));
        }
        let done =
            self.db.set_job_priority(id, priority, principal.name(), UnixMillis::now()).await?;
        self.changed(id, done || row.priority == i64::from(priority)).await
    }

    pub async fn approve(&self, principal: &Principal, id: i64) -> Result<JobDetail, ServiceError> {
        principal.require(Role::Operator)?;
        let row = self.exists(id).await?;
        if !row.needs_approval {
            return Err(ServiceError::Conflict(format!("job {id} needs no approval")));
        }
        let done = self.db.approve_job(id, principal.name(), UnixMillis::now()).await?;
        self.changed(id, done || row.approved_at.is_some()).await
    }

    /// Cancels a job that has not started printing. One that prints is stopped on the
    /// printer first (a stop command), which ends it as cancelled when the printer says so.
    pub async fn cancel(&self, principal: &Principal, id: i64) -> Result<JobDetail, ServiceError> {
        principal.require(Role::Operator)?;
        let row = self.exists(id).await?;
        if row.state == "printing" {
            return Err(ServiceError::Conflict(format!(
                "job {id} is printing on {}: stop the print on the printer (POST /printers/{}/commands, stop)",
                row.printer_id.as_deref().unwrap_or("its printer"),
                row.printer_id.as_deref().unwrap_or("…")
            )));
        }
        let from: Vec<&str> =
            ["queued", "assigned", "transferring", "uploading", "starting"].to_vec();
        let done = self
            .db
            .transition(
                id,
                &from,
                "cancelled",
                principal.name(),
                Some("cancelled by an operator"),
                UnixMillis::now(),
            )
            .await?;
        if !done && DONE.contains(&row.state.as_str()) {
            return Err(ServiceError::Conflict(format!(
                "job {id} has ended already ({})",
                row.state
            )));
        }
        if done
            && row.state == "transferring"
            && let Some(printer) = self.db.printer(row.printer_id.as_deref().unwrap_or("")).await?
            && let Ok(agent) = proto::AgentId::new(printer.agent_id.as_str())
        {
            // Its agent stops taking the file (and keeps what arrived).
            self.sync.files_pending(&agent);
        }
        self.changed(id, done).await
    }

    /// Puts a failed or cancelled job back in the queue.
    pub async fn retry(&self, principal: &Principal, id: i64) -> Result<JobDetail, ServiceError> {
        principal.require(Role::Operator)?;
        self.exists(id).await?;
        let done = self
            .db
            .transition(
                id,
                &["failed", "cancelled"],
                "queued",
                principal.name(),
                Some("retried"),
                UnixMillis::now(),
            )
            .await?;
        self.changed(id, done).await
    }

    /// Moves a queued job among the queued jobs of its priority.
    pub async fn reorder(
        &self,
        principal: &Principal,
        id: i64,
        to: Move,
    ) -> Result<JobDetail, ServiceError> {
        principal.require(Role::Operator)?;
        let row = self.exists(id).await?;
        if row.state != "queued" {
            return Err(ServiceError::Conflict(format!(
                "job {id} is {}; only queued jobs move",
                row.state
            )));
        }
        let rows = self.db.jobs(0).await?;
        let mut peers: Vec<&JobRow> =
            rows.iter().filter(|r| r.state == "queued" && r.priority == row.priority).collect();
        peers.sort_by_key(|r| (r.position, r.id));
        let at = peers.iter().position(|r| r.id == id).unwrap_or(0);
        let position = match to {
            Move::Top => peers.first().map_or(row.position, |r| r.position - 1),
            Move::Bottom => peers.last().map_or(row.position, |r| r.position + 1),
            // Between the neighbours: swap places with the one before or after.
            Move::Up => match at.checked_sub(1).and_then(|i| peers.get(i)) {
                Some(before) => {
                    self.db
                        .set_job_position(
                            before.id,
                            row.position,
                            principal.name(),
                            UnixMillis::now(),
                        )
                        .await?;
                    before.position
                }
                None => row.position,
            },
            Move::Down => match peers.get(at + 1) {
                Some(after) => {
                    self.db
                        .set_job_position(
                            after.id,
                            row.position,
                            principal.name(),
                            UnixMillis::now(),
                        )
                        .await?;
                    after.position
                }
                None => row.position,
            },
        };
        let done =
            self.db.set_job_position(id, position, principal.name(), UnixMillis::now()).await?;
        self.changed(id, done).await
    }

    // --- plates ---------------------------------------------------------------------------

    /// "Plate clear": a person says the printer's build plate is empty. It holds until the
    /// printer's next job end (by record, not by clock).
    pub async fn confirm_plate(
        &self,
        principal: &Principal,
        printer: &str,
    ) -> Result<PlateState, ServiceError> {
        principal.require(Role::Operator)?;
        let row = self
            .db
            .printer(printer)
            .await?
            .ok_or_else(|| ServiceError::unknown_printer(printer))?;
        let agent = proto::AgentId::new(row.agent_id.as_str())
            .map_err(|e| ServiceError::Internal(format!("printer {printer}'s agent: {e}")))?;
        let through = self.db.watermark(&agent).await?;
        let clearance = Clearance {
            printer_id: printer.to_owned(),
            agent_id: row.agent_id.clone(),
            through_seq: through.0 as i64,
            confirmed_by: principal.name().to_owned(),
            confirmed_at: UnixMillis::now().0,
        };
        self.db.confirm_plate(&clearance).await?;
        self.sync.live().publish(LiveUpdate::Plate { printer: printer.to_owned(), clear: true });
        self.kick();
        Ok(PlateState {
            printer: printer.to_owned(),
            clear: true,
            confirmed_by: Some(clearance.confirmed_by),
            confirmed_at: Some(clearance.confirmed_at),
        })
    }

    // --- the dispatcher's loop ---------------------------------------------------------------

    /// Runs the dispatcher whenever something relevant changes: a job added or acted on, a
    /// plate confirmed, a printer's state or an event arriving, an agent coming or going;
    /// and at the next `not_before` that falls due. Never on a fixed timer.
    ///
    /// On PostgreSQL, where several replicas may run, only the one holding the dispatcher's
    /// lock (a session advisory lock, released by PostgreSQL when that replica's connection
    /// ends) dispatches; the others wait to take it over.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.db.backend() != crate::db::Backend::Postgres {
            self.dispatch(shutdown, None).await;
            return;
        }
        loop {
            match self.db.try_session_lock(DISPATCHER_LOCK).await {
                Ok(Some(held)) => {
                    tracing::info!("This replica runs the queue's dispatcher.");
                    self.clone().dispatch(shutdown.clone(), Some(held)).await;
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tracing::warn!(
                        "Lost the dispatcher's lock (the database connection ended); taking it again."
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "Cannot take the dispatcher's lock; trying again.")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            }
        }
    }

    /// The dispatcher's loop; with `held`, while that connection (holding the lock) lives.
    async fn dispatch(self, shutdown: CancellationToken, mut held: Option<crate::db::SessionLock>) {
        let mut check = tokio::time::interval(std::time::Duration::from_secs(5));
        let mut live = self.sync.live().subscribe();
        // What of each printer's state the dispatcher weighs, as last seen: telemetry
        // arrives every second, and only a change in these is worth a decision.
        let mut seen: HashMap<String, u64> = HashMap::new();
        loop {
            let next_due = match self.dispatch_once(UnixMillis::now()).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "The dispatcher could not decide; it tries again shortly.");
                    Some(UnixMillis::now().0 + RETRY_MS)
                }
            };
            let due = async {
                match next_due {
                    Some(at) => {
                        let wait = (at - UnixMillis::now().0).max(0) as u64;
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.kick.notified() => {}
                () = due => {}
                _ = check.tick(), if held.is_some() => {
                    if let Some(lock) = held.as_mut()
                        && !lock.alive().await
                    {
                        return;
                    }
                }
                update = live.recv() => match update {
                    Ok(stamped) if !relevant(&stamped.update, &mut seen) => continue,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// One decision, carried out, and every assigned job moved on as far as it can go.
    /// Returns the next `not_before` in the future, if any.
    pub async fn dispatch_once(&self, now: UnixMillis) -> Result<Option<i64>, ServiceError> {
        let due = self.decide_once(now).await?;
        if self.advance(now).await? {
            // A step failed (storage busy, an agent's row unreadable): again shortly, not at
            // some later change that may never come.
            let soon = now.0 + RETRY_MS;
            return Ok(Some(due.map_or(soon, |due| due.min(soon))));
        }
        Ok(due)
    }

    async fn decide_once(&self, now: UnixMillis) -> Result<Option<i64>, ServiceError> {
        let rows = self.db.jobs(0).await?;
        let queued: Vec<&JobRow> = rows.iter().filter(|r| r.state == "queued").collect();
        if queued.is_empty() {
            return Ok(None);
        }
        let mut files = FileCache::default();
        let mut jobs = Vec::with_capacity(queued.len());
        for row in &queued {
            let Some(file) = files.get(&self.db, &row.file_id).await? else { continue };
            jobs.push(QueuedJob {
                id: row.id,
                priority: row.priority as i32,
                position: row.position,
                deadline: row.deadline,
                not_before: row.not_before,
                held: row.held,
                awaiting_approval: row.needs_approval && row.approved_at.is_none(),
                target: match (&row.target_printer, &row.target_model) {
                    (Some(p), _) => Target::Printer(p.clone()),
                    (None, Some(m)) => Target::Model(m.clone()),
                    (None, None) => Target::Any,
                },
                file: FileFacts {
                    kind: file.meta.kind,
                    model_id: file.meta.printer_model_id.clone(),
                    model: file.meta.printer_model.clone(),
                    nozzle: file.meta.nozzle_diameter,
                },
                nozzle: row.nozzle,
                needs: parse_needs(&row.needs),
                tolerance: row.tolerance,
            });
        }
        let fleet = self.fleet().await?;
        let decision = decide(&jobs, &fleet, now.0);
        self.carry_out(&decision, &queued, now).await?;
        Ok(jobs.iter().filter_map(|j| j.not_before).filter(|&at| at > now.0).min())
    }

    async fn carry_out(
        &self,
        decision: &Decision,
        queued: &[&JobRow],
        now: UnixMillis,
    ) -> Result<(), ServiceError> {
        for assignment in &decision.assignments {
            let mapping =
                serde_json::to_string(&assignment.mapping).unwrap_or_else(|_| "[]".into());
            let slots: Vec<String> = assignment
                .mapping
                .iter()
                .map(|m| format!("slot {} ← {}", m.slot, tray_name(m.tray)))
                .collect();
            let detail = if assignment.filament_checked {
                format!(
                    "to {}; {}",
                    assignment.printer,
                    if slots.is_empty() { "no filament needed".into() } else { slots.join(", ") }
                )
            } else {
                format!(
                    "to {}; its filament is not reported: check it before the start",
                    assignment.printer
                )
            };
            if self
                .db
                .assign_job(assignment.job, &assignment.printer, &mapping, &detail, now)
                .await?
            {
                tracing::info!(job = assignment.job, printer = %assignment.printer, "Job assigned.");
                self.sync.changed();
                self.sync.live().publish(LiveUpdate::Job {
                    id: assignment.job,
                    state: "assigned".into(),
                    printer: Some(assignment.printer.clone()),
                });
            }
        }
        for waiting in &decision.waiting {
            let row = queued.iter().find(|r| r.id == waiting.job);
            let same = row.is_some_and(|r| {
                r.reason_code.as_deref() == Some(waiting.code)
                    && r.reason.as_deref() == Some(waiting.reason.as_str())
            });
            if !same {
                self.db.set_job_reason(waiting.job, waiting.code, &waiting.reason).await?;
                self.sync.changed();
                self.sync.live().publish(LiveUpdate::Job {
                    id: waiting.job,
                    state: "queued".into(),
                    printer: None,
                });
            }
        }
        Ok(())
    }

    // --- running jobs ------------------------------------------------------------------

    /// Moves each assigned job on as far as the hub can take it: its file offered to its
    /// printer's agent (`transferring`; the sync connection sends it and the agent's answer
    /// makes it `uploading`), its start sent once the file is there, the start's answer
    /// read (`starting`, or `failed` with the agent's reason). The printer's own reports
    /// take it on from there (`printing`, then its end: see `db::queue::follow_jobs`).
    /// Returns whether a step failed (it is tried again shortly).
    async fn advance(&self, now: UnixMillis) -> Result<bool, ServiceError> {
        let mut failed = false;
        for row in self.db.jobs(0).await? {
            let result = match (row.state.as_str(), &row.command_id) {
                ("assigned", _) => self.transfer(&row, now).await,
                ("uploading", None) => self.send_start(&row, now).await,
                ("uploading" | "starting", Some(command)) => {
                    self.read_start(&row, command, now).await
                }
                _ => Ok(()),
            };
            if let Err(error) = result {
                tracing::warn!(job = row.id, %error, "Cannot move a job on; it tries again shortly.");
                failed = true;
            }
        }
        Ok(failed)
    }

    async fn job_printer(&self, row: &JobRow) -> Result<crate::db::read::PrinterRow, ServiceError> {
        let printer = row.printer_id.as_deref().unwrap_or_default();
        self.db.printer(printer).await?.ok_or_else(|| ServiceError::unknown_printer(printer))
    }

    async fn transfer(&self, row: &JobRow, now: UnixMillis) -> Result<(), ServiceError> {
        let printer = self.job_printer(row).await?;
        let detail = format!("the file goes to agent {}", printer.agent_id);
        let moved = self
            .db
            .transition(row.id, &["assigned"], "transferring", DISPATCHER, Some(&detail), now)
            .await?;
        if moved {
            self.publish(row.id, "transferring", row.printer_id.clone());
            let agent = proto::AgentId::new(printer.agent_id.as_str())
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            self.sync.files_pending(&agent);
        }
        Ok(())
    }

    /// Sends the start of a job whose file is on the agent: a command with its
    /// preconditions (the printer idle and in control, the plate confirmed clear since the
    /// last job end, each mapped slot holding what the plate needs), which the agent checks
    /// before the upload and again at the moment of the start.
    async fn send_start(&self, row: &JobRow, now: UnixMillis) -> Result<(), ServiceError> {
        let printer = self.job_printer(row).await?;
        let agent = proto::AgentId::new(printer.agent_id.as_str())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let Some(file) = self.db.file(&row.file_id).await? else {
            return self.fail(row, &["uploading"], "the job's file was deleted", now).await;
        };
        let Some(clearance) = self.db.plate_clearances().await?.remove(&printer.id) else {
            let detail = "nobody confirmed the plate clear; confirm it and retry the job";
            return self.fail(row, &["uploading"], detail, now).await;
        };
        let Some(sha256) = proto::files::parse_sha256(&row.file_id) else {
            return self.fail(row, &["uploading"], "the job's file has no SHA-256 id", now).await;
        };
        let mapping: Vec<Mapped> =
            row.mapping.as_deref().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
        let needs = parse_needs(&row.needs);
        // A Bambu printer says its nozzle; the start checks it against the file's (or the
        // job's own nozzle constraint).
        let bambu = !matches!(
            (printer.state.as_ref().and_then(|s| s.kind.as_deref()), printer.vendor.as_deref()),
            (Some("klipper"), _) | (None, Some("moonraker"))
        );
        let nozzle = row.nozzle.or(file.meta.nozzle_diameter).filter(|_| bambu);
        let command = start_command(StartFacts {
            row,
            printer: &printer.id,
            kind: file.meta.kind,
            sha256,
            size: file.size,
            clearance: &clearance,
            mapping: &mapping,
            needs: &needs,
            nozzle_um: nozzle.map(|mm| (mm * 1000.0).round() as u32),
            now,
        })?;
        let id = command.id.to_string();
        // The command's id follows from the job and its try: after a crash between these
        // two steps, the next pass finds the command stored and only records it.
        if self.db.command(&id).await?.is_none() {
            self.db.insert_command(&agent, &command).await?;
        }
        if self.db.set_job_command(row.id, &id).await? {
            tracing::info!(job = row.id, printer = %printer.id, command = %id, "Sent a job's start.");
            self.sync.commands_pending(&agent);
        }
        Ok(())
    }

    /// What the agent answered to a job's start.
    async fn read_start(
        &self,
        row: &JobRow,
        command: &str,
        now: UnixMillis,
    ) -> Result<(), ServiceError> {
        let Some(outcome) = self.db.command(command).await?.and_then(|c| c.outcome) else {
            return Ok(());
        };
        if outcome == "succeeded" {
            if row.state == "uploading" {
                let detail = "the file is on the printer and the printer accepted the start";
                let actor = format!("printer {}", row.printer_id.as_deref().unwrap_or("?"));
                if self
                    .db
                    .transition(row.id, &["uploading"], "starting", &actor, Some(detail), now)
                    .await?
                {
                    self.publish(row.id, "starting", row.printer_id.clone());
                }
            }
            return Ok(());
        }
        let detail = start_refusal(&outcome);
        self.fail(row, &["uploading", "starting"], &detail, now).await
    }

    async fn fail(
        &self,
        row: &JobRow,
        from: &[&str],
        detail: &str,
        now: UnixMillis,
    ) -> Result<(), ServiceError> {
        let actor = format!("agent of {}", row.printer_id.as_deref().unwrap_or("?"));
        if self.db.transition(row.id, from, "failed", &actor, Some(detail), now).await? {
            tracing::warn!(job = row.id, reason = detail, "A job failed before it printed.");
            self.publish(row.id, "failed", row.printer_id.clone());
        }
        Ok(())
    }

    fn publish(&self, id: i64, state: &str, printer: Option<String>) {
        self.sync.changed();
        self.sync.live().publish(LiveUpdate::Job { id, state: state.to_owned(), printer });
    }

    /// The fleet as the dispatcher weighs it.
    async fn fleet(&self) -> Result<Vec<FleetPrinter>, ServiceError> {
        let printers = self.db.printers().await?;
        let busy = self.db.busy_printers().await?;
        let clearances = self.db.plate_clearances().await?;
        let ends = self.db.last_job_ends().await?;
        Ok(printers
            .into_iter()
            .map(|row| {
                let state = row.state.as_ref();
                let kind = match (state.and_then(|s| s.kind.as_deref()), row.vendor.as_deref()) {
                    (Some("klipper"), _) | (None, Some("moonraker")) => PrinterKind::Klipper,
                    _ => PrinterKind::Bambu,
                };
                let status = state.map_or("unknown".to_owned(), |s| s.state.clone());
                let online = self.sync.is_connected(&row.agent_id) && status != "offline";
                let free = matches!(status.as_str(), "idle" | "finished" | "failed")
                    && !busy.contains_key(&row.id)
                    && state.is_some_and(|s| s.control != "read_only");
                let plate_clear = clearances
                    .get(&row.id)
                    .is_some_and(|c| plate_clear(c, &row.agent_id, ends.get(&row.id)));
                FleetPrinter {
                    id: row.id.clone(),
                    kind,
                    model: state.and_then(|s| s.model.clone()).or(row.model.clone()),
                    nozzle: None,
                    online,
                    approved: row.approved_at.is_some(),
                    free,
                    status: if busy.contains_key(&row.id) {
                        "has a job of the queue".into()
                    } else {
                        status
                    },
                    plate_clear,
                    filament: state.and_then(|s| filament_of(s, kind)),
                }
            })
            .collect())
    }
}

/// What is loaded, from a printer's state; `None` when it does not say.
fn filament_of(
    state: &crate::service::views::PrinterState,
    kind: PrinterKind,
) -> Option<Vec<Tray>> {
    let mut trays: Vec<Tray> = state
        .filament
        .iter()
        .map(|slot| Tray {
            at: match slot.unit {
                Some(unit) => TrayRef::Unit { unit, slot: slot.slot },
                None => TrayRef::External,
            },
            material: slot.material.clone().filter(|m| !m.is_empty()),
            color: slot.color.as_deref().and_then(Rgb::parse),
        })
        .collect();
    if trays.is_empty() {
        // A state stored before the neutral fields: Bambu's AMS and external spool.
        for unit in &state.ams {
            for tray in &unit.trays {
                trays.push(Tray {
                    at: TrayRef::Unit { unit: unit.id, slot: tray.slot },
                    material: tray.material.clone().filter(|m| !m.is_empty()),
                    color: tray.color.as_deref().and_then(Rgb::parse),
                });
            }
        }
        if let Some(spool) = &state.external_spool {
            trays.push(Tray {
                at: TrayRef::External,
                material: spool.material.clone().filter(|m| !m.is_empty()),
                color: spool.color.as_deref().and_then(Rgb::parse),
            });
        }
    }
    match kind {
        // A Bambu printer always reports its trays (an empty list means nothing is loaded).
        PrinterKind::Bambu => Some(trays),
        PrinterKind::Klipper => (!trays.is_empty()).then_some(trays),
    }
}

/// How soon a job's step that failed is tried again, milliseconds.
const RETRY_MS: i64 = 250;

/// How long a job's start may take to reach the printer, its upload included.
const START_EXPIRY_MS: i64 = 30 * 60 * 1000;

/// What a job's start is made of.
struct StartFacts<'a> {
    row: &'a JobRow,
    printer: &'a str,
    kind: printfile::FileKind,
    sha256: [u8; 32],
    size: u64,
    clearance: &'a Clearance,
    mapping: &'a [Mapped],
    needs: &'a [Need],
    /// The nozzle the printer must have, micrometres; `None`: not checked.
    nozzle_um: Option<u32>,
    now: UnixMillis,
}

/// The start command of a job's try. Its id is derived from the job and the try, so the
/// same try never makes two commands.
fn start_command(facts: StartFacts<'_>) -> Result<proto::Command, ServiceError> {
    use proto::{CommandAction, Precondition, PrintState, SlotRef, StartJob, StartPrint};
    use sha2::Digest;
    let StartFacts { row, printer, kind, sha256, size, clearance, mapping, needs, nozzle_um, now } =
        facts;
    let digest = sha2::Sha256::digest(format!("kitt job {} try {}", row.id, row.attempt));
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    let extension = match kind {
        printfile::FileKind::Gcode3mf => "gcode.3mf",
        printfile::FileKind::Gcode => "gcode",
    };
    let slots = needs.iter().map(|n| n.slot).chain(mapping.iter().map(|m| m.slot)).max();
    let mut ams_mapping = vec![-1i16; slots.unwrap_or(0) as usize];
    for mapped in mapping {
        if let Some(entry) = ams_mapping.get_mut(mapped.slot.saturating_sub(1) as usize) {
            *entry = mapped.tray.bambu_index() as i16;
        }
    }
    let mut preconditions = vec![
        Precondition::StateIn(vec![PrintState::Idle, PrintState::Finished, PrintState::Failed]),
        Precondition::ControlAvailable,
        Precondition::PlateClearThrough {
            by: clearance.confirmed_by.clone(),
            through: proto::Seq(clearance.through_seq.max(0) as u64),
        },
    ];
    if let Some(micrometres) = nozzle_um {
        preconditions.push(Precondition::NozzleDiameter { micrometres });
    }
    for mapped in mapping {
        let need = needs.iter().find(|n| n.slot == mapped.slot);
        let slot = match mapped.tray {
            TrayRef::Unit { unit, slot } => SlotRef { unit: Some(unit), slot },
            TrayRef::External => SlotRef { unit: None, slot: 0 },
        };
        preconditions.push(Precondition::FilamentLoaded {
            slot,
            material: need.and_then(|n| n.material.clone()).unwrap_or_default(),
            color: need.and_then(|n| n.color).map(|c| proto::Rgb([c.0, c.1, c.2])),
            tolerance_centi: (row.tolerance * 100.0).round().clamp(0.0, f64::from(u32::MAX)) as u32,
        });
    }
    let printer =
        proto::PrinterId::new(printer).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(proto::Command {
        id: proto::CommandId(id),
        printer,
        issued_at: now,
        expires_at: now.plus_millis(START_EXPIRY_MS),
        preconditions,
        action: CommandAction::StartJob(StartJob {
            job: row.id as u64,
            sha256,
            size,
            print: StartPrint {
                file: format!("kitt-{}-{}.{extension}", row.id, row.attempt),
                plate: row.plate.clamp(1, i64::from(u16::MAX)) as u16,
                job_name: row.name.clone(),
                use_ams: mapping.iter().any(|m| matches!(m.tray, TrayRef::Unit { .. })),
                ams_mapping,
                bed_leveling: row.bed_leveling,
                timelapse: row.timelapse,
            },
            flow_calibration: row.flow_calibration,
        }),
    })
}

/// A start's outcome as stored (`refused: …`, `precondition_failed: …`), in an operator's
/// words.
fn start_refusal(outcome: &str) -> String {
    let (kind, detail) = outcome.split_once(": ").unwrap_or((outcome, ""));
    match kind {
        "precondition_failed" => format!("not started: {detail}"),
        "refused" => format!("the printer refused the start: {detail}"),
        "failed" => format!("not started: {detail}"),
        "unsupported" => format!("not started: {detail}"),
        "expired" => "the start expired before the agent could carry it out".into(),
        "timed_out" => "the printer did not answer the start in time".into(),
        "read_only" => {
            "the printer refuses control (enable Developer Mode in LAN-only mode)".into()
        }
        other => format!("not started: {other}"),
    }
}

/// Every printer's plate.
pub async fn plates(db: &Db) -> Result<HashMap<String, PlateState>, ServiceError> {
    let clearances = db.plate_clearances().await?;
    let ends = db.last_job_ends().await?;
    let printers = db.printers().await?;
    Ok(printers
        .iter()
        .map(|p| {
            let c = clearances.get(&p.id);
            let clear = c.is_some_and(|c| plate_clear(c, &p.agent_id, ends.get(&p.id)));
            let state = PlateState {
                printer: p.id.clone(),
                clear,
                confirmed_by: c.map(|c| c.confirmed_by.clone()),
                confirmed_at: c.map(|c| c.confirmed_at),
            };
            (p.id.clone(), state)
        })
        .collect())
}

/// Whether a confirmation still holds: made under the printer's present agent, and no job
/// end recorded after it.
fn plate_clear(clearance: &Clearance, agent: &str, last_end: Option<&(String, i64)>) -> bool {
    if clearance.agent_id != agent {
        return false;
    }
    match last_end {
        Some((end_agent, seq)) if end_agent == agent => *seq <= clearance.through_seq,
        // The last end was recorded under another agent (before a move): the confirmation,
        // made under this one, is the newer.
        Some(_) | None => true,
    }
}

/// What wakes the dispatcher: a printer whose state, control, model or filament changed
/// (`seen` keeps what each printer last had), an agent coming or going, a plate, a job end.
fn relevant(update: &LiveUpdate, seen: &mut HashMap<String, u64>) -> bool {
    use std::hash::{Hash, Hasher};
    match update {
        LiveUpdate::PrinterState { printer, state, .. } => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            for field in ["state", "control", "model", "filament", "ams", "external_spool"] {
                state[field].to_string().hash(&mut hasher);
            }
            let fingerprint = hasher.finish();
            seen.insert(printer.clone(), fingerprint) != Some(fingerprint)
        }
        LiveUpdate::Agent { .. } | LiveUpdate::Plate { .. } => true,
        LiveUpdate::Event { event, .. } => {
            matches!(
                event["type"].as_str(),
                Some(
                    "job_finished"
                        | "job_failed"
                        | "job_cancelled"
                        | "state_changed"
                        | "ams_changed"
                        | "tray_changed"
                )
            )
        }
        // A job moved on (a file arrived, a print began or ended) or a start was answered.
        LiveUpdate::Job { .. } | LiveUpdate::CommandResult { .. } => true,
        LiveUpdate::Snapshot { .. }
        | LiveUpdate::Camera { .. }
        | LiveUpdate::SchedulerRun { .. } => false,
    }
}

/// Each queued job's place, 1 for the next to go.
fn queue_places(rows: &[JobRow]) -> HashMap<i64, u32> {
    let mut queued: Vec<&JobRow> = rows.iter().filter(|r| r.state == "queued").collect();
    queued.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.deadline.unwrap_or(i64::MAX).cmp(&b.deadline.unwrap_or(i64::MAX)))
            .then(a.position.cmp(&b.position))
            .then(a.id.cmp(&b.id))
    });
    queued.iter().enumerate().map(|(i, r)| (r.id, i as u32 + 1)).collect()
}

/// Files read once per call.
#[derive(Debug, Default)]
struct FileCache(HashMap<String, Option<crate::db::files::FileRow>>);

impl FileCache {
    async fn get(
        &mut self,
        db: &Db,
        id: &str,
    ) -> Result<Option<crate::db::files::FileRow>, ServiceError> {
        if let Some(found) = self.0.get(id) {
            return Ok(found.clone());
        }
        let found = db.file(id).await?;
        self.0.insert(id.to_owned(), found.clone());
        Ok(found)
    }
}

fn unknown_job(id: i64) -> ServiceError {
    ServiceError::NotFound(format!("no job {id}; GET /api/v1/jobs lists them"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, attempt: i64) -> JobRow {
        JobRow {
            id,
            batch: "b".into(),
            copy: 1,
            copies: 1,
            file_id: "f".into(),
            plate: 2,
            name: "Benchy".into(),
            state: "uploading".into(),
            held: false,
            priority: 0,
            position: 1,
            deadline: None,
            not_before: None,
            needs_approval: false,
            approved_by: None,
            approved_at: None,
            target_printer: None,
            target_model: None,
            nozzle: None,
            needs: "[]".into(),
            tolerance: 20.0,
            printer_id: Some("P1".into()),
            mapping: None,
            reason: None,
            reason_code: None,
            created_by: "olga".into(),
            created_at: 0,
            updated_at: 0,
            started_at: None,
            ended_at: None,
            attempt,
            command_id: None,
            bed_leveling: true,
            flow_calibration: false,
            timelapse: true,
        }
    }

    fn start(row: &JobRow, mapping: &[Mapped], needs: &[Need]) -> proto::Command {
        let clearance = Clearance {
            printer_id: "P1".into(),
            agent_id: "pi".into(),
            through_seq: 41,
            confirmed_by: "olga".into(),
            confirmed_at: 0,
        };
        start_command(StartFacts {
            row,
            printer: "P1",
            kind: printfile::FileKind::Gcode3mf,
            sha256: [7; 32],
            size: 10,
            clearance: &clearance,
            mapping,
            needs,
            nozzle_um: Some(400),
            now: UnixMillis(1_000),
        })
        .unwrap()
    }

    #[test]
    fn a_start_maps_each_slot_and_carries_every_precondition() {
        let mapping = [
            Mapped { slot: 1, tray: TrayRef::Unit { unit: 1, slot: 2 }, distance: 0.0 },
            Mapped { slot: 3, tray: TrayRef::External, distance: 0.0 },
        ];
        let needs = [
            Need { slot: 1, material: Some("PETG".into()), color: Some(Rgb(255, 0, 0)) },
            Need { slot: 3, material: None, color: None },
        ];
        let command = start(&job(12, 1), &mapping, &needs);
        let proto::CommandAction::StartJob(start_job) = &command.action else { panic!() };
        assert_eq!(start_job.print.ams_mapping, [6, -1, 254]);
        assert_eq!(start_job.print.file, "kitt-12-1.gcode.3mf");
        assert_eq!(start_job.print.plate, 2);
        assert!(start_job.print.use_ams);
        assert!(start_job.print.bed_leveling && start_job.print.timelapse);
        assert!(!start_job.flow_calibration);
        assert!(command.preconditions.contains(&proto::Precondition::PlateClearThrough {
            by: "olga".into(),
            through: proto::Seq(41),
        }));
        assert!(command.preconditions.contains(&proto::Precondition::FilamentLoaded {
            slot: proto::SlotRef { unit: Some(1), slot: 2 },
            material: "PETG".into(),
            color: Some(proto::Rgb([255, 0, 0])),
            tolerance_centi: 2000,
        }));
        assert!(
            command
                .preconditions
                .contains(&proto::Precondition::NozzleDiameter { micrometres: 400 })
        );
        assert!(command.expires_at.0 > command.issued_at.0);
    }

    #[test]
    fn a_try_has_one_command_id_and_the_next_try_another() {
        let first = start(&job(12, 0), &[], &[]).id;
        assert_eq!(start(&job(12, 0), &[], &[]).id, first);
        assert_ne!(start(&job(12, 1), &[], &[]).id, first);
        assert_ne!(start(&job(13, 0), &[], &[]).id, first);
    }

    #[test]
    fn a_refused_start_says_why_in_words() {
        let text = start_refusal("precondition_failed: AMS 1 slot 1 holds PLA; the job needs PETG");
        assert_eq!(text, "not started: AMS 1 slot 1 holds PLA; the job needs PETG");
        assert!(start_refusal("expired").contains("expired"));
    }
}
