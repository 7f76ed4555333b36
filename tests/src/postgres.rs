//! A throwaway PostgreSQL for tests: [`fresh_database`] gives each test a brand-new, empty
//! database (`kitt_test_<random>`) on a cluster the whole test process shares.
//!
//! Where the cluster comes from:
//! - [`URL_VAR`] (`KITT_TEST_POSTGRES_URL`), when set: an admin URL of an existing throwaway
//!   cluster, such as `postgres://postgres@127.0.0.1:PORT/postgres`. `cargo xtask test`
//!   starts one cluster for the whole run and sets it.
//! - Otherwise the first call starts one, once per test process: `initdb` (trust
//!   authentication, superuser `postgres`, no fsync) into a fresh directory under the
//!   system's temporary directory, then `pg_ctl start` on a free loopback port with the unix
//!   socket inside that directory and `fsync=off`. PostgreSQL refuses to run as root, so
//!   when the tests run as root both commands run as the `postgres` system user
//!   (`runuser -u postgres --`), which owns the directory (mode 0700).
//!
//! Cleanup: the cluster lives in a static, and statics are never dropped. So it is tied to
//! the test process by a watchdog: a `sh` whose stdin is a pipe from the test process. The
//! kernel closes that pipe when the test process exits, however it exits (tests done, a
//! panic, `kill -9`); the watchdog then reads end-of-file, stops the cluster
//! (`pg_ctl stop -m immediate`) and removes its directory. No polling, no pid reuse race.
//! The watchdog runs in its own process group, so a Ctrl-C for `cargo test` does not kill it
//! before it has cleaned up (`pg_ctl` starts the server in a session of its own, out of the
//! Ctrl-C's reach too). The stop happens just after the test process exits, so a
//! `pgrep postgres` in the same instant can still see the server going down.
//!
//! Databases are never dropped: they go with the cluster.
//!
//! This module and the cluster in `xtask/src/setup.rs` start PostgreSQL the same way; xtask
//! does not depend on this crate (it would build the whole workspace to run set-up), so the
//! few lines are written twice.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::PATIENCE;

/// The environment variable naming an admin URL of a throwaway cluster to use.
pub const URL_VAR: &str = "KITT_TEST_POSTGRES_URL";

/// The server programs the cluster needs.
const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Creates a brand-new, empty database for one test and returns its URL.
///
/// Panics, saying what to do, when no cluster can be had.
pub async fn fresh_database() -> String {
    let admin_url = match tokio::task::spawn_blocking(admin_url).await {
        Ok(url) => url,
        // The panic says why the cluster did not start, and what to do.
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    };
    database_on(&admin_url).await
}

/// Creates a brand-new, empty database on the cluster at `admin_url`; its URL.
async fn database_on(admin_url: &str) -> String {
    let name = format!("kitt_test_{:016x}", rand::random::<u64>());
    let mut admin = connect(admin_url).await;
    // `name` is ours: letters, digits and '_'.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("cannot create the test database {name}: {error}"));
    let _ = admin.close().await;
    database_url(admin_url, &name)
}

/// The admin URL of the cluster: [`URL_VAR`]'s, or that of the cluster this process starts.
fn admin_url() -> String {
    if let Ok(url) = std::env::var(URL_VAR) {
        return url;
    }
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER
        .get_or_init(|| Cluster::start(Durability::Off).unwrap_or_else(|error| panic!("{error}")))
        .admin_url
        .clone()
}

