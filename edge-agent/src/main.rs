use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    die_with_parent();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KITT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,edge_agent=info")),
        )
        .init();
    abort_on_panic();
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
                "kitt-agent: KITT_PARENT_PID={parent} is not this process's parent (it has ended, or the variable was inherited); exiting"
            );
        }
        std::process::exit(1);
    }
}

/// The agent does not unwind: a panic anywhere is logged and ends the process at once, and
/// systemd restarts it (`Restart=on-failure`). Everything it holds is durable in the outbox
/// and the state directory, and a half-dead agent (a printer link task gone, the rest
/// running) would be worse than a restart. See ARCHITECTURE.md, "Panics".
fn abort_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(
            panic = message,
            place = place.as_deref().unwrap_or("unknown"),
            "Panicked; the agent stops (systemd restarts it)."
        );
        std::process::abort();
    }));
}
