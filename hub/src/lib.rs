//! kitt's hub: receives what the agents sync, keeps it, and serves it to people and scripts.
//!
//! `main.rs` is a thin shell over [`cli::run`].

pub mod api;
pub mod app;
pub mod assistant;
pub mod ca;
pub mod camera;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod demo;
pub mod files;
pub mod inventory;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod outcomes;
pub mod queue;
pub mod scheduler;
pub mod service;
pub mod supervise;
pub mod sync;
pub mod web;
