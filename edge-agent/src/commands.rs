//! Hub commands: routed per printer, executed at most once, never after their expiry.
//!
//! ```text
//! sync client ─route (never waits)─▶ queue A (bounded) ─▶ executor A ─▶ printer link A
//!                                 ├▶ queue B (bounded) ─▶ executor B ─▶ printer link B
//!                                 └▶ refusals (bounded) ─▶ refuser: a failed result
//! ```
//!
//! # Constraints
//!
//! - **The sync connection never waits on a command.** [`CommandRouter::route`] is
//!   synchronous: a command goes into its printer's queue with `try_send` or is refused.
//! - **Printers are independent.** Each printer has its own executor and queue, so a printer
//!   that never acknowledges (its link down, an ACK timeout) holds up only its own commands:
//!   a stop for printer B never waits behind printer A.
//! - **At most once, never after expiry.** Every path to an outcome goes through the
//!   outbox's durable ledger ([`Outbox::command_begin`](crate::outbox::Outbox::command_begin)
//!   then `command_finish`): a command id that the ledger has seen is never executed again.
//!   The executor checks expiry and preconditions immediately before execution.
//! - **No clock decides.** A command's expiry (the hub's clock) becomes a monotonic deadline
//!   when the command arrives ([`HubClock::deadline`]), and the plate check compares record
//!   sequence numbers: an agent hours off decides as one on time (see [`crate::clock`]).
//!
//! # The plate check
//!
//! A start carries `PlateClearThrough { through }`: a person confirmed the plate clear when
//! the hub had this agent's records through seq `through`. A job end recorded after that
//! (seq above `through`) happened after the confirmation, so what it left on the plate was
//! never confirmed gone: the start is refused. Job ends are counted at two points, so one on
//! its way from the printer link to the outbox is never missed: the recorder counts each in
//! the printer's [`PrinterView`] before passing its record on, and the outbox counts those
//! it appended and keeps the latest's seq durably ([`JobEndFacts`]). If the view has seen
//! more than the outbox has, the newest job end has no seq yet (it will get one above
//! anything the hub has), so the start is refused too. The printer link emits a job end
//! before the state it leads to, so by the time the view shows the printer finished, the
//! job end is counted. A confirmation by time from a hub of version 3
//! (`PlateConfirmedClear`) is answered `Unsupported`: it cannot be decided without clocks.
//!
//! A job end the agent never saw: one that happened (or a whole job that ran) while the
//! agent or its printer link was down, or whose record was lost uncommitted in a crash.
//! The link derives no `JobFinished` for it (it finds the printer already finished), so the
//! recorder marks one whenever it finds the printer idle, finished or failed as it starts
//! watching (after `Offline`: at start, after a lost link), at the seq the next record gets
//! ([`crate::outbox::JobEnd::seen`] false). A start confirmed before the agent (re)connected
//! to the printer is therefore refused once; confirmed again, it runs.
//!
//! # Overflow
//!
//! When a printer's queue is full, or the command names a printer this agent does not have,
//! the command is refused at once and answered with `CommandOutcome::Failed` and a reason.
//! **A refusal is written to the ledger like an execution** (begun, then finished as
//! failed) before its result is recorded. The hub redelivers commands it has no result for
//! (after a reconnect, the result may still sit in the outbox); without the ledger entry, such
//! a redelivery could find the queue free and execute a command the hub has already been told
//! failed: one command, two outcomes, and a printer acting on something its operator saw
//! refused. With it, the redelivery reads `Seen` and is skipped. The ledger decides the race
//! between a refusal and an execution of the same id: whichever begins first owns the
//! outcome, the other does nothing.
//!
//! Every refusal is counted (`commands_refused` in the agent's health record).
//!
//! Refusals are written by one task fed through a bounded queue of its own. If even that is
//! full (a hub flooding the agent), the command is dropped with a warning and a count, and
//! nothing is written: no result was promised, so a later redelivery may still execute it
//! (within its expiry), which is what the hub asked for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use proto::{
    Command, CommandAction, CommandOutcome, CommandResult, ControlCapability, PrintState,
    PrinterId, PrinterStateV2, RecordBody, UnixMillis,
};
use tokio::sync::{mpsc, watch};

