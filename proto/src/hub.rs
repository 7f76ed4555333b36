//! Hub → agent messages.

use serde::{Deserialize, Serialize};

use crate::{AgentId, CameraId, Command, PrinterId, Seq, UnixMillis};

/// Everything the hub sends to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum HubMessage {
    /// Answer to `Hello`: the session's version and where to resume.
    Welcome(HubWelcome),
    /// Cumulative: every record with `seq <= through` is committed at the hub and may be
    /// deleted by the agent. Sent only after the hub's database commit.
    Ack(Ack),
    Command(Command),
    ConfigPush(ConfigPush),
    CertificateIssued(CertificateIssued),
    /// Answer to a successful `Enroll`.
    Enrolled(Enrolled),
    /// Answer to a refused `Enroll`.
    EnrollRefused(EnrollRefusal),
    LiveView(LiveViewRequest),
    /// The hub is closing the connection, and why.
    Disconnect(DisconnectReason),
    /// Since wire version 6: the printers the hub manages for this agent, the whole list
    /// (see [`crate::DesiredPrinters`]). Sent after `Welcome` and whenever it changes.
    Printers(crate::DesiredPrinters),
    /// Since wire version 7: a print file the hub wants on the agent (see [`crate::files`]).
    FileOffer(crate::FileOffer),
    /// Since wire version 7: the hub no longer wants `transfer` (its job was cancelled);
    /// the agent stops receiving it and keeps what arrived for a later offer.
    FileCancel {
        transfer: u64,
    },
}

impl HubMessage {
    /// The first wire version that can carry this message (see [`crate::frame::Message`]).
    pub fn since(&self) -> u16 {
        match self {
            HubMessage::Command(command) => command.since(),
            HubMessage::Welcome(_)
            | HubMessage::Ack(_)
            | HubMessage::ConfigPush(_)
            | HubMessage::CertificateIssued(_)
            | HubMessage::Enrolled(_)
            | HubMessage::EnrollRefused(_)
            | HubMessage::LiveView(_)
            | HubMessage::Disconnect(_) => 1,
            HubMessage::Printers(_) => 6,
            HubMessage::FileOffer(_) | HubMessage::FileCancel { .. } => 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HubWelcome {
    /// The version both sides use for the rest of the session: the lower of the two.
    pub protocol_version: u16,
    pub hub_version: String,
    /// The highest sequence number the hub has committed for this agent; the agent resumes
    /// sending after it.
    pub acked_through: Seq,
    /// The hub's clock when it sent the welcome: the agent measures its clock's offset from
    /// it (see `ClockOffset`), converts the hub's times (command expiries, certificate
    /// lifetimes) onto its own clock with it, and reports it in its health records.
    pub hub_time: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Ack {
    pub through: Seq,
}

/// A new agent configuration, as a TOML document the agent validates before applying
/// (typed configuration evolves faster than the wire format; the agent's own parser with
/// `deny_unknown_fields` is the single source of truth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ConfigPush {
    /// Increases with every change; the agent ignores a revision older than its own.
    pub revision: u64,
    pub toml: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CertificateIssued {
    /// Leaf first, DER.
    pub chain_der: Vec<Vec<u8>>,
    pub not_after: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Enrolled {
    pub agent: AgentId,
    /// The agent's certificate chain, leaf first, DER.
    pub chain_der: Vec<Vec<u8>>,
    /// The hub's CA certificate, DER: the only root the agent trusts from now on.
    pub hub_ca_der: Vec<u8>,
    pub not_after: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum EnrollRefusal {
    UnknownToken,
    ExpiredToken,
    TokenAlreadyUsed,
    BadCsr { detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LiveViewRequest {
    pub printer: PrinterId,
    pub camera: CameraId,
    pub action: LiveViewAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LiveViewAction {
    /// Stream at most `max_fps_milli / 1000` frames per second until told to stop.
    Start {
        max_fps_milli: u32,
    },
    Stop,
    /// Take one snapshot now and send it as a `Requested` snapshot record.
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DisconnectReason {
    Revoked,
    /// The agent spoke a protocol version outside the hub's supported range.
    UnsupportedVersion {
        hub_min: u16,
        hub_max: u16,
    },
    ProtocolViolation {
        detail: String,
    },
    ShuttingDown,
    /// Another connection of the same agent took over.
    Superseded,
}

/// What an agent can do, as a bit set: unknown bits from a newer agent are ignored, never
/// rejected, so an older hub still decodes the hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Capabilities(pub u64);

impl Capabilities {
    pub const PRINTER_CONTROL: Capabilities = Capabilities(1 << 0);
    pub const SNAPSHOTS: Capabilities = Capabilities(1 << 1);
    pub const LIVE_VIEW: Capabilities = Capabilities(1 << 2);
    pub const CONFIG_PUSH: Capabilities = Capabilities(1 << 3);
    pub const CERTIFICATE_RENEWAL: Capabilities = Capabilities(1 << 4);

    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }
}
