//! kitt's automation, run as `cargo xtask <command>` (matklad's cargo-xtask).
//!
//! - `test`: the whole test suite, with its own set-up (system packages, throwaway
//!   services). The README's test command and the heart of `.ci/run`.
//! - `run`: the product on its embedded defaults. The README's run command.
//! - `eval`: the assistant's evaluation (`eval/assistant.json`) on the demo fleet, against
//!   every configured model tier: accuracy, tool-call validity and latency per tier. It
//!   informs; it fails only when nothing could run.
//! - `ci`: `test`, then formatting, clippy, the fuzz target's build, and the Raspberry Pi
//!   checks (`dist`, `test-cross`, `test-package`), like `.ci/run`.
//! - `deps`: the dependency rules of ARCHITECTURE.md.
//! - `fuzz-build`: builds the fuzz targets in `proto/fuzz` (frame decoder, Bambu reports,
//!   print files).
//! - `dist agent --target <triple>`: the stripped release agent and its `.deb` (`dist.rs`).
//! - `provision sd|ssh`: an agent onto a Raspberry Pi's SD card or over SSH (`provision.rs`).
//! - `test-cross [--target <triple>]`: the agent's and `proto`'s tests built for a Pi and
//!   run under QEMU (`cross.rs`).
//! - `test-package`: the `.deb`'s maintainer scripts and first-boot provisioning in a
//!   Debian chroot (`package_test.rs`).
//! - `vendor-web`: the dashboard's JavaScript libraries from the npm registry, at pinned
//!   versions and hashes, into `hub/assets/vendor/` (`vendor.rs`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod cross;
mod deb;
mod deps;
mod dist;
mod elf;
mod flags;
mod models;
mod package_test;
mod provision;
mod setup;
mod vendor;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

