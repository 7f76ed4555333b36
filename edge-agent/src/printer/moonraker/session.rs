//! One Moonraker connection's JSON-RPC conversation, sans-IO: the driver feeds it what
//! happens (connected, a text frame, a tick, a command) and carries out what it answers
//! (send this request, here is a state, an event, a command's outcome, reconnect).
//!
//! On connecting: `server.connection.identify` (with the API key when configured), then
//! `server.info`. Once Klippy is ready, `printer.info` (its version), `printer.objects.list`
//! and one `printer.objects.subscribe` of [`OBJECTS`] and the extras the list names; the
//! answer is the whole status, `notify_status_update` deltas follow. Klippy's lifecycle comes
//! as notifications: `notify_klippy_shutdown` (the status keeps coming: `webhooks.state`
//! says shutdown), `notify_klippy_disconnected` (Moonraker drops every subscription; the
//! printer reads offline) and `notify_klippy_ready` (list and subscribe again). While
//! Klippy starts, `server.info` is asked again every [`SessionConfig::klippy_poll`].
//!
//! Job ends come from `notify_history_changed` (`finished`, with the job's status), so a
//! cancelled job is told from a failed one; state changes, pauses, resumes and the
//! printer's message (Klippy's error) come from comparing successive states.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::{
    CommandAction, CommandOutcome, JobOutcome, KlippyState, PrintState, PrinterEventKind,
    PrinterStateV2, UnixMillis,
};
use serde_json::{Map, Value, json};

use super::status::{OBJECTS, Status, extra_objects};

/// The largest text frame the session reads: a full status of a big printer is tens of KB.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A command's handle, chosen by the driver.
pub type Ticket = u64;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Moonraker's API key, when it requires one.
    pub api_key: Option<String>,
    /// The model to report (Moonraker does not know the printer's).
    pub model: Option<String>,
    /// With nothing from Moonraker for this long, the connection is presumed dead.
    pub silence: Duration,
    /// A request unanswered this long fails (a command) or ends the connection (set-up).
    pub request_timeout: Duration,
    /// How often to ask `server.info` while Klippy starts.
    pub klippy_poll: Duration,
    /// The job in progress before a restart (see [`crate::printer::events::ResumedJob`]).
    pub resume: Option<crate::printer::events::ResumedJob>,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            api_key: None,
            model: None,
            silence: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            klippy_poll: Duration::from_secs(2),
            resume: None,
        }
    }
}

#[derive(Debug)]
pub enum Input<'a> {
    Connected,
    Disconnected {
        reason: String,
    },
    Text(&'a str),
    Tick,
    /// The connection showed it is alive without a message (a WebSocket pong).
    Alive,
    Submit {
        ticket: Ticket,
        action: CommandAction,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this JSON-RPC text frame.
    Send(String),
    State(Box<PrinterStateV2>),
    Event(PrinterEventKind),
    CommandDone {
        ticket: Ticket,
        outcome: CommandOutcome,
    },
    /// Close the connection and connect again (after the driver's backoff).
    Reconnect {
        reason: String,
    },
    Problem(Problem),
    /// The webcams Moonraker lists (`server.webcams.list`), as it gives them: URLs may be
    /// relative to the host's web server.
    Webcams(Vec<Webcam>),
}

/// One entry of `server.webcams.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webcam {
    pub name: String,
    /// An MJPEG stream (`mjpegstreamer` and friends), when the service streams MJPEG.
    pub stream_url: Option<String>,
    pub snapshot_url: Option<String>,
}

/// Something a person should hear about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("Moonraker refused the API key ({0}); check the key in Moonraker's settings")]
    KeyRefused(String),
    #[error("ignored a malformed message from Moonraker: {0}")]
    BadMessage(String),
    #[error("Moonraker answered an error to {method}: {message}")]
    RequestFailed { method: String, message: String },
}

/// Why a request was sent: what to do with its answer.
#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    Identify,
    ServerInfo,
    PrinterInfo,
    ListObjects,
    Subscribe,
    Webcams,
    Command(Ticket),
}

