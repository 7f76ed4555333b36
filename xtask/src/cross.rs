//! Cross builds for Raspberry Pi OS with Debian's cross compilers (see cross/README.md for
//! the choice and what it means for glibc): the targets, what each needs from Debian and
//! rustup, and running a target's tests under user-mode QEMU.
//!
//! The cargo side (linker, test runner) is `cross/config.toml`, passed with `--config`.
//! Tests that start a child process (`edge-agent/tests/watch.rs` runs the `kitt-agent`
//! binary) need the kernel to run a foreign binary: QEMU's `binfmt_misc` entry, which
//! [`test`] registers when it is missing (as root, or through sudo) and otherwise refuses to
//! run with an explanation, rather than let those tests fail obscurely or skip them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::elf::GlibcVersion;
use crate::setup::SystemPackage;

/// A target kitt builds for.
#[derive(Debug)]
pub struct Target {
    pub triple: &'static str,
    /// Debian's name for the architecture (the package's `Architecture`).
    pub deb_arch: &'static str,
    /// `e_machine` of its binaries.
    pub machine: u16,
    /// Who runs it.
    pub boards: &'static str,
    /// What building for it needs from Debian (none for the host).
    pub build_packages: &'static [SystemPackage],
    /// User-mode QEMU for running its tests, and its binfmt_misc entry's name.
    pub qemu: Option<Qemu>,
}

#[derive(Debug)]
pub struct Qemu {
    pub package: SystemPackage,
    /// The `binfmt_misc` entry Debian's package describes in `/usr/lib/binfmt.d/<name>.conf`.
    pub binfmt: &'static str,
    /// The cross C library's root, where the dynamic loader is found.
    pub sysroot: &'static str,
}

const QEMU_PACKAGE: &str = "qemu-user-static";

pub const TARGETS: &[Target] = &[
    Target {
        triple: "aarch64-unknown-linux-gnu",
        deb_arch: "arm64",
        machine: crate::elf::EM_AARCH64,
        boards: "Raspberry Pi 3, 4, 5, 400, 500, Zero 2 W on 64-bit Raspberry Pi OS",
        build_packages: &[
            SystemPackage {
                name: "gcc-aarch64-linux-gnu",
                installs: "/usr/bin/aarch64-linux-gnu-gcc",
            },
            SystemPackage {
                name: "libc6-dev-arm64-cross",
                installs: "/usr/aarch64-linux-gnu/include/stdio.h",
            },
        ],
        qemu: Some(Qemu {
            package: SystemPackage { name: QEMU_PACKAGE, installs: "/usr/bin/qemu-aarch64-static" },
            binfmt: "qemu-aarch64",
            sysroot: "/usr/aarch64-linux-gnu",
        }),
    },
    Target {
        triple: "armv7-unknown-linux-gnueabihf",
        deb_arch: "armhf",
        machine: crate::elf::EM_ARM,
        boards: "Raspberry Pi 2, 3, 4, Zero 2 W on 32-bit Raspberry Pi OS (not Pi 1 or Zero: ARMv6)",
        build_packages: &[
            SystemPackage {
                name: "gcc-arm-linux-gnueabihf",
                installs: "/usr/bin/arm-linux-gnueabihf-gcc",
            },
            SystemPackage {
                name: "libc6-dev-armhf-cross",
                installs: "/usr/arm-linux-gnueabihf/include/stdio.h",
            },
        ],
        qemu: Some(Qemu {
            package: SystemPackage { name: QEMU_PACKAGE, installs: "/usr/bin/qemu-arm-static" },
            binfmt: "qemu-arm",
            sysroot: "/usr/arm-linux-gnueabihf",
        }),
    },
    // The build machine itself: packages for tests in a chroot, and for x86_64 hubs' own
    // agents.
    Target {
        triple: "x86_64-unknown-linux-gnu",
        deb_arch: "amd64",
        machine: crate::elf::EM_X86_64,
        boards: "x86_64 Debian 12 or later",
        build_packages: &[],
        qemu: None,
    },
];