const USAGE: &str =
    "usage: cargo xtask <test|run|bench|ci|deps|fuzz-build> [-- args for the test runner]
       cargo xtask eval [-- args for kitt-hub demo, e.g. --config hub.toml]
       cargo xtask dist agent --target <triple> [--version <debian-version>]
       cargo xtask provision <sd|ssh> ... (cargo xtask provision for details)
       cargo xtask test-cross [--target <triple>] [-- args for the test runner]
       cargo xtask test-package
       cargo xtask vendor-web";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("eval") => eval(&args[1..]),
        Some("bench") => bench::bench(),
        Some("ci") => ci(),
        Some("deps") => check_deps(),
        Some("fuzz-build") => fuzz_build(),
        Some("dist") => dist::run(&args[1..]),
        Some("provision") => provision::run(&args[1..]),
        Some("test-cross") => test_cross(&args[1..]),
        Some("test-package") => package_test::run(&args[1..]),
        Some("vendor-web") => vendor::run(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`): from the `CARGO_MANIFEST_DIR` cargo sets
/// when it runs xtask, so that an xtask binary built in another clone sharing the target
/// directory (cargo takes it as up to date) works on this clone, not on the one that built
/// it; the value baked in at build time only when run outside cargo.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().expect("xtask lives in the workspace").into()
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Cargo, run in the workspace without the variables `cargo run` gave xtask (its package's
/// name, version and manifest directory).
///
/// Build scripts may name such variables as inputs (ring's names `CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR` and `OUT_DIR`, and cargo compares them in its own environment), so a
/// build from xtask would rebuild ring and everything above it after a build from a shell
/// or from a test program, and the other way round. Without them the builds agree; the test
/// harness's own build of the binaries (`tests::process::bin`) leaves out the same ones.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether cargo sets `name` for a program it runs (`cargo run`, `cargo test`, `cargo bench`)
/// from that program's package; `CARGO` and the user's own settings are kept.
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

/// Runs `command`, failing with its description when it fails.
pub fn status(mut command: Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    eprintln!("xtask: running {shown}");
    let status = command.status().with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    let services = setup::prepare_test_environment()?;
    // The assistant's tests run a real small model.
    let chat_model = models::ensure(&models::CHAT_MODEL)?;
    let embed_model = models::ensure_embedding()?;
    // The crash tests run the real binaries as processes: build them first.
    let mut build = cargo();
    build.args(["build", "--workspace", "--bins", "--locked"]);
    status(build)?;
    // Each system scenario appends its one-line verdict here; shown after the run.
    let verdicts = target_dir().join("test-artifacts/scenarios/verdicts.txt");
    let _ = std::fs::remove_file(&verdicts);
    let mut command = cargo();
    command.args(["test", "--workspace", "--locked"]);
    command.args(extra);
    for (key, value) in services.env() {
        command.env(key, value);
    }
    command.env(models::CHAT_MODEL_VAR, &chat_model);
    command.env(models::EMBED_MODEL_VAR, &embed_model);
    let result = status(command);
    if let Ok(text) = std::fs::read_to_string(&verdicts) {
        eprintln!("\nxtask: offline-tolerance scenarios ({}):\n{text}", verdicts.display());
    }
    result
}

/// What `kitt-hub demo` needs: the system packages, the chat model (its path answered) and
/// every binary, built.
fn prepare_demo() -> anyhow::Result<PathBuf> {
    setup::ensure_packages(setup::BUILD_PACKAGES)?;
    let chat_model = models::ensure(&models::CHAT_MODEL)?;
    let mut build = cargo();
    build.args(["build", "--locked", "--workspace", "--bins"]);
    status(build)?;
    Ok(chat_model)
}

/// The product on its embedded defaults: `kitt-hub demo` (a hub on SQLite, four simulated
/// printers, one real agent each), after building every binary it runs.
fn run(extra: &[String]) -> anyhow::Result<()> {
    let chat_model = prepare_demo()?;
    let mut demo = Command::new(target_dir().join("debug/kitt-hub"));
    demo.arg("demo").args(extra).env(models::CHAT_MODEL_VAR, &chat_model);
    with_embedding(&mut demo);
    status(demo)
}

/// The embedding model for the assistant's memory and semantic cache, when it can be had
/// (without it the demo runs, without those two).
fn with_embedding(command: &mut Command) {
    match models::ensure_embedding() {
        Ok(path) => {
            command.env(models::EMBED_MODEL_VAR, path);
        }
        Err(error) => eprintln!(
            "xtask: no embedding model ({error:#}); the assistant runs without its memory and \
             semantic cache"
        ),
    }
}

/// The assistant's evaluation: `kitt-hub demo --eval eval/assistant.json` with the local
/// chat model, and whatever else `extra` configures (`--config hub.toml` with
/// `[[assistant.tiers]]`). `--` before the extra arguments is optional.
fn eval(extra: &[String]) -> anyhow::Result<()> {
    let extra = match extra.first().map(String::as_str) {
        Some("--") => &extra[1..],
        _ => extra,
    };
    let chat_model = prepare_demo()?;
    let mut demo = Command::new(target_dir().join("debug/kitt-hub"));
    demo.args(extra)
        .arg("demo")
        .arg("--eval")
        .arg(workspace_root().join("eval/assistant.json"))
        .env(models::CHAT_MODEL_VAR, &chat_model);
    with_embedding(&mut demo);
    status(demo)
}

fn ci() -> anyhow::Result<()> {
    test(&[])?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    status(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]);
    status(clippy)?;
    fuzz_build()?;
    let pi = cross::target("aarch64-unknown-linux-gnu")?;
    dist::agent(pi, env!("CARGO_PKG_VERSION"))?;
    cross::test(pi, &["edge-agent", "proto", "proto-io"], &[])?;
    package_test::run(&[])
}

/// The test suites that matter on a Pi (the agent's and the wire format's), built for
/// `--target` (default aarch64) and run under QEMU.
fn test_cross(args: &[String]) -> anyhow::Result<()> {
    let (ours, extra) = match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at..]),
        None => (args, &[][..]),
    };
    let flags = flags::parse(ours, &["target"])?;
    let target = cross::target(flags.value("target").unwrap_or("aarch64-unknown-linux-gnu"))?;
    cross::test(target, &["edge-agent", "proto", "proto-io"], extra)
}

fn check_deps() -> anyhow::Result<()> {
    let violations = deps::check(&deps::workspace_metadata()?);
    if violations.is_empty() {
        println!("dependency rules hold");
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    bail!("{} dependency rule(s) broken; see ARCHITECTURE.md", violations.len())
}

fn fuzz_build() -> anyhow::Result<()> {
    let mut command = cargo();
    command.args(["build", "--locked", "--manifest-path", "proto/fuzz/Cargo.toml"]);
    status(command)
}
