//! The dispatcher: which queued job goes to which printer now. A pure function of the queue
//! and the fleet's live state ([`decide`]); the queue service feeds it whenever something
//! relevant changed (a job added, held, released or reordered, a printer idle, a plate
//! confirmed clear, filament loaded) and carries out what it returns.
//!
//! The rules, in order:
//! 1. Jobs are taken by priority (higher first), then deadline (earlier first; none last),
//!    then queue position, then id ([`order`]). A job that cannot go now does not block the
//!    ones after it: they may take other printers.
//! 2. A job goes only to a printer that fits it: the printer it names, or one of the model
//!    it names, or any; of the kind its file is for (a sliced 3MF to a Bambu printer, G-code
//!    to the others); sliced for that printer's model and nozzle ([`printfile::models`]).
//! 3. The printer must be online, its owner approved, free (idle, finished or failed, with no
//!    other job of the queue on it) and its plate confirmed clear by a person since its
//!    last job ended.
//! 4. Every filament the plate needs must be loaded: the closest colour of the right
//!    material within the job's tolerance ([`super::matching`]); the mapping found is the
//!    AMS mapping the start uses. A printer that does not report its filament (a Klipper
//!    printer without a filament changer) is taken only when no printer that reports the
//!    right filament is free, so an operator's swap is the last resort.
//! 5. Among the printers left, the one whose colours match best, then by id (so the answer
//!    is the same for the same input).
//!
//! Whatever a job waits for is said in words ([`Waiting`]), from the furthest it got: a
//! job that found a free printer with a clear plate but no PETG says so, not "no printer".

use printfile::FileKind;
use printfile::models::{Fit, Sliced, fits_sliced};
use serde::Serialize;

use super::matching::{
    Mapped, Need, PreparedNeed, PreparedTray, Tray, map_prepared, prepare_needs, prepare_trays,
    try_map_prepared,
};

/// What a job may run on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Target {
    /// This printer only.
    Printer(String),
    /// Any printer of this model (Bambu's code, `C12`, or a name).
    Model(String),
    Any,
}

/// What the file a job prints was sliced for.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    pub kind: FileKind,
    pub model_id: Option<String>,
    pub model: Option<String>,
    pub nozzle: Option<f64>,
}

/// A job as the dispatcher weighs it.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: i64,
    pub priority: i32,
    pub position: i64,
    /// Unix ms.
    pub deadline: Option<i64>,
    /// Unix ms: not started before.
    pub not_before: Option<i64>,
    /// An operator holds it.
    pub held: bool,
    /// It needs an operator's approval, not yet given.
    pub awaiting_approval: bool,
    pub target: Target,
    pub file: FileFacts,
    /// The nozzle the job needs, millimetres (the file's unless the job says otherwise).
    pub nozzle: Option<f64>,
    pub needs: Vec<Need>,
    /// Colour tolerance, ΔE.
    pub tolerance: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrinterKind {
    Bambu,
    Klipper,
}

/// A printer as the dispatcher weighs it.
#[derive(Debug, Clone)]
pub struct FleetPrinter {
    pub id: String,
    pub kind: PrinterKind,
    /// What it reports (`C12`, `Voron 2.4`).
    pub model: Option<String>,
    /// Millimetres, when known.
    pub nozzle: Option<f64>,
    pub online: bool,
    /// Its owning agent's claim is approved.
    pub approved: bool,
    /// Idle, finished or failed, with no job of the queue on it.
    pub free: bool,
    /// Its state in words, for reasons (`printing`, `offline`).
    pub status: String,
    /// A person confirmed the plate clear since its last job ended.
    pub plate_clear: bool,
    /// What is loaded; `None` when the printer does not say.
    pub filament: Option<Vec<Tray>>,
}

/// A job given to a printer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assignment {
    pub job: i64,
    pub printer: String,
    /// Each slot's filament; empty when the printer does not report its filament.
    pub mapping: Vec<Mapped>,
    /// The filament was checked against what the printer reports.
    pub filament_checked: bool,
}

