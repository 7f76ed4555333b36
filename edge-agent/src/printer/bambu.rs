//! Bambu Lab printers over their LAN MQTT broker (`mqtts://<printer>:8883`, user `bblp`,
//! password = the LAN access code). Protocol notes: `docs/printer-protocols.md` of the
//! shared docs, section 3.
//!
//! - [`merge`]: full and delta reports into one document;
//! - [`normalize`]: that document into the normalised state;
//! - [`session`]: the per-printer state machine (commands, ACKs, control, watchdog);
//! - [`tls`]: the certificate verifier for the printers' X.509 v1 certificates;
//! - [`link`]: the async driver over rumqttc;
//! - [`ftps`]: putting a file on the printer (FTPS with TLS session reuse).

pub mod command;
pub mod ftps;
pub mod link;
pub mod merge;
pub mod normalize;
pub mod session;
pub mod tls;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
