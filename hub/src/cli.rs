//! The `kitt-hub` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proto::UnixMillis;
use tokio_util::sync::CancellationToken;

use crate::ca::HubCa;
use crate::db::Db;
use crate::sync::server::{SyncConfig, SyncServer};
use crate::sync::token;

/// The default UDP port agents sync to.
pub const DEFAULT_SYNC_PORT: u16 = 7070;

/// kitt's hub: the fleet's ingest, storage, API and dashboard.
#[derive(Debug, Parser)]
#[command(name = "kitt-hub", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args, Clone)]
pub struct Storage {
    /// Where the hub keeps its database, CA and files.
    #[arg(long, default_value = "kitt-data")]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://user:password@host/db`); SQLite in the data directory
    /// when absent.
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the hub's version and the wire protocol version it speaks.
    Version,
    /// Serve agents (QUIC sync and enrollment) until Ctrl-C.
    Serve {
        #[command(flatten)]
        storage: Storage,
        /// The UDP address agents sync to.
        #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_SYNC_PORT)))]
        sync_listen: SocketAddr,
    },
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a single-use token that enrolls one agent.
    Create {
        #[command(flatten)]
        storage: Storage,
        /// How long the token stays valid: `90s`, `30m`, `1h`, `2d`.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// The agent's name (its id on the hub), such as `pi-01`.
        #[arg(long)]
        name: Option<String>,
        /// The hub address the agent should use, shown in the printed command.
        #[arg(long)]
        hub: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List enrolled agents.
    List {
        #[command(flatten)]
        storage: Storage,
    },
    /// Revoke an agent: it is disconnected within seconds and cannot reconnect.
    Revoke {
        #[command(flatten)]
        storage: Storage,
        /// The agent's id.
        agent: String,
    },
}

/// Runs the parsed command. Returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Version = cli.command {
        print_line(&format!(
            "kitt-hub {} (wire protocol {})",
            env!("CARGO_PKG_VERSION"),
            proto::PROTOCOL_VERSION
        ));
        return Ok(0);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run_async(cli.command))
}

async fn run_async(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Version => Ok(0),
        Command::Serve { storage, sync_listen } => {
            let (db, ca) = open(&storage).await?;
            let server = SyncServer::bind(SyncConfig::new(sync_listen), db, ca)?;
            print_line(&format!(
                "kitt-hub serving agents on udp/{} (data in {})",
                server.local_addr(),
                storage.data_dir.display()
            ));
            let shutdown = CancellationToken::new();
            let serving = tokio::spawn(server.run(shutdown.clone()));
            wait_for_signal().await;
            shutdown.cancel();
            let _ = serving.await;
            Ok(0)
        }
        Command::Token { command: TokenCommand::Create { storage, ttl, name, hub } } => {
            let (db, ca) = open(&storage).await?;
            let now = UnixMillis::now();
            let (token, expires_at) =
                token::create(&db, &ca.fingerprint(), name.as_deref(), ttl, now).await?;
            let hub = hub.unwrap_or_else(|| format!("<this-host>:{DEFAULT_SYNC_PORT}"));
            print_line(&token.to_string());
            eprint_line(&format!(
                "Single use, valid for {} s (until {} Unix ms). On the Pi, run:\n  kitt-agent enroll --hub {hub} --token {token}",
                ttl.as_secs(),
                expires_at.0
            ));
            Ok(0)
        }
        Command::Agent { command: AgentCommand::List { storage } } => {
            let (db, _) = open(&storage).await?;
            for agent in db.agents().await? {
                print_line(&format!(
                    "{}\trevoked={}\tacked_through={}\tlast_seen={}\tcert_expires={}",
                    agent.id,
                    agent.revoked_at.is_some(),
                    agent.acked_through,
                    agent.last_seen_at.map_or("never".into(), |t| t.0.to_string()),
                    agent.cert_not_after.0,
                ));
            }
            Ok(0)
        }
        Command::Agent { command: AgentCommand::Revoke { storage, agent } } => {
            let (db, _) = open(&storage).await?;
            if db.revoke_agent(&agent, UnixMillis::now()).await? {
                print_line(&format!(
                    "revoked {agent}; a running hub disconnects it within seconds"
                ));
                Ok(0)
            } else {
                eprint_line(&format!("no agent {agent}; `kitt-hub agent list` shows them"));
                Ok(1)
            }
        }
    }
}

async fn open(storage: &Storage) -> anyhow::Result<(Db, HubCa)> {
    std::fs::create_dir_all(&storage.data_dir).with_context(|| {
        format!("cannot create the data directory {}", storage.data_dir.display())
    })?;
    let db = match &storage.database_url {
        Some(url) => Db::open(url).await?,
        None => Db::open_sqlite(&storage.data_dir).await?,
    };
    let ca = HubCa::load_or_create(&storage.data_dir)?;
    Ok((db, ca))
}

/// `90s`, `30m`, `1h`, `2d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) =
        text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 =
        number.parse().map_err(|_| format!("not a duration: {text:?} (try 30m, 1h, 2d)"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in {text:?} (use s, m, h or d)")),
    };
    if n == 0 {
        return Err("a duration must be above zero".into());
    }
    Ok(Duration::from_secs(n * seconds))
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
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

#[allow(clippy::print_stderr)]
fn eprint_line(line: &str) {
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0m").is_err());
    }
}
