//! `cargo xtask dist agent --target <triple> [--version <debian-version>]`: the stripped
//! release `kitt-agent` for a Raspberry Pi (or this machine) and its `.deb`, in
//! `<target dir>/dist/`. Installs its own toolchain first (see [`crate::cross`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cross::{self, Target};
use crate::deb::Package;
use crate::elf;

const USAGE: &str = "usage: cargo xtask dist agent --target <triple> [--version <debian-version>]";

/// What `dist` produced.
#[derive(Debug)]
pub struct Dist {
    pub binary: PathBuf,
    pub deb: PathBuf,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((what, flags)) = args.split_first() else { bail!("{USAGE}") };
    if what != "agent" {
        bail!("{USAGE} (only the agent is packaged)");
    }
    let flags = crate::flags::parse(flags, &["target", "version"])?;
    let triple = flags.value("target").context(USAGE)?;
    let target = cross::target(triple)?;
    let version = flags.value("version").unwrap_or(env!("CARGO_PKG_VERSION"));
    agent(target, version)?;
    Ok(())
}

/// `cargo build` of the agent as it ships: the `agent` profile, release aborting on panic
/// (Cargo.toml says why); the binary lands in `<target dir>[/<triple>]/agent/kitt-agent`.
pub fn agent_build() -> std::process::Command {
    let mut build = crate::cargo();
    build.args(["build", "--profile", "agent", "--locked", "-p", "edge-agent"]);
    build.args(["--bin", "kitt-agent"]);
    build
}

/// Builds the agent for `target` and packages it as `version`.
pub fn agent(target: &Target, version: &str) -> anyhow::Result<Dist> {
    crate::deb::check_version(version)?;
    cross::prepare_build(target)?;
    let mut build = agent_build();
    build.args(cross::cargo_args(target));
    crate::status(build)?;
    let built = crate::target_dir().join(target.triple).join("agent/kitt-agent");
    let dist = package(target, &built, version)?;
    let binary = std::fs::read(&dist.binary)?;
    if !elf::inspect(&binary)?.is_stripped() {
        bail!(
            "{} still has its symbol table: the agent profile (from release) strips it",
            dist.binary.display()
        );
    }
    Ok(dist)
}

/// Checks `built` (architecture, stripped) and packages it as `version` into
/// `<target dir>/dist/`.
pub fn package(target: &Target, built: &Path, version: &str) -> anyhow::Result<Dist> {
    let bytes = std::fs::read(built).with_context(|| format!("cannot read {}", built.display()))?;
    let binary_elf = elf::inspect(&bytes).with_context(|| built.display().to_string())?;
    if binary_elf.machine != target.machine {
        bail!(
            "{} is for ELF machine {}, not {} ({})",
            built.display(),
            binary_elf.machine,
            target.machine,
            target.triple
        );
    }
    let out_dir = crate::target_dir().join("dist");
    let binary = out_dir.join(target.triple).join("kitt-agent");
    std::fs::create_dir_all(binary.parent().expect("a file in a directory"))?;
    std::fs::copy(built, &binary)
        .with_context(|| format!("cannot copy {} to {}", built.display(), binary.display()))?;
    let deb = Package {
        version: version.to_owned(),
        arch: target.deb_arch.to_owned(),
        binary: binary.clone(),
        glibc: binary_elf.glibc,
        needed: binary_elf.needed.clone(),
    }
    .build(&out_dir)?;
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("{} ({})", target.triple, target.boards);
    println!(
        "  binary  {}  {:.1} MiB{}",
        binary.display(),
        size(&binary) as f64 / (1024.0 * 1024.0),
        if binary_elf.is_stripped() { ", stripped" } else { ", NOT stripped" }
    );
    println!("  package {}  {:.1} MiB", deb.display(), size(&deb) as f64 / (1024.0 * 1024.0));
    match binary_elf.glibc {
        Some(glibc) => {
            println!("  needs glibc >= {glibc} ({})", crate::cross::releases_with(glibc))
        }
        None => println!("  needs no glibc symbol versions"),
    }
    Ok(Dist { binary, deb })
}
