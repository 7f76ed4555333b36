//! The reference PostgreSQL deployment for hub replicas (`deploy/hub/REPLICAS.md`), run for a
//! test: etcd 3.4, two Patroni 3.0 nodes running PostgreSQL 15, and HAProxy's `postgres`
//! section, all Debian's packages, on loopback addresses of this machine.
//!
//! The reference files themselves (`patroni-pg1.yml`, `patroni-pg2.yml`, `haproxy.cfg`), with
//! only what ties them to real hosts changed:
//! - the example addresses: the nodes' 10.0.0.21 and 10.0.0.22 and etcd's 10.0.0.31 become
//!   three free loopback addresses 127.0.0.x (x from 20 up, a slot chosen from the process
//!   id and checked free on every port the reference uses: 5432 and 8008 on each node, 2379
//!   and 2380 on etcd), the hubs' network 10.0.0.0/24 becomes 127.0.0.0/24;
//! - PostgreSQL listens on the node's address alone (both nodes cannot have 127.0.0.1:5432);
//! - `data_dir`, `pgpass` and `unix_socket_directories` lie in the cluster's directory;
//! - the `replication` and `rewind_user` lines of `pg_hba` for pg1's address are widened to
//!   127.0.0.1, the source address of every connection between loopback addresses here;
//! - not as root: the superuser is the test's user instead of `postgres` (the `local ... peer`
//!   lines admit Patroni's own connections only under its operating-system user's name).
//!
//! Everything else is the reference's, timing included: `ttl` 30, `loop_wait` 10,
//! `retry_timeout` 10, synchronous mode (not strict), failsafe mode, `pg_rewind`, slots. So
//! an unplanned failover here takes what it takes on real hosts. HAProxy runs the reference
//! global, defaults and `postgres` sections ([`crate::haproxy::postgres_configuration`]) in
//! the foreground, on a free port of 127.0.0.1 instead of 5000.
//!
//! It starts as the runbook says: etcd, then pg1 (initdb and the `post_bootstrap` that
//! creates the role and database `kitt`), then, once pg1 leads, pg2 (a copy by
//! pg_basebackup); it waits, polling Patroni's REST API, until pg2 is the synchronous
//! standby, and sets the role `kitt`'s password (step 3). PostgreSQL refuses to run as root:
//! as root, Patroni runs as the `postgres` system user (`runuser -u postgres --`), which owns
//! the cluster's directory; otherwise as the test's user.
//!
//! Cleanup, as for [`crate::postgres`]: a watchdog, a `sh` in a process group of its own
//! whose stdin is a pipe from the test process, waits for end-of-file (the cluster dropped,
//! or the test process gone however it went), then kills both Patroni processes and etcd and
//! HAProxy (`kill -9`, each by the pid it wrote and only if that pid still runs the program),
//! stops both postmasters (SIGQUIT: immediate shutdown), waits for them, and removes the
//! directory. Dropping the cluster waits for the watchdog to finish.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::postgres::running_as_root;

/// The reference Patroni configurations, as shipped.
pub const REFERENCE: [&str; 2] = [
    include_str!("../../deploy/hub/patroni-pg1.yml"),
    include_str!("../../deploy/hub/patroni-pg2.yml"),
];

/// The nodes' names, as in the reference files and HAProxy's `server` lines.
pub const NODES: [&str; 2] = ["pg1", "pg2"];

/// The reference files' example addresses: pg1, pg2 and etcd.
const EXAMPLE: [&str; 3] = ["10.0.0.21", "10.0.0.22", "10.0.0.31"];

/// PostgreSQL 15's server programs, where Debian puts them (the reference's `bin_dir`).
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// How long the cluster may take to start: initdb, pg_basebackup and Patroni's loops
/// (`loop_wait` 10 s) on a busy machine. About 25 s on an idle one with two cores.
const BOOT_PATIENCE: Duration = Duration::from_secs(180);

/// Between two looks at something another process changes.
const POLL: Duration = Duration::from_millis(100);