/// Raspberry Pi OS releases, oldest first, with the glibc each ships.
pub const PI_OS_RELEASES: &[(&str, GlibcVersion)] = &[
    ("Buster (Debian 10)", GlibcVersion(2, 28, 0)),
    ("Bullseye (Debian 11)", GlibcVersion(2, 31, 0)),
    ("Bookworm (Debian 12)", GlibcVersion(2, 36, 0)),
    ("Trixie (Debian 13)", GlibcVersion(2, 41, 0)),
];

/// The Raspberry Pi OS releases whose glibc is at least `needed`, in words.
pub fn releases_with(needed: GlibcVersion) -> String {
    match PI_OS_RELEASES.iter().find(|(_, glibc)| *glibc >= needed) {
        Some((name, _)) => format!("Raspberry Pi OS {name} and later"),
        None => "newer than every Raspberry Pi OS release kitt knows".to_owned(),
    }
}

/// The target named `triple`.
pub fn target(triple: &str) -> anyhow::Result<&'static Target> {
    TARGETS.iter().find(|t| t.triple == triple).with_context(|| {
        let known: Vec<&str> = TARGETS.iter().map(|t| t.triple).collect();
        format!("unknown target {triple:?}; kitt builds for {}", known.join(", "))
    })
}

/// `cargo` arguments that build for `target`.
pub fn cargo_args(target: &Target) -> Vec<String> {
    let config = crate::workspace_root().join("cross/config.toml");
    vec!["--target".into(), target.triple.into(), "--config".into(), config.display().to_string()]
}

/// Installs what building for `target` needs: its Rust standard library, Debian's cross
/// compiler and C library, and what every build needs ([`crate::setup::BUILD_PACKAGES`]).
pub fn prepare_build(target: &Target) -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup (kitt's cross builds use rustup's standard libraries)")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    if !installed.lines().any(|line| line.trim() == target.triple) {
        let mut add = Command::new("rustup");
        add.args(["target", "add", target.triple]);
        crate::status(add)?;
    }
    // libclang: bindgen generates the V4L2 bindings (USB cameras) for the target too.
    crate::setup::ensure_packages(crate::setup::BUILD_PACKAGES)?;
    crate::setup::ensure_packages(target.build_packages)
}

