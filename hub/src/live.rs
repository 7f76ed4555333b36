//! Live updates: what the WebSocket pushes to dashboards and scripts, published right after
//! the ingest transaction commits.

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// One update, as the WebSocket sends it (`{"type": "...", …}`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveUpdate {
    /// A printer's new normalised state.
    PrinterState { printer: String, at: i64, state: Value },
    /// A printer event.
    Event { printer: String, agent: String, at: i64, event: Value },
    /// An agent connected or went away.
    Agent { agent: String, online: bool },
    /// A command's outcome arrived.
    CommandResult { command: String, printer: String, outcome: String },
    /// A whole snapshot is stored (`GET /api/v1/snapshots/{id}` serves it).
    Snapshot {
        id: String,
        printer: String,
        camera: String,
        trigger: String,
        captured_at: i64,
        bytes: u64,
    },
    /// A camera's health changed or was reported.
    Camera {
        printer: String,
        camera: String,
        state: String,
        fps: f64,
        last_frame_at: Option<i64>,
        last_error: Option<String>,
        live: bool,
        source: String,
        width: u16,
        height: u16,
        frames_total: u64,
    },
}

/// An update with the moment its cause reached the hub (for the report → WebSocket latency).
#[derive(Debug, Clone)]
pub struct Stamped {
    pub received: std::time::Instant,
    pub update: LiveUpdate,
}

/// The fan-out point: the live-updates service. Slow subscribers miss updates (and are told
/// so) rather than slowing ingest.
#[derive(Debug, Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Stamped>,
}

impl Default for LiveHub {
    fn default() -> LiveHub {
        LiveHub::new()
    }
}

impl LiveHub {
    pub fn new() -> LiveHub {
        let (sender, _) = broadcast::channel(4096);
        LiveHub { sender }
    }

    pub fn publish(&self, update: LiveUpdate) {
        self.publish_received(update, std::time::Instant::now());
    }

    /// Publishes an update whose cause arrived at `received`.
    pub fn publish_received(&self, update: LiveUpdate, received: std::time::Instant) {
        let _ = self.sender.send(Stamped { received, update });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.sender.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}
