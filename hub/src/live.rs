//! Live updates: what the WebSocket pushes to dashboards and scripts, published right after
//! the ingest transaction commits.
//!
//! Each update has a cursor, larger than the one before: a client that reconnects says the
//! last it saw (`GET /ws?after=`) and gets what it missed from the recent ones kept here, or
//! `lagged` when they are gone. A single hub numbers its updates itself. Replicas on one
//! PostgreSQL (`cluster.rs`) hand every update to the cluster's log instead, and every
//! replica, the one it came from too, delivers the log's rows in order with the log's ids as
//! cursors: so a dashboard sees the same updates with the same cursors on any replica.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::inventory::Change;

/// One update, as the WebSocket sends it (`{"type": "...", …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A scheduled job's run started on a replica, or ended (`GET /scheduler/jobs/{name}`
    /// has its history).
    SchedulerRun {
        job: String,
        occurrence: i64,
        manual: bool,
        /// `running`, `succeeded` or `failed`.
        state: String,
        /// The replica that runs it (or ran it).
        replica: String,
        /// What it did, once it ended.
        result: Option<String>,
    },
}

/// An update with the moment its cause reached the hub (for the report → WebSocket latency)
/// and its cursor.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub received: std::time::Instant,
    pub update: LiveUpdate,
    pub cursor: u64,
}

/// How many recent updates are kept for clients that reconnect.
pub const RECENT: usize = 16_384;

/// What a replica hands to the cluster instead of delivering it itself.
#[derive(Debug)]
pub enum Outgoing {
    Live(LiveUpdate, std::time::Instant),
    Signal(AgentSignal),
    /// A change of the inventory, for the Spoolman websockets.
    Inventory(Change),
    /// Spools the ingest changed, for the Spoolman websockets (each replica reads them).
    Spools(Vec<i64>),
    /// A user name's failed logins are forgotten (a right password, an admin's reset): the
    /// other replicas' login limiters forget the name too.
    LoginsForgiven(String),
}

/// A signal for an agent's connection, wherever it is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSignal {
    pub agent: String,
    pub kind: SignalKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// Commands wait for it.
    Commands,
    /// Files of its jobs wait for it.
    Files,
    /// Its managed printers changed.
    Printers,
    /// It was revoked.
    Revoked,
}

/// The fan-out point: the live-updates service. Slow subscribers miss updates (and are told
/// so) rather than slowing ingest.
#[derive(Debug, Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Stamped>,
    /// Spools the ingest changed (a print's usage, a tagged spool linked), for the
    /// Spoolman websockets.
    spools: broadcast::Sender<Vec<i64>>,
    /// The inventory's changes, for the Spoolman websockets.
    inventory: broadcast::Sender<Change>,
    /// User names whose failed logins another replica forgot, for this one's limiter.
    forgiven: broadcast::Sender<String>,
    /// Bumped by every update: the version of the live facts (the assistant's cache keeps an
    /// answer that read them only while it holds).
    version: Arc<std::sync::atomic::AtomicU64>,
    /// The newest updates, for clients that reconnect.
    recent: Arc<Mutex<Recent>>,
    /// Set on a replica of a cluster: updates and signals go to the cluster's log.
    relay: Arc<OnceLock<tokio::sync::mpsc::UnboundedSender<Outgoing>>>,
    /// Signals other replicas sent for agents (the sync server serves those connected here).
    signals: broadcast::Sender<AgentSignal>,
    /// Agents connected to other replicas: agent → replica.
    elsewhere: Arc<Mutex<HashMap<String, String>>>,
}

impl Default for LiveHub {
    fn default() -> LiveHub {
        LiveHub::new()
    }
}

