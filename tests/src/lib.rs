//! kitt's system tests and the harness they share.
//!
//! The harness grows with the system: `Hub::spawn()`, `Agent::new().hub(&hub)…`, the
//! printer simulator, the UDP impairment relay, throwaway PostgreSQL and mosquitto.
