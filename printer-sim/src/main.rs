//! `kitt-printer-sim`: a thin shell over [`printer_sim::cli`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use printer_sim::cli::{Cli, run};
use tracing_subscriber::EnvFilter;

/// Exit code for a usage or configuration error (sysexits `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) =>
        {
            error.exit()
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = anyhow::Error::from(error);
            #[allow(clippy::print_stderr, reason = "the CLI's error message")]
            {
                eprintln!("kitt-printer-sim: {error:#}");
            }
            let usage =
                error.downcast_ref::<printer_sim::cli::CliError>().is_some_and(|e| e.is_usage());
            ExitCode::from(if usage { EXIT_USAGE } else { 1 })
        }
    }
}