/// The newest updates and what is known of those before them.
#[derive(Debug)]
struct Recent {
    updates: VecDeque<Stamped>,
    /// Every update after this cursor is in `updates` (or still to come).
    complete_after: u64,
    /// A single hub's next cursor. It starts from the process's start time (in µs), so a
    /// cursor from before a restart is older than any this process gave, and a client
    /// resuming with one is told to read everything again.
    next: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LiveHub {
    pub fn new() -> LiveHub {
        let (sender, _) = broadcast::channel(4096);
        let (spools, _) = broadcast::channel(256);
        let (inventory, _) = broadcast::channel(1024);
        let (forgiven, _) = broadcast::channel(256);
        let (signals, _) = broadcast::channel(1024);
        LiveHub {
            sender,
            spools,
            inventory,
            forgiven,
            version: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            recent: Arc::new(Mutex::new({
                let start = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_micros() as u64);
                Recent {
                    updates: VecDeque::with_capacity(RECENT),
                    complete_after: start - 1,
                    next: start,
                }
            })),
            relay: Arc::new(OnceLock::new()),
            signals,
            elsewhere: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The version of the live facts: it moves with every update.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Tells the inventory's websockets, on every replica, that the ingest changed these
    /// spools: this process's at once, the other replicas' through the cluster's log.
    pub fn spools_changed(&self, ids: Vec<i64>) {
        if ids.is_empty() {
            return;
        }
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(Outgoing::Spools(ids.clone()));
        }
        self.deliver_spools(ids);
    }

    /// Spools the ingest changed, to this process's websockets.
    pub fn deliver_spools(&self, ids: Vec<i64>) {
        self.changed();
        let _ = self.spools.send(ids);
    }

    pub fn subscribe_spools(&self) -> broadcast::Receiver<Vec<i64>> {
        self.spools.subscribe()
    }

    /// Tells the inventory's websockets, on every replica, of a change: this process's at
    /// once (as Spoolman does, before the request that made it is answered), the other
    /// replicas' through the cluster's log.
    pub fn inventory_changed(&self, change: Change) {
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(Outgoing::Inventory(change.clone()));
        }
        self.deliver_inventory(change);
    }

    /// A change of the inventory, to this process's websockets.
    pub fn deliver_inventory(&self, change: Change) {
        self.changed();
        let _ = self.inventory.send(change);
    }

    pub fn subscribe_inventory(&self) -> broadcast::Receiver<Change> {
        self.inventory.subscribe()
    }

