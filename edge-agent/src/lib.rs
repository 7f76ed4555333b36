//! kitt's edge agent: runs on a Raspberry Pi beside a printer.
//!
//! Subsystems (arriving issue by issue): the printer link, cameras, the durable outbox and
//! the QUIC sync to the hub. `main.rs` is a thin shell over [`cli::run`].

pub mod cli;
