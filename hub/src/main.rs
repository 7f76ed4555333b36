use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KITT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hub=info")),
        )
        .init();
    hub::supervise::install_hook();
    let cli = hub::cli::Cli::parse();
    match hub::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("kitt-hub: {error:#}");
            }
            ExitCode::from(1)
        }
    }
}
