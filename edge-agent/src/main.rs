use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KITT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,edge_agent=info")),
        )
        .init();
    let cli = edge_agent::cli::Cli::parse();
    match edge_agent::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("kitt-agent: {error:#}");
            }
            ExitCode::from(1)
        }
    }
}
