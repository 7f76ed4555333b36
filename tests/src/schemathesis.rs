//! Schemathesis, the property-based API fuzzer (from PyPI), run against a live hub from the
//! hub's own OpenAPI document. Installed once into a virtual environment under
//! `~/.cache/kitt/` (or found at `$KITT_TEST_SCHEMATHESIS`), at a pinned version.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned version: the CLI's options and checks are those of this release.
pub const VERSION: &str = "4.32.5";

/// The `schemathesis` program, installing it first if needed.
pub fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("KITT_TEST_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let venv = home.join(format!(".cache/kitt/schemathesis-{VERSION}"));
    let program = venv.join("bin/schemathesis");
    if installed(&program) {
        return program;
    }
    // One test runs it, so one process installs it; a half-made environment from an
    // interrupted install is made anew.
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv");
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("schemathesis=={VERSION}")),
        "pip install schemathesis",
    );
    assert!(installed(&program), "schemathesis {VERSION} did not install into {}", venv.display());
    program
}

fn installed(program: &Path) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|out| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(VERSION)
    })
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed (needs python3 with venv, and PyPI; `cargo xtask test` installs \
         python3-venv):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
