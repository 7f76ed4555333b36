//! The wire contract between a kitt edge agent and the hub.
//!
//! Everything that crosses the agent–hub link is one of two top-level messages:
//! [`AgentMessage`] (agent → hub) and [`HubMessage`] (hub → agent), each carried in a
//! [`frame`]: `magic "KT" | version u16 LE | length u32 LE | postcard payload`.
//! The full specification, with MUST/SHOULD, is `docs/specs/wire.md`.
//!
//! # Constraints
//!
//! - No I/O. This crate knows nothing of tokio, QUIC, databases or HTTP (checked by
//!   `cargo xtask deps`, which runs as a test). It can be used from a sans-IO state machine,
//!   a fuzzer, or a browser.
//! - Decoding untrusted bytes never panics, is bounded by a size limit chosen by the caller,
//!   and returns a typed [`DecodeError`].
//!
//! # Evolution rules
//!
//! postcard is not self-describing: the bytes carry no field names and enum variants are
//! encoded by their position. Hence:
//!
//! 1. **Enums are append-only.** A new variant goes at the end; a variant is never removed
//!    or reordered (retire it by no longer sending it). The golden-byte tests in
//!    `proto/tests/golden/` pin every variant's position and fail on a reorder.
//! 2. **Structs are frozen.** Adding, removing or reordering a field changes the encoding of
//!    every message that contains it. To extend a struct, add a new enum variant that carries
//!    the new shape (`Telemetry` → a later `TelemetryV2`), and bump [`PROTOCOL_VERSION`].
//! 3. **Never send what the peer cannot read.** The agent announces the newest version it
//!    speaks in [`AgentHello`]; the hub answers with the version the session will use in
//!    [`HubWelcome`]. A sender MUST NOT emit a variant introduced after the session's version.
//!    Each frame is labelled with the first version that has everything in it
//!    ([`frame::Message::since`]), so `Hello` and `Welcome` are readable by any peer: a
//!    variant added in version N, at any depth, makes its message's `since` return N.
//! 4. Sets that must tolerate unknown members (capabilities) are bit sets, where an unknown
//!    bit is ignored rather than rejected.

mod agent;
mod command;
pub mod files;
pub mod frame;
mod hub;
mod ids;
pub mod json;
mod managed;
pub mod net;
mod neutral;
mod printer;

pub use agent::{
    AgentCounters, AgentHealth, AgentHealthV2, AgentHealthV3, AgentHello, AgentMessage,
    CameraHealth, CameraState, CertificateRequest, ClockOffset, DropClass, DropCount, DropReason,
    EnrollRequest, ImageFormat, LiveFrame, PrinterCounters, PrinterInfo, Record, RecordBody,
    SnapshotChunk, SnapshotTrigger, SoftwareVersion, Vendor,
};
pub use command::{
    Command, CommandAction, CommandOutcome, CommandResult, Precondition, StartJob, StartPrint,
};
pub use files::{FileOffer, FileRefused, FileStored, FileStreamHeader, FileWant};
pub use frame::{DecodeError, EncodeError, FrameDecoder, FrameHeader};
pub use hub::{
    Ack, Capabilities, CertificateIssued, ConfigPush, DisconnectReason, EnrollRefusal, Enrolled,
    HubMessage, HubWelcome, LiveViewAction, LiveViewRequest,
};
pub use ids::{AgentId, CameraId, CommandId, IdError, PrinterId, Seq, SnapshotId, UnixMillis};
pub use managed::{
    DesiredPrinters, DiscoveredPrinter, DiscoveredPrinters, ManagedLink, ManagedPrinter,
    PrinterApplied, PrintersApplied,
};
pub use neutral::{
    AmsInfo, BambuDetail, Controls, FilamentSensor, FilamentSlot, Heater, HeaterKind,
    KlipperDetail, KlippyState, PrinterStateV2, PrinterTelemetryV2, SlotRef, VendorDetail,
};
pub use printer::{
    AmsKind, AmsUnit, ControlCapability, Fan, FanKind, Hms, HmsSeverity, JobOutcome, Light,
    LightMode, LightNode, PrintState, PrinterEvent, PrinterEventKind, PrinterState,
    PrinterTelemetry, Rgb, SpeedLevel, SpoolTag, Tray, TrayRef,
};

/// The newest wire version this build speaks, written in every frame it sends.
pub const PROTOCOL_VERSION: u16 = 8;

/// The oldest wire version this build still decodes.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

#[cfg(test)]
mod tests;