/// Why a job waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub job: i64,
    /// `held`, `awaiting_approval`, `not_before`, `no_printer_fits`, `printer_offline`,
    /// `printers_busy`, `plate_not_clear`, `filament_not_loaded`.
    pub code: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    pub assignments: Vec<Assignment>,
    pub waiting: Vec<Waiting>,
}

/// The jobs in the order they are served.
pub fn order(jobs: &[QueuedJob]) -> Vec<&QueuedJob> {
    let mut ordered: Vec<&QueuedJob> = jobs.iter().collect();
    ordered.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.deadline.unwrap_or(i64::MAX).cmp(&b.deadline.unwrap_or(i64::MAX)))
            .then(a.position.cmp(&b.position))
            .then(a.id.cmp(&b.id))
    });
    ordered
}

/// How far a job got with one printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Not of the job's target, kind, model or nozzle.
    Unfit,
    Offline,
    Unapproved,
    Busy,
    PlateNotClear,
    FilamentMissing,
    Ready,
}

/// Decides what starts now. `now` is the hub's clock, Unix ms.
pub fn decide(jobs: &[QueuedJob], printers: &[FleetPrinter], now: i64) -> Decision {
    let mut decision = Decision::default();
    let mut taken = vec![false; printers.len()];
    // What every printer's decision needs, computed once.
    let fleet: Vec<Prepared> = printers
        .iter()
        .map(|p| Prepared {
            code: p.model.as_deref().and_then(printfile::models::bambu_code),
            trays: p.filament.as_deref().map(prepare_trays),
        })
        .collect();
    let mut furthest_at: Vec<usize> = Vec::new();
    for job in order(jobs) {
        if job.held {
            decision.waiting.push(wait(job, "held", "held by an operator".into()));
            continue;
        }
        if job.awaiting_approval {
            decision.waiting.push(wait(
                job,
                "awaiting_approval",
                "waits for an operator's approval".into(),
            ));
            continue;
        }
        if let Some(at) = job.not_before
            && at > now
        {
            decision.waiting.push(wait(job, "not_before", format!("not before {at} (Unix ms)")));
            continue;
        }
        if !printers.is_empty() && taken.iter().all(|t| *t) {
            decision.waiting.push(wait(job, "printers_busy", "every printer is taken".into()));
            continue;
        }
        let needs = prepare_needs(&job.needs);
        let file_code = job
            .file
            .model_id
            .as_deref()
            .and_then(printfile::models::bambu_code)
            .or_else(|| job.file.model.as_deref().and_then(printfile::models::bambu_code));
        let mut best: Option<(usize, Vec<Mapped>, bool, f64)> = None;
        let mut furthest = Stage::Unfit;
        furthest_at.clear();
        for (i, printer) in printers.iter().enumerate() {
            let (stage, mapping) = weigh(job, file_code, &needs, printer, &fleet[i], taken[i]);
            if stage > furthest {
                furthest = stage;
                furthest_at.clear();
            }
            if stage == furthest {
                furthest_at.push(i);
            }
            let Some((mapping, checked)) = mapping else { continue };
            let cost: f64 = mapping.iter().map(|m| m.distance).sum();
            let better = match &best {
                None => true,
                Some((_, _, best_checked, best_cost)) => {
                    (checked && !best_checked) || (checked == *best_checked && cost < *best_cost)
                }
            };
            if better {
                best = Some((i, mapping, checked, cost));
            }
        }
        match best {
            Some((i, mapping, filament_checked, _)) => {
                taken[i] = true;
                decision.assignments.push(Assignment {
                    job: job.id,
                    printer: printers[i].id.clone(),
                    mapping,
                    filament_checked,
                });
            }
            None => {
                // Words only for a job that waits, and only for the printers it got furthest
                // with.
                let notes: Vec<String> = furthest_at
                    .iter()
                    .take(6)
                    .map(|&i| note(job, &needs, furthest, &printers[i], &fleet[i], taken[i]))
                    .collect();
                let more = furthest_at.len().saturating_sub(notes.len());
                decision.waiting.push(waiting_for(job, furthest, &notes, more));
            }
        }
    }
    decision
}

/// A printer's values computed once per decision.
#[derive(Debug)]
struct Prepared {
    code: Option<&'static str>,
    trays: Option<Vec<PreparedTray>>,
}