/// The watchdog: waits for end-of-file on stdin, then stops everything the cluster runs,
/// each process by its pid file and only while that pid runs the expected program, and
/// removes the directory (`$0`).
const WATCHDOG: &str = r#"trap '' HUP INT
cat >/dev/null
cd /
# Whether the pid in the first line of file $1 runs program $2 (and is no zombie).
runs() {
  [ -f "$1" ] || return 1
  pid=$(head -n 1 "$1")
  [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ] &&
    ! grep -q '^State:[[:space:]]*Z' /proc/"$pid"/status 2>/dev/null
}
kill_named() { # pid file, program name, signal
  runs "$1" "$2" && kill -"$3" "$pid" 2>/dev/null
  return 0
}
kill_named "$0/patroni-pg1.pid" patroni KILL
kill_named "$0/patroni-pg2.pid" patroni KILL
kill_named "$0/pg1/postmaster.pid" postgres QUIT
kill_named "$0/pg2/postmaster.pid" postgres QUIT
kill_named "$0/etcd.pid" etcd KILL
kill_named "$0/haproxy.pid" haproxy KILL
i=0
for node in pg1 pg2; do
  while [ $i -lt 300 ] && runs "$0/$node/postmaster.pid" postgres; do
    sleep 0.1; i=$((i + 1))
  done
done
rm -rf -- "$0"
"#;

