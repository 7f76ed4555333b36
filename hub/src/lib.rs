//! kitt's hub: receives what the agents sync, keeps it, and serves it to people and scripts.
//!
//! `main.rs` is a thin shell over [`cli::run`].

pub mod ca;
pub mod cli;
pub mod db;
pub mod sync;
