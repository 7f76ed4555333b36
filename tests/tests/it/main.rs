//! kitt's system tests: one binary, a module per area.

// A test binary: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod api;
mod assistant;
mod browser;
mod cluster;
mod demo;
mod deploy;
mod discovery;
mod ftps;
mod impairment;
mod memory;
mod moonraker_link;
mod printer_link;
mod scenarios;
mod scheduler;
mod spoolman;
mod storage;
mod sync;
mod upgrade;
