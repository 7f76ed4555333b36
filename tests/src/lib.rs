//! kitt's system tests and the harness they share.
//!
//! In-process parts ([`fleet`]: a hub and agents; [`mosquitto`]: a broker configured like a
//! printer), the real binaries as processes ([`process`], and [`scenario`]: a fleet of them
//! behind UDP impairment relays, [`relay`]), a throwaway PostgreSQL ([`postgres`]), the
//! reference Patroni deployment ([`patroni`]) and the scenario checker ([`checker`]), which
//! compares what simulated printers emitted with what the hub stored.

pub mod checker;
pub mod fleet;
pub mod haproxy;
pub mod http;
pub mod ingest;
pub mod mosquitto;
pub mod patroni;
pub mod postgres;
pub mod print_files;
pub mod process;
pub mod relay;
pub mod scenario;
pub mod schemathesis;
pub mod upstream;
pub mod webdriver;

use std::time::Duration;

use edge_agent::printer::bambu::link::LinkOutput;
use tokio::sync::mpsc;

/// How long a test waits for something that should happen within a second or two.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Receives link outputs until `want` returns `Some`, failing after [`PATIENCE`] with
/// everything seen on the way.
pub async fn wait_for<T>(
    outputs: &mut mpsc::Receiver<LinkOutput>,
    what: &str,
    mut want: impl FnMut(&LinkOutput) -> Option<T>,
) -> T {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, outputs.recv()).await {
            Ok(Some(output)) => {
                if let Some(found) = want(&output) {
                    return found;
                }
                seen.push(output);
            }
            Ok(None) => panic!("the link stopped before {what}; saw {seen:#?}"),
            Err(_) => panic!("timed out waiting for {what}; saw {seen:#?}"),
        }
    }
}

/// Polls `check` every 100 ms, blocking, until it gives a value or `patience` runs out: for
/// state of other programs that says nothing when it changes (Patroni's REST API, a port that
/// starts to listen), and for threads that watch several of them at once.
pub fn poll<T>(
    patience: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        if let Some(found) = check() {
            return Ok(found);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("{what}: not within {} s", patience.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Prints one benchmark figure for `cargo xtask bench`, which collects the lines
/// `kitt-metric <key> <value>` from every benchmark into its table (docs/benchmarks.md).
#[allow(clippy::print_stdout)]
pub fn metric(key: &str, value: f64) {
    println!("kitt-metric {key} {value}");
}

/// Installs the crypto provider once per test process; with `KITT_LOG` set (a filter such
/// as `hub=debug`), the in-process hubs and agents log to the test's output.
pub fn init() {
    if std::env::var_os("KITT_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_env("KITT_LOG");
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    edge_agent::init_crypto();
}

/// Runs each check (an `async fn check(database_url: Option<String>)` of the calling module)
/// on SQLite (`None`) and on a fresh PostgreSQL database, as `sqlite::check` and
/// `postgres::check`.
#[macro_export]
macro_rules! on_both_backends {
    ($($check:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(None).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(Some($crate::postgres::fresh_database().await)).await;
                }
            )+
        }
    };
}
