//! Agent → hub messages, and the durable records they carry.

use serde::{Deserialize, Serialize};

use crate::{
    AgentId, CameraId, Capabilities, CommandResult, PrinterEvent, PrinterId, PrinterTelemetry,
    PrinterTelemetryV2, Seq, SnapshotId, UnixMillis,
};

/// Everything an agent sends to the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum AgentMessage {
    /// First message on every sync connection.
    Hello(AgentHello),
    /// Outbox records, in strictly increasing `seq` order, possibly resent after a
    /// reconnect.
    Records(#[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))] Vec<Record>),
    /// Ask for a fresh client certificate before the current one expires.
    CertificateRequest(CertificateRequest),
    /// First and only message of an enrollment connection, which has no client certificate.
    Enroll(EnrollRequest),
    /// A camera frame for live view: not durable, dropped rather than queued when late.
    LiveFrame(LiveFrame),
    /// Since wire version 7: the bytes of an offered file from this offset on.
    FileWant(crate::FileWant),
    /// Since wire version 7: an offered file is whole and checked on the agent.
    FileStored(crate::FileStored),
    /// Since wire version 7: the agent cannot take an offered file.
    FileRefused(crate::FileRefused),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AgentHello {
    pub agent: AgentId,
    /// The newest protocol version the agent speaks.
    pub protocol_version: u16,
    pub software: SoftwareVersion,
    pub capabilities: Capabilities,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub printers: Vec<PrinterInfo>,
    /// The last sequence number the agent has assigned (so the hub can tell how far behind
    /// it is); `Seq::ZERO` when none.
    pub last_seq: Seq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SoftwareVersion {
    /// The agent's semantic version, e.g. `0.1.0`.
    pub version: String,
    /// The commit it was built from, when known.
    pub commit: Option<String>,
    /// The target triple, e.g. `aarch64-unknown-linux-gnu`.
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterInfo {
    pub id: PrinterId,
    pub vendor: Vendor,
    /// The vendor's model code, when known.
    pub model: Option<String>,
    /// A name the operator gave the printer.
    pub name: Option<String>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub cameras: Vec<CameraId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Vendor {
    BambuLab,
    Moonraker,
    Elegoo,
    Snapmaker,
}

/// One durable record from the agent's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Record {
    /// Assigned by the agent, strictly increasing, never reused.
    pub seq: Seq,
    /// When the agent observed what the record describes.
    pub observed_at: UnixMillis,
    pub body: RecordBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RecordBody {
    Telemetry(PrinterTelemetry),
    PrinterEvent(PrinterEvent),
    Snapshot(SnapshotChunk),
    AgentHealth(AgentHealth),
    CommandResult(CommandResult),
    /// Since wire version 2.
    CameraHealth(CameraHealth),
    /// Since wire version 3: the agent's health with its counters. In a session of an older
    /// version the agent sends its `health` alone, as `AgentHealth`.
    AgentHealthV2(AgentHealthV2),
    /// Since wire version 4: the agent's health, its counters and its clock's offset from
    /// the hub's. In a session of an older version the agent sends it as `AgentHealthV2`
    /// (version 3) or `AgentHealth`.
    AgentHealthV3(AgentHealthV3),
    /// Since wire version 5: a printer's state in vendor-neutral terms, with what only its
    /// kind reports in a part of its own. In a session of an older version the agent sends
    /// it as `Telemetry` ([`crate::PrinterStateV2::to_v1`]).
    TelemetryV2(PrinterTelemetryV2),
    /// Since wire version 6: the version of the hub's managed printers the agent applied,
    /// and each printer's outcome. Not sent in an older session (no such hub manages
    /// printers).
    PrintersApplied(crate::PrintersApplied),
    /// Since wire version 6: the printers the agent heard announce themselves on its LAN.
    /// Not sent in an older session.
    Discovered(crate::DiscoveredPrinters),
}

impl RecordBody {
    /// The first wire version that has this record.
    pub fn since(&self) -> u16 {
        match self {
            RecordBody::PrinterEvent(event) => event.kind.since(),
            RecordBody::Telemetry(_)
            | RecordBody::Snapshot(_)
            | RecordBody::AgentHealth(_)
            | RecordBody::CommandResult(_) => 1,
            RecordBody::CameraHealth(_) => 2,
            RecordBody::AgentHealthV2(_) => 3,
            RecordBody::AgentHealthV3(_) => 4,
            RecordBody::TelemetryV2(_) => 5,
            RecordBody::PrintersApplied(_) | RecordBody::Discovered(_) => 6,
        }
    }
}

impl AgentMessage {
    /// The first wire version that can carry this message: a frame is labelled with it, so
    /// that a peer of an older version reads every message it could have received from an
    /// agent of its own version.
    pub fn since(&self) -> u16 {
        match self {
            AgentMessage::Records(records) => {
                records.iter().map(|record| record.body.since()).max().unwrap_or(1)
            }
            AgentMessage::Hello(_)
            | AgentMessage::CertificateRequest(_)
            | AgentMessage::Enroll(_)
            | AgentMessage::LiveFrame(_) => 1,
            AgentMessage::FileWant(_)
            | AgentMessage::FileStored(_)
            | AgentMessage::FileRefused(_) => 7,
        }
    }
}

/// One chunk of a camera snapshot. Every chunk repeats the snapshot's metadata so that
/// each is self-describing; the hub assembles chunks `0..chunk_count` and checks the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapshotChunk {
    pub snapshot: SnapshotId,
    pub printer: PrinterId,
    pub camera: CameraId,
    pub trigger: SnapshotTrigger,
    pub format: ImageFormat,
    pub captured_at: UnixMillis,
    /// The whole image's length in bytes.
    pub total_len: u32,
    /// SHA-256 of the whole image.
    pub sha256: [u8; 32],
    pub chunk_index: u16,
    pub chunk_count: u16,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SnapshotTrigger {
    JobStarted,
    FirstLayerDone,
    Interval,
    Layer(u32),
    Paused,
    Failed,
    Finished,
    /// A person or the hub asked for it.
    Requested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ImageFormat {
    Jpeg,
}

/// The agent's own health, sampled periodically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AgentHealth {
    pub outbox_records: u64,
    pub outbox_bytes: u64,
    /// Cumulative drop counts since the outbox was created.
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub drops: Vec<DropCount>,
    pub disk_free_bytes: u64,
    pub uptime_s: u64,
    pub software: SoftwareVersion,
    /// When the agent's client certificate expires.
    pub certificate_expires_at: Option<UnixMillis>,
}

/// The agent's health and its counters (wire version 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AgentHealthV2 {
    /// Everything `AgentHealth` carries, unchanged.
    pub health: AgentHealth,
    pub counters: AgentCounters,
}

/// The agent's health, its counters and its clock (wire version 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AgentHealthV3 {
    /// Everything `AgentHealthV2` carries, unchanged.
    pub health: AgentHealthV2,
    /// The agent's clock against the hub's, as measured at the last welcome; `None` before
    /// the first one.
    pub clock: Option<ClockOffset>,
}

/// How far the agent's clock is from the hub's: `offset_ms` is the hub's clock minus the
/// agent's (positive when the agent is behind). The agent follows the hub's clock from the
/// last `Welcome.hub_time` (plus half the `Hello`/`Welcome` round trip) on its monotonic
/// clock; the true offset lies within `± uncertainty_ms` (half that round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClockOffset {
    pub offset_ms: i64,
    pub uncertainty_ms: u32,
    /// When it was read, on the agent's clock. (The agent follows the hub's clock on its
    /// monotonic clock from the last welcome, so this is fresh in every health record.)
    pub measured_at: UnixMillis,
}

/// What the agent refused or lost, counted since the agent process started (they start at
/// zero again after a restart, which `AgentHealth.uptime_s` shows; read them as Prometheus
/// counters). Outbox drops are `AgentHealth.drops`, cumulative over the outbox's life.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AgentCounters {
    /// Sessions with the hub that ended in an error (lost, refused, unreachable) and were
    /// retried.
    pub hub_reconnects: u64,
    /// Messages from the hub refused: undecodable frames and protocol violations.
    pub hub_protocol_errors: u64,
    /// Hub commands answered as failed without execution: the printer's command queue was
    /// full, or the agent has no such printer.
    pub commands_refused: u64,
    /// One entry per printer the agent serves.
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub printers: Vec<PrinterCounters>,
}

