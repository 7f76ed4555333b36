//! `cargo xtask test-package`: the agent's `.deb` and both provisioning paths, exercised for
//! real in a Debian 12 chroot (debootstrap minbase, cached under `~/.cache/kitt/chroot/`),
//! with this machine's own (amd64) build of the agent. Every check fails the command with
//! what it expected and what it found.
//!
//! 1. **Lifecycle**: install; `kitt` user, directories, modes, enabled units, the default
//!    configuration valid to `kitt-agent validate`; upgrade keeps the state directory
//!    (identity, `outbox.db` with its WAL, pins) byte for byte and the operator's edited
//!    configuration; remove keeps both and masks the units; reinstall; purge deletes both.
//!    The maintainer scripts run with no systemd, as in an image build or on first boot.
//! 2. **First boot**: `provision sd` onto `/boot/firmware` of the chroot, with a Raspberry Pi
//!    Imager `firstrun.sh` already there; the chroot then runs `/boot/firmware/firstrun.sh`
//!    as the kernel command line would. Imager's script ran, the host name is set, the
//!    package is installed, secrets are 0600 and the agent's, the boot partition holds no
//!    secret, no bundle, no `firstrun.sh`, and its command line is the original again.
//! 3. **SSH**: `provision ssh root@127.0.0.1` against the chroot's own sshd on a loopback
//!    port, with the real `ssh` and `scp`.
//! 4. **Contents**: each built package's file list, modes and control fields, including the
//!    Raspberry Pi packages that `cargo xtask dist` left in `<target>/dist/`.
//!
//! What a chroot cannot show: systemd running the units (there is no init in a chroot;
//! `systemd-analyze verify` checks them instead) and the Pi's own boot.
//!
//! Needs root (chroot, debootstrap): it builds as the calling user, then runs the chroot
//! part through sudo when not root.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail, ensure};

use crate::provision::{self, Request, Ssh};
use crate::setup::SystemPackage;

const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Where the Debian mirror for the chroot can be changed.
const MIRROR_VAR: &str = "KITT_DEBIAN_MIRROR";
/// Debian 12's `cmdline.txt` on a Raspberry Pi OS Lite image before its first boot.
const CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";
const TOKEN: &str =
    "kitt1.abcdefgh.0123456789abcdef0123456789abcdef.00112233445566778899aabbccddeeff";
const ACCESS_CODE: &str = "s3cr3t42";

pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let [flag, old, new] = args
        && flag == "--as-root"
    {
        return checks(Path::new(old), Path::new(new));
    }
    if !args.is_empty() {
        bail!("usage: cargo xtask test-package");
    }
    crate::setup::ensure_packages(crate::setup::BUILD_PACKAGES)?;
    // The same selection `cargo xtask test` builds, so nothing is rebuilt.
    let mut build = crate::cargo();
    build.args(["build", "--workspace", "--bins", "--locked"]);
    crate::status(build)?;
    let host = crate::cross::target("x86_64-unknown-linux-gnu")?;
    let built = crate::target_dir().join("debug/kitt-agent");
    let old = crate::dist::package(host, &built, "0.0.1~pkgtest")?.deb;
    let new = crate::dist::package(host, &built, env!("CARGO_PKG_VERSION"))?.deb;
    crate::setup::ensure_packages(&[
        SystemPackage { name: "debootstrap", installs: "/usr/sbin/debootstrap" },
        SystemPackage { name: "openssh-client", installs: "/usr/bin/scp" },
    ])?;
    if crate::setup::is_root() {
        return checks(&old, &new);
    }
    let mut sudo = Command::new("sudo");
    sudo.arg("--preserve-env=HOME,PATH,CARGO_TARGET_DIR,XDG_CACHE_HOME,KITT_DEBIAN_MIRROR");
    sudo.arg(std::env::current_exe()?).args(["test-package", "--as-root"]).arg(&old).arg(&new);
    crate::status(sudo)
}

