use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
