//! The reference agent configuration, `deploy/agent/agent.toml`, read by the agent's own
//! parser: it is what the `.deb` installs as the default, so it must be valid as shipped,
//! state the defaults, and its commented-out examples must be valid once uncommented.

use std::path::PathBuf;
use std::time::Duration;

use edge_agent::config::{AgentConfig, PrinterLinkConfig};

const REFERENCE: &str = include_str!("../../../deploy/agent/agent.toml");

#[test]
fn the_reference_agent_configuration_parses_and_states_the_defaults() {
    let config = AgentConfig::parse(REFERENCE).unwrap();
    let defaults = AgentConfig::parse("").unwrap();
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/kitt-agent"));
    assert_eq!(config.state_dir, defaults.state_dir);
    assert_eq!(config.capacity_bytes, defaults.capacity_bytes);
    assert_eq!(config.snapshot_capacity_bytes, defaults.snapshot_capacity_bytes);
    assert_eq!(config.keep_alive, defaults.keep_alive);
    assert_eq!(config.idle_timeout, defaults.idle_timeout);
    assert_eq!(config.telemetry_interval, defaults.telemetry_interval);
    assert_eq!(config.health_interval, Duration::from_secs(60));
    assert_eq!(config.discovery_interval, defaults.discovery_interval);
    assert_eq!(config.discovery_interval, Some(Duration::from_secs(600)));
    assert!(config.printers.is_empty(), "no printer by default: the package ships this file");
}

#[test]
fn the_reference_agent_configurations_example_printer_parses_once_uncommented() {
    // `#key = value` (no space) is the example; `# text` is explanation.
    let uncommented: String = REFERENCE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let config = AgentConfig::parse(&uncommented).unwrap();
    let [printer, klipper] = config.printers.as_slice() else {
        panic!("two example printers, found {}", config.printers.len())
    };
    assert_eq!(printer.id.as_str(), "01P00A391800001");
    let PrinterLinkConfig::Bambu { host, port, access_code, .. } = &printer.link else {
        panic!("{printer:?}")
    };
    assert_eq!((host.as_str(), *port), ("192.168.1.50", 8883));
    assert_eq!(access_code.expose(), "12345678");
    assert_eq!(printer.name.as_deref(), Some("P1S by the window"));
    assert_eq!(klipper.id.as_str(), "voron-1");
    let PrinterLinkConfig::Moonraker { url, api_key, web_port } = &klipper.link else {
        panic!("{klipper:?}")
    };
    assert_eq!((url.host(), url.port(), *web_port), ("192.168.1.60", 7125, 80));
    assert!(api_key.is_some());
}