/// How far `job` gets with `printer`; at [`Stage::Ready`], the filament mapping and whether
/// it was checked. Allocates nothing unless the printer is ready.
fn weigh(
    job: &QueuedJob,
    file_code: Option<&'static str>,
    needs: &[PreparedNeed],
    printer: &FleetPrinter,
    prepared: &Prepared,
    taken: bool,
) -> (Stage, Option<(Vec<Mapped>, bool)>) {
    match &job.target {
        Target::Printer(wanted) if *wanted != printer.id => return (Stage::Unfit, None),
        Target::Model(model) if !same_model(model, printer.model.as_deref()) => {
            return (Stage::Unfit, None);
        }
        _ => {}
    }
    if !kind_fits(job.file.kind, printer.kind) || !model_fits(job, file_code, printer, prepared) {
        return (Stage::Unfit, None);
    }
    if !printer.online {
        return (Stage::Offline, None);
    }
    if !printer.approved {
        return (Stage::Unapproved, None);
    }
    if taken || !printer.free {
        return (Stage::Busy, None);
    }
    if !printer.plate_clear {
        return (Stage::PlateNotClear, None);
    }
    match &prepared.trays {
        Some(trays) => match try_map_prepared(needs, trays, job.tolerance) {
            Some(mapping) => (Stage::Ready, Some((mapping, true))),
            None => (Stage::FilamentMissing, None),
        },
        None => (Stage::Ready, Some((Vec::new(), false))),
    }
}

fn kind_fits(file: FileKind, printer: PrinterKind) -> bool {
    match file {
        FileKind::Gcode3mf => printer == PrinterKind::Bambu,
        FileKind::Gcode => printer != PrinterKind::Bambu,
    }
}

/// [`printfile::models::fits_sliced`]'s answer without its words: the nozzle, then Bambu's
/// model codes, then names.
fn model_fits(
    job: &QueuedJob,
    file_code: Option<&str>,
    printer: &FleetPrinter,
    prepared: &Prepared,
) -> bool {
    if let (Some(want), Some(have)) = (job.nozzle.or(job.file.nozzle), printer.nozzle)
        && (want - have).abs() > 0.01
    {
        return false;
    }
    match (file_code, prepared.code) {
        (Some(f), Some(p)) => f == p,
        (Some(_), None) => printer.model.is_none(),
        (None, Some(_)) => job.file.model.is_none(),
        (None, None) => true,
    }
}

/// Why `printer` stops `job` at `stage`, in words.
fn note(
    job: &QueuedJob,
    needs: &[PreparedNeed],
    stage: Stage,
    printer: &FleetPrinter,
    prepared: &Prepared,
    taken: bool,
) -> String {
    let id = &printer.id;
    match stage {
        Stage::Unfit => {
            match &job.target {
                Target::Printer(wanted) if wanted != id => return format!("{id} is not {wanted}"),
                Target::Model(model) if !same_model(model, printer.model.as_deref()) => {
                    return format!("{id} is not a {model}");
                }
                _ => {}
            }
            if !kind_fits(job.file.kind, printer.kind) {
                return match job.file.kind {
                    FileKind::Gcode3mf => format!("{id}: a sliced 3MF prints on Bambu printers"),
                    FileKind::Gcode => format!(
                        "{id}: plain G-code goes to Klipper printers; Bambu printers take a sliced 3MF"
                    ),
                };
            }
            let sliced = Sliced {
                model_id: job.file.model_id.as_deref(),
                model: job.file.model.as_deref(),
                nozzle: job.nozzle.or(job.file.nozzle),
            };
            match fits_sliced(&sliced, printer.model.as_deref(), printer.nozzle) {
                Fit::Wrong(why) => format!("{id}: {why}"),
                Fit::Fits | Fit::Unknown => format!("{id} does not fit"),
            }
        }
        Stage::Offline => format!("{id} is offline"),
        Stage::Unapproved => format!("{id} awaits an admin's approval"),
        Stage::Busy => {
            let status = if taken { "taken by another job" } else { printer.status.as_str() };
            format!("{id} ({status})")
        }
        Stage::PlateNotClear | Stage::Ready => id.clone(),
        Stage::FilamentMissing => {
            let missing = match &prepared.trays {
                Some(trays) => map_prepared(needs, trays, job.tolerance).err().unwrap_or_default(),
                None => Vec::new(),
            };
            let lacks: Vec<String> = missing
                .iter()
                .map(|&n| format!("slot {}: {}", job.needs[n].slot, job.needs[n].describe()))
                .collect();
            format!("{id} lacks {}", lacks.join(", "))
        }
    }
}

