//! The agent's link to the hub: enrollment, identity, and the sync of the outbox over QUIC
//! with mutual TLS. The protocol logic is the sans-IO [`machine::SyncMachine`]; the wire
//! contract is in `docs/specs/wire.md`.

pub mod client;
pub mod enroll;
mod files;
pub mod identity;
pub mod machine;
pub mod tls;
