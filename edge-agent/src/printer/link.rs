//! What the rest of the agent sees of a printer, whatever its kind: a driver (one per
//! printer, owning its connection: [`super::bambu::link`] for Bambu Lab's LAN MQTT) sends
//! [`LinkOutput`]s (the printer's state in vendor-neutral terms, the events derived from
//! it, problems a person should hear about) and takes commands through a [`LinkHandle`],
//! answering each with its outcome.
//!
//! Each kind fits the same shape, one driver each:
//! - Klipper through Moonraker ([`super::moonraker::link`]): a WebSocket JSON-RPC session,
//!   `notify_status_update` deltas merged like Bambu's pushes, Klippy's own state in
//!   [`proto::KlipperDetail`], and the webcams Moonraker lists as [`LinkOutput::Cameras`].
//! - Elegoo's SDCP (Centauri Carbon): a WebSocket of JSON status pushes on port 3030, a
//!   `ping` heartbeat, commands by number with an `Ack`; its `PrintInfo.Status` maps onto
//!   [`proto::PrintState`] and its `CurrentLayer`/`TotalLayer` onto the common fields, and
//!   what has no common place (the box temperature, the platform type) would go in a new
//!   [`proto::VendorDetail`] variant.
//! - Snapmaker: the U1 runs Moonraker (the Klipper driver, with its `filament_detect`
//!   object read into the filament slots); the 2.0 series polls an HTTP API on port 8080
//!   with a token the person accepts on the touchscreen, one more driver with the same
//!   outputs.

use proto::{CommandAction, CommandOutcome, PrinterEventKind, PrinterStateV2, UnixMillis};
use tokio::sync::{mpsc, oneshot};

use super::bambu::tls::CertificateProblem;

/// What a driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkOutput {
    State(Box<PrinterStateV2>),
    Event {
        at: UnixMillis,
        kind: PrinterEventKind,
    },
    Problem(LinkProblem),
    /// The cameras the printer itself names (Moonraker's webcams), replacing any named
    /// before; empty when it names none.
    Cameras(Vec<PrinterCamera>),
    /// The nozzle's diameter in micrometres, as the printer reports it (Bambu's
    /// `nozzle_diameter`), when it changes: for the start's precondition, not recorded.
    Nozzle(Option<u32>),
}

/// A camera the printer names, and where its frames are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterCamera {
    pub name: String,
    pub url: CameraUrl,
}

/// Where a printer-named camera's frames are: an absolute `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraUrl {
    /// A `multipart/x-mixed-replace` stream.
    Mjpeg(String),
    /// One JPEG per GET, polled.
    Snapshot(String),
}

impl CameraUrl {
    /// How often a snapshot URL is polled.
    pub const SNAPSHOT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn source(&self) -> crate::camera::SourceConfig {
        match self {
            CameraUrl::Mjpeg(url) => crate::camera::SourceConfig::Mjpeg { url: url.clone() },
            CameraUrl::Snapshot(url) => crate::camera::SourceConfig::Snapshot {
                url: url.clone(),
                interval: Self::SNAPSHOT_INTERVAL,
            },
        }
    }
}

/// Something the user should hear about; the link keeps trying.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkProblem {
    #[error(
        "the printer refused the access code; check the 8-character LAN access code on the printer's screen (retrying in {retry_s} s)"
    )]
    WrongAccessCode { retry_s: u64 },
    #[error("{problem} (retrying in {retry_s} s)")]
    Certificate { problem: CertificateProblem, retry_s: u64 },
    #[error("cannot reach the printer: {detail} (retrying in {retry_ms} ms)")]
    Connection { detail: String, retry_ms: u64 },
    #[error(
        "Moonraker refused the API key ({detail}); check the key in Moonraker's authorization settings (retrying in {retry_s} s)"
    )]
    KeyRefused { detail: String, retry_s: u64 },
    #[error("ignored a malformed report: {0}")]
    BadReport(String),
    #[error("{0}")]
    ReadOnly(&'static str),
    #[error(
        "the printer reports an unknown model \"{0}\": kitt shows its state, but door and chamber readings are left out until this agent knows the model"
    )]
    UnknownModel(String),
}

/// A command for the link, with where its outcome goes.
pub type LinkRequest = (CommandAction, oneshot::Sender<CommandOutcome>);

/// Sends commands to a running link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    commands: mpsc::Sender<LinkRequest>,
}

impl LinkHandle {
    /// A handle whose requests arrive on `commands`: the driver keeps the receiver.
    pub(crate) fn new(commands: mpsc::Sender<LinkRequest>) -> LinkHandle {
        LinkHandle { commands }
    }

    /// A handle whose requests arrive on the returned receiver, for tests that play the link.
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (LinkHandle, mpsc::Receiver<LinkRequest>) {
        let (commands, requests) = mpsc::channel(capacity);
        (LinkHandle { commands }, requests)
    }

    /// Sends `action` and waits for the printer's answer (at most the ACK timeout).
    pub async fn send(&self, action: CommandAction) -> CommandOutcome {
        let (reply, answer) = oneshot::channel();
        if self.commands.send((action, reply)).await.is_err() {
            return CommandOutcome::Failed { detail: "the printer link has stopped".into() };
        }
        answer
            .await
            .unwrap_or(CommandOutcome::Failed { detail: "the printer link has stopped".into() })
    }
}

/// After a connection ended: the wait before the next attempt (the attempt's own `delay`, or
/// the backoff's next, jittered; `reset` starts the backoff over after a connection that
/// worked), and the problem to report, with that wait filled in. Every driver's retry loop
/// shares it.
pub(crate) fn next_attempt(
    backoff: &mut crate::backoff::Backoff,
    delay: Option<std::time::Duration>,
    problem: Option<LinkProblem>,
    reset: bool,
) -> (std::time::Duration, Option<LinkProblem>) {
    if reset {
        backoff.reset();
    }
    // An attempt that names its own delay still counts as a failure.
    let jittered = backoff.next_wait();
    let delay = delay.unwrap_or(jittered);
    let problem = problem.map(|problem| match problem {
        LinkProblem::Connection { detail, .. } => {
            LinkProblem::Connection { detail, retry_ms: delay.as_millis() as u64 }
        }
        other => other,
    });
    (delay, problem)
}

/// Logs and reports a problem; false when nobody listens any more.
pub(crate) async fn report(
    outputs: &mpsc::Sender<LinkOutput>,
    problem: Option<LinkProblem>,
) -> bool {
    let Some(problem) = problem else { return true };
    tracing::warn!(%problem, "Printer link problem.");
    outputs.send(LinkOutput::Problem(problem)).await.is_ok()
}