fn checks(old: &Path, new: &Path) -> anyhow::Result<()> {
    let base = base_chroot()?;
    let started = std::time::Instant::now();
    contents(new, "amd64")?;
    let dist = crate::target_dir().join("dist");
    for (arch, machine) in [("arm64", crate::elf::EM_AARCH64), ("armhf", crate::elf::EM_ARM)] {
        let deb = dist.join(format!("kitt-agent_{}_{arch}.deb", env!("CARGO_PKG_VERSION")));
        if deb.exists() {
            contents(&deb, arch)?;
            pi_binary(&deb, machine)?;
        }
    }
    lifecycle(&base, old, new).context("install, upgrade, remove, purge")?;
    first_boot(&base, new).context("first boot from the SD card")?;
    over_ssh(&base, new).context("provisioning over SSH")?;
    println!("test-package: every check passed in {:.0?}", started.elapsed());
    Ok(())
}

/// A minbase Debian 12 with systemd (not running) and sshd, made once and copied for each
/// scenario.
fn base_chroot() -> anyhow::Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?
        .join("kitt/chroot");
    let base = cache.join(format!("{SUITE}-amd64-minbase-systemd-ssh"));
    if base.join("usr/sbin/sshd").exists()
        && base.join("usr/lib/systemd/system/sysinit.target").exists()
    {
        return Ok(base);
    }
    std::fs::create_dir_all(&cache)?;
    let partial = cache.join(format!("{SUITE}-amd64.partial-{}", std::process::id()));
    let mirror = std::env::var(MIRROR_VAR).unwrap_or_else(|_| DEFAULT_MIRROR.to_owned());
    eprintln!("xtask: debootstrap {SUITE} into {} (once; about a minute)", base.display());
    let mut debootstrap = Command::new("debootstrap");
    // systemd installed (not running, as in an image build): its unit directories and
    // targets for deb-systemd-helper and systemd-analyze, as on Raspberry Pi OS.
    debootstrap.args(["--variant=minbase", "--include=systemd,openssh-server", SUITE]);
    debootstrap.arg(&partial).arg(&mirror);
    crate::status(debootstrap).with_context(|| {
        format!("debootstrap from {mirror} failed; set {MIRROR_VAR} to a reachable Debian mirror")
    })?;
    std::fs::rename(&partial, &base)?;
    Ok(base)
}

/// A throwaway copy of the base chroot.
struct Chroot {
    root: PathBuf,
}

impl Chroot {
    fn copy(base: &Path, name: &str) -> anyhow::Result<Chroot> {
        let root = crate::target_dir().join(format!("test-package/{name}"));
        if root.exists() {
            remove_tree(&root)?;
        }
        std::fs::create_dir_all(root.parent().expect("a parent"))?;
        let mut copy = Command::new("cp");
        copy.arg("-a").arg(base).arg(&root);
        quiet(copy)?;
        Ok(Chroot { root })
    }

