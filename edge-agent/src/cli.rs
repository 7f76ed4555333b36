//! The `kitt-agent` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proto::PrinterId;
use tokio_util::sync::CancellationToken;

use crate::printer::bambu::link::{self, AccessCode, LinkConfig, LinkOutput};
use crate::printer::bambu::tls::Trust;
use crate::printer::moonraker::link as moonraker;

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
    /// Connect to one printer and print its state and events as JSON lines: a Bambu Lab
    /// printer (--host, --serial, --access-code) or a Klipper printer through Moonraker
    /// (--moonraker URL, --api-key when it needs one).
    ///
    /// Use it to check a printer connection before enrolling anything. Each line is
    /// `{"kind":"state","state":{…}}` when the state changes, `{"kind":"event",…}` for each
    /// event, or `{"kind":"problem","message":…}` when something needs your attention.
    Watch(WatchArgs),
    /// Listen for the printers on this device's LAN and print each as a JSON line:
    /// `{"kind":"bambu","serial",…}` from Bambu Lab printers' SSDP announcements (UDP 2021),
    /// `{"kind":"moonraker","url",…}` for Klipper printers whose Moonraker announces itself
    /// over mDNS. Nothing is scanned: it listens, and sends the one query mDNS defines.
    /// Bambu printers announce about once a minute; listen that long to hear every one.
    Discover(DiscoverArgs),
    /// Enroll this device with a hub, using a token from `kitt-hub token create`.
    ///
    /// Generates the agent's key here (it never leaves the device), sends a certificate
    /// signing request, and stores key, certificate and the hub CA in the state directory.
    Enroll(EnrollArgs),
    /// Run the agent: printer links, the outbox and the sync to the hub.
    Run(ConfigArgs),
    /// Check a configuration file and print every problem found.
    Validate(ConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The hub's sync address, `host:port` (UDP, default port 7070). Optional when the token
    /// names the hub's addresses (`[sync] advertise`): the first that answers is used.
    #[arg(long)]
    pub hub: Option<String>,
    /// The token `kitt-hub token create` printed.
    #[arg(long, required_unless_present = "token_file", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the token from this file instead, so that it never shows in a process listing
    /// (what the packaged `kitt-agent-enroll.service` does).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[arg(long, default_value = crate::config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// How long to listen.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The agent's configuration file.
    #[arg(long, default_value = "/etc/kitt-agent/agent.toml")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// A Klipper printer's Moonraker, `http://host:7125` (port 7125 unless named).
    #[arg(long, conflicts_with_all = ["host", "serial", "access_code", "ca", "tofu", "pin_dir"])]
    pub moonraker: Option<String>,
    /// Moonraker's API key, when it requires one.
    #[arg(long, requires = "moonraker")]
    pub api_key: Option<String>,
    /// Moonraker: the port of the host's web server, where relative webcam URLs resolve.
    #[arg(long, requires = "moonraker", default_value_t = 80)]
    pub web_port: u16,
    /// The Bambu printer's address (IP or host name).
    #[arg(long, required_unless_present = "moonraker")]
    pub host: Option<String>,
    #[arg(long, default_value_t = 8883)]
    pub port: u16,
    /// The Bambu printer's serial number (Settings > Device on the printer).
    #[arg(long, required_unless_present = "moonraker")]
    pub serial: Option<String>,
    /// The 8-character LAN access code (Settings > LAN Only Mode on the printer).
    #[arg(long, required_unless_present = "moonraker")]
    pub access_code: Option<String>,
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
    /// The printer's model (Bambu: its code, N1, C12, BL-P001, …, if get_version cannot
    /// tell; Klipper: any name, Moonraker does not know it).
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
        Command::Discover(args) => {
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(discover(args))
        }
        Command::Enroll(args) => {
            let token = match (args.token, &args.token_file) {
                (Some(token), _) => token,
                (None, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?,
                (None, None) => anyhow::bail!("give the token with --token or --token-file"),
            };
            crate::init_crypto();
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let identity = runtime.block_on(crate::sync::enroll::enroll_any(
                args.hub.as_deref().filter(|hub| !hub.is_empty()),
                &token,
                &args.state_dir,
            ))?;
            print_line(&format!(
                "enrolled as {} with the hub at {}; certificate valid until {} (Unix ms); state in {}",
                identity.agent,
                identity.hub,
                identity.not_after.0,
                args.state_dir.display()
            ));
            Ok(0)
        }
        Command::Validate(args) => match crate::config::AgentConfig::load(&args.config) {
            Ok(config) => {
                print_line(&format!(
                    "{}: valid ({} printer(s), state in {})",
                    args.config.display(),
                    config.printers.len(),
                    config.state_dir.display()
                ));
                Ok(0)
            }
            Err(error) => {
                print_line(&format!("{}: {error}", args.config.display()));
                Ok(64)
            }
        },
        Command::Run(args) => {
            let config = match crate::config::AgentConfig::load(&args.config) {
                Ok(config) => config,
                Err(error) => {
                    print_line(&format!("{}: {error}", args.config.display()));
                    return Ok(64);
                }
            };
            crate::init_crypto();
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                let agent = crate::agent::start(config, shutdown.clone())?;
                tracing::info!(agent = %agent.identity.agent, hub = %agent.identity.hub, "Agent running.");
                wait_for_signal().await;
                tracing::info!("Stopping.");
                shutdown.cancel();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), agent.wait()).await;
                Ok::<_, anyhow::Error>(0)
            })
        }
    }
}

