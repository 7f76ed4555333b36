//! One Bambu printer's MQTT session as a sans-IO state machine.
//!
//! The driver feeds it [`Input`]s with the current time and carries out the [`Action`]s it
//! returns. It owns the report merge, normalisation, event derivation, command
//! acknowledgements (10 s deadline; two misses force a reconnect), the control capability
//! (an authorization refusal makes the printer read-only) and the silence watchdog (no report
//! for 30 s: the printer is unreachable and the session reconnects).

use std::time::{Duration, Instant};

use proto::{
    CommandAction, CommandOutcome, ControlCapability, Hms, PrintState, PrinterEventKind,
    PrinterState, UnixMillis,
};

use super::command;
use super::merge::{Ack, Incoming, ReportMerger};
use super::normalize::{Context, normalize};
use crate::printer::events::EventDeriver;

/// The ACK error code of a refused, unsigned command (0x05024007).
pub const ERR_AUTHORIZATION: i64 = 84_033_543;
/// HMS 0500_0500_0001_0007: "MQTT command verification failed".
pub const HMS_AUTHORIZATION: Hms = Hms { attr: 0x0500_0500, code: 0x0001_0007 };
/// What a user must do when the printer refuses control.
pub const READ_ONLY_HELP: &str = "the printer refuses control commands: enable Developer Mode \
    (Settings > LAN Only Mode > Developer Mode) on the printer; monitoring keeps working";

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub ack_timeout: Duration,
    pub silence_timeout: Duration,
    /// How long deltas may arrive before a full report, before the state is shown anyway.
    pub full_report_grace: Duration,
    /// The model code, when configured.
    pub model: Option<String>,
    /// The job in progress before a restart (see [`crate::printer::events::ResumedJob`]).
    pub resume: Option<crate::printer::events::ResumedJob>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ack_timeout: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(30),
            full_report_grace: Duration::from_secs(5),
            model: None,
            resume: None,
        }
    }
}

/// A caller's handle on a submitted command.
pub type Ticket = u64;

