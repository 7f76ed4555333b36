//! Set-up for the test suite on a fresh Debian machine: system packages the tests need, and
//! throwaway services (added as the tests come to need them).
//!
//! PostgreSQL: one throwaway cluster for the whole run, whose admin URL the tests find in
//! `KITT_TEST_POSTGRES_URL` (each test creates its own database on it; see
//! `tests/src/postgres.rs`, which starts a cluster the same way when run without xtask).
//! `initdb` with trust authentication into a directory under the system's temporary
//! directory, then `pg_ctl start` on a free loopback port with `fsync=off`; as the
//! `postgres` system user when xtask runs as root, since PostgreSQL refuses to run as root.
//! The cluster is stopped and its directory removed by a watchdog `sh` that waits for its
//! stdin, a pipe from xtask, to close: dropping [`TestServices`] closes it and waits for the
//! watchdog (the normal end, and a failed run), and the kernel closes it if xtask is killed
//! or interrupted. The watchdog has its own process group, so a Ctrl-C does not reach it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// A Debian package, and a file whose presence shows it is installed.
#[derive(Debug)]
pub struct SystemPackage {
    pub name: &'static str,
    pub installs: &'static str,
}

/// Installs those of `packages` that are missing.
pub fn ensure_packages(packages: &[SystemPackage]) -> anyhow::Result<()> {
    let missing: Vec<&str> =
        packages.iter().filter(|p| !Path::new(p.installs).exists()).map(|p| p.name).collect();
    install(&missing)
}

/// What building kitt needs beyond Rust: libclang for bindgen, which generates the V4L2
/// bindings behind USB cameras (the agent's default `usb-camera` feature) and llama.cpp's
/// bindings (the hub's assistant), and CMake, which builds llama.cpp.
pub const BUILD_PACKAGES: &[SystemPackage] = &[
    SystemPackage { name: "libclang-dev", installs: "/usr/share/doc/libclang-dev/copyright" },
    SystemPackage { name: "cmake", installs: "/usr/bin/cmake" },
];

/// What `cargo xtask bench` needs beyond building: the baseline it measures catch-up against
/// (an edge mosquitto bridged to a central one, fed and drained by the mosquitto clients,
/// its messages made by python3), and PostgreSQL's server for the ingest figures.
pub fn prepare_bench_environment() -> anyhow::Result<()> {
    const BENCH_PACKAGES: &[SystemPackage] = &[
        SystemPackage { name: "mosquitto", installs: "/usr/sbin/mosquitto" },
        SystemPackage { name: "mosquitto-clients", installs: "/usr/bin/mosquitto_pub" },
        SystemPackage { name: "python3", installs: "/usr/bin/python3" },
    ];
    let mut missing: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(BENCH_PACKAGES)
        .filter(|p| !Path::new(p.installs).exists())
        .map(|p| p.name)
        .collect();
    if postgres_programs().is_err() {
        missing.push(POSTGRES_PACKAGE);
    }
    install(&missing)
}

/// What the test suite needs from the system.
const TEST_PACKAGES: &[SystemPackage] = &[
    SystemPackage { name: "libclang-dev", installs: "/usr/share/doc/libclang-dev/copyright" },
    SystemPackage { name: "cmake", installs: "/usr/bin/cmake" },
    // The RTSPS camera source (X1/H2/P2S printers) runs ffmpeg; its test serves a real stream.
    SystemPackage { name: "ffmpeg", installs: "/usr/bin/ffmpeg" },
    // The printer link is tested against a real MQTT broker over TLS, the path a real
    // printer takes.
    SystemPackage { name: "mosquitto", installs: "/usr/sbin/mosquitto" },
    // The dashboard is tested in a real browser: headless Chromium driven over WebDriver.
    SystemPackage { name: "chromium", installs: "/usr/bin/chromium" },
    SystemPackage { name: "chromium-driver", installs: "/usr/bin/chromedriver" },
    // Agents whose clock is hours off (a Raspberry Pi without a real-time clock) run under
    // libfaketime in the clock-skew scenario.
    SystemPackage { name: "faketime", installs: "/usr/bin/faketime" },
    // Hub replicas are tested behind Debian's HAProxy, with the reference configuration.
    SystemPackage { name: "haproxy", installs: "/usr/sbin/haproxy" },
    // The hub is tested against the reference database deployment: a primary and a
    // synchronous standby under Patroni, its leader lock in etcd (`patroni-failover`).
    SystemPackage { name: "patroni", installs: "/usr/bin/patroni" },
    SystemPackage { name: "etcd-server", installs: "/usr/bin/etcd" },
    // The API fuzzer (schemathesis, from PyPI) runs in a virtual environment the test makes.
    SystemPackage { name: "python3-venv", installs: "/usr/share/doc/python3-venv/copyright" },
];

/// Debian's PostgreSQL server, installed when no server programs are found (its programs
/// live in `/usr/lib/postgresql/<version>/bin`).
const POSTGRES_PACKAGE: &str = "postgresql";

/// Where the tests look for an admin URL of a throwaway PostgreSQL cluster.
const POSTGRES_URL_VAR: &str = "KITT_TEST_POSTGRES_URL";