/// Ctrl-C or SIGTERM (what systemd sends).
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[allow(clippy::print_stdout)]
fn print_line(line: &str) {
    println!("{line}");
}

fn link_config(args: WatchArgs) -> anyhow::Result<LinkConfig> {
    let serial =
        PrinterId::new(args.serial.as_deref().unwrap_or_default().trim()).context("--serial")?;
    let access_code = AccessCode::new(args.access_code.as_deref().unwrap_or_default())
        .map_err(anyhow::Error::msg)
        .context("--access-code")?;
    let trust = match &args.ca {
        Some(path) => Trust::ca_file(path)?,
        None => {
            let dir = args.pin_dir.clone().unwrap_or_else(default_pin_dir);
            Trust::FirstUse { pin_file: dir.join(format!("{serial}.sha256")) }
        }
    };
    let mut config = LinkConfig::new(args.host.unwrap_or_default(), serial, access_code, trust);
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

fn moonraker_config(url: &str, args: WatchArgs) -> anyhow::Result<moonraker::LinkConfig> {
    let url =
        moonraker::MoonrakerUrl::parse(url).map_err(anyhow::Error::msg).context("--moonraker")?;
    let api_key = args
        .api_key
        .as_deref()
        .map(moonraker::ApiKey::new)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--api-key")?;
    let id = PrinterId::new("moonraker").context("printer id")?;
    let mut config = moonraker::LinkConfig::new(id, url, api_key);
    config.web_port = args.web_port;
    config.session.model = args.model;
    Ok(config)
}

async fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    crate::init_crypto();
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) = match args.moonraker.clone() {
        Some(url) => moonraker::spawn(moonraker_config(&url, args)?, shutdown.clone()),
        None => link::spawn(link_config(args)?, shutdown.clone()),
    };
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

async fn discover(args: DiscoverArgs) -> anyhow::Result<u8> {
    let (found_tx, mut found) = tokio::sync::mpsc::channel(64);
    let listening = tokio::spawn(crate::discovery::listen(
        std::time::Duration::from_secs(args.seconds),
        found_tx,
    ));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(0),
            printer = found.recv() => match printer {
                Some(printer) => print_line(&serde_json::to_string(&printer)?),
                None => break,
            }
        }
    }
    match listening.await {
        Ok(Ok(())) => Ok(0),
        Ok(Err(error)) => {
            print_line(
                &serde_json::json!({ "kind": "problem", "message": error.to_string() }).to_string(),
            );
            Ok(1)
        }
        Err(error) => Err(error.into()),
    }
}

/// The JSON line `watch` prints for one output.
pub fn output_json(output: &LinkOutput) -> serde_json::Value {
    match output {
        LinkOutput::State(state) => {
            serde_json::json!({ "kind": "state", "state": proto::json::printer_state_v2(state) })
        }
        LinkOutput::Event { at, kind } => {
            let mut event = proto::json::printer_event(kind);
            event["at"] = at.0.into();
            serde_json::json!({ "kind": "event", "event": event })
        }
        LinkOutput::Problem(problem) => {
            serde_json::json!({ "kind": "problem", "message": problem.to_string() })
        }
        LinkOutput::Cameras(cameras) => {
            let cameras: Vec<_> = cameras
                .iter()
                .map(|camera| serde_json::json!({ "name": camera.name, "source": camera.url.source().summary() }))
                .collect();
            serde_json::json!({ "kind": "cameras", "cameras": cameras })
        }
        LinkOutput::Nozzle(micrometres) => {
            serde_json::json!({ "kind": "nozzle", "micrometres": micrometres })
        }
    }
}