fn same_model(wanted: &str, have: Option<&str>) -> bool {
    let Some(have) = have else { return false };
    let code = |m: &str| printfile::models::bambu_code(m).map(str::to_owned);
    match (code(wanted), code(have)) {
        (Some(a), Some(b)) => a == b,
        _ => wanted.trim().eq_ignore_ascii_case(have.trim()),
    }
}

fn wait(job: &QueuedJob, code: &'static str, reason: String) -> Waiting {
    Waiting { job: job.id, code, reason }
}

fn waiting_for(job: &QueuedJob, stage: Stage, notes: &[String], more: usize) -> Waiting {
    let list =
        if more > 0 { format!("{} and {more} more", notes.join("; ")) } else { notes.join("; ") };
    match stage {
        Stage::Unfit if notes.is_empty() => {
            wait(job, "no_printer_fits", "there are no printers".into())
        }
        Stage::Unfit => wait(job, "no_printer_fits", format!("no printer fits: {list}")),
        Stage::Offline => {
            wait(job, "printer_offline", format!("the printers that fit are offline: {list}"))
        }
        Stage::Unapproved => {
            wait(job, "printer_offline", format!("the printers that fit await approval: {list}"))
        }
        Stage::Busy => {
            wait(job, "printers_busy", format!("the printers that fit are busy: {list}"))
        }
        Stage::PlateNotClear => wait(
            job,
            "plate_not_clear",
            format!("waits for a person to confirm the plate clear on {list}"),
        ),
        Stage::FilamentMissing => {
            wait(job, "filament_not_loaded", format!("needs filament loaded: {list}"))
        }
        // A ready printer is taken at once; a job waits at Ready only if every one was.
        Stage::Ready => wait(job, "printers_busy", "every fitting printer is taken".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::matching::{DEFAULT_TOLERANCE, Rgb, TrayRef};

    fn bambu(id: &str, model: &str, trays: &[(&str, &str)]) -> FleetPrinter {
        FleetPrinter {
            id: id.into(),
            kind: PrinterKind::Bambu,
            model: Some(model.into()),
            nozzle: Some(0.4),
            online: true,
            approved: true,
            free: true,
            status: "idle".into(),
            plate_clear: true,
            filament: Some(
                trays
                    .iter()
                    .enumerate()
                    .map(|(i, (material, color))| Tray {
                        at: TrayRef::Unit { unit: 0, slot: i as u8 },
                        material: (!material.is_empty()).then(|| (*material).to_owned()),
                        color: Rgb::parse(color),
                    })
                    .collect(),
            ),
        }
    }

    fn klipper(id: &str) -> FleetPrinter {
        FleetPrinter {
            kind: PrinterKind::Klipper,
            model: Some("Voron 2.4".into()),
            filament: None,
            ..bambu(id, "x", &[])
        }
    }

    fn job(id: i64, model: &str, needs: &[(u32, &str, &str)]) -> QueuedJob {
        QueuedJob {
            id,
            priority: 0,
            position: id,
            deadline: None,
            not_before: None,
            held: false,
            awaiting_approval: false,
            target: Target::Any,
            file: FileFacts {
                kind: FileKind::Gcode3mf,
                model_id: Some(model.into()),
                model: None,
                nozzle: Some(0.4),
            },
            nozzle: None,
            needs: needs
                .iter()
                .map(|(slot, material, color)| Need {
                    slot: *slot,
                    material: Some((*material).into()),
                    color: Rgb::parse(color),
                })
                .collect(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    fn assigned(decision: &Decision) -> Vec<(i64, &str)> {
        decision.assignments.iter().map(|a| (a.job, a.printer.as_str())).collect()
    }

    fn reason(decision: &Decision, job: i64) -> (&'static str, &str) {
        let w = decision.waiting.iter().find(|w| w.job == job).expect("the job waits");
        (w.code, w.reason.as_str())
    }

    #[test]
    fn priority_then_deadline_then_position() {
        let mut jobs =
            vec![job(1, "C12", &[]), job(2, "C12", &[]), job(3, "C12", &[]), job(4, "C12", &[])];
        jobs[1].deadline = Some(5_000);
        jobs[2].priority = 1;
        jobs[3].deadline = Some(1_000);
        let order: Vec<i64> = order(&jobs).iter().map(|j| j.id).collect();
        assert_eq!(order, vec![3, 4, 2, 1]);
        let printers = [bambu("a", "C12", &[])];
        let decision = decide(&jobs, &printers, 0);
        assert_eq!(assigned(&decision), vec![(3, "a")]);
        assert_eq!(reason(&decision, 1).0, "printers_busy");
    }

    #[test]
    fn a_job_that_cannot_go_does_not_block_the_next() {
        let jobs =
            [job(1, "C12", &[(1, "PETG", "#FF6A13")]), job(2, "C12", &[(1, "PLA", "#FFFFFF")])];
        let printers = [bambu("a", "C12", &[("PLA", "#FFFFFF")])];
        let decision = decide(&jobs, &printers, 0);
        assert_eq!(assigned(&decision), vec![(2, "a")]);
        let (code, why) = reason(&decision, 1);
        assert_eq!(code, "filament_not_loaded");
        assert!(why.contains("slot 1: PETG #FF6A13"), "{why}");
    }

    #[test]
    fn the_printer_with_the_filament_loaded_is_preferred_and_mapped() {
        let jobs = [job(1, "C12", &[(1, "PLA", "#FFFFFF"), (3, "PETG", "#FF6A13")])];
        let printers = [
            bambu("a", "C12", &[("PLA", "#FFFFFF")]),
            bambu("b", "C12", &[("PETG", "#F46A1A"), ("PLA", "#FAFAFA")]),
            bambu("c", "C12", &[("PETG", "#FF6A13"), ("PLA", "#FFFFFF")]),
        ];
        let decision = decide(&jobs, &printers, 0);
        assert_eq!(assigned(&decision), vec![(1, "c")], "the exact colours win");
        let mapping: Vec<(u32, i32)> = decision.assignments[0]
            .mapping
            .iter()
            .map(|m| (m.slot, m.tray.bambu_index()))
            .collect();
        assert_eq!(mapping, vec![(1, 1), (3, 0)]);
        assert!(decision.assignments[0].filament_checked);
    }

    #[test]
    fn a_printer_that_does_not_report_filament_is_the_last_resort() {
        let mut gcode = job(1, "", &[(1, "ABS", "#2828C8")]);
        gcode.file = FileFacts {
            kind: FileKind::Gcode,
            model_id: None,
            model: Some("Voron 2.4".into()),
            nozzle: Some(0.4),
        };
        let decision = decide(std::slice::from_ref(&gcode), &[klipper("v")], 0);
        assert_eq!(assigned(&decision), vec![(1, "v")]);
        assert!(!decision.assignments[0].filament_checked);
    }

    #[test]
    fn files_go_only_to_their_kind_model_nozzle_and_target() {
        let mut wrong_nozzle = job(1, "C12", &[]);
        wrong_nozzle.nozzle = Some(0.6);
        let a1 = job(2, "N2S", &[]);
        let mut named = job(3, "C12", &[]);
        named.target = Target::Printer("b".into());
        let mut by_model = job(4, "C12", &[]);
        by_model.target = Target::Model("Bambu Lab P1S".into());
        let printers = [bambu("a", "C12", &[]), bambu("b", "C12", &[]), klipper("v")];
        let decision = decide(&[wrong_nozzle, a1, named, by_model], &printers, 0);
        assert_eq!(assigned(&decision), vec![(3, "b"), (4, "a")]);
        let (code, why) = reason(&decision, 1);
        assert_eq!(code, "no_printer_fits");
        assert!(why.contains("0.6 mm nozzle"), "{why}");
        let (code, why) = reason(&decision, 2);
        assert_eq!(code, "no_printer_fits");
        assert!(why.contains("Bambu Lab A1"), "{why}");
        assert!(why.contains("v: a sliced 3MF prints on Bambu printers"), "{why}");
    }

    #[test]
    fn the_furthest_reason_is_the_one_shown() {
        let jobs = [job(1, "C12", &[])];
        let mut offline = bambu("a", "C12", &[]);
        offline.online = false;
        let mut busy = bambu("b", "C12", &[]);
        busy.free = false;
        busy.status = "printing".into();
        let mut dirty = bambu("c", "C12", &[]);
        dirty.plate_clear = false;
        assert_eq!(
            reason(&decide(&jobs, &[offline.clone(), busy.clone(), dirty], 0), 1),
            ("plate_not_clear", "waits for a person to confirm the plate clear on c")
        );
        assert_eq!(
            reason(&decide(&jobs, &[offline.clone(), busy], 0), 1),
            ("printers_busy", "the printers that fit are busy: b (printing)")
        );
        assert_eq!(reason(&decide(&jobs, &[offline], 0), 1).0, "printer_offline");
        assert_eq!(reason(&decide(&jobs, &[], 0), 1), ("no_printer_fits", "there are no printers"));
    }

    #[test]
    fn held_unapproved_and_future_jobs_wait_and_say_why() {
        let mut held = job(1, "C12", &[]);
        held.held = true;
        let mut approval = job(2, "C12", &[]);
        approval.awaiting_approval = true;
        let mut later = job(3, "C12", &[]);
        later.not_before = Some(10_000);
        let printers = [bambu("a", "C12", &[])];
        let decision = decide(&[held, approval, later.clone()], &printers, 5_000);
        assert!(decision.assignments.is_empty());
        assert_eq!(reason(&decision, 1).0, "held");
        assert_eq!(reason(&decision, 2).0, "awaiting_approval");
        assert_eq!(reason(&decision, 3).0, "not_before");
        assert_eq!(assigned(&decide(&[later], &printers, 10_000)), vec![(3, "a")]);
    }

    proptest::proptest! {
        /// Whatever the queue and fleet: no printer gets two jobs, no job two printers,
        /// every job is either assigned or waits with a reason, and every assignment is to a
        /// free, online, approved printer with a clear plate.
        #[test]
        fn decisions_are_consistent(
            jobs in proptest::collection::vec((0i32..3, 0u8..4, proptest::bool::ANY), 0..30),
            fleet in proptest::collection::vec((0u8..4, proptest::bool::ANY, proptest::bool::ANY, proptest::bool::ANY), 0..12),
        ) {
            const MODELS: [&str; 4] = ["C12", "C11", "N1", "BL-P001"];
            const COLORS: [&str; 4] = ["#FFFFFF", "#000000", "#FF6A13", "#2850E0"];
            let jobs: Vec<QueuedJob> = jobs.iter().enumerate().map(|(i, (priority, m, held))| {
                let mut j = job(i as i64, MODELS[*m as usize], &[(1, "PLA", COLORS[*m as usize])]);
                j.priority = *priority;
                j.held = *held;
                j
            }).collect();
            let printers: Vec<FleetPrinter> = fleet.iter().enumerate().map(|(i, (m, free, clear, online))| {
                let mut p = bambu(&format!("p{i}"), MODELS[*m as usize], &[("PLA", COLORS[i % 4])]);
                p.free = *free;
                p.plate_clear = *clear;
                p.online = *online;
                p
            }).collect();
            let decision = decide(&jobs, &printers, 0);
            let mut printers_used = std::collections::BTreeSet::new();
            for a in &decision.assignments {
                proptest::prop_assert!(printers_used.insert(a.printer.clone()));
                let p = printers.iter().find(|p| p.id == a.printer).unwrap();
                proptest::prop_assert!(p.free && p.plate_clear && p.online);
                let j = jobs.iter().find(|j| j.id == a.job).unwrap();
                proptest::prop_assert!(!j.held);
            }
            proptest::prop_assert_eq!(decision.assignments.len() + decision.waiting.len(), jobs.len());
        }
    }
}
