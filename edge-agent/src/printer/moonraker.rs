//! Klipper printers through Moonraker (WebSocket JSON-RPC on port 7125).
//!
//! - [`status`]: the subscribed printer objects, merged from Moonraker's deltas, read as a
//!   vendor-neutral state (sans-IO);
//! - [`session`]: the JSON-RPC conversation (identify, subscribe, Klippy's lifecycle,
//!   history, webcams, commands, timeouts), sans-IO;
//! - [`link`]: the async driver behind [`super::link`] (WebSocket, one-shot token,
//!   reconnects with backoff, pings).

pub mod link;
pub mod session;
pub mod status;
pub mod upload;
