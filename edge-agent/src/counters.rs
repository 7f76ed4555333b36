//! The agent's own counters: what it refused or lost, counted where it happens and reported
//! to the hub in every health record (`RecordBody::AgentHealthV2`), so a farm's Prometheus
//! scrapes them from the hub.
//!
//! Counting is one relaxed atomic add: cheap enough for every refused payload. Each printer's
//! counters are handed out once, when its link starts; the map of printers is locked only
//! then and when a health record reads it. The counts start at zero with the process; the
//! hub reads them as Prometheus counters (a restart is a reset).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::PrinterId;

use crate::printer::bambu::link::LinkProblem;

/// The whole agent's counters, shared by every task that counts.
#[derive(Debug, Default)]
pub struct Counters {
    hub_reconnects: AtomicU64,
    hub_protocol_errors: AtomicU64,
    commands_refused: AtomicU64,
    printers: std::sync::RwLock<BTreeMap<PrinterId, Arc<PrinterCounters>>>,
}

/// One printer's counters; its link's recorder and its cameras hold them.
#[derive(Debug, Default)]
pub struct PrinterCounters {
    link_errors: AtomicU64,
    bad_payloads: AtomicU64,
    camera_errors: AtomicU64,
}

impl Counters {
    /// Counters for an agent serving `printers`.
    pub fn new(printers: impl IntoIterator<Item = PrinterId>) -> Counters {
        let printers = printers.into_iter().map(|p| (p, Arc::default())).collect();
        Counters { printers: std::sync::RwLock::new(printers), ..Counters::default() }
    }

    /// The counters of one printer this agent serves (fresh ones, not reported, for any
    /// other).
    pub fn printer(&self, printer: &PrinterId) -> Arc<PrinterCounters> {
        let printers = self.printers.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        printers.get(printer).cloned().unwrap_or_default()
    }

    /// Starts reporting `printer` (one the hub began managing), keeping any counts it had.
    pub fn add_printer(&self, printer: &PrinterId) -> Arc<PrinterCounters> {
        let mut printers = self.printers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        printers.entry(printer.clone()).or_default().clone()
    }

    /// Stops reporting `printer` (no longer served).
    pub fn remove_printer(&self, printer: &PrinterId) {
        let mut printers = self.printers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        printers.remove(printer);
    }

    /// A session with the hub ended in an error and will be retried.
    pub fn hub_reconnect(&self) {
        self.hub_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The hub sent something undecodable or broke the protocol.
    pub fn hub_protocol_error(&self) {
        self.hub_protocol_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A hub command was answered as failed without execution.
    pub fn command_refused(&self) {
        self.commands_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, as the wire carries them.
    pub fn snapshot(&self) -> proto::AgentCounters {
        proto::AgentCounters {
            hub_reconnects: self.hub_reconnects.load(Ordering::Relaxed),
            hub_protocol_errors: self.hub_protocol_errors.load(Ordering::Relaxed),
            commands_refused: self.commands_refused.load(Ordering::Relaxed),
            printers: self
                .printers
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .map(|(printer, counters)| proto::PrinterCounters {
                    printer: printer.clone(),
                    link_errors: counters.link_errors.load(Ordering::Relaxed),
                    bad_payloads: counters.bad_payloads.load(Ordering::Relaxed),
                    camera_errors: counters.camera_errors.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

impl PrinterCounters {
    /// Counts a problem the printer link reported: a refused payload or a failed
    /// connection. Problems that are states, not failures (read-only, unknown model), are
    /// not counted.
    pub fn link_problem(&self, problem: &LinkProblem) {
        let counter = match problem {
            LinkProblem::BadReport(_) => &self.bad_payloads,
            LinkProblem::WrongAccessCode { .. }
            | LinkProblem::KeyRefused { .. }
            | LinkProblem::Certificate { .. }
            | LinkProblem::Connection { .. } => &self.link_errors,
            LinkProblem::ReadOnly(_) | LinkProblem::UnknownModel(_) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One of the printer's cameras failed.
    pub fn camera_error(&self) {
        self.camera_errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reach_the_snapshot_per_printer() {
        let a = PrinterId::new("01P00A391800001").unwrap();
        let b = PrinterId::new("01P00A391800002").unwrap();
        let counters = Counters::new([b.clone(), a.clone()]);
        counters.hub_reconnect();
        counters.hub_reconnect();
        counters.hub_protocol_error();
        counters.command_refused();
        let printer_a = counters.printer(&a);
        printer_a.link_problem(&LinkProblem::BadReport("not JSON".into()));
        printer_a.link_problem(&LinkProblem::Connection { detail: "refused".into(), retry_ms: 0 });
        printer_a.link_problem(&LinkProblem::ReadOnly("read-only"));
        counters.printer(&b).camera_error();
        // A printer the agent does not serve counts nowhere.
        counters.printer(&PrinterId::new("01P00A391800009").unwrap()).camera_error();

        let snapshot = counters.snapshot();
        assert_eq!(
            (snapshot.hub_reconnects, snapshot.hub_protocol_errors, snapshot.commands_refused),
            (2, 1, 1)
        );
        assert_eq!(
            snapshot.printers,
            [
                proto::PrinterCounters {
                    printer: a,
                    link_errors: 1,
                    bad_payloads: 1,
                    camera_errors: 0
                },
                proto::PrinterCounters {
                    printer: b,
                    link_errors: 0,
                    bad_payloads: 0,
                    camera_errors: 1
                },
            ]
        );
    }
}
