//! printer-sim's integration tests: a real TLS + MQTT client against a running simulator.

mod mqtt;
mod printer;
mod support;
