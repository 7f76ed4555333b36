//! The `kitt-agent` command line.

use clap::{Parser, Subcommand};

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
}

/// Runs the parsed command. Returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Version => {
            #[allow(clippy::print_stdout)]
            {
                println!(
                    "kitt-agent {} (wire protocol {})",
                    env!("CARGO_PKG_VERSION"),
                    proto::PROTOCOL_VERSION
                );
            }
            Ok(0)
        }
    }
}
