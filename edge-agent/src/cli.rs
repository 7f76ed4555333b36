//! The `kitt-agent` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proto::PrinterId;
use tokio_util::sync::CancellationToken;

use crate::printer::bambu::link::{self, AccessCode, LinkConfig, LinkOutput};
use crate::printer::bambu::tls::Trust;

/// kitt's edge agent: the one link between a printer and the kitt hub.
#[derive(Debug, Parser)]
#[command(name = "kitt-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the agent's version and the wire protocol version it speaks.
    Version,
    /// Connect to one Bambu Lab printer and print its state and events as JSON lines.
    ///
    /// Use it to check a printer connection before enrolling anything. Each line is
    /// `{"kind":"state","state":{…}}` when the state changes, `{"kind":"event",…}` for each
    /// event, or `{"kind":"problem","message":…}` when something needs your attention.
    Watch(WatchArgs),
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The printer's address (IP or host name).
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value_t = 8883)]
    pub port: u16,
    /// The printer's serial number (Settings > Device on the printer).
    #[arg(long)]
    pub serial: String,
    /// The 8-character LAN access code (Settings > LAN Only Mode on the printer).
    #[arg(long)]
    pub access_code: String,
    /// PEM file with the CA certificate(s) that sign the printer's certificate (Bambu's
    /// "BBL CA"). Without it, the printer's key is pinned on first use.
    #[arg(long, conflicts_with = "tofu")]
    pub ca: Option<PathBuf>,
    /// Trust the printer's key on first use and refuse it if it ever changes (the default
    /// when no --ca is given).
    #[arg(long)]
    pub tofu: bool,
    /// Where pinned printer keys are kept.
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// The printer's model code (N1, C12, BL-P001, …), if get_version cannot tell.
    #[arg(long)]
    pub model: Option<String>,
}

/// Runs the parsed command. Returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Version => {
            print_line(&format!(
                "kitt-agent {} (wire protocol {})",
                env!("CARGO_PKG_VERSION"),
                proto::PROTOCOL_VERSION
            ));
            Ok(0)
        }
        Command::Watch(args) => {
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(watch(args))
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_line(line: &str) {
    println!("{line}");
}

fn link_config(args: WatchArgs) -> anyhow::Result<LinkConfig> {
    let serial = PrinterId::new(args.serial.trim()).context("--serial")?;
    let access_code =
        AccessCode::new(&args.access_code).map_err(anyhow::Error::msg).context("--access-code")?;
    let trust = match &args.ca {
        Some(path) => Trust::Ca(read_ca(path)?),
        None => {
            let dir = args.pin_dir.clone().unwrap_or_else(default_pin_dir);
            Trust::FirstUse { pin_file: dir.join(format!("{serial}.sha256")) }
        }
    };
    let mut config = LinkConfig::new(args.host, serial, access_code, trust);
    config.port = args.port;
    config.session.model = args.model;
    Ok(config)
}

fn default_pin_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kitt-agent/pins")
}

/// Reads every certificate in a PEM file.
pub fn read_ca(path: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read the CA file {}", path.display()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

async fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    crate::init_crypto();
    let config = link_config(args)?;
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) = link::spawn(config, shutdown.clone());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            output = outputs.recv() => match output {
                Some(output) => print_line(&output_json(&output).to_string()),
                None => break,
            }
        }
    }
    shutdown.cancel();
    let _ = task.await;
    Ok(0)
}

/// The JSON line `watch` prints for one output.
pub fn output_json(output: &LinkOutput) -> serde_json::Value {
    match output {
        LinkOutput::State(state) => {
            serde_json::json!({ "kind": "state", "state": proto::json::printer_state(state) })
        }
        LinkOutput::Event { at, kind } => {
            let mut event = proto::json::printer_event(kind);
            event["at"] = at.0.into();
            serde_json::json!({ "kind": "event", "event": event })
        }
        LinkOutput::Problem(problem) => {
            serde_json::json!({ "kind": "problem", "message": problem.to_string() })
        }
    }
}