    /// The host path of `path` inside the chroot.
    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn command(&self, script: &str) -> Command {
        let mut command = Command::new("chroot");
        command.arg(&self.root).args(["/bin/sh", "-c", script]);
        command.env_clear();
        command.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        command.env("LANG", "C.UTF-8");
        command.env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    /// Runs `script` in the chroot; its stdout, or an error with everything it printed.
    fn sh(&self, script: &str) -> anyhow::Result<String> {
        let output = self.command(script).output().context("cannot run chroot")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        ensure!(
            output.status.success(),
            "`{script}` failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    }

    /// `<octal mode> <user>:<group>` of `path`, names as the chroot knows them.
    fn stat(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.sh(&format!("stat -c '%a %U:%G' '{path}'"))?.trim().to_owned())
    }

    fn expect_stat(&self, path: &str, want: &str) -> anyhow::Result<()> {
        let found = self.stat(path)?;
        ensure!(found == want, "{path}: expected {want}, found {found}");
        Ok(())
    }

    fn read(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        std::fs::read(self.path(path)).with_context(|| format!("{path} is missing"))
    }

    fn exists(&self, path: &str) -> bool {
        self.path(path).symlink_metadata().is_ok()
    }

    fn install_file(&self, from: &Path, to: &str) -> anyhow::Result<()> {
        std::fs::copy(from, self.path(to))
            .with_context(|| format!("cannot copy {} into the chroot", from.display()))?;
        Ok(())
    }

    fn package_version(&self) -> anyhow::Result<String> {
        self.sh("dpkg-query -W -f '${Status} ${Version}' kitt-agent")
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let _ = remove_tree(&self.root);
    }
}

/// `rm -rf` that never leaves the chroot's file system (a stray mount stays untouched).
fn remove_tree(path: &Path) -> anyhow::Result<()> {
    let mut rm = Command::new("rm");
    rm.args(["-rf", "--one-file-system"]).arg(path);
    quiet(rm)
}

const UNITS: [&str; 2] = ["kitt-agent.service", "kitt-agent-enroll.service"];
/// A stand-in state directory as an enrolled agent leaves it, with an outbox mid-write.
const STATE_FILES: [(&str, &str); 7] = [
    ("state.toml", "format = 1\n"),
    ("identity.toml", "agent = \"pi-01\"\nhub = \"hub.lan:7070\"\ncertificate_not_after = 1\n"),
    ("agent.key", "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"),
    ("agent.pem", "-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n"),
    ("outbox.db", "SQLite format 3\0 records not yet acknowledged"),
    ("outbox.db-wal", "the last committed transactions"),
    ("pins/01P00A391800001.sha256", "0123456789abcdef\n"),
];

fn lifecycle(base: &Path, old: &Path, new: &Path) -> anyhow::Result<()> {
    let chroot = Chroot::copy(base, "lifecycle")?;
    chroot.install_file(old, "/tmp/old.deb")?;
    chroot.install_file(new, "/tmp/new.deb")?;
    let new_version = format!("install ok installed {}", env!("CARGO_PKG_VERSION"));

    // Install.
    chroot.sh("dpkg --install /tmp/old.deb")?;
    let installed = chroot.package_version()?;
    ensure!(installed == "install ok installed 0.0.1~pkgtest", "after installing: {installed}");
    let user = chroot.sh("getent passwd kitt")?;
    ensure!(
        user.trim_end().ends_with(":/var/lib/kitt-agent:/usr/sbin/nologin"),
        "the kitt user: {user}"
    );
    chroot.expect_stat("/usr/bin/kitt-agent", "755 root:root")?;
    chroot.expect_stat("/var/lib/kitt-agent", "700 kitt:kitt")?;
    chroot.expect_stat("/etc/kitt-agent", "750 root:kitt")?;
    chroot.expect_stat("/etc/kitt-agent/agent.toml", "600 kitt:kitt")?;
    let reference = std::fs::read(crate::workspace_root().join("deploy/agent/agent.toml"))?;
    ensure!(chroot.read("/etc/kitt-agent/agent.toml")? == reference, "the default config");
    expect_enabled(&chroot)?;
    let valid =
        chroot.sh("runuser -u kitt -- kitt-agent validate --config /etc/kitt-agent/agent.toml")?;
    ensure!(valid.contains("valid (0 printer(s)"), "validate: {valid}");

    // An enrolled agent with records waiting, and an operator's edit.
    chroot.sh("install -d -o kitt -g kitt -m 0700 /var/lib/kitt-agent/pins")?;
    for (name, contents) in STATE_FILES {
        let path = chroot.path(&format!("/var/lib/kitt-agent/{name}"));
        std::fs::write(&path, contents)?;
        chroot.sh(&format!(
            "chown kitt:kitt /var/lib/kitt-agent/{name}; chmod 0600 /var/lib/kitt-agent/{name}"
        ))?;
    }
    let edited = [reference.as_slice(), b"\n# edited by the operator\n"].concat();
    std::fs::write(chroot.path("/etc/kitt-agent/agent.toml"), &edited)?;
    let state_kept = |when: &str| -> anyhow::Result<()> {
        for (name, contents) in STATE_FILES {
            let path = format!("/var/lib/kitt-agent/{name}");
            ensure!(chroot.read(&path)? == contents.as_bytes(), "{when}: {path} changed");
            chroot.expect_stat(&path, "600 kitt:kitt").with_context(|| when.to_owned())?;
        }
        chroot
            .expect_stat("/var/lib/kitt-agent", "700 kitt:kitt")
            .with_context(|| when.to_owned())?;
        ensure!(
            chroot.read("/etc/kitt-agent/agent.toml")? == edited,
            "{when}: the edited config changed"
        );
        Ok(())
    };

    // Upgrade.
    chroot.sh("dpkg --install /tmp/new.deb")?;
    let installed = chroot.package_version()?;
    ensure!(installed == new_version, "after the upgrade: {installed}");
    state_kept("after the upgrade")?;
    expect_enabled(&chroot)?;

    // Remove: the program goes, the state and configuration stay, the units are masked.
    chroot.sh("dpkg --remove kitt-agent")?;
    ensure!(!chroot.exists("/usr/bin/kitt-agent"), "the binary outlived removal");
    for unit in UNITS {
        ensure!(
            !chroot.exists(&format!("/usr/lib/systemd/system/{unit}")),
            "{unit} outlived removal"
        );
        let mask = std::fs::read_link(chroot.path(&format!("/etc/systemd/system/{unit}")))
            .with_context(|| format!("{unit} is not masked after removal"))?;
        ensure!(mask == Path::new("/dev/null"), "{unit} mask points to {}", mask.display());
    }
    state_kept("after removal")?;

    // Reinstall over the kept state.
    chroot.sh("dpkg --install /tmp/new.deb")?;
    let installed = chroot.package_version()?;
    ensure!(installed == new_version, "after reinstalling: {installed}");
    state_kept("after reinstalling")?;
    expect_enabled(&chroot)?;

    // Purge: state and configuration go; nothing of the units is left in /etc.
    chroot.sh("dpkg --purge kitt-agent")?;
    for gone in ["/var/lib/kitt-agent", "/etc/kitt-agent", "/usr/bin/kitt-agent"] {
        ensure!(!chroot.exists(gone), "{gone} outlived purge");
    }
    let left = chroot.sh("find /etc/systemd /var/lib/systemd -name 'kitt-agent*'")?;
    ensure!(left.trim().is_empty(), "left after purge:\n{left}");
    ensure!(chroot.sh("getent passwd kitt").is_ok(), "the kitt user is kept, as Debian does");
    println!(
        "test-package: install, upgrade (state and outbox kept), remove, reinstall, purge: ok"
    );
    Ok(())
}

fn expect_enabled(chroot: &Chroot) -> anyhow::Result<()> {
    for unit in UNITS {
        let link = format!("/etc/systemd/system/multi-user.target.wants/{unit}");
        let target = std::fs::read_link(chroot.path(&link))
            .with_context(|| format!("{unit} is not enabled ({link} is missing)"))?;
        let want = format!("/usr/lib/systemd/system/{unit}");
        ensure!(
            target == Path::new(&want) || target == Path::new(&want["/usr".len()..]),
            "{link} points to {}",
            target.display()
        );
    }
    Ok(())
}

fn request(deb: &Path, hostname: &str) -> Request {
    Request {
        deb: deb.to_owned(),
        hub: "hub.example:7070".into(),
        token: TOKEN.into(),
        serial: "01P00A391800001".into(),
        printer_host: "192.0.2.10".into(),
        access_code: ACCESS_CODE.into(),
        printer_name: Some("P1S by the window".into()),
        printer_model: None,
        hostname: Some(hostname.into()),
    }
}

/// What both provisioning paths must leave behind.
fn expect_provisioned(chroot: &Chroot, request: &Request) -> anyhow::Result<()> {
    ensure!(chroot.package_version()?.starts_with("install ok installed"), "not installed");
    let hostname = request.hostname.as_deref().unwrap_or_default();
    ensure!(chroot.read("/etc/hostname")? == format!("{hostname}\n").as_bytes(), "/etc/hostname");
    let hosts = String::from_utf8(chroot.read("/etc/hosts")?)?;
    ensure!(hosts.contains(&format!("127.0.1.1\t{hostname}\n")), "/etc/hosts:\n{hosts}");
    chroot.expect_stat("/etc/kitt-agent/agent.toml", "600 kitt:kitt")?;
    chroot.expect_stat("/etc/kitt-agent/enroll-token", "600 kitt:kitt")?;
    chroot.expect_stat("/etc/kitt-agent/enroll.env", "600 root:root")?;
    ensure!(chroot.read("/etc/kitt-agent/agent.toml")? == request.agent_toml().as_bytes());
    ensure!(chroot.read("/etc/kitt-agent/enroll-token")? == format!("{TOKEN}\n").as_bytes());
    ensure!(chroot.read("/etc/kitt-agent/enroll.env")? == b"KITT_HUB=hub.example:7070\n");
    let valid =
        chroot.sh("runuser -u kitt -- kitt-agent validate --config /etc/kitt-agent/agent.toml")?;
    ensure!(valid.contains("valid (1 printer(s)"), "validate: {valid}");
    expect_enabled(chroot)
}

fn first_boot(base: &Path, deb: &Path) -> anyhow::Result<()> {
    let chroot = Chroot::copy(base, "first-boot")?;
    let boot = chroot.path("/boot/firmware");
    std::fs::create_dir_all(&boot)?;
    // As Raspberry Pi Imager leaves a card: its firstrun.sh, run from the command line.
    let imager_cmdline = format!("{} {}\n", CMDLINE.trim_end(), provision::FIRST_RUN_ARGS);
    std::fs::write(boot.join("cmdline.txt"), &imager_cmdline)?;
    std::fs::write(
        boot.join("firstrun.sh"),
        "#!/bin/bash\n\nset +e\n\ntouch /etc/imager-firstrun-ran\n\
         rm -f /boot/firmware/firstrun.sh\nsed -i 's| systemd.run.*||g' /boot/firmware/cmdline.txt\nexit 0\n",
    )?;
    std::fs::write(chroot.path("/etc/hostname"), "raspberrypi\n")?;
    std::fs::write(chroot.path("/etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")?;

    let request = request(deb, "kitt-test-pi");
    let report = provision::prepare_boot(&boot, &request)?;
    ensure!(report.imager_first_run, "Imager's firstrun.sh was not recognised");
    // What the kernel command line's systemd.run= does on the Pi.
    chroot.sh("/bin/sh /boot/firmware/firstrun.sh")?;

    ensure!(chroot.exists("/etc/imager-firstrun-ran"), "Imager's firstrun.sh did not run");
    expect_provisioned(&chroot, &request)?;
    for gone in ["/boot/firmware/kitt", "/boot/firmware/firstrun.sh"] {
        ensure!(!chroot.exists(gone), "{gone} is still on the boot partition");
    }
    ensure!(
        chroot.read("/boot/firmware/cmdline.txt")? == CMDLINE.as_bytes(),
        "cmdline.txt is not the original line again"
    );
    let log = String::from_utf8(chroot.read("/boot/firmware/kitt-firstrun.log")?)?;
    ensure!(log.contains("kitt firstrun: done"), "the log:\n{log}");
    ensure!(
        !log.contains(ACCESS_CODE) && !log.contains("0123456789abcdef0123"),
        "a secret in the log:\n{log}"
    );
    let leftovers = chroot.sh(&format!("grep -rl '{ACCESS_CODE}' /boot /tmp || true"))?;
    ensure!(leftovers.trim().is_empty(), "the access code is still in {leftovers}");
    verify_units(&chroot)?;
    println!("test-package: first boot from the SD card (after Imager's firstrun.sh): ok");
    Ok(())
}

/// `systemd-analyze verify` over the installed units, with the chroot as the root.
fn verify_units(chroot: &Chroot) -> anyhow::Result<()> {
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify").arg(format!("--root={}", chroot.root.display()));
    verify.args(UNITS.map(|unit| format!("/usr/lib/systemd/system/{unit}")));
    let output = verify.output().context("cannot run systemd-analyze")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(output.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    // The sandbox stays tight: systemd's own exposure score (0 best, 10 worst) at most 2.5.
    for unit in UNITS {
        let path = crate::workspace_root().join("deploy/agent").join(unit);
        let mut security = Command::new("systemd-analyze");
        security.args(["security", "--offline=yes", "--threshold=25", "--no-pager"]).arg(&path);
        let output = security.output().context("cannot run systemd-analyze")?;
        let report = String::from_utf8_lossy(&output.stdout);
        let overall = report.lines().last().unwrap_or_default().to_owned();
        ensure!(output.status.success(), "{unit}: exposure above 2.5:\n{report}");
        println!("test-package: {}", overall.trim_start_matches(['→', ' ']));
    }
    Ok(())
}

fn over_ssh(base: &Path, deb: &Path) -> anyhow::Result<()> {
    let chroot = Chroot::copy(base, "ssh")?;
    let keys = chroot.path("/tmp/client-key");
    let mut keygen = Command::new("ssh-keygen");
    keygen.args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&keys);
    quiet(keygen)?;
    chroot.sh("install -d -m 0700 /root/.ssh && install -m 0600 /tmp/client-key.pub /root/.ssh/authorized_keys && ssh-keygen -A >/dev/null && install -d /run/sshd")?;
    let sshd = Sshd::start(&chroot)?;

    let request = request(deb, "kitt-ssh-pi");
    let ssh = Ssh {
        destination: "root@127.0.0.1".into(),
        port: Some(sshd.port.to_string()),
        options: vec![
            format!("IdentityFile={}", keys.display()),
            "IdentitiesOnly=yes".into(),
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "BatchMode=yes".into(),
            "LogLevel=ERROR".into(),
        ],
    };
    ssh.provision(&request)?;
    drop(sshd);
    expect_provisioned(&chroot, &request)?;
    let left = chroot.sh("ls -d /tmp/kitt-provision.* 2>/dev/null || true")?;
    ensure!(left.trim().is_empty(), "the bundle is still on the Pi: {left}");
    println!("test-package: provisioning over SSH: ok");
    Ok(())
}

/// The chroot's sshd on a loopback port, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
}

impl Sshd {
    fn start(chroot: &Chroot) -> anyhow::Result<Sshd> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = chroot
            .command(&format!(
                "exec /usr/sbin/sshd -D -e -p {port} -o ListenAddress=127.0.0.1 \
                 -o PermitRootLogin=prohibit-password -o UsePAM=no"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start sshd in the chroot")?;
        let stderr = child.stderr.take().context("sshd's stderr")?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let sshd = Sshd { child, port };
        // sshd says when it listens; its log goes on to a thread that keeps the pipe open.
        while let Some(line) = lines.next() {
            let line = line?;
            if line.contains("Server listening on 127.0.0.1") {
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(sshd);
            }
            seen.push(line);
        }
        bail!("sshd stopped before listening:\n{}", seen.join("\n"))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The package's files, modes, owners and control fields.
fn contents(deb: &Path, arch: &str) -> anyhow::Result<()> {
    let listing = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let files: Vec<(String, String)> = listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.last()?.trim_start_matches('.').to_owned();
            Some((format!("{} {}", fields.first()?, fields.get(1)?), path))
        })
        .filter(|(mode, _)| mode.starts_with('-'))
        .collect();
    let want = [
        ("-rwxr-xr-x root/root", "/usr/bin/kitt-agent"),
        ("-rw-r--r-- root/root", "/usr/lib/systemd/system/kitt-agent.service"),
        ("-rw-r--r-- root/root", "/usr/lib/systemd/system/kitt-agent-enroll.service"),
        ("-rw-r--r-- root/root", "/usr/share/kitt-agent/agent.toml"),
        ("-rw-r--r-- root/root", "/usr/share/doc/kitt-agent/README.md"),
        ("-rw-r--r-- root/root", "/usr/share/doc/kitt-agent/copyright"),
    ];
    let found: Vec<(&str, &str)> = files.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
    let mut want_sorted = want.to_vec();
    want_sorted.sort_by_key(|(_, path)| *path);
    let mut found_sorted = found.clone();
    found_sorted.sort_by_key(|(_, path)| *path);
    ensure!(found_sorted == want_sorted, "{}: files\n{listing}", deb.display());
    let field = |name: &str| output(Command::new("dpkg-deb").args(["--field"]).arg(deb).arg(name));
    ensure!(field("Architecture")?.trim() == arch, "{}: Architecture", deb.display());
    let depends = field("Depends")?;
    ensure!(depends.trim().starts_with("libc6 (>= 2."), "{}: Depends: {depends}", deb.display());
    let scripts = output(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    for script in ["postinst", "prerm", "postrm", "md5sums", "control"] {
        ensure!(scripts.contains(&format!(" {script}")), "{}: no {script}", deb.display());
    }
    println!("test-package: {} holds what it should ({})", deb.display(), depends.trim());
    Ok(())
}

/// The Raspberry Pi package's binary is for the Pi and stripped.
fn pi_binary(deb: &Path, machine: u16) -> anyhow::Result<()> {
    let dir = crate::target_dir().join("test-package/extract");
    if dir.exists() {
        remove_tree(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    output(Command::new("dpkg-deb").arg("--extract").arg(deb).arg(&dir))?;
    let elf = crate::elf::inspect(&std::fs::read(dir.join("usr/bin/kitt-agent"))?)?;
    remove_tree(&dir)?;
    ensure!(elf.machine == machine, "{}: ELF machine {}", deb.display(), elf.machine);
    ensure!(elf.is_stripped(), "{}: the binary is not stripped", deb.display());
    Ok(())
}

fn output(command: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{command:?}");
    let output = command.output().with_context(|| format!("cannot run {shown}"))?;
    ensure!(output.status.success(), "{shown} failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn quiet(mut command: Command) -> anyhow::Result<()> {
    output(&mut command).map(drop)
}