/// Connects to `url`, retrying until the server accepts connections or [`PATIENCE`] runs
/// out.
async fn connect(url: &str) -> PgConnection {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match PgConnection::connect(url).await {
            Ok(connection) => return connection,
            Err(error) if tokio::time::Instant::now() >= deadline => {
                panic!("cannot connect to the test cluster at {url}: {error}")
            }
            // A retry interval, not a stand-in for an event: the event is a connection.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `admin_url` with its database replaced by `name` (any `?query` kept).
fn database_url(admin_url: &str, name: &str) -> String {
    let (url, query) = match admin_url.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let server = match url[authority_start..].find('/') {
        Some(slash) => &url[..authority_start + slash],
        None => url,
    };
    format!("{server}/{name}{query}")
}

/// A cluster this process started; stopped by its watchdog when the process exits or the
/// cluster is dropped.
#[derive(Debug)]
pub struct Cluster {
    admin_url: String,
    /// `pg_ctl` and the directories, to restart it.
    bin: PathBuf,
    base: PathBuf,
    port: u16,
    /// The write end of the watchdog's stdin, closed by the kernel at exit (or when this is
    /// dropped).
    _watchdog: ChildStdin,
}

/// Whether a cluster keeps what it acknowledged through a crash of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// `fsync`, `synchronous_commit` and `full_page_writes` off: fast, for tests that never
    /// stop the server.
    Off,
    /// PostgreSQL's defaults: a commit is durable when acknowledged.
    On,
}

impl Cluster {
    /// A cluster of this test's own, with PostgreSQL's durability settings, for a test that
    /// restarts it ([`Cluster::restart`]); stopped and removed when dropped.
    pub fn start_private() -> Result<Cluster, String> {
        Cluster::start(Durability::On)
    }

    /// A brand-new, empty database on this cluster; its URL.
    pub async fn fresh_database(&self) -> String {
        database_on(&self.admin_url).await
    }

    /// Restarts the server as a crash would (`pg_ctl restart -m immediate`: no shutdown
    /// checkpoint, clients cut off, recovery from the WAL on start), and waits until it
    /// accepts connections again.
    pub fn restart(&self) -> Result<(), String> {
        let mut restart = postgres_program(&self.bin.join("pg_ctl"), &self.base);
        restart.arg("-D").arg(self.base.join("data")).arg("-l").arg(self.base.join("server.log"));
        restart.args(["-w", "-t", "60", "-m", "immediate", "-o", &format!("-p {}", self.port)]);
        run(restart.arg("restart"))
    }

    fn start(durability: Durability) -> Result<Cluster, String> {
        let started = Instant::now();
        let bin = server_binaries()?;
        let as_postgres = running_as_root();
        let base = std::env::temp_dir().join(format!(
            "kitt-postgres-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&base)
            .map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        let data = base.join("data");
        let pg_ctl = bin.join("pg_ctl");
        let program = |path: &Path| postgres_program(path, &base);

        // The watchdog first: from here on, dropping it removes the directory.
        let mut stop = program(&pg_ctl);
        stop.arg("-D").arg(&data).args(["stop", "-m", "immediate"]);
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg("trap '' HUP INT; cat >/dev/null; \"$@\" >/dev/null 2>&1; rm -rf -- \"$0\"")
            .arg(&base)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the cluster's watchdog (sh): {e}"))?
            .stdin
            .take()
            .expect("the watchdog's stdin is piped");

        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&base))?;
        }
        run(program(&bin.join("initdb")).arg("-D").arg(&data).args([
            "--auth=trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]))?;
        append_settings(&data.join("postgresql.conf"), &base, durability)?;
        // The free port may be taken before the server binds it: then try another.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let mut start = program(&pg_ctl);
            start.arg("-D").arg(&data).arg("-l").arg(base.join("server.log"));
            start.args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"]);
            match run(&mut start) {
                Ok(()) => {
                    #[allow(clippy::print_stderr)] // Captured by the test harness.
                    {
                        eprintln!(
                            "postgres: throwaway cluster from {} on port {port}, started in {:?}",
                            bin.display(),
                            started.elapsed()
                        );
                    }
                    return Ok(Cluster {
                        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                        bin,
                        base,
                        port,
                        _watchdog: watchdog,
                    });
                }
                Err(error) => {
                    let log = std::fs::read_to_string(base.join("server.log")).unwrap_or_default();
                    last_error = format!("{error}\nserver log:\n{log}");
                    if !log.contains("already in use") {
                        break;
                    }
                }
            }
        }
        Err(format!("cannot start the throwaway PostgreSQL cluster: {last_error}"))
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else the first on `PATH`, else `/usr/local/pgsql/bin`.
fn server_binaries() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    let mut candidates: Vec<PathBuf> = versions.into_iter().map(|(_, dir)| dir).collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.push("/usr/local/pgsql/bin".into());
    if let Some(found) =
        candidates.iter().find(|dir| PROGRAMS.iter().all(|program| dir.join(program).is_file()))
    {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|dir| dir.display().to_string()).collect();
    Err(format!(
        "the PostgreSQL server programs ({}) were not found in: {} \
         (looked in /usr/lib/postgresql/<version>/bin, then PATH). Install them \
         (Debian: `apt-get install postgresql`; `cargo xtask test` does it and starts a cluster \
         for the run), or set {URL_VAR} to an admin URL of a throwaway cluster",
        PROGRAMS.join(", "),
        looked.join(", "),
    ))
}

/// `path` run in the cluster's directory `base`, as the `postgres` user when this process is
/// root (PostgreSQL refuses to run as root).
fn postgres_program(path: &Path, base: &Path) -> Command {
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    };
    // The postgres user may not enter the current directory.
    command.current_dir(base).stdin(Stdio::null());
    command
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Settings for a throwaway cluster: loopback only, the socket in its own directory, and
/// durability traded for speed unless asked for.
fn append_settings(config: &Path, socket_dir: &Path, durability: Durability) -> Result<(), String> {
    use std::io::Write;
    let durability = match durability {
        Durability::Off => "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
        Durability::On => "",
    };
    let settings = format!(
        "\n# kitt's throwaway test cluster\nlisten_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n{durability}max_connections = 200\n",
        socket_dir.display()
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(config)
        .and_then(|mut file| file.write_all(settings.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", config.display()))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_replaces_the_admin_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5433/postgres", "kitt_test_1"),
            "postgres://postgres@127.0.0.1:5433/kitt_test_1"
        );
        assert_eq!(
            database_url("postgres://u:p@db:5432?sslmode=disable", "t"),
            "postgres://u:p@db:5432/t?sslmode=disable"
        );
    }
}
