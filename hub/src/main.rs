use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