use crate::clock::HubClock;
use crate::counters::Counters;
use crate::outbox::{CommandLedger, JobEndFacts};
use crate::printer::bambu::link::LinkHandle;
use crate::sync::client::SharedOutbox;

mod start_job;

pub use start_job::{SharedFiles, Uploader};

/// Commands waiting for one printer, beyond the one it executes.
pub const PRINTER_QUEUE: usize = 16;

/// Refusals waiting to be written.
const REFUSAL_QUEUE: usize = 256;

/// Where records go (the outbox writer).
pub type Records = mpsc::Sender<(UnixMillis, RecordBody)>;

/// What a printer looks like to its command executor.
#[derive(Debug, Clone, Default)]
pub struct PrinterView {
    pub state: PrinterStateV2,
    /// Job ends the printer link reported since the agent started, counted before their
    /// records go to the outbox.
    pub job_ends: u64,
    /// The nozzle's diameter in micrometres, when the printer says it.
    pub nozzle_um: Option<u32>,
}

/// A command in its printer's queue, with its expiry as a monotonic deadline.
#[derive(Debug)]
struct Queued {
    command: Command,
    deadline: Instant,
}

/// One printer as the executors see it: its link and its live view.
#[derive(Debug)]
pub struct PrinterTarget {
    pub link: LinkHandle,
    pub view: watch::Receiver<PrinterView>,
    /// How a job's file gets onto the printer; `None` where kitt cannot upload to it.
    pub uploader: Option<Uploader>,
}

/// Hands the hub's commands to the printers' executors; never waits.
#[derive(Debug, Clone)]
pub struct CommandRouter {
    /// Printers come and go while the agent runs (those the hub manages); the lock is held
    /// only to look up or change a queue, never across an `.await`.
    queues: Arc<std::sync::RwLock<HashMap<PrinterId, mpsc::Sender<Queued>>>>,
    refusals: mpsc::Sender<(Command, String)>,
    counters: Arc<Counters>,
    clock: Arc<HubClock>,
    /// What a new printer's executor needs.
    spawner: Arc<ExecutorSpawner>,
}

#[derive(Debug)]
struct ExecutorSpawner {
    queue: usize,
    outbox: SharedOutbox,
    records: Records,
    files: Option<SharedFiles>,
    tasks: tokio_util::task::TaskTracker,
}

impl ExecutorSpawner {
    fn spawn(&self, printer: PrinterId, target: PrinterTarget) -> mpsc::Sender<Queued> {
        let (queue_tx, queue_rx) = mpsc::channel(self.queue);
        let span = tracing::info_span!("commands", printer = %printer);
        self.tasks.spawn(tracing::Instrument::instrument(
            executor(
                queue_rx,
                printer,
                target,
                self.outbox.clone(),
                self.records.clone(),
                self.files.clone(),
            ),
            span,
        ));
        queue_tx
    }
}

/// What [`CommandRouter::route`] did with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// In its printer's queue.
    Queued,
    /// Refused; a failed result with this reason is on its way.
    Refused(String),
    /// Refused, and the refusal queue is full too: dropped without an answer.
    Dropped,
}

impl CommandRouter {
    /// Puts `command` in its printer's queue, or refuses it; returns at once. Its expiry
    /// becomes a deadline on the monotonic clock now, by the hub's clock as last measured.
    pub fn route(&self, command: Command) -> Routed {
        let deadline = self.clock.deadline(command.expires_at);
        let queue = self
            .queues
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&command.printer)
            .cloned();
        let reason = match queue {
            None => format!("this agent has no printer {}", command.printer),
            Some(queue) => match queue.try_send(Queued { command, deadline }) {
                Ok(()) => return Routed::Queued,
                Err(mpsc::error::TrySendError::Full(refused)) => {
                    let refused = refused.command;
                    let reason = format!(
                        "printer {}'s command queue is full ({} waiting); not executed",
                        refused.printer,
                        queue.max_capacity()
                    );
                    return self.refuse(refused, reason);
                }
                Err(mpsc::error::TrySendError::Closed(refused)) => {
                    let refused = refused.command;
                    let reason = format!("printer {}'s executor has stopped", refused.printer);
                    return self.refuse(refused, reason);
                }
            },
        };
        self.refuse(command, reason)
    }

    /// Starts executing `printer`'s commands through `target` (a printer the hub began
    /// managing), in place of any executor it had: the old one finishes what it holds.
    pub fn add_printer(&self, printer: PrinterId, target: PrinterTarget) {
        let queue = self.spawner.spawn(printer.clone(), target);
        self.queues.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(printer, queue);
    }

    /// Stops taking commands for `printer`; its executor finishes what is queued and ends.
    pub fn remove_printer(&self, printer: &PrinterId) {
        self.queues.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(printer);
    }

    fn refuse(&self, command: Command, reason: String) -> Routed {
        self.counters.command_refused();
        tracing::warn!(command = %command.id, printer = %command.printer, %reason,
            "Refused a hub command.");
        match self.refusals.try_send((command, reason.clone())) {
            Ok(()) => Routed::Refused(reason),
            Err(error) => {
                let (command, _) = error.into_inner();
                tracing::warn!(command = %command.id, printer = %command.printer,
                    "Too many refused commands; dropped one without an answer.");
                Routed::Dropped
            }
        }
    }
}

