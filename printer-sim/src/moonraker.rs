//! A simulated Klipper printer behind Moonraker: the real Moonraker API (WebSocket JSON-RPC
//! and the HTTP endpoints a client uses, file upload included) over real sockets, and a
//! webcam on a second port as a host's web server serves one. Independent of the agent, like
//! the Bambu simulator.
//!
//! - [`klipper`]: the printer, sans-IO: objects, job engine, Klippy's lifecycle, history,
//!   files, faults (Klippy shutdown mid-print, thermal runaway, runout through the filament
//!   switch sensor, a failed print).
//! - [`server`]: the sockets: JSON-RPC, status updates as Moonraker sends them, the HTTP
//!   endpoints, API key and one-shot tokens, the webcam (MJPEG stream and snapshot), and
//!   dropped connections from the handle.
//!
//! Use from tests: [`server::start`] with a [`server::MoonrakerConfig`] (binds
//! `127.0.0.1:0`), connect to `ws://{addr}/websocket`.

pub mod klipper;
pub mod server;

pub use klipper::{Klipper, KlipperFault, KlipperSettings};
pub use server::{MoonrakerConfig, MoonrakerHandle, start};
