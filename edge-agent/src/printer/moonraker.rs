//! Klipper printers through Moonraker (WebSocket JSON-RPC on port 7125).
//!
//! Sans-IO so far: [`status`] holds the subscribed printer objects, merged from Moonraker's
//! deltas, and reads them as a vendor-neutral state; [`session`] is the JSON-RPC
//! conversation (identify, subscribe, Klippy's lifecycle, history, commands, timeouts). The
//! async driver behind [`super::link`] (WebSocket, reconnects with backoff), the webcams and
//! the simulator build on them.

pub mod session;
pub mod status;