#[derive(Debug)]
struct Pending {
    purpose: Purpose,
    method: &'static str,
    sent: Instant,
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    connected: bool,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    status: Status,
    klippy: KlippyState,
    subscribed: bool,
    firmware: Option<String>,
    last_heard: Option<Instant>,
    next_poll: Option<Instant>,
    /// The last state sent, to derive events from the next.
    shown: Option<PrinterStateV2>,
    /// The job in progress, by its file, once announced.
    job: Option<String>,
    /// A job resumed from before a restart, not yet checked against the printer.
    resumed: bool,
    /// The API key was refused: nothing more is asked until a reconnect.
    refused: bool,
    /// The webcams were asked for on this connection.
    webcams_asked: bool,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        let job = config.resume.as_ref().map(|j| j.name.clone().unwrap_or_default());
        let resumed = job.is_some();
        Session {
            config,
            connected: false,
            next_id: 1,
            pending: HashMap::new(),
            status: Status::default(),
            klippy: KlippyState::Unknown,
            subscribed: false,
            firmware: None,
            last_heard: None,
            next_poll: None,
            shown: None,
            job,
            resumed,
            refused: false,
            webcams_asked: false,
        }
    }

    pub fn handle(&mut self, now: Instant, wall: UnixMillis, input: Input<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        match input {
            Input::Connected => {
                self.connected = true;
                self.refused = false;
                self.last_heard = Some(now);
                self.subscribed = false;
                self.webcams_asked = false;
                let mut params = json!({
                    "client_name": "kitt-agent",
                    "version": env!("CARGO_PKG_VERSION"),
                    "type": "agent",
                    "url": "https://github.com/kitt-farm/kitt",
                });
                if let Some(key) = &self.config.api_key {
                    params["api_key"] = json!(key);
                }
                self.request(
                    now,
                    "server.connection.identify",
                    params,
                    Purpose::Identify,
                    &mut actions,
                );
            }
            Input::Disconnected { reason } => {
                self.connected = false;
                self.subscribed = false;
                self.fail_commands("the connection to Moonraker closed", &mut actions);
                self.pending.clear();
                self.went_offline(wall, reason, &mut actions);
            }
            Input::Text(text) => {
                self.last_heard = Some(now);
                if text.len() > MAX_MESSAGE_BYTES {
                    actions.push(Action::Problem(Problem::BadMessage(format!(
                        "{} bytes, more than the {MAX_MESSAGE_BYTES} accepted",
                        text.len()
                    ))));
                    return actions;
                }
                match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(message)) => self.message(now, wall, message, &mut actions),
                    Ok(other) => actions.push(Action::Problem(Problem::BadMessage(format!(
                        "not a JSON-RPC object: {}",
                        truncate(&other.to_string())
                    )))),
                    Err(error) => {
                        actions.push(Action::Problem(Problem::BadMessage(error.to_string())))
                    }
                }
            }
            Input::Tick => self.tick(now, wall, &mut actions),
            Input::Alive => self.last_heard = Some(now),
            Input::Submit { ticket, action } => self.submit(now, ticket, action, &mut actions),
        }
        actions
    }

    /// Klippy is ready: its version, then the objects to subscribe to.
    fn subscribe_anew(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.request(now, "printer.info", json!({}), Purpose::PrinterInfo, actions);
        self.list_objects(now, actions);
    }

    /// Lists the printer's objects; the answer subscribes to those kitt reads.
    fn list_objects(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.request(now, "printer.objects.list", json!({}), Purpose::ListObjects, actions);
    }

    fn request(
        &mut self,
        now: Instant,
        method: &'static str,
        params: Value,
        purpose: Purpose,
        actions: &mut Vec<Action>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let text = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": id });
        self.pending.insert(id, Pending { purpose, method, sent: now });
        actions.push(Action::Send(text.to_string()));
    }

    fn message(
        &mut self,
        now: Instant,
        wall: UnixMillis,
        message: Map<String, Value>,
        actions: &mut Vec<Action>,
    ) {
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            self.notification(now, wall, method, params, actions);
            return;
        }
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            actions.push(Action::Problem(Problem::BadMessage(format!(
                "neither a notification nor an answer: {}",
                truncate(&Value::Object(message).to_string())
            ))));
            return;
        };
        let Some(pending) = self.pending.remove(&id) else {
            actions.push(Action::Problem(Problem::BadMessage(format!(
                "an answer to no request (id {id})"
            ))));
            return;
        };
        match (message.get("result"), message.get("error")) {
            (Some(result), None) => self.answered(now, wall, pending.purpose, result, actions),
            (_, Some(error)) => self.refused_request(wall, pending, error, actions),
            (None, None) => actions.push(Action::Problem(Problem::BadMessage(format!(
                "an answer to {} with neither result nor error",
                pending.method
            )))),
        }
    }

    fn answered(
        &mut self,
        now: Instant,
        wall: UnixMillis,
        purpose: Purpose,
        result: &Value,
        actions: &mut Vec<Action>,
    ) {
        match purpose {
            Purpose::Identify => {
                self.request(now, "server.info", json!({}), Purpose::ServerInfo, actions);
            }
            Purpose::ServerInfo => {
                let state = result.get("klippy_state").and_then(Value::as_str);
                let connected = result.get("klippy_connected").and_then(Value::as_bool);
                self.klippy = klippy_state(state, connected);
                if self.klippy == KlippyState::Ready {
                    self.next_poll = None;
                    self.subscribe_anew(now, actions);
                } else {
                    // Startup, shutdown, error or disconnected: ask again soon; a shutdown
                    // Klippy still answers objects, so subscribe (once) to show its message.
                    self.next_poll = Some(now + self.config.klippy_poll);
                    if matches!(self.klippy, KlippyState::Shutdown | KlippyState::Error)
                        && !self.subscribed
                    {
                        self.list_objects(now, actions);
                    }
                    self.show(wall, actions);
                }
            }
            Purpose::PrinterInfo => {
                self.firmware =
                    result.get("software_version").and_then(Value::as_str).map(str::to_owned);
            }
            Purpose::ListObjects => {
                let listed: Vec<String> = result
                    .get("objects")
                    .and_then(Value::as_array)
                    .map(|names| {
                        names.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                    })
                    .unwrap_or_default();
                let mut objects = Map::new();
                for name in OBJECTS.iter().filter(|name| listed.iter().any(|l| l == *name)) {
                    objects.insert((*name).to_owned(), Value::Null);
                }
                for name in extra_objects(&listed) {
                    objects.insert(name, Value::Null);
                }
                self.request(
                    now,
                    "printer.objects.subscribe",
                    json!({ "objects": objects }),
                    Purpose::Subscribe,
                    actions,
                );
            }
            Purpose::Subscribe => match result.get("status").and_then(Value::as_object) {
                Some(status) => {
                    if !self.webcams_asked {
                        self.webcams_asked = true;
                        self.request(
                            now,
                            "server.webcams.list",
                            json!({}),
                            Purpose::Webcams,
                            actions,
                        );
                    }
                    self.status.replace(status.clone());
                    self.subscribed = true;
                    self.klippy = known_or(self.status.klippy(), self.klippy);
                    self.show(wall, actions);
                }
                None => actions.push(Action::Problem(Problem::BadMessage(
                    "a subscription's answer without a status".into(),
                ))),
            },
            Purpose::Webcams => actions.push(Action::Webcams(webcams(result))),
            Purpose::Command(ticket) => {
                actions.push(Action::CommandDone { ticket, outcome: CommandOutcome::Succeeded });
            }
        }
    }

    fn refused_request(
        &mut self,
        wall: UnixMillis,
        pending: Pending,
        error: &Value,
        actions: &mut Vec<Action>,
    ) {
        let code = error.get("code").and_then(Value::as_i64);
        let message =
            error.get("message").and_then(Value::as_str).unwrap_or("no message").to_owned();
        match pending.purpose {
            Purpose::Command(ticket) => {
                let outcome = if matches!(code, Some(401 | 403)) {
                    CommandOutcome::Refused { reason: format!("Moonraker: {message}") }
                } else {
                    CommandOutcome::Failed { detail: format!("Moonraker: {message}") }
                };
                actions.push(Action::CommandDone { ticket, outcome });
            }
            // Older Moonrakers have no webcam list: no camera then, nothing else changes.
            Purpose::Webcams => {
                tracing::debug!(%message, "Moonraker lists no webcams.");
            }
            _ if matches!(code, Some(401 | 403)) => {
                // Nothing can be read without the key: say so once, show the printer as
                // unreachable with the reason, and wait for the driver's slow retry.
                self.refused = true;
                actions.push(Action::Problem(Problem::KeyRefused(message.clone())));
                actions.push(Action::Reconnect { reason: format!("API key refused: {message}") });
                self.went_offline(
                    wall,
                    format!("Moonraker refused the API key: {message}"),
                    actions,
                );
            }
            _ => {
                actions.push(Action::Problem(Problem::RequestFailed {
                    method: pending.method.to_owned(),
                    message: message.clone(),
                }));
                actions.push(Action::Reconnect {
                    reason: format!("{} failed: {message}", pending.method),
                });
            }
        }
    }

    fn notification(
        &mut self,
        now: Instant,
        wall: UnixMillis,
        method: &str,
        params: Value,
        actions: &mut Vec<Action>,
    ) {
        match method {
            "notify_status_update" => {
                if !self.subscribed {
                    return;
                }
                match params.get(0).and_then(Value::as_object) {
                    Some(delta) => {
                        self.status.merge(delta);
                        self.klippy = known_or(self.status.klippy(), self.klippy);
                        self.show(wall, actions);
                    }
                    None => actions.push(Action::Problem(Problem::BadMessage(
                        "a status update without its objects".into(),
                    ))),
                }
            }
            "notify_klippy_ready" => {
                self.klippy = KlippyState::Ready;
                self.subscribed = false;
                self.subscribe_anew(now, actions);
            }
            "notify_klippy_shutdown" => {
                self.klippy = KlippyState::Shutdown;
                self.show(wall, actions);
            }
            "notify_klippy_disconnected" => {
                // Moonraker dropped every subscription.
                self.klippy = KlippyState::Disconnected;
                self.subscribed = false;
                self.next_poll = Some(now + self.config.klippy_poll);
                self.show(wall, actions);
            }
            "notify_history_changed" => self.history(params, actions),
            "notify_webcams_changed" => {
                // The notification carries the list in newer versions; asking is simpler
                // and works with every version.
                self.request(now, "server.webcams.list", json!({}), Purpose::Webcams, actions);
            }
            // Nothing a farm needs: CPU figures, G-code echoes, file lists, …
            _ => {}
        }
    }

    /// `notify_history_changed`: `[{action: added | finished, job: {filename, status, …}}]`.
    fn history(&mut self, params: Value, actions: &mut Vec<Action>) {
        let Some(change) = params.get(0) else { return };
        let job = change.get("job");
        let filename =
            job.and_then(|j| j.get("filename")).and_then(Value::as_str).map(str::to_owned);
        match change.get("action").and_then(Value::as_str) {
            Some("finished") => {
                let outcome = match job.and_then(|j| j.get("status")).and_then(Value::as_str) {
                    Some("completed") => JobOutcome::Succeeded,
                    Some("cancelled") => JobOutcome::Cancelled,
                    _ => JobOutcome::Failed { print_error: None, hms: Vec::new() },
                };
                if self.job.take().is_some() || filename.is_some() {
                    // What the extruder pushed: the history's count, else print_stats'.
                    let used = job
                        .and_then(|j| j.get("filament_used"))
                        .and_then(Value::as_f64)
                        .or_else(|| self.status.filament_used());
                    push_filament_used(used, actions);
                    actions.push(Action::Event(PrinterEventKind::JobFinished {
                        job_name: filename,
                        outcome,
                    }));
                }
            }
            Some("added") if self.job.as_deref() != filename.as_deref() => {
                self.job = filename.clone();
                actions.push(Action::Event(PrinterEventKind::JobStarted {
                    job_name: filename,
                    total_layers: self.shown.as_ref().and_then(|s| s.total_layers),
                }));
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Instant, wall: UnixMillis, actions: &mut Vec<Action>) {
        if !self.connected {
            return;
        }
        if self.last_heard.is_some_and(|heard| now.duration_since(heard) >= self.config.silence) {
            actions.push(Action::Reconnect {
                reason: format!("nothing from Moonraker for {} s", self.config.silence.as_secs()),
            });
            return;
        }
        let timeout = self.config.request_timeout;
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.sent) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let Some(pending) = self.pending.remove(&id) else { continue };
            match pending.purpose {
                Purpose::Command(ticket) => {
                    actions.push(Action::CommandDone { ticket, outcome: CommandOutcome::TimedOut })
                }
                // Without an answer there is just no camera; the status still flows.
                Purpose::Webcams => tracing::debug!("Moonraker did not list its webcams."),
                _ => {
                    actions.push(Action::Reconnect {
                        reason: format!(
                            "{} unanswered for {} s",
                            pending.method,
                            timeout.as_secs()
                        ),
                    });
                    return;
                }
            }
        }
        if let Some(poll) = self.next_poll
            && now >= poll
            && !self.refused
        {
            self.next_poll = None;
            self.request(now, "server.info", json!({}), Purpose::ServerInfo, actions);
        }
        let _ = wall;
    }

    fn submit(
        &mut self,
        now: Instant,
        ticket: Ticket,
        action: CommandAction,
        actions: &mut Vec<Action>,
    ) {
        if !self.connected || self.refused {
            let reason = if self.refused {
                "Moonraker refused the API key"
            } else {
                "not connected to Moonraker"
            };
            actions.push(Action::CommandDone {
                ticket,
                outcome: CommandOutcome::Failed { detail: reason.into() },
            });
            return;
        }
        let (method, params): (&'static str, Value) = match action {
            CommandAction::Pause => ("printer.print.pause", json!({})),
            CommandAction::Resume => ("printer.print.resume", json!({})),
            CommandAction::Stop => ("printer.print.cancel", json!({})),
            CommandAction::Gcode(script) => ("printer.gcode.script", json!({ "script": script })),
            CommandAction::FirmwareRestart => ("printer.firmware_restart", json!({})),
            CommandAction::EmergencyStop => ("printer.emergency_stop", json!({})),
            // A job of the hub's queue is started as any file is: the agent uploaded it.
            CommandAction::StartPrint(proto::StartPrint { file, .. })
            | CommandAction::StartJob(proto::StartJob {
                print: proto::StartPrint { file, .. },
                ..
            }) => {
                // Moonraker's file names are relative to its `gcodes` root.
                let filename = file.trim_start_matches('/');
                let filename = filename.strip_prefix("gcodes/").unwrap_or(filename);
                ("printer.print.start", json!({ "filename": filename }))
            }
            CommandAction::SetSpeed(level) => {
                // Bambu's four levels are speed percentages; Klipper takes the percentage.
                let percent = match level {
                    proto::SpeedLevel::Silent => 50,
                    proto::SpeedLevel::Standard => 100,
                    proto::SpeedLevel::Sport => 124,
                    proto::SpeedLevel::Ludicrous => 166,
                };
                ("printer.gcode.script", json!({ "script": format!("M220 S{percent}") }))
            }
            CommandAction::RequestFullPush => {
                // A new subscription answers with the whole status.
                self.list_objects(now, actions);
                actions.push(Action::CommandDone { ticket, outcome: CommandOutcome::Succeeded });
                return;
            }
            other => {
                actions.push(Action::CommandDone {
                    ticket,
                    outcome: CommandOutcome::Unsupported {
                        detail: format!("a Klipper printer has no {}", action_name(&other)),
                    },
                });
                return;
            }
        };
        self.request(now, method, params, Purpose::Command(ticket), actions);
    }

    fn fail_commands(&mut self, detail: &str, actions: &mut Vec<Action>) {
        let mut tickets: Vec<Ticket> = self
            .pending
            .values()
            .filter_map(|p| match p.purpose {
                Purpose::Command(ticket) => Some(ticket),
                _ => None,
            })
            .collect();
        tickets.sort_unstable();
        for ticket in tickets {
            actions.push(Action::CommandDone {
                ticket,
                outcome: CommandOutcome::Failed { detail: detail.into() },
            });
        }
    }

    fn went_offline(&mut self, wall: UnixMillis, reason: String, actions: &mut Vec<Action>) {
        let was_reachable = self.shown.as_ref().is_some_and(|s| s.state != PrintState::Offline);
        if let Some(shown) = &mut self.shown {
            shown.state = PrintState::Offline;
            actions.push(Action::State(Box::new(shown.clone())));
        }
        if was_reachable {
            actions.push(Action::Event(PrinterEventKind::Unreachable { reason }));
        }
        let _ = wall;
    }

    /// The state now, and the events that lead to it from the last one shown.
    fn show(&mut self, wall: UnixMillis, actions: &mut Vec<Action>) {
        let state = self.status.state(
            self.klippy,
            self.config.model.as_deref(),
            self.firmware.as_deref(),
            wall,
        );
        let before = self.shown.replace(state.clone());
        let before_state = before.as_ref().map_or(PrintState::Offline, |b| b.state);
        if before_state == PrintState::Offline && state.state != PrintState::Offline {
            actions.push(Action::Event(PrinterEventKind::Reachable));
        }
        if before_state != state.state {
            actions.push(Action::Event(PrinterEventKind::StateChanged {
                from: before_state,
                to: state.state,
            }));
            match (before_state, state.state) {
                (PrintState::Printing, PrintState::Paused) => {
                    actions.push(Action::Event(PrinterEventKind::JobPaused { reason: None }));
                }
                (PrintState::Paused, PrintState::Printing) => {
                    actions.push(Action::Event(PrinterEventKind::JobResumed));
                }
                _ => {}
            }
        }
        if self.resumed && self.klippy == KlippyState::Ready {
            self.resumed = false;
            self.check_resumed_job(actions);
        }
        let before_message = before.as_ref().and_then(|b| b.message.clone());
        match (&before_message, &state.message) {
            (_, Some(message)) if before_message.as_ref() != Some(message) => {
                actions.push(Action::Event(PrinterEventKind::Fault { message: message.clone() }));
            }
            (Some(_), None) => actions.push(Action::Event(PrinterEventKind::FaultCleared)),
            _ => {}
        }
        actions.push(Action::State(Box::new(state)));
    }
}

