//! The agent's configuration file (`/etc/kitt-agent/agent.toml`), validated up front.
//!
//! A serde [`RawConfig`] with unknown keys refused converts into [`AgentConfig`] with real
//! types; the conversion reports every problem at once, each naming its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::PrinterId;
use serde::Deserialize;

use crate::printer::bambu::link::AccessCode;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/kitt-agent";
const DEFAULT_CAPACITY_MB: u64 = 64;
const DEFAULT_SNAPSHOT_CAPACITY_MB: u64 = 16;
const DEFAULT_KEEP_ALIVE_S: u64 = 15;
const DEFAULT_IDLE_TIMEOUT_S: u64 = 60;
const DEFAULT_TELEMETRY_INTERVAL_MS: u64 = 1000;
const DEFAULT_HEALTH_INTERVAL_S: u64 = 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the identity, the outbox and pinned printer keys live.
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// One entry per printer this agent watches.
    #[serde(default, rename = "printer")]
    pub printers: Vec<RawPrinter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// Budget for telemetry, events and health, in MiB (at least 8).
    pub capacity_mb: Option<u64>,
    /// Separate budget for camera snapshots, in MiB.
    pub snapshot_capacity_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// QUIC keep-alive interval, seconds.
    pub keep_alive_s: Option<u64>,
    /// Drop the hub connection after this long without traffic, seconds.
    pub idle_timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// At most one telemetry sample per printer per interval; changes in between are
    /// coalesced into the next sample.
    pub interval_ms: Option<u64>,
    /// How often the agent reports its own health (outbox depth, drops), seconds.
    pub health_interval_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrinter {
    pub serial: String,
    pub host: String,
    pub port: Option<u16>,
    pub access_code: String,
    /// PEM file with the CA that signs the printer's certificate; without it the printer's
    /// key is pinned on first use.
    pub ca: Option<PathBuf>,
    pub name: Option<String>,
    pub model: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub capacity_bytes: u64,
    pub snapshot_capacity_bytes: u64,
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    pub telemetry_interval: Duration,
    pub health_interval: Duration,
    pub printers: Vec<PrinterConfig>,
}

#[derive(Debug, Clone)]
pub struct PrinterConfig {
    pub serial: PrinterId,
    pub host: String,
    pub port: u16,
    pub access_code: AccessCode,
    pub ca: Option<PathBuf>,
    pub name: Option<String>,
    pub model: Option<String>,
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
        AgentConfig::parse(&text)
    }

    pub fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string().trim().to_owned()]))?;
        raw.validate()
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<AgentConfig, ConfigError> {
        let mut problems = Vec::new();
        let capacity_mb = self.outbox.capacity_mb.unwrap_or(DEFAULT_CAPACITY_MB);
        if capacity_mb < 8 {
            problems.push(format!("outbox.capacity_mb = {capacity_mb}: must be at least 8"));
        }
        let keep_alive = self.sync.keep_alive_s.unwrap_or(DEFAULT_KEEP_ALIVE_S);
        let idle = self.sync.idle_timeout_s.unwrap_or(DEFAULT_IDLE_TIMEOUT_S);
        if keep_alive == 0 || keep_alive >= idle {
            problems.push(format!(
                "sync.keep_alive_s = {keep_alive}: must be above 0 and below sync.idle_timeout_s ({idle})"
            ));
        }
        let telemetry = self.telemetry.interval_ms.unwrap_or(DEFAULT_TELEMETRY_INTERVAL_MS);
        if telemetry < 100 {
            problems.push(format!("telemetry.interval_ms = {telemetry}: must be at least 100"));
        }
        let mut printers = Vec::new();
        for (i, printer) in self.printers.into_iter().enumerate() {
            let at = |key: &str| format!("printer[{i}].{key}");
            let serial = PrinterId::new(printer.serial.trim())
                .map_err(|e| problems.push(format!("{}: {e}", at("serial"))))
                .ok();
            let access_code = AccessCode::new(&printer.access_code)
                .map_err(|e| problems.push(format!("{}: {e}", at("access_code"))))
                .ok();
            if let Some(ca) = &printer.ca
                && !ca.is_file()
            {
                problems.push(format!("{}: {} does not exist", at("ca"), ca.display()));
            }
            if let (Some(serial), Some(access_code)) = (serial, access_code) {
                if printers.iter().any(|p: &PrinterConfig| p.serial == serial) {
                    problems.push(format!("{}: {serial} is listed twice", at("serial")));
                }
                printers.push(PrinterConfig {
                    serial,
                    host: printer.host,
                    port: printer.port.unwrap_or(8883),
                    access_code,
                    ca: printer.ca,
                    name: printer.name,
                    model: printer.model,
                });
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(AgentConfig {
            state_dir: self.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            capacity_bytes: capacity_mb << 20,
            snapshot_capacity_bytes: self
                .outbox
                .snapshot_capacity_mb
                .unwrap_or(DEFAULT_SNAPSHOT_CAPACITY_MB)
                << 20,
            keep_alive: Duration::from_secs(keep_alive),
            idle_timeout: Duration::from_secs(idle),
            telemetry_interval: Duration::from_millis(telemetry),
            health_interval: Duration::from_secs(
                self.telemetry.health_interval_s.unwrap_or(DEFAULT_HEALTH_INTERVAL_S).max(1),
            ),
            printers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_named() {
        let error = AgentConfig::parse("state_dir = \"/tmp\"\ncapacity = 3\n").unwrap_err();
        assert!(error.to_string().contains("unknown field `capacity`"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [outbox]
            capacity_mb = 2
            [sync]
            keep_alive_s = 90
            [[printer]]
            serial = ""
            host = "p1"
            access_code = ""
        "#;
        let error = AgentConfig::parse(text).unwrap_err();
        assert_eq!(error.0.len(), 4, "{error}");
        assert!(error.0[0].starts_with("outbox.capacity_mb"), "{error}");
        assert!(error.0[2].starts_with("printer[0].serial"), "{error}");
        assert!(error.0[3].starts_with("printer[0].access_code"), "{error}");
    }

    #[test]
    fn defaults_fill_an_almost_empty_file() {
        let config = AgentConfig::parse(
            "[[printer]]\nserial = \"01P00A391800001\"\nhost = \"10.0.0.5\"\naccess_code = \"12345678\"\n",
        )
        .unwrap();
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(config.capacity_bytes, 64 << 20);
        assert_eq!(config.keep_alive, Duration::from_secs(15));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.printers[0].port, 8883);
    }
}
