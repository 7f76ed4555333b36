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
    die_with_parent();
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

/// Set by `kitt-hub demo` on the processes it starts: its own pid.
const PARENT_PID: &str = "KITT_PARENT_PID";

/// Under `kitt-hub demo`, asks the kernel for SIGTERM when the demo dies, even by SIGKILL, and
/// exits at once if it already has (the check after the request closes that window).
fn die_with_parent() {
    let Some(parent) = std::env::var(PARENT_PID).ok().and_then(|pid| pid.parse::<i32>().ok())
    else {
        return;
    };
    let asked =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    if asked.is_err() || rustix::process::getppid().map(|pid| pid.as_raw_pid()) != Some(parent) {
        #[allow(clippy::print_stderr, reason = "said before any logging is set up")]
        {
            eprintln!(
                "kitt-printer-sim: KITT_PARENT_PID={parent} is not this process's parent (it has ended, or the variable was inherited); exiting"
            );
        }
        std::process::exit(1);
    }
}
