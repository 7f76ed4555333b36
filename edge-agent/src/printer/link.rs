//! What the rest of the agent sees of a printer, whatever its kind: a driver (one per
//! printer, owning its connection: [`super::bambu::link`] for Bambu Lab's LAN MQTT) sends
//! [`LinkOutput`]s (the printer's state in vendor-neutral terms, the events derived from
//! it, problems a person should hear about) and takes commands through a [`LinkHandle`],
//! answering each with its outcome.
//!
//! The next kinds fit the same shape, one driver each:
//! - Klipper through Moonraker: a WebSocket JSON-RPC session, `notify_status_update` deltas
//!   merged like Bambu's pushes, Klippy's own state in [`proto::KlipperDetail`].
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
    Event { at: UnixMillis, kind: PrinterEventKind },
    Problem(LinkProblem),
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
