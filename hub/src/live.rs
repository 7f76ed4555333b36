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
    PrinterState { printer: String, at: i64, received_at: i64, state: Value },
    /// A printer event; `id` is its id in the event log (`GET /api/v1/events`).
    Event { id: i64, printer: String, agent: String, at: i64, event: Value },
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
    /// A job of the queue changed (`GET /api/v1/jobs/{id}` reads it).
    Job { id: i64, state: String, printer: Option<String> },
    /// A printer's plate was confirmed clear, or a job end made it need confirming again.
    Plate { printer: String, clear: bool },
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
    /// Spools the ingest changed (a print's usage, a tagged spool linked), for the
    /// Spoolman websockets.
    spools: broadcast::Sender<Vec<i64>>,
    /// Bumped by every update: the version of the live facts (the assistant's cache keeps an
    /// answer that read them only while it holds).
    version: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for LiveHub {
    fn default() -> LiveHub {
        LiveHub::new()
    }
}

impl LiveHub {
    pub fn new() -> LiveHub {
        let (sender, _) = broadcast::channel(4096);
        let (spools, _) = broadcast::channel(256);
        let version = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
        LiveHub { sender, spools, version }
    }

    /// The version of the live facts: it moves with every update.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Tells the inventory's websockets that the ingest changed these spools.
    pub fn spools_changed(&self, ids: Vec<i64>) {
        if !ids.is_empty() {
            self.changed();
            let _ = self.spools.send(ids);
        }
    }

    pub fn subscribe_spools(&self) -> broadcast::Receiver<Vec<i64>> {
        self.spools.subscribe()
    }

    pub fn publish(&self, update: LiveUpdate) {
        self.publish_received(update, std::time::Instant::now());
    }

    /// Publishes an update whose cause arrived at `received`.
    pub fn publish_received(&self, update: LiveUpdate, received: std::time::Instant) {
        self.changed();
        let _ = self.sender.send(Stamped { received, update });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.sender.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// The WebSocket's messages as the OpenAPI document describes them, one schema per `type`
/// (`components.schemas`; the WebSocket itself is `GET /ws`). Schema only: the hub sends
/// [`LiveUpdate`]s, and a test checks that every one serializes to exactly these fields.
pub mod schema {
    use serde::Serialize;
    use utoipa::ToSchema;

    use crate::service::views::{EventBody, PrinterState};

    /// `printer_state`: a printer's newest state, after each ingest commit.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LivePrinterState {
        #[serde(rename = "type")]
        #[schema(pattern = "^printer_state$")]
        pub kind: String,
        pub printer: String,
        /// When the agent observed it (Unix ms, the agent's clock, which can be off: see the
        /// agent's `clock`).
        pub at: i64,
        /// When the hub received it (Unix ms, the hub's clock): how fresh it is.
        pub received_at: i64,
        pub state: PrinterState,
    }

    /// `event`: a printer event.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveEvent {
        #[serde(rename = "type")]
        #[schema(pattern = "^event$")]
        pub kind: String,
        /// The event's id in the event log, as `GET /api/v1/events` lists it: a client that
        /// also fetched the log de-duplicates by it.
        pub id: i64,
        pub printer: String,
        pub agent: String,
        pub at: i64,
        pub event: EventBody,
    }

