//! Events derived from changes of the normalised state (sans-IO, vendor-neutral).
//!
//! The deriver remembers the job in progress, so a reconnect in the middle of a print does
//! not announce a new job, and a cancel (`print_error` 0300_400C seen during the job) ends
//! the job as cancelled rather than failed.

use std::collections::BTreeSet;

use proto::{JobOutcome, PrintState, PrinterEventKind, PrinterState};

/// Bambu's "task cancelled" print error.
pub const PRINT_ERROR_CANCELLED: u32 = 0x0300_400C;

/// A job the outbox recorded as in progress when the agent (re)started: the printer link
/// goes on with it instead of announcing it again, and ends it with the outcome the printer
/// shows when it finished while nobody watched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResumedJob {
    pub name: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct EventDeriver {
    job: Option<Job>,
    /// The job was resumed and the printer not yet seen since.
    resumed: bool,
}

#[derive(Debug, Clone)]
struct Job {
    name: Option<String>,
    cancelled: bool,
}

impl EventDeriver {
    pub fn new() -> EventDeriver {
        EventDeriver::default()
    }

    /// A deriver that knows the job in progress from before a restart.
    pub fn resuming(job: Option<ResumedJob>) -> EventDeriver {
        EventDeriver {
            resumed: job.is_some(),
            job: job.map(|j| Job { name: j.name, cancelled: false }),
        }
    }

    /// The events that lead from `before` to `after`, in a stable order.
    pub fn derive(&mut self, before: &PrinterState, after: &PrinterState) -> Vec<PrinterEventKind> {
        let mut events = Vec::new();
        if before.state == PrintState::Offline && after.state != PrintState::Offline {
            events.push(PrinterEventKind::Reachable);
        }
        if before.state != after.state {
            events.push(PrinterEventKind::StateChanged { from: before.state, to: after.state });
        }
        if before.control != after.control {
            events
                .push(PrinterEventKind::ControlChanged { from: before.control, to: after.control });
        }
        self.job_events(before, after, &mut events);
        set_changes(
            &before.hms,
            &after.hms,
            PrinterEventKind::HmsRaised,
            PrinterEventKind::HmsCleared,
            &mut events,
        );
        if before.print_error != after.print_error {
            if let Some(code) = before.print_error {
                events.push(PrinterEventKind::PrintErrorCleared { code });
            }
            if let Some(code) = after.print_error {
                events.push(PrinterEventKind::PrintErrorRaised { code });
            }
        }
        if before.active_tray != after.active_tray && after.state != PrintState::Offline {
            events.push(PrinterEventKind::ActiveTrayChanged {
                from: before.active_tray,
                to: after.active_tray,
            });
        }
        for unit in &after.ams {
            let old_unit = before.ams.iter().find(|u| u.id == unit.id);
            for tray in &unit.trays {
                let old = old_unit.and_then(|u| u.trays.iter().find(|t| t.slot == tray.slot));
                // Remaining filament changes all through a print; only a different spool counts.
                let same = old.is_some_and(|o| {
                    o.material == tray.material
                        && o.color == tray.color
                        && o.tray_uuid == tray.tray_uuid
                });
                if !same && (old.is_some() || !before.ams.is_empty()) {
                    events
                        .push(PrinterEventKind::TrayChanged { unit: unit.id, tray: tray.clone() });
                }
            }
        }
        events
    }

    fn job_events(
        &mut self,
        before: &PrinterState,
        after: &PrinterState,
        events: &mut Vec<PrinterEventKind>,
    ) {
        if let Some(job) = &mut self.job
            && after.print_error == Some(PRINT_ERROR_CANCELLED)
        {
            job.cancelled = true;
        }
        // The first sight of the printer after a restart, with a job resumed: if the printer
        // shows the end of another job, the resumed one ended unseen before it, its outcome
        // unknown.
        if self.resumed && after.state != PrintState::Offline {
            self.resumed = false;
            let ended = matches!(after.state, PrintState::Finished | PrintState::Failed);
            if ended
                && let Some(job) = &self.job
                && after.job_name.is_some()
                && job.name != after.job_name
            {
                let job = self.job.take();
                events.push(PrinterEventKind::JobFinished {
                    job_name: job.and_then(|j| j.name),
                    outcome: JobOutcome::Failed { print_error: None, hms: Vec::new() },
                });
                return;
            }
        }
        let running = matches!(
            after.state,
            PrintState::Preparing | PrintState::Printing | PrintState::Paused
        );
        // A different job name while active means the printer moved on while we were away.
        if running
            && self
                .job
                .as_ref()
                .is_some_and(|j| after.job_name.is_some() && j.name != after.job_name)
        {
            let job = self.job.take();
            events.push(PrinterEventKind::JobFinished {
                job_name: job.and_then(|j| j.name),
                outcome: JobOutcome::Failed { print_error: None, hms: Vec::new() },
            });
        }
        if running && self.job.is_none() {
            self.job = Some(Job {
                name: after.job_name.clone(),
                cancelled: after.print_error == Some(PRINT_ERROR_CANCELLED),
            });
            events.push(PrinterEventKind::JobStarted {
                job_name: after.job_name.clone(),
                total_layers: after.total_layers,
            });
        }
        if before.state != PrintState::Paused && after.state == PrintState::Paused {
            events.push(PrinterEventKind::JobPaused { reason: after.stage });
        }
        if before.state == PrintState::Paused && after.state == PrintState::Printing {
            events.push(PrinterEventKind::JobResumed);
        }
        let ended = match after.state {
            PrintState::Finished => Some(false),
            PrintState::Failed => Some(true),
            // Some firmware drops straight back to idle after a cancel.
            PrintState::Idle => Some(true),
            _ => None,
        };
        if let (Some(failed), Some(job)) = (ended, self.job.as_ref()) {
            let outcome = if job.cancelled || after.print_error == Some(PRINT_ERROR_CANCELLED) {
                JobOutcome::Cancelled
            } else if failed {
                JobOutcome::Failed { print_error: after.print_error, hms: after.hms.clone() }
            } else {
                JobOutcome::Succeeded
            };
            let name = job.name.clone().or_else(|| after.job_name.clone());
            self.job = None;
            events.push(PrinterEventKind::JobFinished { job_name: name, outcome });
        }
    }
}

fn set_changes<T: Ord + Copy>(
    before: &[T],
    after: &[T],
    raised: fn(T) -> PrinterEventKind,
    cleared: fn(T) -> PrinterEventKind,
    events: &mut Vec<PrinterEventKind>,
) {
    let before: BTreeSet<T> = before.iter().copied().collect();
    let after_set: BTreeSet<T> = after.iter().copied().collect();
    events.extend(after_set.difference(&before).map(|&x| raised(x)));
    events.extend(before.difference(&after_set).map(|&x| cleared(x)));
}