/// The target's test suites of `packages` (built for it, run under QEMU).
pub fn test(target: &Target, packages: &[&str], extra: &[String]) -> anyhow::Result<()> {
    prepare_build(target)?;
    let Some(qemu) = &target.qemu else {
        bail!("{} is this machine's own target: `cargo xtask test` runs its tests", target.triple)
    };
    crate::setup::ensure_packages(std::slice::from_ref(&qemu.package))?;
    ensure_binfmt(qemu)?;
    let mut command = crate::cargo();
    // Every suite runs and every failure is reported, not just the first suite's.
    command.args(["test", "--locked", "--no-fail-fast"]).args(cargo_args(target));
    for package in packages {
        command.args(["-p", package]);
    }
    command.args(extra);
    // The runner's `-L` covers the test binaries; this covers the processes they start,
    // which the kernel hands to QEMU through binfmt_misc.
    command.env("QEMU_LD_PREFIX", qemu.sysroot);
    crate::status(command)
}

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Makes sure the kernel runs `qemu`'s architecture through QEMU: mounts binfmt_misc and
/// registers Debian's entry (`/usr/lib/binfmt.d/<name>.conf`, flags `F`: the interpreter
/// is opened once, so it also works in chroots) when they are missing. Until the next
/// reboot, like systemd-binfmt does at boot on a machine where systemd runs.
fn ensure_binfmt(qemu: &Qemu) -> anyhow::Result<()> {
    let entry = Path::new(BINFMT).join(qemu.binfmt);
    if binfmt_enabled(&entry) {
        return Ok(());
    }
    let explain = || {
        format!(
            "the tests start the kitt-agent binary as a child process, and the kernel can run \
             a foreign binary only through binfmt_misc ({BINFMT}/{}): mount binfmt_misc and \
             register /usr/lib/binfmt.d/{}.conf (systemd-binfmt does at boot; root needed)",
            qemu.binfmt, qemu.binfmt
        )
    };
    let as_root = crate::setup::is_root();
    let root = |program: &str| {
        if as_root {
            Command::new(program)
        } else {
            let mut command = Command::new("sudo");
            command.arg(program);
            command
        }
    };
    if !Path::new(BINFMT).join("register").exists() {
        let mut mount = root("mount");
        mount.args(["-t", "binfmt_misc", "binfmt_misc", BINFMT]);
        crate::status(mount).with_context(explain)?;
    }
    let conf = PathBuf::from(format!("/usr/lib/binfmt.d/{}.conf", qemu.binfmt));
    let line = std::fs::read_to_string(&conf)
        .with_context(|| format!("cannot read {} ({QEMU_PACKAGE})", conf.display()))?;
    let line = line.lines().find(|l| l.starts_with(':')).context("no entry")?.to_owned();
    eprintln!("xtask: registering {} in {BINFMT} (until the next reboot)", qemu.binfmt);
    let mut register = root("sh");
    register.args(["-c", "printf '%s\\n' \"$1\" > /proc/sys/fs/binfmt_misc/register", "sh"]);
    register.arg(&line);
    crate::status(register).with_context(explain)?;
    if !binfmt_enabled(&entry) {
        bail!("{} is still not enabled after registering it; {}", entry.display(), explain());
    }
    Ok(())
}

fn binfmt_enabled(entry: &Path) -> bool {
    std::fs::read_to_string(entry).is_ok_and(|text| text.lines().next() == Some("enabled"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cross_target_has_its_linker_and_runner_in_cross_config() {
        let config =
            std::fs::read_to_string(crate::workspace_root().join("cross/config.toml")).unwrap();
        for target in TARGETS.iter().filter(|t| t.qemu.is_some()) {
            let table = format!("[target.{}]", target.triple);
            let at = config.find(&table).unwrap_or_else(|| panic!("{table} is missing"));
            let rest = &config[at + table.len()..];
            let section = &rest[..rest.find("[target.").unwrap_or(rest.len())];
            let gcc = target.build_packages[0].installs.rsplit('/').next().unwrap();
            assert!(section.contains(&format!("linker = \"{gcc}\"")), "{table}: linker {gcc}");
            let qemu = target.qemu.as_ref().unwrap();
            let program = qemu.package.installs.rsplit('/').next().unwrap();
            assert!(
                section
                    .contains(&format!("runner = [\"{program}\", \"-L\", \"{}\"]", qemu.sysroot)),
                "{table}: runner {program}"
            );
        }
    }

    #[test]
    fn glibc_versions_map_to_the_releases_that_ship_them() {
        assert_eq!(
            releases_with(GlibcVersion(2, 34, 0)),
            "Raspberry Pi OS Bookworm (Debian 12) and later"
        );
        assert_eq!(
            releases_with(GlibcVersion(2, 31, 0)),
            "Raspberry Pi OS Bullseye (Debian 11) and later"
        );
        assert_eq!(
            releases_with(GlibcVersion(2, 17, 0)),
            "Raspberry Pi OS Buster (Debian 10) and later"
        );
        assert!(releases_with(GlibcVersion(2, 99, 0)).starts_with("newer than"));
    }

    #[test]
    fn unknown_targets_are_named_with_the_known_ones() {
        let error = target("riscv64gc-unknown-linux-gnu").unwrap_err().to_string();
        assert!(error.contains("aarch64-unknown-linux-gnu"), "{error}");
    }
}
