//! Agents sync to the hub over QUIC with mutual TLS.
//!
//! Two ALPN protocols share one UDP port:
//! - `kitt-enroll/1`: no client certificate. The agent presents a single-use bootstrap token
//!   and a CSR; the hub answers with the agent's certificate and the hub CA
//!   ([`enroll`]).
//! - `kitt-sync/1`: a client certificate issued by the hub CA is required; the agent's
//!   identity is its certificate's common name. One bidirectional stream carries framed
//!   [`proto::AgentMessage`]s up and [`proto::HubMessage`]s down ([`server`]; the per-agent
//!   protocol is the sans-IO [`session::IngestSession`]). The wire contract is in
//!   `docs/specs/wire.md`.
//!
//! The server certificate always names [`HUB_SERVER_NAME`]: agents trust the hub CA alone, so
//! the hub's address may change (DHCP, a new host name) without re-enrolling anyone.

mod camera_intake;
mod delivery;
pub mod enroll;
mod files;
mod ingest;
pub mod server;
pub mod session;
pub mod token;

pub use proto::net::{ALPN_ENROLL, ALPN_SYNC, HUB_SERVER_NAME, close_code};
