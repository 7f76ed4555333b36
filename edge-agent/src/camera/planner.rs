//! When to take a snapshot: sans-IO, fed the printer's events and states and the time.
//!
//! Moments that matter: the job starts, the first layer is done, every `every` while
//! printing, every `every_layers` layers, a pause, a failure, the end. Nothing while idle.

use std::time::Duration;

use proto::{
    JobOutcome, PrintState, PrinterEventKind, PrinterStateV2, SnapshotTrigger, UnixMillis,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// A snapshot at least this often while printing (`None`: never by time).
    pub every: Option<Duration>,
    /// A snapshot every this many layers (`None`: never by layer).
    pub every_layers: Option<u32>,
}

impl Default for SnapshotPolicy {
    fn default() -> SnapshotPolicy {
        SnapshotPolicy { every: Some(Duration::from_secs(300)), every_layers: None }
    }
}

#[derive(Debug, Clone)]
pub struct SnapshotPlanner {
    policy: SnapshotPolicy,
    printing: bool,
    first_layer_done: bool,
    /// The layer of the last layer-triggered snapshot.
    last_layer_shot: Option<u32>,
    /// When the last snapshot of any trigger was taken during this job.
    last_shot_at: Option<UnixMillis>,
}

impl SnapshotPlanner {
    pub fn new(policy: SnapshotPolicy) -> SnapshotPlanner {
        SnapshotPlanner {
            policy,
            printing: false,
            first_layer_done: false,
            last_layer_shot: None,
            last_shot_at: None,
        }
    }

    /// An event from the printer link.
    pub fn on_event(
        &mut self,
        kind: &PrinterEventKind,
        now: UnixMillis,
    ) -> Option<SnapshotTrigger> {
        let trigger = match kind {
            PrinterEventKind::JobStarted { .. } => {
                self.printing = true;
                self.first_layer_done = false;
                self.last_layer_shot = None;
                SnapshotTrigger::JobStarted
            }
            PrinterEventKind::JobPaused { .. } => SnapshotTrigger::Paused,
            PrinterEventKind::JobFinished { outcome, .. } => {
                self.printing = false;
                match outcome {
                    JobOutcome::Succeeded => SnapshotTrigger::Finished,
                    _ => SnapshotTrigger::Failed,
                }
            }
            _ => return None,
        };
        self.last_shot_at = Some(now);
        Some(trigger)
    }

    /// A new normalised state.
    pub fn on_state(&mut self, state: &PrinterStateV2, now: UnixMillis) -> Option<SnapshotTrigger> {
        if state.state != PrintState::Printing {
            return None;
        }
        if !self.printing {
            // Printing already when the agent started (or the start event was missed): treat
            // it as a job in progress, without a start snapshot.
            self.printing = true;
            self.first_layer_done = state.layer.is_some_and(|l| l >= 2);
            self.last_layer_shot = state.layer;
        }
        let layer = state.layer?;
        if !self.first_layer_done && layer >= 2 {
            self.first_layer_done = true;
            self.last_layer_shot = Some(layer);
            self.last_shot_at = Some(now);
            return Some(SnapshotTrigger::FirstLayerDone);
        }
        if let Some(every) = self.policy.every_layers.filter(|&n| n > 0)
            && layer >= self.last_layer_shot.unwrap_or(0).saturating_add(every)
        {
            self.last_layer_shot = Some(layer);
            self.last_shot_at = Some(now);
            return Some(SnapshotTrigger::Layer(layer));
        }
        self.tick(now)
    }

    /// The passing of time: the interval snapshot while printing.
    pub fn tick(&mut self, now: UnixMillis) -> Option<SnapshotTrigger> {
        let every = self.policy.every?;
        if !self.printing {
            return None;
        }
        let due = match self.last_shot_at {
            Some(last) => now.0.saturating_sub(last.0) >= every.as_millis() as i64,
            None => true,
        };
        if !due {
            return None;
        }
        self.last_shot_at = Some(now);
        Some(SnapshotTrigger::Interval)
    }

    /// When [`tick`](Self::tick) could next fire, for the driver's timer.
    pub fn next_due(&self) -> Option<UnixMillis> {
        let every = self.policy.every?;
        if !self.printing {
            return None;
        }
        Some(self.last_shot_at.map_or(UnixMillis(0), |t| t.plus_millis(every.as_millis() as i64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printing(layer: u32) -> PrinterStateV2 {
        PrinterStateV2 { state: PrintState::Printing, layer: Some(layer), ..Default::default() }
    }

    fn started() -> PrinterEventKind {
        PrinterEventKind::JobStarted { job_name: Some("cube".into()), total_layers: Some(50) }
    }

    #[test]
    fn a_job_gets_its_milestones() {
        let mut planner = SnapshotPlanner::new(SnapshotPolicy {
            every: Some(Duration::from_secs(60)),
            every_layers: Some(10),
        });
        let t = |s: i64| UnixMillis(1_000_000 + s * 1000);
        assert_eq!(planner.on_state(&PrinterStateV2::default(), t(0)), None, "idle: nothing");
        assert_eq!(planner.tick(t(0)), None);
        assert_eq!(planner.on_event(&started(), t(1)), Some(SnapshotTrigger::JobStarted));
        assert_eq!(planner.on_state(&printing(1), t(2)), None);
        assert_eq!(planner.on_state(&printing(2), t(30)), Some(SnapshotTrigger::FirstLayerDone));
        assert_eq!(planner.on_state(&printing(5), t(40)), None);
        assert_eq!(planner.tick(t(89)), None, "59 s after the last snapshot");
        assert_eq!(planner.tick(t(90)), Some(SnapshotTrigger::Interval));
        assert_eq!(planner.on_state(&printing(12), t(100)), Some(SnapshotTrigger::Layer(12)));
        assert_eq!(planner.on_state(&printing(13), t(101)), None);
        assert_eq!(
            planner.on_event(&PrinterEventKind::JobPaused { reason: Some(6) }, t(110)),
            Some(SnapshotTrigger::Paused)
        );
        assert_eq!(planner.on_event(&PrinterEventKind::JobResumed, t(120)), None);
        let failed = PrinterEventKind::JobFinished {
            job_name: None,
            outcome: JobOutcome::Failed { print_error: Some(0x0300_8003), hms: Vec::new() },
        };
        assert_eq!(planner.on_event(&failed, t(130)), Some(SnapshotTrigger::Failed));
        assert_eq!(planner.tick(t(1000)), None, "no interval snapshots after the job");
        assert_eq!(planner.next_due(), None);
    }

    #[test]
    fn a_finished_job_and_a_job_already_running() {
        let mut planner = SnapshotPlanner::new(SnapshotPolicy { every: None, every_layers: None });
        // The agent starts mid-print: no start or first-layer snapshot is invented.
        assert_eq!(planner.on_state(&printing(30), UnixMillis(5)), None);
        assert_eq!(planner.tick(UnixMillis(10_000_000)), None, "interval disabled");
        let done = PrinterEventKind::JobFinished { job_name: None, outcome: JobOutcome::Succeeded };
        assert_eq!(planner.on_event(&done, UnixMillis(20)), Some(SnapshotTrigger::Finished));
    }
}
