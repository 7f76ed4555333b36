//! printer-sim's integration tests: a real TLS + MQTT client against a running simulator.

mod camera;
mod cli;
mod mqtt;
mod printer;
mod support;
