//! The printer subsystem: one driver per printer, turning the printer's own protocol into
//! kitt's vendor-neutral [`proto::PrinterStateV2`] and [`proto::PrinterEventKind`]s, and
//! carrying commands back. [`link`] is the interface every driver presents to the agent.
//!
//! Bambu Lab (LAN MQTT over TLS) is the first kind, in [`bambu`]. The decision logic (merge,
//! normalisation, events, acknowledgements, watchdog) is sans-IO and tested without sockets,
//! in Bambu's own terms ([`proto::PrinterState`]); [`bambu::link`] is the thin async driver
//! that owns the MQTT connection and hands the state on in the neutral ones.

pub mod bambu;
pub mod events;
pub mod link;
pub mod moonraker;
