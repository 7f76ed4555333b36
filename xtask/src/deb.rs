//! The `kitt-agent` Debian package, built with `dpkg-deb` alone (no debhelper): the files
//! and maintainer scripts come from `deploy/agent/`, the control file from here.
//!
//! | path | from |
//! |---|---|
//! | `/usr/bin/kitt-agent` | the stripped release binary |
//! | `/usr/lib/systemd/system/kitt-agent.service`, `kitt-agent-enroll.service` | `deploy/agent/` |
//! | `/usr/share/kitt-agent/agent.toml` | `deploy/agent/agent.toml`, copied to `/etc/kitt-agent/` by postinst when missing |
//! | `/usr/share/doc/kitt-agent/README.md`, `copyright` | `deploy/README.md`, the licence |
//! | `DEBIAN/postinst`, `prerm`, `postrm` | `deploy/agent/debian/` |
//!
//! The `kitt` user, `/etc/kitt-agent` and `/var/lib/kitt-agent` are made by postinst, not
//! shipped: dpkg would otherwise own (and on removal delete) the state directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::elf::GlibcVersion;

pub const PACKAGE: &str = "kitt-agent";

/// What goes into one package.
#[derive(Debug, Clone)]
pub struct Package {
    /// The Debian version, e.g. `0.1.0`.
    pub version: String,
    /// Debian's architecture name.
    pub arch: String,
    /// The `kitt-agent` executable.
    pub binary: PathBuf,
    /// The newest glibc symbol version the binary needs.
    pub glibc: Option<GlibcVersion>,
    /// The shared libraries the binary needs (`DT_NEEDED`).
    pub needed: Vec<String>,
}

/// The Debian package of each shared library the agent may link: what dpkg-shlibdeps
/// would find. A library not listed is an error, so a new one is never left undeclared.
const LIBRARIES: &[(&str, &str)] = &[
    ("libc.so.6", "libc6"),
    ("libm.so.6", "libc6"),
    ("libpthread.so.0", "libc6"),
    ("libdl.so.2", "libc6"),
    ("librt.so.1", "libc6"),
    ("ld-linux-aarch64.so.1", "libc6"),
    ("ld-linux-armhf.so.3", "libc6"),
    ("ld-linux-x86-64.so.2", "libc6"),
    ("libgcc_s.so.1", "libgcc-s1"),
];

/// A file of the package: where it goes, its mode, and its contents.
#[derive(Debug)]
struct Entry {
    path: &'static str,
    mode: u32,
    source: Source,
}

#[derive(Debug)]
enum Source {
    File(PathBuf),
    Text(String),
}

impl Package {
    /// `kitt-agent_<version>_<arch>.deb`.
    pub fn file_name(&self) -> String {
        format!("{PACKAGE}_{}_{}.deb", self.version, self.arch)
    }