impl Session {
    /// The first sight of Klipper after a restart with a job resumed: a job still printing
    /// goes on; one Klipper shows ended is ended with its outcome (`complete`, `cancelled`,
    /// `error`); anything else (another file, `standby` after a restart of Klipper) ends it
    /// with its outcome unknown, as failed.
    fn check_resumed_job(&mut self, actions: &mut Vec<Action>) {
        let Some(job) = self.job.clone() else { return };
        let (state, file) = self.status.print_stats();
        let same = file.is_some_and(|f| f == job);
        let outcome = match (state, same) {
            (Some("printing" | "paused"), true) => return,
            (Some("complete"), true) => JobOutcome::Succeeded,
            (Some("cancelled"), true) => JobOutcome::Cancelled,
            _ => JobOutcome::Failed { print_error: None, hms: Vec::new() },
        };
        self.job = None;
        if same {
            push_filament_used(self.status.filament_used(), actions);
        }
        let job_name = (!job.is_empty()).then_some(job);
        actions.push(Action::Event(PrinterEventKind::JobFinished { job_name, outcome }));
    }
}

/// The filament a job used, just before its end, when Klipper counted some.
fn push_filament_used(millimetres: Option<f64>, actions: &mut Vec<Action>) {
    if let Some(mm) = millimetres.filter(|mm| mm.is_finite() && *mm > 0.0) {
        actions.push(Action::Event(PrinterEventKind::FilamentUsed { millimetres: mm as f32 }));
    }
}

