//! The transport's names and numbers that the agent and the hub must spell the same: ALPN
//! protocol names, the name in the hub's server certificate, QUIC close codes, the enrollment
//! token's prefix. `docs/specs/wire.md` ("Transport", "Enrollment") is their contract.

use std::time::Duration;

/// The name the hub's server certificate carries and agents verify, whatever address they
/// dial: agents trust the hub CA alone, so the hub's address may change without re-enrolling
/// anyone.
pub const HUB_SERVER_NAME: &str = "hub.kitt";

/// ALPN of an enrollment connection: no client certificate, one `Enroll` answered by
/// `Enrolled` or `EnrollRefused`.
pub const ALPN_ENROLL: &[u8] = b"kitt-enroll/1";

/// ALPN of a sync connection: a client certificate issued by the hub CA is required.
pub const ALPN_SYNC: &[u8] = b"kitt-sync/1";

/// The first dot-separated part of an enrollment token, `kitt1.<id>.<secret>.<ca>`.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "kitt1";

/// How long the hub's agent certificates are valid by default. Agents renew at two thirds of
/// their certificate's lifetime and assume this one when they cannot read it.
pub const AGENT_CERT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// QUIC application error codes the hub closes connections with. Before closing on purpose
/// the hub sends `Disconnect { reason }` on the stream when it can.
pub mod close_code {
    /// A normal close.
    pub const NORMAL: u32 = 0;
    /// The peer broke the protocol (undecodable frame, records out of order, unknown ALPN).
    pub const PROTOCOL: u32 = 1;
    /// No client certificate, or one for an agent the hub does not know. The agent stops
    /// retrying quickly: only a new enrollment helps.
    pub const UNAUTHENTICATED: u32 = 2;
    /// The agent has been revoked. As for [`UNAUTHENTICATED`], retrying does not help.
    pub const REVOKED: u32 = 3;
    /// A newer connection of the same agent replaced this one.
    pub const SUPERSEDED: u32 = 4;
    /// The hub is shutting down.
    pub const SHUTTING_DOWN: u32 = 5;
    /// The hub's storage is unavailable; the agent resends from the watermark later.
    pub const INTERNAL: u32 = 6;
}