    /// Tells the other replicas' login limiters to forget `name`'s failed logins (this
    /// one's caller forgets them itself). Nothing on a single hub.
    pub fn logins_forgiven(&self, name: &str) {
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(Outgoing::LoginsForgiven(name.to_owned()));
        }
    }

    /// Another replica forgot `name`'s failed logins.
    pub fn deliver_forgiven(&self, name: String) {
        let _ = self.forgiven.send(name);
    }

    pub fn subscribe_forgiven(&self) -> broadcast::Receiver<String> {
        self.forgiven.subscribe()
    }

    pub fn publish(&self, update: LiveUpdate) {
        self.publish_received(update, std::time::Instant::now());
    }

    /// Publishes an update whose cause arrived at `received`.
    pub fn publish_received(&self, update: LiveUpdate, received: std::time::Instant) {
        if let Some(relay) = self.relay.get() {
            // The cluster's log numbers it; every replica delivers it from there.
            if relay.send(Outgoing::Live(update.clone(), received)).is_ok() {
                return;
            }
        }
        let mut recent = lock(&self.recent);
        let cursor = recent.next;
        self.keep(&mut recent, update, received, cursor);
    }

    /// Delivers an update with its cursor (the cluster's log's id) to this process's
    /// subscribers.
    pub fn deliver(&self, update: LiveUpdate, received: std::time::Instant, cursor: u64) {
        let mut recent = lock(&self.recent);
        self.keep(&mut recent, update, received, cursor);
    }

    fn keep(
        &self,
        recent: &mut Recent,
        update: LiveUpdate,
        received: std::time::Instant,
        cursor: u64,
    ) {
        self.changed();
        let stamped = Stamped { received, update, cursor };
        if recent.updates.len() == RECENT
            && let Some(gone) = recent.updates.pop_front()
        {
            recent.complete_after = recent.complete_after.max(gone.cursor);
        }
        recent.updates.push_back(stamped.clone());
        recent.next = recent.next.max(cursor + 1);
        // Sent under the lock: subscribers see cursors in the order they were kept, and a
        // resume (which subscribes under it) sees each update once.
        let _ = self.sender.send(stamped);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.sender.subscribe()
    }

    /// A subscription, and the updates after `cursor` still kept; `None` when some after it
    /// are gone (or it is from before this process): the client must read everything again.
    /// Both under one lock, so nothing falls between them.
    pub fn resume(&self, cursor: u64) -> (broadcast::Receiver<Stamped>, Option<Vec<Stamped>>) {
        let recent = lock(&self.recent);
        let receiver = self.sender.subscribe();
        if cursor < recent.complete_after {
            return (receiver, None);
        }
        let missed = recent.updates.iter().filter(|s| s.cursor > cursor).cloned().collect();
        (receiver, Some(missed))
    }

    /// On a replica, every update after `cursor` will come from the cluster's log: what
    /// came before this replica started it cannot give a client.
    pub fn complete_after(&self, cursor: u64) {
        lock(&self.recent).complete_after = cursor;
    }

    /// The newest cursor given.
    pub fn cursor(&self) -> u64 {
        lock(&self.recent).updates.back().map_or(0, |s| s.cursor)
    }

    /// Hands updates and signals to the cluster from now on (once).
    pub fn relay_to(&self, relay: tokio::sync::mpsc::UnboundedSender<Outgoing>) {
        let _ = self.relay.set(relay);
    }

    /// Tells the connection of `agent`, wherever it is, about `kind` (on a single hub, the
    /// sync server signals its own connections directly).
    pub fn signal_elsewhere(&self, agent: &str, kind: SignalKind) {
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(Outgoing::Signal(AgentSignal { agent: agent.to_owned(), kind }));
        }
    }

    /// A signal another replica sent, for the sync server here.
    pub fn signal_here(&self, signal: AgentSignal) {
        let _ = self.signals.send(signal);
    }

    pub fn subscribe_signals(&self) -> broadcast::Receiver<AgentSignal> {
        self.signals.subscribe()
    }

    /// Whether `agent` is connected to another replica.
    pub fn connected_elsewhere(&self, agent: &str) -> bool {
        lock(&self.elsewhere).contains_key(agent)
    }

    /// Agents connected to other replicas, and where.
    pub fn elsewhere(&self) -> HashMap<String, String> {
        lock(&self.elsewhere).clone()
    }

    /// Records that an agent is connected to another replica.
    pub fn set_elsewhere(&self, agent: &str, replica: Option<&str>) {
        let mut elsewhere = lock(&self.elsewhere);
        match replica {
            Some(replica) => {
                elsewhere.insert(agent.to_owned(), replica.to_owned());
            }
            None => {
                elsewhere.remove(agent);
            }
        }
    }

    /// An agent's connection to `replica` ended (it may be connected to another by now).
    pub fn agent_left(&self, agent: &str, replica: &str) {
        let mut elsewhere = lock(&self.elsewhere);
        if elsewhere.get(agent).is_some_and(|r| r == replica) {
            elsewhere.remove(agent);
        }
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
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
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
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
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
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
        pub agent: String,
        pub online: bool,
    }

    /// `command_result`: a command's outcome arrived.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveCommandResult {
        #[serde(rename = "type")]
        #[schema(pattern = "^command_result$")]
        pub kind: String,
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
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
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
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
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
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
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
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
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
        pub printer: String,
        pub clear: bool,
    }

    /// `scheduler_run`: a scheduled job's run started on a replica, or ended; `GET
    /// /scheduler/jobs/{name}` has its history.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct LiveSchedulerRun {
        #[serde(rename = "type")]
        #[schema(pattern = "^scheduler_run$")]
        pub kind: String,
        /// Its place in the stream: a client that reconnects resumes after the last it saw
        /// (`GET /ws?after=`).
        pub cursor: u64,
        pub job: String,
        /// When it fell due (Unix ms), or when it was asked for by hand.
        pub occurrence: i64,
        /// Asked for by hand (`POST /scheduler/jobs/{name}/trigger`).
        pub manual: bool,
        /// `running`, `succeeded` or `failed`.
        pub state: String,
        /// The replica that runs it (or ran it).
        pub replica: String,
        /// What it did, once it ended.
        pub result: Option<String>,
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
                .chain(["cursor".to_owned()])
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
                (
                    "LiveSchedulerRun",
                    LiveUpdate::SchedulerRun {
                        job: "j".into(),
                        occurrence: 1,
                        manual: false,
                        state: "running".into(),
                        replica: "hub-a".into(),
                        result: None,
                    },
                ),
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