/// Starts an executor per printer and the refuser; returns the router that feeds them. The
/// tasks end when the router (every clone) is dropped and their queues drain.
/// `files` is the agent's file cache, which job starts upload from.
pub fn start(
    printers: HashMap<PrinterId, PrinterTarget>,
    outbox: SharedOutbox,
    records: Records,
    counters: Arc<Counters>,
    clock: Arc<HubClock>,
    files: Option<SharedFiles>,
    tasks: &tokio_util::task::TaskTracker,
) -> CommandRouter {
    let sinks = Sinks { outbox, records, files };
    start_with(printers, PRINTER_QUEUE, sinks, counters, clock, tasks)
}

/// Where executors read and write.
struct Sinks {
    outbox: SharedOutbox,
    records: Records,
    files: Option<SharedFiles>,
}

fn start_with(
    printers: HashMap<PrinterId, PrinterTarget>,
    queue: usize,
    Sinks { outbox, records, files }: Sinks,
    counters: Arc<Counters>,
    clock: Arc<HubClock>,
    tasks: &tokio_util::task::TaskTracker,
) -> CommandRouter {
    let spawner = Arc::new(ExecutorSpawner {
        queue,
        outbox: outbox.clone(),
        records: records.clone(),
        files,
        tasks: tasks.clone(),
    });
    let mut queues = HashMap::new();
    for (printer, target) in printers {
        queues.insert(printer.clone(), spawner.spawn(printer, target));
    }
    let (refusals_tx, refusals_rx) = mpsc::channel(REFUSAL_QUEUE);
    tasks.spawn(refuser(refusals_rx, outbox, records));
    CommandRouter {
        queues: Arc::new(std::sync::RwLock::new(queues)),
        refusals: refusals_tx,
        counters,
        clock,
        spawner,
    }
}

/// Executes one printer's commands in order, each at most once, never after its expiry,
/// only when its preconditions hold; reports each result as a record.
async fn executor(
    mut commands: mpsc::Receiver<Queued>,
    printer_id: PrinterId,
    printer: PrinterTarget,
    outbox: SharedOutbox,
    records: Records,
    files: Option<SharedFiles>,
) {
    while let Some(Queued { command, deadline }) = commands.recv().await {
        let id = command.id;
        let outcome = match begin(&outbox, &command).await {
            Some(CommandLedger::New) => match &command.action {
                CommandAction::StartJob(job) => {
                    let files = files.as_ref();
                    start_job::run(&command, job, deadline, &printer_id, &printer, &outbox, files)
                        .await
                }
                _ => execute(&command, deadline, &printer_id, &printer, &outbox).await,
            },
            Some(CommandLedger::Seen { outcome: Some(_) }) => {
                tracing::debug!(command = %id, "Command already answered; not again.");
                continue;
            }
            Some(CommandLedger::Seen { outcome: None }) => CommandOutcome::Failed {
                detail: "interrupted by an agent restart; not retried".into(),
            },
            None => continue,
        };
        tracing::info!(command = %id, printer = %command.printer, ?outcome, "Command done.");
        if !finish(&outbox, &records, &command, outcome).await {
            return;
        }
    }
}