/// One printer's counters in [`AgentCounters`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterCounters {
    pub printer: PrinterId,
    /// Printer link failures: a connection that could not be made or was lost, a refused
    /// access code, a refused certificate.
    pub link_errors: u64,
    /// MQTT payloads from the printer refused as malformed (not JSON, not a report).
    pub bad_payloads: u64,
    /// Failures of the printer's cameras: a source that could not be opened, a stream that
    /// broke or sent bytes that are not frames.
    pub camera_errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DropCount {
    pub class: DropClass,
    pub reason: DropReason,
    pub count: u64,
}

/// The outbox's record classes, each with its own retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DropClass {
    Telemetry,
    Event,
    Snapshot,
    Health,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DropReason {
    /// Evicted to make room under the outbox's byte capacity.
    Capacity,
    /// Found torn or corrupt on start-up and skipped.
    Corrupt,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CertificateRequest {
    /// A PKCS#10 certificate signing request, DER. The key never leaves the agent.
    pub csr_der: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct EnrollRequest {
    /// The single-use bootstrap token from `kitt-hub token create`.
    pub token: String,
    pub csr_der: Vec<u8>,
    pub software: SoftwareVersion,
    /// The host name of the device, for the operator's benefit.
    pub hostname: String,
}

/// A camera's health, sent when its state changes, with every agent health report, and in
/// answer to a snapshot request the camera could not serve (so a request never waits for a
/// success that cannot come).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CameraHealth {
    pub printer: PrinterId,
    pub camera: CameraId,
    /// What the source is (`bambu port 6000 at 192.168.1.20`); never a secret.
    pub source: String,
    pub state: CameraState,
    /// Frames received per second over the last health interval, in thousandths.
    pub fps_milli: u32,
    pub last_frame_at: Option<UnixMillis>,
    pub width: u16,
    pub height: u16,
    /// Frames received since the agent started.
    pub frames_total: u64,
    /// Why the camera last failed, for the operator.
    pub last_error: Option<String>,
    /// Whether the agent is streaming live view to the hub.
    pub live: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CameraState {
    /// An on-demand source (RTSPS, snapshot URL) that nobody needs right now.
    Idle,
    Connecting,
    /// Frames are arriving.
    Streaming,
    /// The last attempt failed (`last_error` says why); the agent retries with backoff.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LiveFrame {
    pub printer: PrinterId,
    pub camera: CameraId,
    pub captured_at: UnixMillis,
    pub format: ImageFormat,
    pub data: Vec<u8>,
}