/// Services started for the test run; they stop when this value is dropped.
#[derive(Debug, Default)]
pub struct TestServices {
    env: Vec<(String, String)>,
    _postgres: Option<PostgresCluster>,
}

impl TestServices {
    /// Environment variables that tell the tests where the services are.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

pub fn prepare_test_environment() -> anyhow::Result<TestServices> {
    let mut missing: Vec<&str> =
        TEST_PACKAGES.iter().filter(|p| !Path::new(p.installs).exists()).map(|p| p.name).collect();
    if std::env::var_os(POSTGRES_URL_VAR).is_none() && postgres_programs().is_err() {
        missing.push(POSTGRES_PACKAGE);
    }
    install(&missing)?;
    if std::env::var_os(POSTGRES_URL_VAR).is_some() {
        eprintln!("xtask: the tests use the PostgreSQL cluster at ${POSTGRES_URL_VAR}");
        return Ok(TestServices::default());
    }
    let postgres = PostgresCluster::start(&postgres_programs()?)?;
    Ok(TestServices {
        env: vec![(POSTGRES_URL_VAR.to_owned(), postgres.admin_url.clone())],
        _postgres: Some(postgres),
    })
}

fn install(missing: &[&str]) -> anyhow::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing system packages: {}", missing.join(" "));
    let as_root = is_root();
    let apt = |args: &[&str]| {
        let mut command = if as_root { Command::new("apt-get") } else { sudo_apt() };
        command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        command
    };
    crate::status(apt(&["update", "-q"])).context("apt-get update")?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(missing);
    crate::status(install).context("installing the test suite's system packages")
}

fn sudo_apt() -> Command {
    let mut command = Command::new("sudo");
    command.arg("apt-get");
    command
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throwaway PostgreSQL cluster for the test run, stopped and removed when dropped.
#[derive(Debug)]
struct PostgresCluster {
    admin_url: String,
    /// Stops the cluster and removes its directory when its stdin closes.
    watchdog: Child,
}

impl PostgresCluster {
    fn start(programs: &Path) -> anyhow::Result<PostgresCluster> {
        let started = Instant::now();
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
        let base = std::env::temp_dir().join(format!("kitt-postgres-xtask-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&base)
            .with_context(|| format!("cannot create {}", base.display()))?;
        let data = base.join("data");
        let program = |name: &str| {
            let mut command = if as_postgres {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(programs.join(name));
                command
            } else {
                Command::new(programs.join(name))
            };
            // The postgres user may not enter the current directory.
            command.current_dir(&base).stdin(Stdio::null());
            command
        };

        // The watchdog first: from here on, dropping the cluster removes the directory.
        let mut stop = program("pg_ctl");
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
            .context("cannot start the PostgreSQL cluster's watchdog (sh)")?;
        let mut cluster = PostgresCluster { admin_url: String::new(), watchdog };

        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&base);
            quiet(chown)?;
        }
        let mut initdb = program("initdb");
        initdb.arg("-D").arg(&data);
        initdb.args(["--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]);
        quiet(initdb)?;
        let settings = format!(
            "\n# kitt's throwaway test cluster\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 200\n",
            base.display()
        );
        let config = data.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .and_then(|mut file| std::io::Write::write_all(&mut file, settings.as_bytes()))
            .with_context(|| format!("cannot write {}", config.display()))?;
        // `pg_ctl -w` returns once the server accepts connections. The free port may be
        // taken before the server binds it: then another is tried.
        for attempt in 1..=3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut start = program("pg_ctl");
            start.arg("-D").arg(&data).arg("-l").arg(base.join("server.log"));
            start.args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"]);
            match quiet(start) {
                Ok(()) => {
                    cluster.admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                    eprintln!(
                        "xtask: throwaway PostgreSQL cluster ({}) on port {port}, started in {:?}",
                        programs.display(),
                        started.elapsed()
                    );
                    return Ok(cluster);
                }
                Err(error) => {
                    let log = std::fs::read_to_string(base.join("server.log")).unwrap_or_default();
                    if attempt == 3 || !log.contains("already in use") {
                        return Err(error.context(format!("PostgreSQL's log:\n{log}")));
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // End of input tells the watchdog to stop the cluster and remove its directory.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

/// The directory holding PostgreSQL's `initdb`, `pg_ctl` and `postgres`: Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else the first directory on `PATH` with all three.
fn postgres_programs() -> anyhow::Result<PathBuf> {
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
    candidates
        .iter()
        .find(|dir| ["initdb", "pg_ctl", "postgres"].iter().all(|p| dir.join(p).is_file()))
        .cloned()
        .with_context(|| {
            let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            format!(
                "PostgreSQL's initdb, pg_ctl and postgres were not found in \
                 /usr/lib/postgresql/<version>/bin nor on PATH (looked in: {}); install \
                 Debian's `{POSTGRES_PACKAGE}` package",
                looked.join(", ")
            )
        })
}

/// Runs `command`, its output shown only when it fails.
fn quiet(mut command: Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let output = command.output().with_context(|| format!("cannot start {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
