//! The `kitt-hub` command line.

use clap::{Parser, Subcommand};

/// kitt's hub: the fleet's ingest, storage, API and dashboard.
#[derive(Debug, Parser)]
#[command(name = "kitt-hub", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the hub's version and the wire protocol version it speaks.
    Version,
}

/// Runs the parsed command. Returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Version => {
            #[allow(clippy::print_stdout)]
            {
                println!(
                    "kitt-hub {} (wire protocol {})",
                    env!("CARGO_PKG_VERSION"),
                    proto::PROTOCOL_VERSION
                );
            }
            Ok(0)
        }
    }
}