/// A member of the cluster as Patroni's REST API (`GET /cluster`) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// `leader`, `sync_standby`, `replica`, …
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`, …
    pub state: String,
    pub timeline: Option<u64>,
    /// The replication lag in bytes (standbys only).
    pub lag: Option<u64>,
}

impl Member {
    fn running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming")
    }
}

/// A running reference cluster; stopped and removed when dropped.
#[derive(Debug)]
pub struct PatroniCluster {
    base: PathBuf,
    /// pg1's and pg2's addresses.
    nodes: [Ipv4Addr; 2],
    etcd: Ipv4Addr,
    /// HAProxy's `postgres` section, on 127.0.0.1.
    proxy_port: u16,
    /// The role `kitt`'s password, set at start.
    password: String,
    /// The nodes killed by [`PatroniCluster::kill_primary`].
    killed: [bool; 2],
    /// etcd, HAProxy, and each node's Patroni (or `runuser` above it).
    children: Vec<Child>,
    /// The write end of the watchdog's stdin; `None` once dropped.
    watchdog_stdin: Option<ChildStdin>,
    watchdog: Option<Child>,
    /// The superuser's name and password, from the configuration.
    superuser: (String, String),
}

/// The programs the cluster needs: where each is, or which Debian package to install.
struct Programs {
    etcd: PathBuf,
    patroni: PathBuf,
    haproxy: PathBuf,
    psql: PathBuf,
}

fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|dir| dir.join(name)).find(|path| path.is_file())
}

fn programs() -> Result<Programs, String> {
    let mut missing = Vec::new();
    let mut find = |name: &str, package: &'static str| {
        let found = find_program(name);
        if found.is_none() {
            missing.push(format!("{name} (Debian's `{package}`)"));
        }
        found.unwrap_or_default()
    };
    let programs = Programs {
        etcd: find("etcd", "etcd-server"),
        patroni: find("patroni", "patroni"),
        haproxy: find("haproxy", "haproxy"),
        // The reference's post_bootstrap runs psql.
        psql: find("psql", "postgresql-client"),
    };
    for program in ["initdb", "pg_ctl", "postgres", "pg_basebackup", "pg_rewind"] {
        if !Path::new(BIN_DIR).join(program).is_file() {
            missing.push(format!("{BIN_DIR}/{program} (Debian's `postgresql-15`)"));
        }
    }
    if running_as_root()
        && !Command::new("id").arg("postgres").output().is_ok_and(|o| o.status.success())
    {
        missing.push("the `postgres` system user (Debian's `postgresql-common`)".to_owned());
    }
    if missing.is_empty() {
        Ok(programs)
    } else {
        Err(format!(
            "the reference Patroni cluster needs {}: install them (`apt-get install etcd-server \
             patroni haproxy postgresql-15`; `cargo xtask test` does)",
            missing.join(", ")
        ))
    }
}

/// Three loopback addresses (pg1, pg2, etcd) on which every port the reference uses is free.
fn pick_addresses() -> Result<[Ipv4Addr; 3], String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SLOTS: u32 = 77; // 127.0.0.20 ..= 127.0.0.250, three each
    let start = std::process::id().wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    for i in 0..SLOTS {
        let first = 20 + 3 * ((start.wrapping_add(i)) % SLOTS) as u8;
        let addresses = [first, first + 1, first + 2].map(|x| Ipv4Addr::new(127, 0, 0, x));
        let wanted = [
            (addresses[0], 5432),
            (addresses[0], 8008),
            (addresses[1], 5432),
            (addresses[1], 8008),
            (addresses[2], 2379),
            (addresses[2], 2380),
        ];
        // Held until all are checked.
        let bound: Result<Vec<TcpListener>, _> =
            wanted.iter().map(|&(ip, port)| TcpListener::bind((ip, port))).collect();
        if bound.is_ok() {
            return Ok(addresses);
        }
    }
    Err("no free loopback addresses 127.0.0.20-250 with ports 5432, 8008, 2379 and 2380 free \
         (a PostgreSQL, Patroni or etcd listening on all addresses takes them everywhere)"
        .to_owned())
}

/// The reference configuration of node `n` made to run here (see the module's documentation
/// for what changes), its files under `base`.
pub fn node_configuration(
    n: usize,
    addresses: &[Ipv4Addr; 3],
    base: &Path,
    superuser: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut changed = Vec::new();
    let mut in_superuser = false;
    for line in REFERENCE[n].lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let mut replaced = |key: &'static str, value: String| {
            changed.push(key);
            format!("{indent}{key} {value}")
        };
        let line = if trimmed.starts_with("listen: 127.0.0.1,") {
            // Both nodes on one machine: not both on 127.0.0.1:5432.
            replaced("listen:", format!("{}:5432", addresses[n]))
        } else if trimmed.starts_with("data_dir: ") {
            replaced("data_dir:", base.join(NODES[n]).display().to_string())
        } else if trimmed.starts_with("pgpass: ") {
            replaced("pgpass:", base.join(format!("pgpass-{}", NODES[n])).display().to_string())
        } else if trimmed.starts_with("unix_socket_directories: ") {
            let dir = base.join(format!("sock-{}", NODES[n]));
            replaced("unix_socket_directories:", dir.display().to_string())
        } else if let Some(user) =
            superuser.filter(|_| in_superuser && trimmed.starts_with("username: "))
        {
            replaced("username:", user.to_owned())
        } else if (trimmed.starts_with("- host replication replicator ")
            || trimmed.starts_with("- host all rewind_user "))
            && trimmed.contains(&format!(" {}/32 ", EXAMPLE[0]))
        {
            // Connections between loopback addresses come from 127.0.0.1.
            changed.push("pg_hba");
            line.replace(&format!(" {}/32 ", EXAMPLE[0]), " 127.0.0.1/32 ")
        } else {
            let mut line = line.to_owned();
            for (example, address) in EXAMPLE.iter().zip(addresses) {
                line = line.replace(example, &address.to_string());
            }
            line.replace("10.0.0.", "127.0.0.")
        };
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            in_superuser = trimmed == "superuser:" || (in_superuser && !trimmed.ends_with(':'));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let expected = ["listen:", "data_dir:", "pgpass:", "unix_socket_directories:", "pg_hba"];
    let missing: Vec<&str> = expected.into_iter().filter(|key| !changed.contains(key)).collect();
    if !missing.is_empty() || (superuser.is_some() && !changed.contains(&"username:")) {
        return Err(format!(
            "the reference patroni-{}.yml changed: no line for {missing:?} (or the superuser) to adapt",
            NODES[n]
        ));
    }
    Ok(out)
}

/// The value of `key:` in the block under `block:` of a configuration (`superuser`'s
/// `username`, say).
fn value_under(configuration: &str, block: &str, key: &str) -> Option<String> {
    let mut lines = configuration.lines().skip_while(|line| line.trim() != format!("{block}:"));
    lines.next()?;
    lines
        .map(str::trim)
        .take_while(|line| !line.ends_with(':'))
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .map(|value| value.trim().trim_matches('"').to_owned())
}

impl PatroniCluster {
    /// Starts the reference cluster in a new directory inside `dir` (as root, one the
    /// `postgres` user may enter: the system's temporary directory, say) and waits until pg1
    /// leads, pg2 is its synchronous standby and the role `kitt` can log in through HAProxy.
    /// `Err` says what is missing or what went wrong, with the end of each program's log.
    pub fn start(dir: &Path) -> Result<PatroniCluster, String> {
        let programs = programs()?;
        let superuser_name = if running_as_root() { None } else { Some(current_user()?) };
        let addresses = pick_addresses()?;
        let base =
            dir.join(format!("kitt-patroni-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&base)
            .map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        // The watchdog first: from here on, dropping the cluster removes the directory.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&base)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the cluster's watchdog (sh): {e}"))?;
        let mut cluster = PatroniCluster {
            base,
            nodes: [addresses[0], addresses[1]],
            etcd: addresses[2],
            proxy_port: 0,
            password: format!("kitt-{:016x}", rand::random::<u64>()),
            killed: [false; 2],
            children: Vec::new(),
            watchdog_stdin: watchdog.stdin.take(),
            watchdog: Some(watchdog),
            superuser: (String::new(), String::new()),
        };
        let started = Instant::now();
        cluster
            .boot(&programs, &addresses, superuser_name.as_deref())
            .map_err(|error| format!("{error}\n{}", cluster.logs()))?;
        #[allow(clippy::print_stderr)] // Captured by the test harness.
        {
            eprintln!(
                "patroni: reference cluster in {} (pg1 {}, pg2 {}, etcd {}, HAProxy 127.0.0.1:{}) \
                 up in {:.1} s: {}",
                cluster.base.display(),
                cluster.nodes[0],
                cluster.nodes[1],
                cluster.etcd,
                cluster.proxy_port,
                started.elapsed().as_secs_f64(),
                cluster.describe()
            );
        }
        Ok(cluster)
    }

    fn boot(
        &mut self,
        programs: &Programs,
        addresses: &[Ipv4Addr; 3],
        superuser: Option<&str>,
    ) -> Result<(), String> {
        let base = self.base.clone();
        for (node, name) in NODES.iter().enumerate() {
            std::fs::create_dir(base.join(format!("sock-{name}")))
                .map_err(|e| format!("cannot create the socket directory: {e}"))?;
            let configuration = node_configuration(node, addresses, &base, superuser)?;
            if node == 0 {
                let superuser = value_under(&configuration, "superuser", "username");
                let password = value_under(&configuration, "superuser", "password");
                self.superuser =
                    superuser.zip(password).ok_or("no superuser in the configuration")?;
            }
            let path = base.join(format!("{name}.yml"));
            std::fs::write(&path, configuration)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                })
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        if running_as_root() {
            // The postgres user owns the directory, its configurations and socket directories.
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:postgres").arg(&base);
            run(&mut chown)?;
        }

        // etcd, a single member, as the reference's `etcd3: hosts` names it.
        let etcd = SocketAddr::new(IpAddr::V4(self.etcd), 2379);
        let url = |port: u16| format!("http://{}:{port}", self.etcd);
        let mut command = Command::new(&programs.etcd);
        command
            .args(["--name", "e1", "--data-dir"])
            .arg(base.join("etcd"))
            .args(["--listen-client-urls", &url(2379), "--advertise-client-urls", &url(2379)])
            .args(["--listen-peer-urls", &url(2380), "--initial-advertise-peer-urls", &url(2380)])
            .args(["--initial-cluster", &format!("e1={}", url(2380))]);
        self.spawn(command, "etcd")?;
        self.wait(Duration::from_secs(60), "etcd to answer /health", |_| {
            let health = crate::http::request(etcd, "GET", "/health", &[], None).ok()?;
            (health.json()["health"] == "true").then_some(())
        })?;

        // HAProxy's postgres section; the free port may be taken before HAProxy binds it.
        self.start_haproxy(programs)?;

        // pg1 first; once it leads, pg2.
        self.spawn_node(programs, 0)?;
        self.wait(BOOT_PATIENCE, "pg1 to lead (Patroni's GET /primary answering 200)", |c| {
            let primary = c.rest(0, "/primary").ok()?;
            (primary.status == 200).then_some(())
        })?;
        self.spawn_node(programs, 1)?;
        self.wait(BOOT_PATIENCE, "pg2 to be pg1's synchronous standby", |c| {
            let members = c.members()?;
            let leads =
                members.iter().any(|m| m.name == "pg1" && m.role == "leader" && m.running());
            let sync =
                members.iter().any(|m| m.name == "pg2" && m.role == "sync_standby" && m.running());
            (leads && sync).then_some(())
        })?;

        // The runbook's step 3: the hubs' role gets its password, on the leader.
        let (user, password) = self.superuser.clone();
        let mut alter = Command::new(&programs.psql);
        alter
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-h", &self.nodes[0].to_string()])
            .args(["-p", "5432", "-U", &user, "-d", "postgres", "-c"])
            .arg(format!("ALTER ROLE kitt PASSWORD '{}'", self.password))
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5");
        run(&mut alter)?;
        // Through HAProxy, as the hubs connect: HAProxy marks pg1 UP after two checks.
        self.wait(Duration::from_secs(60), "kitt to log in to the primary through HAProxy", |c| {
            (c.psql("SELECT pg_is_in_recovery()").ok()? == "f").then_some(())
        })?;
        Ok(())
    }

    fn start_haproxy(&mut self, programs: &Programs) -> Result<(), String> {
        let path = self.base.join("haproxy.cfg");
        let servers = [("pg1", IpAddr::V4(self.nodes[0])), ("pg2", IpAddr::V4(self.nodes[1]))];
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            std::fs::write(&path, crate::haproxy::postgres_configuration(port, &servers))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            run(Command::new(&programs.haproxy).arg("-c").arg("-f").arg(&path))?;
            let mut command = Command::new(&programs.haproxy);
            command.arg("-db").arg("-f").arg(&path);
            self.spawn(command, "haproxy")?;
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(20);
            let listening = loop {
                if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                    break Ok(());
                }
                let haproxy = self.children.last_mut().expect("HAProxy was just started");
                if let Ok(Some(status)) = haproxy.try_wait() {
                    break Err(format!("HAProxy exited ({status})\n{}", self.logs()));
                }
                if Instant::now() >= deadline {
                    break Err("HAProxy did not listen within 20 s".to_owned());
                }
                std::thread::sleep(POLL);
            };
            match listening {
                Ok(()) => {
                    self.proxy_port = port;
                    return Ok(());
                }
                Err(error) => {
                    if let Some(mut haproxy) = self.children.pop() {
                        let _ = haproxy.kill();
                        let _ = haproxy.wait();
                    }
                    last_error = error;
                }
            }
        }
        Err(format!("cannot start HAProxy: {last_error}"))
    }

    /// Starts `command` with its output in `<name>.log` and its pid in `<name>.pid`.
    fn spawn(&mut self, mut command: Command, name: &str) -> Result<(), String> {
        let log = File::create(self.base.join(format!("{name}.log")))
            .map_err(|e| format!("cannot create {name}.log: {e}"))?;
        let log_too = log.try_clone().map_err(|e| e.to_string())?;
        command.current_dir(&self.base).stdin(Stdio::null()).stdout(log).stderr(log_too);
        let child = command.spawn().map_err(|e| format!("cannot start {command:?}: {e}"))?;
        std::fs::write(self.base.join(format!("{name}.pid")), format!("{}\n", child.id()))
            .map_err(|e| format!("cannot write {name}.pid: {e}"))?;
        self.children.push(child);
        Ok(())
    }

    /// Starts node `n`'s Patroni (as `postgres` when root), which writes its own pid file.
    fn spawn_node(&mut self, programs: &Programs, n: usize) -> Result<(), String> {
        let name = NODES[n];
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", "sh"]);
            command
        } else {
            Command::new("sh")
        };
        command
            .arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$1\" \"$2\"")
            .arg(self.base.join(format!("patroni-{name}.pid")))
            .arg(&programs.patroni)
            .arg(self.base.join(format!("{name}.yml")));
        let log = File::create(self.base.join(format!("{name}.log")))
            .map_err(|e| format!("cannot create {name}.log: {e}"))?;
        let log_too = log.try_clone().map_err(|e| e.to_string())?;
        command.current_dir(&self.base).stdin(Stdio::null()).stdout(log).stderr(log_too);
        let child = command.spawn().map_err(|e| format!("cannot start Patroni for {name}: {e}"))?;
        self.children.push(child);
        Ok(())
    }

    /// Polls `check` until it gives a value; `Err` after `patience`, or at once when one of
    /// the cluster's programs exited.
    fn wait<T>(
        &mut self,
        patience: Duration,
        what: &str,
        mut check: impl FnMut(&mut PatroniCluster) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(found) = check(self) {
                return Ok(found);
            }
            let exited = self.children.iter_mut().find_map(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!(
                    "waiting for {what}: a program of the cluster exited ({status})"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("waiting for {what}: not within {} s", patience.as_secs()));
            }
            std::thread::sleep(POLL);
        }
    }

    /// A GET of Patroni's REST API on node `n`.
    fn rest(&self, n: usize, path: &str) -> Result<crate::http::Response, String> {
        let address = SocketAddr::new(IpAddr::V4(self.nodes[n]), 8008);
        crate::http::request(address, "GET", path, &[], None)
            .map_err(|e| format!("GET {path} on {}: {e}", NODES[n]))
    }

    /// The members as Patroni's `GET /cluster` shows them, asked of the nodes not killed.
    pub fn members(&self) -> Option<Vec<Member>> {
        let cluster = (0..2).filter(|&n| !self.killed[n]).find_map(|n| {
            let response = self.rest(n, "/cluster").ok()?;
            (response.status == 200).then(|| response.json())
        })?;
        let members = cluster["members"].as_array()?;
        Some(
            members
                .iter()
                .map(|member| Member {
                    name: member["name"].as_str().unwrap_or_default().to_owned(),
                    role: member["role"].as_str().unwrap_or_default().to_owned(),
                    state: member["state"].as_str().unwrap_or_default().to_owned(),
                    timeline: member["timeline"].as_u64(),
                    lag: member["lag"].as_u64(),
                })
                .collect(),
        )
    }

    /// The members in a line: `pg1 leader running (TL 1), pg2 sync_standby running (TL 1,
    /// lag 0)`.
    pub fn describe(&self) -> String {
        let Some(members) = self.members() else {
            return "no node's REST API answered".to_owned();
        };
        let member = |m: &Member| {
            let mut details = Vec::new();
            if let Some(timeline) = m.timeline {
                details.push(format!("TL {timeline}"));
            }
            if let Some(lag) = m.lag {
                details.push(format!("lag {lag}"));
            }
            format!("{} {} {} ({})", m.name, m.role, m.state, details.join(", "))
        };
        members.iter().map(member).collect::<Vec<_>>().join(", ")
    }

    /// The running leader's name.
    pub fn primary(&self) -> Option<String> {
        let members = self.members()?;
        members.into_iter().find(|m| m.role == "leader" && m.running()).map(|m| m.name)
    }

    /// The running synchronous standby's name.
    pub fn sync_standby(&self) -> Option<String> {
        let members = self.members()?;
        members.into_iter().find(|m| m.role == "sync_standby" && m.running()).map(|m| m.name)
    }

    /// The URL the hubs use: the role `kitt` through HAProxy.
    pub fn url(&self) -> String {
        format!("postgres://kitt:{}@127.0.0.1:{}/kitt", self.password, self.proxy_port)
    }

    /// Runs one statement as `kitt` through HAProxy (psql, unaligned, tuples only); its
    /// output, trimmed.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let psql = find_program("psql").ok_or("psql is missing")?;
        let output = Command::new(psql)
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.proxy_port.to_string())
            .args(["-U", "kitt", "-d", "kitt", "-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(format!("psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
    }

    /// An unplanned failover: `kill -9` of the primary's Patroni and then of its postmaster,
    /// as when its host dies (the other node's Patroni learns nothing until the leader lock
    /// expires). The primary's name.
    pub fn kill_primary(&mut self) -> Result<String, String> {
        let primary = self.primary().ok_or_else(|| format!("no primary: {}", self.describe()))?;
        let n = NODES.iter().position(|name| *name == primary).ok_or("an unknown member leads")?;
        let patroni_pid = self.base.join(format!("patroni-{primary}.pid"));
        let postmaster_pid = self.base.join(&primary).join("postmaster.pid");
        let patroni = running_pid(&patroni_pid, "patroni")?;
        let postmaster = running_pid(&postmaster_pid, "postgres")?;
        for pid in [patroni, postmaster] {
            run(Command::new("kill").args(["-KILL", &pid.to_string()]))?;
        }
        // The watchdog must never signal a reused pid.
        let _ = std::fs::remove_file(&patroni_pid);
        self.killed[n] = true;
        Ok(primary)
    }

    /// Waits until another node than `old` leads and Patroni's `GET /primary` answers 200
    /// there (what HAProxy checks); its name.
    pub fn wait_new_primary(&self, old: &str, patience: Duration) -> Result<String, String> {
        crate::poll(patience, "a new primary", || {
            (0..2)
                .filter(|&n| NODES[n] != old && !self.killed[n])
                .find(|&n| self.rest(n, "/primary").is_ok_and(|r| r.status == 200))
                .map(|n| NODES[n].to_owned())
        })
        .map_err(|error| format!("{error}: {}", self.describe()))
    }

    /// The last lines of each program's log, for a failure's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["etcd", "haproxy", "pg1", "pg2"] {
            let Ok(log) = std::fs::read_to_string(self.base.join(format!("{name}.log"))) else {
                continue;
            };
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "--- {name}.log (last {} lines)\n{}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for PatroniCluster {
    /// Closes the watchdog's stdin and waits for it: everything stopped, the directory gone.
    fn drop(&mut self) {
        drop(self.watchdog_stdin.take());
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.wait();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The pid in the first line of `path`, if that process runs `program` now.
fn running_pid(path: &Path, program: &str) -> Result<u32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let pid: u32 = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| format!("no pid in {}", path.display()))?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == program {
        Ok(pid)
    } else {
        Err(format!("pid {pid} of {} is not {program} (it is {:?})", path.display(), comm.trim()))
    }
}