    /// Builds the package into `out_dir`, staging its tree in `out_dir/<name>.staging/`.
    pub fn build(&self, out_dir: &Path) -> anyhow::Result<PathBuf> {
        check_version(&self.version)?;
        let deb = out_dir.join(self.file_name());
        let staging = out_dir.join(format!("{}.staging", self.file_name()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .with_context(|| format!("cannot remove {}", staging.display()))?;
        }
        let mut installed_bytes = 0;
        let mut md5sums = String::new();
        for entry in self.entries() {
            let path = staging.join(entry.path);
            let contents = match &entry.source {
                Source::File(source) => std::fs::read(source)
                    .with_context(|| format!("cannot read {}", source.display()))?,
                Source::Text(text) => text.clone().into_bytes(),
            };
            write(&path, &contents, entry.mode)?;
            if !entry.path.starts_with("DEBIAN/") {
                installed_bytes += contents.len() as u64;
                md5sums.push_str(&format!("{}  {}\n", md5_hex(&path)?, entry.path));
            }
        }
        write(&staging.join("DEBIAN/md5sums"), md5sums.as_bytes(), 0o644)?;
        write(&staging.join("DEBIAN/control"), self.control(installed_bytes)?.as_bytes(), 0o644)?;
        let mut build = Command::new("dpkg-deb");
        build.args(["--root-owner-group", "-Zxz", "--build"]).arg(&staging).arg(&deb);
        crate::status(build)?;
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
        Ok(deb)
    }

    /// The `Depends` field: the libraries' packages (libc6 at the glibc version the binary
    /// needs), and passwd for postinst's useradd.
    pub fn depends(&self) -> anyhow::Result<String> {
        let mut packages = vec![match self.glibc {
            Some(version) => format!("libc6 (>= {version})"),
            None => "libc6".to_owned(),
        }];
        for library in &self.needed {
            let Some((_, package)) = LIBRARIES.iter().find(|(name, _)| name == library) else {
                bail!(
                    "the agent needs {library}, which the package does not declare: add its \
                     Debian package to LIBRARIES in xtask/src/deb.rs"
                )
            };
            if !packages.iter().any(|p| p.split(' ').next() == Some(*package)) {
                packages.push((*package).to_owned());
            }
        }
        packages.push("passwd".to_owned());
        Ok(packages.join(", "))
    }

    /// The `DEBIAN/control` file.
    pub fn control(&self, installed_bytes: u64) -> anyhow::Result<String> {
        let depends = self.depends()?;
        Ok(format!(
            "Package: {PACKAGE}\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: kitt developers <kitt@example.invalid>\n\
             Installed-Size: {size}\n\
             Depends: {depends}\n\
             Suggests: ffmpeg\n\
             Section: misc\n\
             Priority: optional\n\
             Description: kitt edge agent for a 3D printer\n \
             kitt's agent for a Raspberry Pi beside a printer: it holds the printer's one\n \
             connection (Bambu Lab LAN MQTT), records everything in a durable outbox and\n \
             syncs it over QUIC to a kitt hub. Runs as the kitt user under systemd\n \
             (kitt-agent.service), enrolled once by kitt-agent-enroll.service. RTSPS\n \
             cameras (Bambu Lab X1) are decoded by ffmpeg, when installed.\n",
            version = self.version,
            arch = self.arch,
            size = installed_bytes.div_ceil(1024),
        ))
    }

    fn entries(&self) -> Vec<Entry> {
        let deploy = crate::workspace_root().join("deploy");
        let file = |path, mode, source: PathBuf| Entry { path, mode, source: Source::File(source) };
        vec![
            file("usr/bin/kitt-agent", 0o755, self.binary.clone()),
            file(
                "usr/lib/systemd/system/kitt-agent.service",
                0o644,
                deploy.join("agent/kitt-agent.service"),
            ),
            file(
                "usr/lib/systemd/system/kitt-agent-enroll.service",
                0o644,
                deploy.join("agent/kitt-agent-enroll.service"),
            ),
            file("usr/share/kitt-agent/agent.toml", 0o644, deploy.join("agent/agent.toml")),
            file("usr/share/doc/kitt-agent/README.md", 0o644, deploy.join("README.md")),
            Entry {
                path: "usr/share/doc/kitt-agent/copyright",
                mode: 0o644,
                source: Source::Text(COPYRIGHT.to_owned()),
            },
            file("DEBIAN/postinst", 0o755, deploy.join("agent/debian/postinst")),
            file("DEBIAN/prerm", 0o755, deploy.join("agent/debian/prerm")),
            file("DEBIAN/postrm", 0o755, deploy.join("agent/debian/postrm")),
        ]
    }
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: kitt\n\n\
Files: *\n\
Copyright: the kitt developers\n\
License: Apache-2.0 or MIT\n \
On Debian systems the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.\n \
The MIT licence: permission is hereby granted, free of charge, to any person obtaining a\n \
copy of this software, to deal in it without restriction, provided the copyright notice\n \
and this permission notice are included in all copies. The software is provided \"as is\",\n \
without warranty of any kind.\n";

/// Debian versions: digits first, then letters, digits and `.+~-` (no epoch).
pub fn check_version(version: &str) -> anyhow::Result<()> {
    let ok = version.starts_with(|c: char| c.is_ascii_digit())
        && version.chars().all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c));
    if !ok {
        bail!("{version:?} is not a Debian version (digits first, then [A-Za-z0-9.+~-])");
    }
    Ok(())
}

fn write(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// `md5sum` (coreutils, on every Debian) of one file.
fn md5_hex(path: &Path) -> anyhow::Result<String> {
    let output = Command::new("md5sum").arg(path).output().context("cannot run md5sum")?;
    if !output.status.success() {
        bail!("md5sum {} failed", path.display());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().next().map(str::to_owned).context("md5sum printed nothing")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(version: &str) -> Package {
        Package {
            version: version.into(),
            arch: "arm64".into(),
            binary: std::env::current_exe().unwrap(),
            glibc: Some(GlibcVersion(2, 34, 0)),
            needed: vec!["libgcc_s.so.1".into(), "libm.so.6".into(), "libc.so.6".into()],
        }
    }

    #[test]
    fn the_control_file_names_the_package_its_architecture_and_the_glibc_it_needs() {
        let control = package("0.1.0").control(5000).unwrap();
        for line in [
            "Package: kitt-agent\n",
            "Version: 0.1.0\n",
            "Architecture: arm64\n",
            "Installed-Size: 5\n",
            "Depends: libc6 (>= 2.34), libgcc-s1, passwd\n",
        ] {
            assert!(control.contains(line), "{line:?} in\n{control}");
        }
        // Continuation lines of the description start with a space; no line is empty.
        let description = control.split("Description: ").nth(1).unwrap();
        assert!(description.lines().skip(1).all(|l| l.starts_with(' ') && l.len() > 1));
        assert!(control.ends_with('\n'));
    }

    #[test]
    fn a_library_the_package_does_not_declare_is_an_error() {
        let mut package = package("0.1.0");
        package.needed.push("libv4l2.so.0".into());
        let error = package.depends().unwrap_err().to_string();
        assert!(error.contains("libv4l2.so.0"), "{error}");
    }

    #[test]
    fn versions_that_dpkg_would_refuse_are_refused_first() {
        for good in ["0.1.0", "0.1.0~rc1", "1.2.3+git20260101-1"] {
            check_version(good).unwrap();
        }
        for bad in ["", "v0.1.0", "1:0.1.0", "0.1.0 beta", "0.1/0"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_shipped_file_exists_and_scripts_are_executable() {
        use std::os::unix::fs::PermissionsExt;
        for entry in package("0.1.0").entries() {
            if let Source::File(path) = &entry.source {
                let meta = std::fs::metadata(path)
                    .unwrap_or_else(|e| panic!("{} for {}: {e}", path.display(), entry.path));
                if entry.path.starts_with("DEBIAN/") {
                    assert_eq!(entry.mode, 0o755, "{}", entry.path);
                    assert!(
                        meta.permissions().mode() & 0o111 != 0,
                        "{} is not executable",
                        path.display()
                    );
                }
            }
        }
    }
}
