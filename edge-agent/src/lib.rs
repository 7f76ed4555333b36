//! kitt's edge agent: runs on a Raspberry Pi beside a printer.
//!
//! Subsystems (arriving issue by issue): the printer link ([`printer`]), cameras, the
//! durable outbox and the QUIC sync to the hub. `main.rs` is a thin shell over [`cli::run`].

pub mod agent;
pub mod backoff;
pub mod camera;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod counters;
pub mod discovery;
pub mod file_cache;
pub mod managed;
pub mod outbox;
pub mod printer;
pub mod state;
pub mod sync;

/// Installs ring as the process's one rustls crypto provider. Safe to call more than once.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