    /// `agent`: an agent connected or went away.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveAgent {
        #[serde(rename = "type")]
        #[schema(pattern = "^agent$")]
        pub kind: String,
        pub agent: String,
        pub online: bool,
    }

    /// `command_result`: a command's outcome arrived.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveCommandResult {
        #[serde(rename = "type")]
        #[schema(pattern = "^command_result$")]
        pub kind: String,
        pub command: String,
        pub printer: String,
        /// `succeeded`, `expired`, `failed: …`, ….
        pub outcome: String,
    }

    /// `snapshot`: a whole snapshot is stored (`GET /snapshots/{id}` serves it).
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveSnapshot {
        #[serde(rename = "type")]
        #[schema(pattern = "^snapshot$")]
        pub kind: String,
        pub id: String,
        pub printer: String,
        pub camera: String,
        pub trigger: String,
        pub captured_at: i64,
        pub bytes: u64,
    }

    /// `camera`: a camera's health changed or was reported.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveCamera {
        #[serde(rename = "type")]
        #[schema(pattern = "^camera$")]
        pub kind: String,
        pub printer: String,
        pub camera: String,
        pub state: String,
        pub fps: f64,
        pub last_frame_at: Option<i64>,
        pub last_error: Option<String>,
        pub live: bool,
        pub source: String,
        pub width: u16,
        pub height: u16,
        pub frames_total: u64,
    }

    /// `job`: a job of the queue changed (its state, or why it waits); `GET /jobs/{id}`
    /// reads it.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveJob {
        #[serde(rename = "type")]
        #[schema(pattern = "^job$")]
        pub kind: String,
        pub id: i64,
        pub state: String,
        /// The printer it was given to, if any.
        pub printer: Option<String>,
    }

    /// `plate`: a printer's plate was confirmed clear.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LivePlate {
        #[serde(rename = "type")]
        #[schema(pattern = "^plate$")]
        pub kind: String,
        pub printer: String,
        pub clear: bool,
    }

    /// `lagged`: this client was too slow and missed updates; refetch.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveLagged {
        #[serde(rename = "type")]
        #[schema(pattern = "^lagged$")]
        pub kind: String,
        pub missed: u64,
    }

    #[cfg(test)]
    mod tests {
        use super::super::LiveUpdate;

        /// The properties a schema of the document lists.
        fn properties(name: &str) -> Vec<String> {
            let document = serde_json::to_value(crate::api::spec()).unwrap();
            let mut names: Vec<String> = document["components"]["schemas"][name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("no schema {name}"))
                .keys()
                .cloned()
                .collect();
            names.sort();
            names
        }

        fn keys(update: &LiveUpdate) -> Vec<String> {
            let mut names: Vec<String> = serde_json::to_value(update)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            names.sort();
            names
        }

        #[test]
        fn every_message_matches_its_schema() {
            let state = proto::json::printer_state(&proto::PrinterState::default());
            let event = proto::json::printer_event(&proto::PrinterEventKind::JobResumed);
            let updates = [
                (
                    "LivePrinterState",
                    LiveUpdate::PrinterState { printer: "p".into(), at: 1, received_at: 2, state },
                ),
                (
                    "LiveEvent",
                    LiveUpdate::Event {
                        id: 7,
                        printer: "p".into(),
                        agent: "a".into(),
                        at: 1,
                        event,
                    },
                ),
                ("LiveAgent", LiveUpdate::Agent { agent: "a".into(), online: true }),
                (
                    "LiveCommandResult",
                    LiveUpdate::CommandResult {
                        command: "c".into(),
                        printer: "p".into(),
                        outcome: "succeeded".into(),
                    },
                ),
                (
                    "LiveSnapshot",
                    LiveUpdate::Snapshot {
                        id: "s".into(),
                        printer: "p".into(),
                        camera: "c".into(),
                        trigger: "requested".into(),
                        captured_at: 1,
                        bytes: 2,
                    },
                ),
                (
                    "LiveCamera",
                    LiveUpdate::Camera {
                        printer: "p".into(),
                        camera: "c".into(),
                        state: "streaming".into(),
                        fps: 1.0,
                        last_frame_at: None,
                        last_error: None,
                        live: false,
                        source: "bambu".into(),
                        width: 1,
                        height: 1,
                        frames_total: 3,
                    },
                ),
                ("LiveJob", LiveUpdate::Job { id: 3, state: "queued".into(), printer: None }),
                ("LivePlate", LiveUpdate::Plate { printer: "p".into(), clear: true }),
            ];
            for (schema, update) in &updates {
                assert_eq!(keys(update), properties(schema), "{schema}");
            }
            let lagged = crate::api::lagged_message(7);
            let mut lagged: Vec<String> =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&lagged)
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
            lagged.sort();
            assert_eq!(lagged, properties("LiveLagged"));
        }
    }
}