/// Answers refused commands with a failed result, through the ledger (see the module
/// documentation for why).
async fn refuser(
    mut refusals: mpsc::Receiver<(Command, String)>,
    outbox: SharedOutbox,
    records: Records,
) {
    while let Some((command, reason)) = refusals.recv().await {
        match begin(&outbox, &command).await {
            Some(CommandLedger::New) => {}
            // Begun elsewhere (executing now, answered, or interrupted by a restart, which
            // its printer's executor reports when the hub redelivers it): not ours to answer.
            Some(CommandLedger::Seen { .. }) | None => continue,
        }
        let outcome = CommandOutcome::Failed { detail: reason };
        if !finish(&outbox, &records, &command, outcome).await {
            return;
        }
    }
}

/// Records `command` as begun in the durable ledger; `None` when that failed (then it must
/// not run: without a ledger entry, it could run twice).
async fn begin(outbox: &SharedOutbox, command: &Command) -> Option<CommandLedger> {
    let (id, expires_at) = (command.id, command.expires_at);
    let outbox = outbox.clone();
    let ledger = tokio::task::spawn_blocking(move || {
        outbox.lock().unwrap_or_else(|p| p.into_inner()).command_begin(id, expires_at)
    })
    .await;
    match ledger {
        Ok(Ok(ledger)) => Some(ledger),
        Ok(Err(error)) => {
            tracing::error!(command = %id, %error, "Cannot record a command; not executing it.");
            None
        }
        Err(_) => None,
    }
}

/// Records the outcome in the ledger and sends the result record; `false` when the writer
/// is gone (the agent is stopping).
async fn finish(
    outbox: &SharedOutbox,
    records: &Records,
    command: &Command,
    outcome: CommandOutcome,
) -> bool {
    let id = command.id;
    let finished = {
        let outbox = outbox.clone();
        let outcome = outcome.clone();
        tokio::task::spawn_blocking(move || {
            outbox.lock().unwrap_or_else(|p| p.into_inner()).command_finish(id, &outcome)
        })
        .await
    };
    if let Ok(Err(error)) = finished {
        tracing::error!(command = %id, %error, "Cannot record a command's outcome.");
    }
    let result = CommandResult { command: id, printer: command.printer.clone(), outcome };
    records.send((UnixMillis::now(), RecordBody::CommandResult(result))).await.is_ok()
}

async fn execute(
    command: &Command,
    deadline: Instant,
    printer_id: &PrinterId,
    printer: &PrinterTarget,
    outbox: &SharedOutbox,
) -> CommandOutcome {
    if Instant::now() >= deadline {
        return CommandOutcome::Expired;
    }
    if let Some(failed) = check(command, printer_id, printer, outbox).await {
        return failed;
    }
    printer.link.send(command.action.clone()).await
}

/// The outcome to report if a precondition of `command` does not hold now.
async fn check(
    command: &Command,
    printer_id: &PrinterId,
    printer: &PrinterTarget,
    outbox: &SharedOutbox,
) -> Option<CommandOutcome> {
    // The view first, then the outbox: a job end the view has not counted yet is one the
    // outbox cannot have either, and one it counted is either in the outbox or still on
    // its way (seen as `appended` falling short).
    let view = printer.view.borrow().clone();
    let job_ends = if command.preconditions.iter().any(needs_job_ends) {
        match job_end_facts(outbox, printer_id).await {
            Some(facts) => facts,
            None => {
                return Some(CommandOutcome::Failed {
                    detail: "cannot read the printer's job ends; not started".into(),
                });
            }
        }
    } else {
        JobEndFacts::default()
    };
    unmet_precondition(command, &view, &job_ends)
}

fn needs_job_ends(precondition: &proto::Precondition) -> bool {
    use proto::Precondition;
    matches!(precondition, Precondition::PlateClearThrough { .. })
}

async fn job_end_facts(outbox: &SharedOutbox, printer: &PrinterId) -> Option<JobEndFacts> {
    let (outbox, printer) = (outbox.clone(), printer.clone());
    tokio::task::spawn_blocking(move || {
        outbox.lock().unwrap_or_else(|p| p.into_inner()).job_ends(&printer)
    })
    .await
    .ok()
}