/// Klippy's state from `server.info`.
fn klippy_state(state: Option<&str>, connected: Option<bool>) -> KlippyState {
    if connected == Some(false) {
        return KlippyState::Disconnected;
    }
    match state {
        Some("ready") => KlippyState::Ready,
        Some("startup") => KlippyState::Startup,
        Some("shutdown") => KlippyState::Shutdown,
        Some("error") => KlippyState::Error,
        Some("disconnected") => KlippyState::Disconnected,
        _ => KlippyState::Unknown,
    }
}

/// What the status says of Klippy, unless it says nothing: then what the session knew.
fn known_or(status: KlippyState, fallback: KlippyState) -> KlippyState {
    if status == KlippyState::Unknown { fallback } else { status }
}

fn action_name(action: &CommandAction) -> &'static str {
    match action {
        CommandAction::Pause => "pause",
        CommandAction::Resume => "resume",
        CommandAction::Stop => "stop",
        CommandAction::SetLight { .. } => "light control",
        CommandAction::SetSpeed(_) => "speed level",
        CommandAction::RequestFullPush => "full report",
        CommandAction::StartPrint(_) => "file start",
        CommandAction::Gcode(_) => "G-code",
        CommandAction::FirmwareRestart => "firmware restart",
        CommandAction::EmergencyStop => "emergency stop",
        CommandAction::StartJob(_) => "job start",
    }
}