#[derive(Debug)]
pub enum Input<'a> {
    Connected,
    Disconnected {
        reason: String,
    },
    Message(&'a [u8]),
    /// Time passed; call at least once a second.
    Tick,
    Submit {
        ticket: Ticket,
        action: CommandAction,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish this JSON to `device/<serial>/request`.
    Publish(serde_json::Value),
    /// Drop the connection and connect again.
    Reconnect {
        reason: String,
    },
    State(Box<PrinterState>),
    Event(PrinterEventKind),
    CommandDone {
        ticket: Ticket,
        outcome: CommandOutcome,
    },
    /// A report was malformed and ignored; the session goes on.
    Rejected(String),
    /// The printer names a model kitt does not know (said once per session): its state is
    /// shown, but model-specific readings (door, chamber sensor) are left unknown.
    UnknownModel(String),
    /// The nozzle's diameter the printer reports (`nozzle_diameter`), micrometres; said when
    /// it changes. Not on the wire (the state is frozen): the start's precondition reads it.
    Nozzle(Option<u32>),
}

#[derive(Debug)]
struct Pending {
    ticket: Ticket,
    sequence_id: String,
    command: &'static str,
    deadline: Instant,
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    merger: ReportMerger,
    deriver: EventDeriver,
    /// The tagged spools last reported, to say only what is new.
    tags: Vec<proto::SpoolTag>,
    context: Context,
    state: PrinterState,
    shown: bool,
    connected_at: Option<Instant>,
    last_report: Option<Instant>,
    next_sequence: u64,
    pending: Vec<Pending>,
    missed_acks: u32,
    unknown_model_reported: bool,
    /// The nozzle last said (see [`Action::Nozzle`]).
    nozzle_um: Option<u32>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        let context = Context { model: config.model.clone(), ..Context::default() };
        let state = PrinterState { model: config.model.clone(), ..PrinterState::default() };
        let deriver = EventDeriver::resuming(config.resume.clone());
        Session {
            config,
            merger: ReportMerger::new(),
            deriver,
            tags: Vec::new(),
            context,
            state,
            shown: false,
            connected_at: None,
            last_report: None,
            next_sequence: 1,
            pending: Vec::new(),
            missed_acks: 0,
            unknown_model_reported: false,
            nozzle_um: None,
        }
    }

    /// The state as last emitted.
    pub fn state(&self) -> &PrinterState {
        &self.state
    }

    pub fn handle(&mut self, now: Instant, wall: UnixMillis, input: Input<'_>) -> Vec<Action> {
        let mut actions = Vec::new();
        match input {
            Input::Connected => {
                self.merger.reset();
                self.connected_at = Some(now);
                self.last_report = None;
                self.missed_acks = 0;
                let pushall = command::pushall(&self.sequence_id());
                let version = command::get_version(&self.sequence_id());
                actions.push(Action::Publish(pushall));
                actions.push(Action::Publish(version));
            }
            Input::Disconnected { reason } => {
                self.connected_at = None;
                for pending in self.pending.drain(..) {
                    actions.push(Action::CommandDone {
                        ticket: pending.ticket,
                        outcome: CommandOutcome::Failed {
                            detail: format!("connection lost: {reason}"),
                        },
                    });
                }
            }
            Input::Message(payload) => self.message(now, wall, payload, &mut actions),
            Input::Tick => self.tick(now, &mut actions),
            Input::Submit { ticket, action } => self.submit(now, ticket, action, &mut actions),
        }
        actions
    }

    fn sequence_id(&mut self) -> String {
        let id = self.next_sequence;
        self.next_sequence += 1;
        id.to_string()
    }

    fn submit(
        &mut self,
        now: Instant,
        ticket: Ticket,
        action: CommandAction,
        actions: &mut Vec<Action>,
    ) {
        if self.connected_at.is_none() {
            let detail = "printer not connected".to_owned();
            actions
                .push(Action::CommandDone { ticket, outcome: CommandOutcome::Failed { detail } });
            return;
        }
        let sequence_id = self.sequence_id();
        let (payload, name) = match command::request(&action, &sequence_id) {
            Ok(request) => request,
            Err(detail) => {
                let outcome = CommandOutcome::Unsupported { detail: detail.into() };
                actions.push(Action::CommandDone { ticket, outcome });
                return;
            }
        };
        actions.push(Action::Publish(payload));
        if command::expects_ack(&action) {
            let deadline = now + self.config.ack_timeout;
            self.pending.push(Pending { ticket, sequence_id, command: name, deadline });
        } else {
            actions.push(Action::CommandDone { ticket, outcome: CommandOutcome::Succeeded });
        }
    }

    fn message(
        &mut self,
        now: Instant,
        wall: UnixMillis,
        payload: &[u8],
        actions: &mut Vec<Action>,
    ) {
        let incoming = match self.merger.apply(payload) {
            Ok(incoming) => incoming,
            Err(error) => {
                actions.push(Action::Rejected(error.to_string()));
                return;
            }
        };
        let mut changed = false;
        for item in incoming {
            match item {
                Incoming::Report { .. } => {
                    self.last_report = Some(now);
                    self.context.last_report_at = Some(wall);
                    changed = true;
                }
                Incoming::Version(version) => {
                    self.context.version = Some(version);
                    changed = true;
                }
                Incoming::Ack(ack) => changed |= self.ack(ack, actions),
            }
        }
        let grace_over =
            self.connected_at.is_some_and(|t| now >= t + self.config.full_report_grace);
        if changed && (self.merger.has_full_report() || grace_over || self.shown) {
            self.update(normalize(self.merger.document(), &self.context), actions);
        }
    }

    /// Matches an ACK to its command; returns whether the control capability changed.
    fn ack(&mut self, ack: Ack, actions: &mut Vec<Action>) -> bool {
        let position = self
            .pending
            .iter()
            .position(|p| ack.sequence_id.as_deref() == Some(p.sequence_id.as_str()))
            .or_else(|| {
                let command = ack.command.as_deref()?;
                self.pending.iter().position(|p| p.command == command)
            });
        let Some(position) = position else {
            return false;
        };
        let pending = self.pending.remove(position);
        self.missed_acks = 0;
        let refused_for_authorization = ack.err_code == Some(ERR_AUTHORIZATION);
        let outcome = if ack.success {
            CommandOutcome::Succeeded
        } else if refused_for_authorization {
            CommandOutcome::ReadOnly
        } else {
            let reason = match (ack.reason, ack.err_code) {
                (Some(reason), Some(code)) => format!("{reason} (error {code})"),
                (Some(reason), None) => reason,
                (None, Some(code)) => format!("error {code}"),
                (None, None) => "the printer refused the command".to_owned(),
            };
            CommandOutcome::Refused { reason }
        };
        actions.push(Action::CommandDone { ticket: pending.ticket, outcome });
        let control = if ack.success {
            Some(ControlCapability::Available)
        } else if refused_for_authorization {
            Some(ControlCapability::ReadOnly)
        } else {
            None
        };
        let changed = control.is_some() && control != self.context.control_from_acks;
        if control.is_some() {
            self.context.control_from_acks = control;
        }
        changed
    }

    fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let mut missed = 0;
        self.pending.retain(|p| {
            if now < p.deadline {
                return true;
            }
            actions
                .push(Action::CommandDone { ticket: p.ticket, outcome: CommandOutcome::TimedOut });
            missed += 1;
            false
        });
        self.missed_acks += missed;
        if self.missed_acks >= 2 {
            self.missed_acks = 0;
            actions.push(Action::Reconnect { reason: "two commands went unacknowledged".into() });
        }
        let silent_since = self.last_report.or(self.connected_at);
        let silent = silent_since.is_some_and(|t| now >= t + self.config.silence_timeout);
        // Disconnected and never heard from since: silent since the last report we had.
        if silent && self.state.state != PrintState::Offline {
            let reason = format!("no report for {}", seconds(self.config.silence_timeout));
            let mut offline = self.state.clone();
            offline.state = PrintState::Offline;
            offline.last_report_at = self.context.last_report_at;
            self.update(offline, actions);
            actions.push(Action::Event(PrinterEventKind::Unreachable { reason: reason.clone() }));
            if self.connected_at.is_some() {
                actions.push(Action::Reconnect { reason });
            }
            // Count silence from now on, so the watchdog fires once per period.
            self.last_report = Some(now);
        }
    }

    /// Emits the events that lead to `next`, then `next`, when it differs from the last state.
    fn update(&mut self, mut next: PrinterState, actions: &mut Vec<Action>) {
        // The merged document is the report's `print` object. Said before the state, so the
        // start's check reads the nozzle of the report it reads the state of.
        let nozzle = self.merger.document().get("nozzle_diameter").and_then(nozzle_um);
        if nozzle != self.nozzle_um {
            self.nozzle_um = nozzle;
            actions.push(Action::Nozzle(nozzle));
        }
        if next.hms.contains(&HMS_AUTHORIZATION)
            && self.context.control_from_acks != Some(ControlCapability::ReadOnly)
        {
            self.context.control_from_acks = Some(ControlCapability::ReadOnly);
            next.control = ControlCapability::ReadOnly;
        }
        let same = PrinterState { last_report_at: self.state.last_report_at, ..next.clone() }
            == self.state;
        if same && self.shown {
            self.state = next;
            return;
        }
        if let Some(model) = next.model.as_deref()
            && !self.unknown_model_reported
            && !super::normalize::is_known_model(model)
        {
            self.unknown_model_reported = true;
            actions.push(Action::UnknownModel(model.to_owned()));
        }
        let events = self.deriver.derive(&self.state, &next);
        self.shown = true;
        self.state = next;
        // The events first, then the state they lead to: whoever acts on the state (the
        // plate check reads "finished") has by then heard of the job end that came with it.
        actions.extend(events.into_iter().map(Action::Event));
        // Tagged spools first seen in their slot, or whose tag changed.
        let tags = super::normalize::spool_tags(self.merger.document());
        for tag in &tags {
            let known = self.tags.iter().find(|t| t.unit == tag.unit && t.slot == tag.slot);
            let same = known.is_some_and(|t| {
                t.tray_uuid == tag.tray_uuid
                    && t.product == tag.product
                    && t.weight_g == tag.weight_g
            });
            if !same {
                actions.push(Action::Event(PrinterEventKind::SpoolTagged(tag.clone())));
            }
        }
        self.tags = tags;
        actions.push(Action::State(Box::new(self.state.clone())));
    }
}

/// A nozzle diameter as Bambu reports it (`"0.4"`, or a number), in micrometres.
fn nozzle_um(value: &serde_json::Value) -> Option<u32> {
    let mm = match value {
        serde_json::Value::String(text) => text.trim().parse::<f64>().ok()?,
        serde_json::Value::Number(number) => number.as_f64()?,
        _ => return None,
    };
    (mm > 0.0 && mm < 5.0).then(|| (mm * 1000.0).round() as u32)
}

/// `30 s`, or `600 ms` for a timeout under a second.
fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} s", duration.as_secs())
    }
}