/// The first precondition of `command` that does not hold, as the outcome to report.
fn unmet_precondition(
    command: &Command,
    view: &PrinterView,
    job_ends: &JobEndFacts,
) -> Option<CommandOutcome> {
    use proto::Precondition;
    let idle =
        matches!(view.state.state, PrintState::Idle | PrintState::Finished | PrintState::Failed);
    for precondition in &command.preconditions {
        let detail = match precondition {
            Precondition::StateIn(states) if !states.contains(&view.state.state) => {
                format!("the printer is {:?}", view.state.state)
            }
            Precondition::ControlAvailable if view.state.control == ControlCapability::ReadOnly => {
                "the printer is read-only (enable Developer Mode in LAN-only mode)".into()
            }
            Precondition::PlateClearThrough { by, through } => {
                if !idle {
                    format!("the printer is {:?}", view.state.state)
                } else if view.job_ends > job_ends.appended {
                    format!(
                        "a job just ended on the printer, after {by} confirmed the plate clear; \
                         check the plate and confirm again"
                    )
                } else if let Some(end) = job_ends.latest.filter(|end| end.seq > *through) {
                    let what = if end.seen {
                        "a job ended on the printer"
                    } else {
                        "the agent found the printer idle or finished when it (re)connected \
                         to it, so a job may have ended unseen"
                    };
                    format!(
                        "{what} (record {}) after {by} confirmed the plate clear (the hub had \
                         records through {through}); check the plate and confirm again",
                        end.seq
                    )
                } else {
                    continue;
                }
            }
            Precondition::FilamentLoaded { slot, material, color, tolerance_centi } => {
                match filament_mismatch(view, *slot, material, *color, *tolerance_centi) {
                    Some(detail) => detail,
                    None => continue,
                }
            }
            Precondition::NozzleDiameter { micrometres } => match view.nozzle_um {
                Some(have) if have.abs_diff(*micrometres) <= 10 => continue,
                Some(have) => format!(
                    "the printer has a {} mm nozzle; the file was sliced for {} mm",
                    f64::from(have) / 1000.0,
                    f64::from(*micrometres) / 1000.0
                ),
                None => format!(
                    "the printer does not say its nozzle; the file was sliced for {} mm",
                    f64::from(*micrometres) / 1000.0
                ),
            },
            Precondition::PlateConfirmedClear { .. } => {
                // From a hub of version 3: a confirmation stamped with the hub's clock, to be
                // compared with a job end stamped with this machine's, which may have been
                // hours off when it was stamped. Not decided by clocks: refused.
                return Some(CommandOutcome::Unsupported {
                    detail: "the hub sent a plate confirmation by time, which this agent no \
                             longer trusts (clocks can be hours apart): upgrade kitt-hub"
                        .into(),
                });
            }
            _ => continue,
        };
        return Some(CommandOutcome::PreconditionFailed {
            precondition: precondition.clone(),
            detail,
        });
    }
    None
}

/// Why the filament in `slot` is not what a start needs; `None` when it is.
fn filament_mismatch(
    view: &PrinterView,
    slot: proto::SlotRef,
    material: &str,
    color: Option<proto::Rgb>,
    tolerance_centi: u32,
) -> Option<String> {
    let name = match slot.unit {
        Some(unit) => format!("AMS {} slot {}", unit + 1, slot.slot + 1),
        None => "the external spool".to_owned(),
    };
    let Some(loaded) =
        // Outside any unit (Bambu's external spool) there is one slot, whatever its number.
        view.state.filament.iter().find(|f| {
            f.unit == slot.unit && (slot.unit.is_none() || f.tray.slot == slot.slot)
        })
    else {
        return Some(format!("the printer reports no {name}; the job needs {material} there"));
    };
    let loaded_material = loaded.tray.material.as_deref().unwrap_or("");
    if !material.is_empty() && !loaded_material.eq_ignore_ascii_case(material) {
        let holds = if loaded_material.is_empty() { "nothing known" } else { loaded_material };
        return Some(format!("{name} holds {holds}; the job needs {material}"));
    }
    let want = color?;
    let Some(have) = loaded.tray.color else {
        return Some(format!("{name} reports no colour; the job needs {}", want.to_hex()));
    };
    let distance = want.delta_e(have);
    (distance * 100.0 > f64::from(tolerance_centi)).then(|| {
        format!(
            "{name} holds {} {}, the job needs {} (ΔE {distance:.1}, more than the {:.1} allowed)",
            loaded_material,
            have.to_hex(),
            want.to_hex(),
            f64::from(tolerance_centi) / 100.0
        )
    })
}

#[cfg(test)]
mod tests;