/// The webcams of a `server.webcams.list` answer (`{webcams: [{name, service, stream_url,
/// snapshot_url, enabled, …}]}`), enabled ones only. A stream URL is kept only for services
/// that stream MJPEG (WebRTC and HLS streams need a browser).
fn webcams(result: &Value) -> Vec<Webcam> {
    let Some(list) = result.get("webcams").and_then(Value::as_array) else { return Vec::new() };
    let url = |cam: &Value, key: &str| {
        cam.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    };
    list.iter()
        .filter(|cam| cam.get("enabled").and_then(Value::as_bool) != Some(false))
        .map(|cam| {
            let service = cam.get("service").and_then(Value::as_str).unwrap_or("mjpegstreamer");
            let streams_mjpeg = matches!(
                service,
                "mjpegstreamer" | "mjpegstreamer-adaptive" | "uv4l-mjpeg" | "ipstream"
            );
            Webcam {
                name: cam.get("name").and_then(Value::as_str).unwrap_or("webcam").to_owned(),
                stream_url: url(cam, "stream_url").filter(|_| streams_mjpeg),
                snapshot_url: url(cam, "snapshot_url"),
            }
        })
        .filter(|cam| cam.stream_url.is_some() || cam.snapshot_url.is_some())
        .collect()
}

fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: UnixMillis = UnixMillis(1_764_000_000_000);

    struct Harness {
        session: Session,
        now: Instant,
    }

    impl Harness {
        fn new(config: SessionConfig) -> Harness {
            Harness { session: Session::new(config), now: Instant::now() }
        }

        fn feed(&mut self, input: Input<'_>) -> Vec<Action> {
            self.session.handle(self.now, WALL, input)
        }

        fn text(&mut self, value: Value) -> Vec<Action> {
            let text = value.to_string();
            self.feed(Input::Text(&text))
        }

        fn later(&mut self, by: Duration) -> Vec<Action> {
            self.now += by;
            self.feed(Input::Tick)
        }

        /// Answers the one request for `method` among `actions` with `result`.
        fn answer(&mut self, actions: &[Action], method: &str, result: Value) -> Vec<Action> {
            let id = request_id(actions, method);
            self.text(json!({ "jsonrpc": "2.0", "result": result, "id": id }))
        }

        /// Connects and answers the set-up until the printer's status is subscribed.
        fn ready(&mut self, status: Value) -> Vec<Action> {
            let sent = self.feed(Input::Connected);
            let sent =
                self.answer(&sent, "server.connection.identify", json!({ "connection_id": 7 }));
            let sent = self.answer(
                &sent,
                "server.info",
                json!({ "klippy_connected": true, "klippy_state": "ready" }),
            );
            self.answer(
                &sent,
                "printer.info",
                json!({ "state": "ready", "software_version": "v0.12.0-396" }),
            );
            let sent = self.answer(
                &sent,
                "printer.objects.list",
                json!({ "objects": ["webhooks", "print_stats", "virtual_sdcard", "extruder", "heater_bed", "fan", "filament_switch_sensor runout"] }),
            );
            self.answer(
                &sent,
                "printer.objects.subscribe",
                json!({ "eventtime": 1.0, "status": status }),
            )
        }
    }

    fn requests(actions: &[Action]) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(text) => serde_json::from_str(text).ok(),
                _ => None,
            })
            .collect()
    }

    fn request_id(actions: &[Action], method: &str) -> u64 {
        let found: Vec<Value> =
            requests(actions).into_iter().filter(|r| r["method"] == method).collect();
        assert_eq!(found.len(), 1, "one {method} request in {actions:#?}");
        found[0]["id"].as_u64().unwrap()
    }

    fn events(actions: &[Action]) -> Vec<PrinterEventKind> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(kind) => Some(kind.clone()),
                _ => None,
            })
            .collect()
    }

    fn last_state(actions: &[Action]) -> PrinterStateV2 {
        actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::State(state) => Some((**state).clone()),
                _ => None,
            })
            .expect("a state")
    }

    fn printing_status() -> Value {
        json!({
            "webhooks": { "state": "ready", "state_message": "Printer is ready" },
            "print_stats": { "state": "printing", "filename": "benchy.gcode", "print_duration": 60.0,
                             "info": { "current_layer": 3, "total_layer": 100 } },
            "virtual_sdcard": { "progress": 0.1 },
            "extruder": { "temperature": 220.0, "target": 220.0 },
            "heater_bed": { "temperature": 60.0, "target": 60.0 },
            "fan": { "speed": 1.0 },
            "filament_switch_sensor runout": { "filament_detected": true, "enabled": true }
        })
    }

    #[test]
    fn the_set_up_identifies_subscribes_and_shows_the_printer() {
        let mut h =
            Harness::new(SessionConfig { api_key: Some("k3y".into()), ..SessionConfig::default() });
        let sent = h.feed(Input::Connected);
        let identify = &requests(&sent)[0];
        assert_eq!(identify["method"], "server.connection.identify");
        assert_eq!(identify["params"]["api_key"], "k3y");
        assert_eq!(identify["params"]["type"], "agent");
        let sent = h.answer(&sent, "server.connection.identify", json!({ "connection_id": 1 }));
        let sent = h.answer(
            &sent,
            "server.info",
            json!({ "klippy_connected": true, "klippy_state": "ready" }),
        );
        h.answer(&sent, "printer.info", json!({ "software_version": "v0.12.0" }));
        let sent = h.answer(
            &sent,
            "printer.objects.list",
            json!({ "objects": ["webhooks", "print_stats", "extruder", "extruder1", "gcode_macro X"] }),
        );
        let subscribe = &requests(&sent)[0];
        let objects = subscribe["params"]["objects"].as_object().unwrap();
        let mut names: Vec<&str> = objects.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["extruder", "extruder1", "print_stats", "webhooks"],
            "only what the printer has"
        );
        let shown =
            h.answer(&sent, "printer.objects.subscribe", json!({ "status": printing_status() }));
        let state = last_state(&shown);
        assert_eq!(state.state, PrintState::Printing);
        assert_eq!(state.firmware.as_deref(), Some("v0.12.0"));
        assert_eq!(state.layer, Some(3));
        assert_eq!(
            events(&shown),
            [
                PrinterEventKind::Reachable,
                PrinterEventKind::StateChanged {
                    from: PrintState::Offline,
                    to: PrintState::Printing
                },
            ]
        );
    }

    #[test]
    fn a_refused_key_is_said_once_and_nothing_more_is_asked() {
        let mut h = Harness::new(SessionConfig {
            api_key: Some("wrong".into()),
            ..SessionConfig::default()
        });
        let sent = h.feed(Input::Connected);
        let id = request_id(&sent, "server.connection.identify");
        let answer = h.text(json!({ "jsonrpc": "2.0", "error": { "code": 401, "message": "Unauthorized" }, "id": id }));
        assert!(
            answer.iter().any(
                |a| matches!(a, Action::Problem(Problem::KeyRefused(m)) if m == "Unauthorized")
            ),
            "{answer:#?}"
        );
        assert!(answer.iter().any(|a| matches!(a, Action::Reconnect { .. })));
        assert!(requests(&answer).is_empty());
        let command = h.feed(Input::Submit { ticket: 1, action: CommandAction::Pause });
        assert!(
            matches!(
                &command[..],
                [Action::CommandDone { ticket: 1, outcome: CommandOutcome::Failed { .. } }]
            ),
            "{command:#?}"
        );
        assert!(
            requests(&h.later(Duration::from_secs(5))).is_empty(),
            "no polling with a refused key"
        );
    }

    #[test]
    fn deltas_pause_and_resume_are_events() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        let paused = h.text(json!({ "jsonrpc": "2.0", "method": "notify_status_update",
            "params": [{ "print_stats": { "state": "paused" } }, 2.0] }));
        assert_eq!(last_state(&paused).state, PrintState::Paused);
        assert!(
            events(&paused).contains(&PrinterEventKind::JobPaused { reason: None }),
            "{paused:#?}"
        );
        let resumed = h.text(json!({ "jsonrpc": "2.0", "method": "notify_status_update",
            "params": [{ "print_stats": { "state": "printing", "info": { "current_layer": 4 } } }, 3.0] }));
        let state = last_state(&resumed);
        assert_eq!(
            (state.state, state.layer, state.total_layers),
            (PrintState::Printing, Some(4), Some(100))
        );
        assert!(events(&resumed).contains(&PrinterEventKind::JobResumed));
    }

    #[test]
    fn a_jobs_end_carries_the_filament_klipper_counted_just_before_it() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        h.text(json!({ "jsonrpc": "2.0", "method": "notify_status_update",
            "params": [{ "print_stats": { "filament_used": 812.25 } }, 4.0] }));
        // The history's own count wins over print_stats'.
        let ended = h.text(json!({ "jsonrpc": "2.0", "method": "notify_history_changed",
            "params": [{ "action": "finished", "job": { "filename": "benchy.gcode",
                "status": "completed", "filament_used": 1520.5 } }] }));
        assert_eq!(
            events(&ended),
            [
                PrinterEventKind::FilamentUsed { millimetres: 1520.5 },
                PrinterEventKind::JobFinished {
                    job_name: Some("benchy.gcode".into()),
                    outcome: JobOutcome::Succeeded,
                },
            ]
        );
    }

    #[test]
    fn a_klippy_shutdown_mid_print_raises_a_fault_with_klippys_words() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        h.text(json!({ "jsonrpc": "2.0", "method": "notify_klippy_shutdown" }));
        let update = h.text(json!({ "jsonrpc": "2.0", "method": "notify_status_update",
            "params": [{ "webhooks": { "state": "shutdown", "state_message": "Heater extruder not heating at expected rate" },
                         "print_stats": { "state": "paused" } }, 4.0] }));
        assert_eq!(last_state(&update).state, PrintState::Failed);
        assert!(
            events(&update).contains(&PrinterEventKind::Fault {
                message: "Heater extruder not heating at expected rate".into()
            }),
            "{update:#?}"
        );
        let ended = h.text(json!({ "jsonrpc": "2.0", "method": "notify_history_changed",
            "params": [{ "action": "finished", "job": { "filename": "benchy.gcode", "status": "klippy_shutdown" } }] }));
        assert_eq!(
            events(&ended),
            [PrinterEventKind::JobFinished {
                job_name: Some("benchy.gcode".into()),
                outcome: JobOutcome::Failed { print_error: None, hms: Vec::new() },
            }]
        );
        // Klippy restarts: the subscription is made again and the fault clears.
        let ready = h.text(json!({ "jsonrpc": "2.0", "method": "notify_klippy_ready" }));
        let sent = h.answer(
            &ready,
            "printer.objects.list",
            json!({ "objects": ["webhooks", "print_stats"] }),
        );
        let shown = h.answer(
            &sent,
            "printer.objects.subscribe",
            json!({ "status": {
            "webhooks": { "state": "ready" }, "print_stats": { "state": "standby" } } }),
        );
        assert_eq!(last_state(&shown).state, PrintState::Idle);
        assert!(events(&shown).contains(&PrinterEventKind::FaultCleared), "{shown:#?}");
    }

    #[test]
    fn a_printer_already_shut_down_is_shown_with_its_reason_and_polled_without_resubscribing() {
        let mut h = Harness::new(SessionConfig::default());
        let sent = h.feed(Input::Connected);
        let sent = h.answer(&sent, "server.connection.identify", json!({ "connection_id": 2 }));
        let shutdown = json!({ "klippy_connected": true, "klippy_state": "shutdown" });
        let sent = h.answer(&sent, "server.info", shutdown.clone());
        let sent = h.answer(
            &sent,
            "printer.objects.list",
            json!({ "objects": ["webhooks", "print_stats"] }),
        );
        let shown = h.answer(&sent, "printer.objects.subscribe", json!({ "status": {
            "webhooks": { "state": "shutdown", "state_message": "Lost communication with MCU 'mcu'" },
            "print_stats": { "state": "standby" } } }));
        let state = last_state(&shown);
        assert_eq!(state.state, PrintState::Failed);
        assert_eq!(state.message.as_deref(), Some("Lost communication with MCU 'mcu'"));
        let poll = h.later(Duration::from_secs(2));
        let again = h.answer(&poll, "server.info", shutdown);
        assert!(requests(&again).is_empty(), "subscribed already: {again:#?}");
        assert!(
            requests(&h.later(Duration::from_secs(2))).iter().any(|r| r["method"] == "server.info")
        );
    }

    #[test]
    fn a_cancelled_job_ends_cancelled() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        let ended = h.text(json!({ "jsonrpc": "2.0", "method": "notify_history_changed",
            "params": [{ "action": "finished", "job": { "filename": "benchy.gcode", "status": "cancelled" } }] }));
        assert!(matches!(
            &events(&ended)[..],
            [PrinterEventKind::JobFinished { outcome: JobOutcome::Cancelled, .. }]
        ));
    }

    #[test]
    fn commands_are_answered_by_moonraker_or_time_out() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        let sent = h.feed(Input::Submit { ticket: 1, action: CommandAction::Pause });
        let done = h.answer(&sent, "printer.print.pause", json!("ok"));
        assert_eq!(done, [Action::CommandDone { ticket: 1, outcome: CommandOutcome::Succeeded }]);
        let sent = h.feed(Input::Submit { ticket: 2, action: CommandAction::Stop });
        let id = request_id(&sent, "printer.print.cancel");
        let done = h.text(json!({ "jsonrpc": "2.0", "error": { "code": 400, "message": "Klippy not ready" }, "id": id }));
        assert!(
            matches!(&done[..], [Action::CommandDone { ticket: 2, outcome: CommandOutcome::Failed { detail } }] if detail.contains("Klippy not ready")),
            "{done:#?}"
        );
        h.feed(Input::Submit { ticket: 3, action: CommandAction::Resume });
        h.text(json!({ "jsonrpc": "2.0", "method": "notify_proc_stat_update", "params": [{}] }));
        let late = h.later(Duration::from_secs(11));
        assert!(
            late.contains(&Action::CommandDone { ticket: 3, outcome: CommandOutcome::TimedOut }),
            "{late:#?}"
        );
        let light = h.feed(Input::Submit {
            ticket: 4,
            action: CommandAction::SetLight {
                node: proto::LightNode::ChamberLight,
                mode: proto::LightMode::On,
            },
        });
        assert!(matches!(
            &light[..],
            [Action::CommandDone { ticket: 4, outcome: CommandOutcome::Unsupported { .. } }]
        ));
    }

    #[test]
    fn garbage_is_reported_and_the_session_goes_on() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        for garbage in
            ["{not json", "[1,2]", "{\"jsonrpc\":\"2.0\"}", "{\"id\": 9999, \"result\": 1}"]
        {
            let answer = h.feed(Input::Text(garbage));
            assert!(
                answer.iter().all(|a| matches!(a, Action::Problem(Problem::BadMessage(_)))),
                "{garbage}: {answer:#?}"
            );
        }
        let huge = format!("\"{}\"", "x".repeat(MAX_MESSAGE_BYTES));
        assert!(matches!(
            &h.feed(Input::Text(&huge))[..],
            [Action::Problem(Problem::BadMessage(_))]
        ));
        let update = h.text(json!({ "jsonrpc": "2.0", "method": "notify_status_update",
            "params": [{ "print_stats": { "info": { "current_layer": 9 } } }, 5.0] }));
        assert_eq!(last_state(&update).layer, Some(9));
    }

    #[test]
    fn silence_and_a_lost_connection_end_what_waits() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        h.feed(Input::Submit { ticket: 5, action: CommandAction::Pause });
        let gone = h.feed(Input::Disconnected { reason: "reset by peer".into() });
        assert!(gone.contains(&Action::CommandDone {
            ticket: 5,
            outcome: CommandOutcome::Failed { detail: "the connection to Moonraker closed".into() }
        }));
        assert_eq!(last_state(&gone).state, PrintState::Offline);
        assert!(
            events(&gone)
                .contains(&PrinterEventKind::Unreachable { reason: "reset by peer".into() })
        );

        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        assert!(h.later(Duration::from_secs(29)).is_empty());
        let silent = h.later(Duration::from_secs(1));
        assert!(matches!(&silent[..], [Action::Reconnect { .. }]), "{silent:#?}");
    }

    #[test]
    fn webcams_are_asked_once_per_connection_and_on_change() {
        let mut h = Harness::new(SessionConfig::default());
        let shown = h.ready(printing_status());
        let listed = h.answer(
            &shown,
            "server.webcams.list",
            json!({ "webcams": [
                { "name": "nozzle", "service": "webrtc-camerastreamer", "enabled": true,
                  "stream_url": "/webcam2/webrtc", "snapshot_url": "/webcam2/?action=snapshot" },
                { "name": "off", "service": "mjpegstreamer", "enabled": false,
                  "stream_url": "/webcam3/?action=stream", "snapshot_url": "" },
                { "name": "bed", "service": "mjpegstreamer-adaptive", "enabled": true,
                  "stream_url": "/webcam/?action=stream", "snapshot_url": "/webcam/?action=snapshot" },
            ] }),
        );
        assert_eq!(
            listed,
            [Action::Webcams(vec![
                Webcam {
                    name: "nozzle".into(),
                    stream_url: None,
                    snapshot_url: Some("/webcam2/?action=snapshot".into()),
                },
                Webcam {
                    name: "bed".into(),
                    stream_url: Some("/webcam/?action=stream".into()),
                    snapshot_url: Some("/webcam/?action=snapshot".into()),
                },
            ])]
        );
        let update = h.text(json!({ "jsonrpc": "2.0", "method": "notify_status_update",
            "params": [{ "print_stats": { "info": { "current_layer": 5 } } }, 2.0] }));
        assert!(requests(&update).is_empty(), "{update:#?}");
        let changed = h.text(json!({ "jsonrpc": "2.0", "method": "notify_webcams_changed",
            "params": [{ "webcams": [] }] }));
        let none = h.answer(&changed, "server.webcams.list", json!({ "webcams": [] }));
        assert_eq!(none, [Action::Webcams(Vec::new())]);
        // An old Moonraker without the method: no camera, and the session goes on.
        let mut h = Harness::new(SessionConfig::default());
        let shown = h.ready(printing_status());
        let id = request_id(&shown, "server.webcams.list");
        let answer = h.text(json!({ "jsonrpc": "2.0", "error": { "code": -32601, "message": "Method not found" }, "id": id }));
        assert!(answer.is_empty(), "{answer:#?}");
    }

    #[test]
    fn klipper_commands_map_onto_moonraker_methods() {
        let mut h = Harness::new(SessionConfig::default());
        h.ready(printing_status());
        let cases = [
            (CommandAction::FirmwareRestart, "printer.firmware_restart", json!({})),
            (CommandAction::EmergencyStop, "printer.emergency_stop", json!({})),
            (
                CommandAction::SetSpeed(proto::SpeedLevel::Sport),
                "printer.gcode.script",
                json!({ "script": "M220 S124" }),
            ),
            (
                CommandAction::StartPrint(proto::StartPrint {
                    file: "/gcodes/cube.gcode".into(),
                    plate: 1,
                    job_name: "cube".into(),
                    ams_mapping: Vec::new(),
                    use_ams: false,
                    bed_leveling: true,
                    timelapse: false,
                }),
                "printer.print.start",
                json!({ "filename": "cube.gcode" }),
            ),
        ];
        for (ticket, (action, method, params)) in (10..).zip(cases) {
            let sent = h.feed(Input::Submit { ticket, action });
            let request = &requests(&sent)[0];
            assert_eq!((request["method"].as_str(), &request["params"]), (Some(method), &params));
            let done = h.answer(&sent, method, json!("ok"));
            assert_eq!(done, [Action::CommandDone { ticket, outcome: CommandOutcome::Succeeded }]);
        }
    }

    fn resumed(file: &str) -> Harness {
        let resume = Some(crate::printer::events::ResumedJob { name: Some(file.into()) });
        Harness::new(SessionConfig { resume, ..SessionConfig::default() })
    }

    fn job_events(actions: &[Action]) -> Vec<PrinterEventKind> {
        events(actions)
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    PrinterEventKind::JobStarted { .. } | PrinterEventKind::JobFinished { .. }
                )
            })
            .collect()
    }

    #[test]
    fn a_restart_mid_print_goes_on_and_a_job_ended_meanwhile_ends_with_klippers_outcome() {
        // Still printing the job it knew: nothing to say; its end comes from the history.
        let mut h = resumed("benchy.gcode");
        let shown = h.ready(printing_status());
        assert_eq!(job_events(&shown), []);
        let ended = h.text(json!({ "jsonrpc": "2.0", "method": "notify_history_changed",
            "params": [{ "action": "finished", "job": { "filename": "benchy.gcode", "status": "completed" } }] }));
        assert_eq!(
            job_events(&ended),
            [PrinterEventKind::JobFinished {
                job_name: Some("benchy.gcode".into()),
                outcome: JobOutcome::Succeeded
            }]
        );
        // Ended while the agent was down: Klipper still shows how.
        for (state, outcome) in [
            ("complete", JobOutcome::Succeeded),
            ("cancelled", JobOutcome::Cancelled),
            ("error", JobOutcome::Failed { print_error: None, hms: Vec::new() }),
            ("standby", JobOutcome::Failed { print_error: None, hms: Vec::new() }),
        ] {
            let mut h = resumed("benchy.gcode");
            let shown = h.ready(json!({ "webhooks": { "state": "ready" },
                "print_stats": { "state": state, "filename": "benchy.gcode" } }));
            assert_eq!(
                job_events(&shown),
                [PrinterEventKind::JobFinished {
                    job_name: Some("benchy.gcode".into()),
                    outcome: outcome.clone()
                }],
                "{state}"
            );
        }
    }
}
