//! The printer subsystem: one link per printer, turning the printer's own protocol into
//! kitt's normalised [`proto::PrinterState`] and [`proto::PrinterEventKind`]s, and carrying
//! commands back.
//!
//! Bambu Lab (LAN MQTT over TLS) is the first vendor, in [`bambu`]. The decision logic (merge,
//! normalisation, events, acknowledgements, watchdog) is sans-IO and tested without sockets;
//! [`bambu::link`] is the thin async driver that owns the MQTT connection.

pub mod bambu;
pub mod events;
