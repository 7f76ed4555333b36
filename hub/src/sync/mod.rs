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
pub mod frames;
mod ingest;
pub mod server;
pub mod session;
pub mod token;

/// The name in the hub's server certificate that agents verify.
pub const HUB_SERVER_NAME: &str = "hub.kitt";
/// ALPN for enrollment.
pub const ALPN_ENROLL: &[u8] = b"kitt-enroll/1";
/// ALPN for sync.
pub const ALPN_SYNC: &[u8] = b"kitt-sync/1";

/// QUIC application error codes the hub closes connections with.
pub mod close_code {
    pub const NORMAL: u32 = 0;
    pub const PROTOCOL: u32 = 1;
    pub const UNAUTHENTICATED: u32 = 2;
    pub const REVOKED: u32 = 3;
    pub const SUPERSEDED: u32 = 4;
    pub const SHUTTING_DOWN: u32 = 5;
    pub const INTERNAL: u32 = 6;
}
