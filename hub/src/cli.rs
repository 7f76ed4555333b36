//! The `kitt-hub` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proto::UnixMillis;
use tokio_util::sync::CancellationToken;

use crate::config::{HubConfig, Overrides};
use crate::sync::token;

/// kitt's hub: the fleet's ingest, storage, API and dashboard.
#[derive(Debug, Parser)]
#[command(name = "kitt-hub", version, about)]
pub struct Cli {
    /// The configuration file (TOML); `KITT_*` variables and flags override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Where the hub keeps its database, CA and files (overrides `data_dir`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL URL (`postgres://user:password@host/db`); SQLite in the data directory
    /// when absent.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the hub's version and the wire protocol version it speaks.
    Version,
    /// Serve the API and dashboard (TCP) and the agents (QUIC) until Ctrl-C.
    Serve {
        /// The TCP address of the API and dashboard.
        #[arg(long)]
        http_listen: Option<String>,
        /// The UDP address agents sync to.
        #[arg(long)]
        sync_listen: Option<String>,
    },
    /// Run everything on this machine: a hub on SQLite, four simulated printers and one agent
    /// each; prints the dashboard address and an admin password. Ctrl-C stops it.
    Demo {
        /// The dashboard's TCP address (127.0.0.1:8080; with --eval, any free port).
        #[arg(long)]
        http_listen: Option<String>,
        /// Run the assistant's evaluation (the cases in this JSON file, e.g.
        /// eval/assistant.json) against every ready model tier once the fleet is up, print
        /// the results per tier, write them to <data dir>/eval-results.json and exit.
        #[arg(long, value_name = "PATH")]
        eval: Option<PathBuf>,
    },
    /// Apply the database migrations and exit (serve also applies them).
    Migrate,
    /// Print the API's OpenAPI document (the one served at /api/v1/openapi.json) and exit.
    Openapi,
    /// Check the configuration and print every problem found.
    Validate,
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Users of the dashboard and API.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// The Spoolman-compatible API's clients (Moonraker, OctoPrint, Home Assistant).
    Spoolman {
        #[command(subcommand)]
        command: SpoolmanCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpoolmanCommand {
    /// Client tokens: each lives in the base URL one client is configured with.
    Client {
        #[command(subcommand)]
        command: SpoolmanClientCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpoolmanClientCommand {
    /// Add a client and print the base URL to configure it with (shown once).
    Add {
        /// What the client is, such as `voron-moonraker` or `home-assistant`.
        name: String,
        /// How clients reach the hub's HTTP port, such as `http://hub.lan:8080`; the
        /// listen address when absent.
        #[arg(long)]
        url: Option<String>,
        /// The printer whose usage this client reports (a Moonraker using kitt as its
        /// Spoolman): kitt then deducts nothing itself for that printer's prints.
        #[arg(long)]
        printer: Option<String>,
    },
    /// List clients.
    List,
    /// Revoke a client by id or name: its base URL stops working at once.
    Revoke { client: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a single-use token that enrolls one agent.
    Create {
        /// How long the token stays valid: `90s`, `30m`, `1h`, `2d`.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// The agent's name (its id on the hub), such as `pi-01`.
        #[arg(long)]
        name: Option<String>,
        /// The hub address the agent should use, shown in the printed command.
        #[arg(long)]
        hub: Option<String>,
        /// A printer serial the agent will announce, approved in advance (repeat for each).
        /// Without it, each new printer waits for an admin's approval before it takes
        /// commands.
        #[arg(long = "printer", value_name = "SERIAL")]
        printers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Prints a generated password unless --password-stdin is given.
    Add {
        name: String,
        /// viewer (read), operator (printer commands) or admin (users, agents, tokens).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create an API token for a user (for scripts); printed once.
    Token {
        name: String,
        /// A label for the token.
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List enrolled agents.
    List,
    /// Revoke an agent: it is disconnected within seconds and cannot reconnect.
    Revoke {
        /// The agent's id.
        agent: String,
    },
}

/// Exit code for a configuration problem (sysexits EX_CONFIG-like, as the house style says).
pub const EXIT_CONFIG: u8 = 64;

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
    if let Command::Openapi = cli.command {
        print_line(&crate::api::spec().to_pretty_json().context("cannot write the document")?);
        return Ok(0);
    }
    let mut overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        ..Overrides::default()
    };
    if let Command::Serve { http_listen, sync_listen } = &cli.command {
        overrides.http_listen = http_listen.clone();
        overrides.sync_listen = sync_listen.clone();
    }
    if let Command::Demo { http_listen, eval } = &cli.command {
        let default = if eval.is_some() { "127.0.0.1:0" } else { "127.0.0.1:8080" };
        overrides.http_listen = Some(http_listen.clone().unwrap_or_else(|| default.into()));
        overrides.sync_listen = Some("127.0.0.1:0".into());
        overrides.database_url = None;
    }
    let data_dir_given = cli.data_dir.is_some();
    let config = match HubConfig::load(cli.config.as_deref(), std::env::vars(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprint_line(&format!("kitt-hub: {error}"));
            return Ok(EXIT_CONFIG);
        }
    };
    if let Command::Validate = cli.command {
        print_line(&format!(
            "configuration valid: data in {}, database {}, API on tcp/{}, agents on udp/{}",
            config.data_dir.display(),
            if config.database_url.is_some() { "PostgreSQL" } else { "SQLite" },
            config.http_listen,
            config.sync_listen
        ));
        return Ok(0);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    if let Command::Demo { eval, .. } = cli.command {
        return runtime.block_on(crate::demo::run(config, data_dir_given, eval));
    }
    runtime.block_on(run_async(cli.command, config))
}

async fn run_async(command: Command, config: HubConfig) -> anyhow::Result<u8> {
    match command {
        Command::Version | Command::Openapi | Command::Validate | Command::Demo { .. } => Ok(0),
        Command::Serve { .. } => {
            let started = std::time::Instant::now();
            // Listened for before anything serves: a SIGTERM as soon as `/readyz` answers
            // drains rather than killing the process.
            let mut signals = crate::app::Signals::new();
            let shutdown = CancellationToken::new();
            let hub = crate::app::start(config.clone(), shutdown.clone()).await?;
            print_line(&format!(
                "kitt-hub ready in {} ms: API on http://{}, agents on udp/{} (data in {})",
                started.elapsed().as_millis(),
                hub.http_addr,
                hub.sync_addr,
                config.data_dir.display()
            ));
            if hub.state.db.count_admins().await? == 0 {
                eprint_line(
                    "No admin user yet: create one with `kitt-hub user add <name> --role admin`.",
                );
            }
            let failed = hub.failed.clone();
            tokio::select! {
                () = signals.next() => {
                    // Drain: `/readyz` answers 404 while requests are still served, so a load
                    // balancer in front sends new ones to other replicas and lets those under
                    // way here finish.
                    if !config.drain.is_zero() {
                        hub.state.readiness.drain();
                        eprint_line(&format!(
                            "kitt-hub draining for {} s (readyz answers 404), then stopping.",
                            config.drain.as_secs()
                        ));
                        tokio::select! {
                            () = tokio::time::sleep(config.drain) => {}
                            // A second signal stops at once.
                            () = signals.next() => {}
                            () = failed.cancelled() => {}
                        }
                    }
                }
                () = failed.cancelled() => {}
            }
            shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), hub.wait()).await;
            if failed.is_cancelled() {
                eprint_line("kitt-hub stopped: an essential task panicked (see the log above).");
                return Ok(crate::supervise::EXIT_PANICKED);
            }
            Ok(0)
        }
        Command::Migrate => {
            crate::app::open_storage(&config).await?;
            print_line("migrations applied");
            Ok(0)
        }
        Command::Token { command: TokenCommand::Create { ttl, name, hub, printers } } => {
            let (db, ca) = crate::app::open_storage(&config).await?;
            if let Some(name) = &name
                && proto::AgentId::new(name.clone()).is_err()
            {
                eprint_line(&format!("kitt-hub: {name:?} is not a valid agent name"));
                return Ok(EXIT_CONFIG);
            }
            let mut serials = Vec::new();
            for printer in printers {
                match proto::PrinterId::new(printer.clone()) {
                    Ok(id) => serials.push(id),
                    Err(error) => {
                        eprint_line(&format!(
                            "kitt-hub: {printer:?} is not a printer serial: {error}"
                        ));
                        return Ok(EXIT_CONFIG);
                    }
                }
            }
            let now = UnixMillis::now();
            let fingerprint = ca.fingerprint();
            // The token names the hub's addresses: `[sync] advertise` (every replica's), or
            // the one given here.
            let hubs = match (&hub, config.api.advertise.is_empty()) {
                (_, false) => config.api.advertise.clone(),
                (Some(hub), true) if token::valid_hub_address(hub) => vec![hub.clone()],
                _ => Vec::new(),
            };
            let (token, expires_at) = token::create_advertised(
                &db,
                &fingerprint,
                name.as_deref(),
                &serials,
                &hubs,
                ttl,
                now,
            )
            .await?;
            print_line(&token.to_string());
            let command = if hubs.is_empty() {
                let hub =
                    hub.unwrap_or_else(|| format!("<this-host>:{}", config.sync_listen.port()));
                format!("kitt-agent enroll --hub {hub} --token {token}")
            } else {
                format!("kitt-agent enroll --token {token}")
            };
            eprint_line(&format!(
                "Single use, valid for {} s (until {} Unix ms). On the Pi, run:\n  {command}",
                ttl.as_secs(),
                expires_at.0
            ));
            Ok(0)
        }
        Command::User { command: UserCommand::Add { name, role, password_stdin } } => {
            let (db, _) = crate::app::open_storage(&config).await?;
            let Some(role) = crate::service::Role::parse(&role) else {
                eprint_line("kitt-hub: --role must be viewer, operator or admin");
                return Ok(EXIT_CONFIG);
            };
            if let Err(error) = crate::api::validate_user_name(&name) {
                eprint_line(&format!("kitt-hub: {}", error.message));
                return Ok(EXIT_CONFIG);
            }
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("cannot read the password")?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (crate::api::auth::generate_password(), true)
            };
            if password.chars().count() < 10 {
                eprint_line("kitt-hub: the password needs at least 10 characters");
                return Ok(EXIT_CONFIG);
            }
            let hash = crate::api::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
            if !db.insert_user(&name, &hash, role.as_str(), UnixMillis::now()).await? {
                eprint_line(&format!("kitt-hub: a user {name:?} exists already"));
                return Ok(1);
            }
            db.audit(
                "cli",
                &format!("user add {name}"),
                201,
                Some(role.as_str()),
                UnixMillis::now(),
            )
            .await?;
            if generated {
                print_line(&format!("added {name} ({}) with password: {password}", role.as_str()));
            } else {
                print_line(&format!("added {name} ({})", role.as_str()));
            }
            Ok(0)
        }
        Command::User { command: UserCommand::Token { name, label } } => {
            let (db, _) = crate::app::open_storage(&config).await?;
            if db.user_role(&name).await?.is_none() {
                eprint_line(&format!("kitt-hub: no user {name:?}"));
                return Ok(1);
            }
            let (token, id) =
                crate::api::auth::create_api_token(&db, &name, label.as_deref()).await?;
            db.audit("cli", &format!("token create {id} for {name}"), 201, None, UnixMillis::now())
                .await?;
            print_line(&token);
            Ok(0)
        }
        Command::Spoolman { command: SpoolmanCommand::Client { command } } => {
            let (db, _) = crate::app::open_storage(&config).await?;
            let inventory =
                crate::service::inventory::Inventory::new(db, crate::live::LiveHub::new());
            let cli = crate::service::Principal::internal("cli", crate::service::Role::Admin);
            match command {
                SpoolmanClientCommand::Add { name, url, printer } => {
                    let (client, token) =
                        match inventory.add_client(&cli, &name, printer.as_deref()).await {
                            Ok(added) => added,
                            Err(error) => {
                                eprint_line(&format!("kitt-hub: {error}"));
                                return Ok(EXIT_CONFIG);
                            }
                        };
                    let base = url.unwrap_or_else(|| format!("http://{}", config.http_listen));
                    print_line(&format!("{}/spoolman/{token}", base.trim_end_matches('/')));
                    eprint_line(&format!(
                        "Spoolman client {} ({}): configure it with the URL above (Moonraker: \
                         [spoolman] server: <URL>); kitt-hub spoolman client revoke {} ends it.",
                        client.id, client.name, client.id
                    ));
                }
                SpoolmanClientCommand::List => {
                    for client in inventory.clients(&cli).await? {
                        print_line(&format!(
                            "{}\t{}\tprinter={}\trevoked={}\tlast_used={}",
                            client.id,
                            client.name,
                            client.printer_id.as_deref().unwrap_or("-"),
                            client.revoked_at.is_some(),
                            client.last_used_at.map_or("never".into(), |t| t.to_string()),
                        ));
                    }
                }
                SpoolmanClientCommand::Revoke { client } => {
                    if let Err(error) = inventory.revoke_client(&cli, &client).await {
                        eprint_line(&format!("kitt-hub: {error}"));
                        return Ok(1);
                    }
                    print_line(&format!("revoked {client}"));
                }
            }
            Ok(0)
        }
        Command::Agent { command: AgentCommand::List } => {
            let (db, _) = crate::app::open_storage(&config).await?;
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
        Command::Agent { command: AgentCommand::Revoke { agent } } => {
            let (db, _) = crate::app::open_storage(&config).await?;
            if db.revoke_agent(&agent, UnixMillis::now()).await? {
                db.audit("cli", &format!("agent revoke {agent}"), 200, None, UnixMillis::now())
                    .await?;
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
