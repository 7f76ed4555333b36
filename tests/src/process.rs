//! The real binaries as separate processes, for tests that `kill -9` them.
//!
//! The binaries are found beside the test executable (`target/<profile>/`); `cargo xtask
//! test` builds them before running the tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::PATIENCE;

/// The path of one of kitt's binaries, rebuilt first (once per test process) so a test never
/// runs a stale binary.
///
/// `BENCH_AGENT_BINARY` names another `kitt-agent` to run: `cargo xtask bench` measures the
/// agent as it ships, built with the `agent` profile (release, aborting on panic). Not a
/// `KITT_` name: kitt's binaries refuse unknown `KITT_` variables, and every child of a
/// benchmark inherits it.
pub fn bin(name: &str) -> PathBuf {
    if name == "kitt-agent"
        && let Some(agent) = std::env::var_os("BENCH_AGENT_BINARY")
    {
        return PathBuf::from(agent);
    }
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    BUILT.get_or_init(|| build_binaries(dir));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which `cargo xtask test` does)",
        path.display()
    );
    path
}

fn build_binaries(dir: &std::path::Path) {
    let Some(cargo) = std::env::var_os("CARGO") else { return };
    let mut command = Command::new(cargo);
    // The same selection as `cargo xtask test` builds, so features unify the same way and
    // nothing is rebuilt.
    command.args(["build", "--workspace", "--bins"]);
    // Nor the variables `cargo test` and `cargo bench` set for this program: build scripts
    // may name them as inputs (ring names `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, `OUT_DIR`),
    // and with them this build and xtask's (or a shell's) took turns rebuilding ring and
    // everything above it, minutes each time. xtask's `cargo()` leaves out the same ones.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            command.env_remove(name);
        }
    }
    if dir.file_name().is_some_and(|profile| profile == "release") {
        command.arg("--release");
    }
    if let Some(target) = dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the binaries failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether cargo sets `name` for a program it runs from that program's package.
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// Sends each line `from` yields, on a thread of its own, until either side ends.
fn forward_lines(from: impl std::io::Read + Send + 'static, to: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if to.send(line).is_err() {
                return;
            }
        }
    });
}

/// A child process whose stdout lines the test can wait on. Killed with SIGKILL when
/// dropped.
#[derive(Debug)]
pub struct Process {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    pub fn spawn(command: &mut Command) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        forward_lines(stdout, tx);
        Process { child, lines }
    }

    /// Like [`Process::spawn`], with the log (stderr) among the lines [`Process::wait_line`]
    /// sees, so a test can wait for what the program tells its user. Colours off.
    pub fn spawn_logged(command: &mut Command) -> Process {
        let mut child = command
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        forward_lines(stdout, tx.clone());
        forward_lines(stderr, tx);
        Process { child, lines }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for a stdout line containing `needle` and returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        self.wait_line_where(PATIENCE, needle, |line| line.contains(needle))
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// Waits up to `patience` for a line `want` accepts; `Err` says what, and what was seen
    /// instead. Lines before it are consumed.
    pub fn wait_line_where(
        &self,
        patience: std::time::Duration,
        what: &str,
        want: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + patience;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(_) => return Err(format!("no line with {what:?}; saw {seen:#?}")),
            }
        }
    }

    /// The lines that arrived and no wait consumed yet, without waiting.
    pub fn take_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("the process exits")
    }
}

impl Drop for Process {
    /// A test that fails half-way still stops its processes politely first (SIGTERM), so a
    /// `kitt-hub demo` stops its own children; a watchdog sends SIGKILL if the process has
    /// not exited five seconds later. The wait itself is on the exit.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (exited, exit) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                exit.recv_timeout(std::time::Duration::from_secs(5))
            {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        });
        let _ = self.child.wait();
        let _ = exited.send(());
        let _ = watchdog.join();
    }
}

/// `(VmRSS, VmHWM)` of a process, in kB (0 when it cannot be read).
pub fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