fn current_user() -> Result<String, String> {
    let output =
        Command::new("id").arg("-un").output().map_err(|e| format!("cannot run id: {e}"))?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && !name.is_empty() {
        Ok(name)
    } else {
        Err("cannot tell this process's user name (`id -un`)".to_owned())
    }
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
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_specific_lines_change() {
        let addresses = [[127, 0, 0, 41], [127, 0, 0, 42], [127, 0, 0, 43]].map(Ipv4Addr::from);
        let base = Path::new("/tmp/kitt-patroni-test");
        for n in 0..2 {
            let adapted = node_configuration(n, &addresses, base, Some("alice")).unwrap();
            let reference: Vec<&str> = REFERENCE[n].lines().collect();
            let adapted: Vec<&str> = adapted.lines().collect();
            assert_eq!(reference.len(), adapted.len());
            let changed: Vec<&str> = reference
                .iter()
                .zip(&adapted)
                .filter(|(a, b)| a != b && !a.trim_start().starts_with('#'))
                .map(|(_, b)| b.trim())
                .collect();
            let name = NODES[n];
            let own = addresses[n];
            assert_eq!(
                changed,
                [
                    format!("listen: {own}:8008"),
                    format!("connect_address: {own}:8008"),
                    "hosts: 127.0.0.43:2379".to_owned(),
                    "- host replication replicator 127.0.0.1/32 scram-sha-256".to_owned(),
                    "- host replication replicator 127.0.0.42/32 scram-sha-256".to_owned(),
                    "- host all rewind_user 127.0.0.1/32 scram-sha-256".to_owned(),
                    "- host all rewind_user 127.0.0.42/32 scram-sha-256".to_owned(),
                    "- host kitt kitt 127.0.0.0/24 scram-sha-256".to_owned(),
                    format!("listen: {own}:5432"),
                    format!("connect_address: {own}:5432"),
                    format!("data_dir: /tmp/kitt-patroni-test/{name}"),
                    format!("pgpass: /tmp/kitt-patroni-test/pgpass-{name}"),
                    "username: alice".to_owned(),
                    format!("unix_socket_directories: /tmp/kitt-patroni-test/sock-{name}"),
                ]
            );
            let adapted = adapted.join("\n");
            assert_eq!(value_under(&adapted, "superuser", "username").as_deref(), Some("alice"));
            assert_eq!(
                value_under(&adapted, "replication", "username").as_deref(),
                Some("replicator")
            );
        }
    }
}
