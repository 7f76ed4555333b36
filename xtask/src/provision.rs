//! `cargo xtask provision sd|ssh`: puts an agent on a Raspberry Pi (deploy/README.md).
//!
//! Both write the same bundle, which `deploy/provision/install.sh` installs on the Pi:
//!
//! | file | contents |
//! |---|---|
//! | `kitt-agent_<version>_<arch>.deb` | the package (`cargo xtask dist agent`) |
//! | `agent.toml` | the configuration, with the printer and its access code (secret) |
//! | `enroll-token` | the single-use enrollment token (secret) |
//! | `enroll.env` | `KITT_HUB=<host:port>` |
//! | `hostname` | the Pi's new host name, when given |
//! | `install.sh` | `deploy/provision/install.sh` |
//!
//! - `sd --boot <dir>`: onto the boot partition of a Raspberry Pi OS (Bookworm or later)
//!   card, as `<boot>/kitt/`, with `deploy/provision/firstrun.sh` as `<boot>/firstrun.sh`
//!   and the kernel command line told to run it once (`systemd.run=`, as Raspberry Pi
//!   Imager does). A `firstrun.sh` Imager wrote (user, SSH, Wi-Fi) is kept and run first.
//! - `ssh [user@]host`: copies the bundle with scp into a `mktemp -d` directory, runs
//!   install.sh there with `--start` (through sudo unless the user is root), and removes it.
//!
//! Inputs are checked here, all problems at once; the configuration is checked again on the
//! Pi by `kitt-agent validate` (the agent's own parser) before anything starts.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

const USAGE: &str = "usage:
  cargo xtask provision sd --boot <mounted boot partition> <agent options>
  cargo xtask provision ssh [user@]host [--port <port>] [--ssh-option <Key=Value>]... <agent options>
agent options:
  --deb <kitt-agent_*.deb> --hub <host:port> (--token <token> | --token-file <file>)
  --serial <printer serial> --printer-host <printer address> --access-code <code>
  [--printer-name <name>] [--printer-model <code>] [--hostname <new host name>]";

/// The kernel command line arguments that run `firstrun.sh` once, as Raspberry Pi Imager
/// writes them for Bookworm.
pub const FIRST_RUN_ARGS: &str = "systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target";

/// The bundle's directory on the boot partition.
pub const BUNDLE_DIR: &str = "kitt";

const INSTALL_SH: &str = include_str!("../../deploy/provision/install.sh");
const FIRSTRUN_SH: &str = include_str!("../../deploy/provision/firstrun.sh");
/// How our firstrun.sh is told from Imager's.
const FIRSTRUN_MARK: &str = "written onto the boot partition by `cargo xtask provision sd`";

const AGENT_FLAGS: &[&str] = &[
    "deb",
    "hub",
    "token",
    "token-file",
    "serial",
    "printer-host",
    "access-code",
    "printer-name",
    "printer-model",
    "hostname",
];

/// What to put on a Pi.
#[derive(Debug, Clone)]
pub struct Request {
    pub deb: PathBuf,
    pub hub: String,
    pub token: String,
    pub serial: String,
    pub printer_host: String,
    pub access_code: String,
    pub printer_name: Option<String>,
    pub printer_model: Option<String>,
    pub hostname: Option<String>,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.split_first() {
        Some((how, rest)) if how == "sd" => {
            let mut accepted = AGENT_FLAGS.to_vec();
            accepted.push("boot");
            let flags = crate::flags::parse(rest, &accepted)?;
            if !flags.positional.is_empty() {
                bail!("unexpected {:?}\n{USAGE}", flags.positional);
            }
            let boot = PathBuf::from(flags.value("boot").context(USAGE)?);
            let request = Request::from_flags(&flags)?;
            let report = prepare_boot(&boot, &request)?;
            println!("{report}");
            Ok(())
        }
        Some((how, rest)) if how == "ssh" => {
            let mut accepted = AGENT_FLAGS.to_vec();
            accepted.extend(["port", "ssh-option"]);
            let flags = crate::flags::parse(rest, &accepted)?;
            let [destination] = flags.positional.as_slice() else {
                bail!("give one [user@]host\n{USAGE}")
            };
            let request = Request::from_flags(&flags)?;
            let ssh = Ssh {
                destination: destination.clone(),
                port: flags.value("port").map(str::to_owned),
                options: flags.values("ssh-option").into_iter().map(str::to_owned).collect(),
            };
            ssh.provision(&request)
        }
        _ => bail!("{USAGE}"),
    }
}

impl Request {
    /// The request the flags describe; every problem at once.
    pub fn from_flags(flags: &crate::flags::Flags) -> anyhow::Result<Request> {
        let mut problems = Vec::new();
        let mut required = |name: &str| {
            flags.value(name).map(str::to_owned).unwrap_or_else(|| {
                problems.push(format!("--{name} is required"));
                String::new()
            })
        };
        let deb = PathBuf::from(required("deb"));
        let hub = required("hub");
        let serial = required("serial");
        let printer_host = required("printer-host");
        let access_code = required("access-code");
        let token = match (flags.value("token"), flags.value("token-file")) {
            (Some(token), None) => token.to_owned(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| problems.push(format!("--token-file {file}: {e}")))
                .unwrap_or_default(),
            (Some(_), Some(_)) => {
                problems.push("give --token or --token-file, not both".into());
                String::new()
            }
            (None, None) => {
                problems.push("--token (or --token-file) is required".into());
                String::new()
            }
        };
        let request = Request {
            deb,
            hub,
            token: token.trim().to_owned(),
            serial: serial.trim().to_owned(),
            printer_host,
            access_code: access_code.trim().to_owned(),
            printer_name: flags.value("printer-name").map(str::to_owned),
            printer_model: flags.value("printer-model").map(str::to_owned),
            hostname: flags.value("hostname").map(str::to_owned),
        };
        if problems.is_empty() {
            problems = request.problems();
        }
        if !problems.is_empty() {
            bail!("cannot provision:\n  - {}\n{USAGE}", problems.join("\n  - "));
        }
        Ok(request)
    }

    /// Everything wrong with the request.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let deb_name = self.deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !(deb_name.starts_with("kitt-agent_") && deb_name.ends_with(".deb")) {
            problems.push(format!(
                "--deb {}: not a kitt-agent_<version>_<arch>.deb (cargo xtask dist agent makes one)",
                self.deb.display()
            ));
        } else if !self.deb.is_file() {
            problems.push(format!("--deb {}: no such file", self.deb.display()));
        }
        match self.hub.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
                    && self.hub.chars().all(|c| c.is_ascii_graphic() && !"\"'\\$`".contains(c)) => {
            }
            _ => problems.push(format!(
                "--hub {:?}: give the hub's sync address as host:port, such as hub.lan:7070",
                self.hub
            )),
        }
        let parts: Vec<&str> = self.token.split('.').collect();
        if parts.len() != 4
            || parts[0] != "kitt1"
            || !self.token.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            problems.push(
                "--token: not an enrollment token (kitt1.<id>.<secret>.<ca>, as `kitt-hub token create` prints)"
                    .into(),
            );
        }
        if self.serial.is_empty() || !self.serial.chars().all(|c| c.is_ascii_alphanumeric()) {
            problems.push(format!(
                "--serial {:?}: the printer's serial number, letters and digits (Settings > Device)",
                self.serial
            ));
        }
        if self.access_code.is_empty()
            || self.access_code.len() > 32
            || !self.access_code.chars().all(|c| c.is_ascii_graphic())
        {
            problems.push(
                "--access-code: the 8 characters shown on the printer's screen (Settings > LAN Only Mode)"
                    .into(),
            );
        }
        if self.printer_host.is_empty() || !self.printer_host.chars().all(|c| c.is_ascii_graphic())
        {
            problems.push(format!(
                "--printer-host {:?}: the printer's IP address or host name",
                self.printer_host
            ));
        }
        if let Some(hostname) = &self.hostname
            && !is_hostname(hostname)
        {
            problems.push(format!(
                "--hostname {hostname:?}: 1 to 63 lower-case letters, digits and inner hyphens"
            ));
        }
        problems
    }

    /// The agent's configuration file.
    pub fn agent_toml(&self) -> String {
        let quote = |text: &str| toml::Value::String(text.to_owned()).to_string();
        let mut printer = format!(
            "[[printer]]\nserial = {}\nhost = {}\naccess_code = {}\n",
            quote(&self.serial),
            quote(&self.printer_host),
            quote(&self.access_code)
        );
        if let Some(name) = &self.printer_name {
            printer.push_str(&format!("name = {}\n", quote(name)));
        }
        if let Some(model) = &self.printer_model {
            printer.push_str(&format!("model = {}\n", quote(model)));
        }
        format!(
            "# Written by `cargo xtask provision`. Every key, explained, with its default:\n\
             # /usr/share/kitt-agent/agent.toml. Check changes with\n\
             # `sudo -u kitt kitt-agent validate --config /etc/kitt-agent/agent.toml`.\n\
             state_dir = \"/var/lib/kitt-agent\"\n\n{printer}"
        )
    }

    /// Writes the bundle into `dir` (which exists): secrets with mode 0600.
    pub fn write_bundle(&self, dir: &Path) -> anyhow::Result<()> {
        let deb_name = self.deb.file_name().context("--deb names no file")?;
        std::fs::copy(&self.deb, dir.join(deb_name))
            .with_context(|| format!("cannot copy {}", self.deb.display()))?;
        write_file(&dir.join("agent.toml"), self.agent_toml().as_bytes(), 0o600)?;
        write_file(&dir.join("enroll-token"), format!("{}\n", self.token).as_bytes(), 0o600)?;
        write_file(&dir.join("enroll.env"), format!("KITT_HUB={}\n", self.hub).as_bytes(), 0o600)?;
        if let Some(hostname) = &self.hostname {
            write_file(&dir.join("hostname"), format!("{hostname}\n").as_bytes(), 0o644)?;
        }
        write_file(&dir.join("install.sh"), INSTALL_SH.as_bytes(), 0o755)
    }
}

/// What [`prepare_boot`] did.
#[derive(Debug)]
pub struct BootReport {
    pub boot: PathBuf,
    /// Whether a firstrun.sh from Raspberry Pi Imager was kept, to run first.
    pub imager_first_run: bool,
}

impl std::fmt::Display for BootReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let boot = self.boot.display();
        writeln!(f, "Prepared {boot} for the Pi's first boot:")?;
        writeln!(f, "  {boot}/{BUNDLE_DIR}/   the package, configuration, token and install.sh")?;
        writeln!(
            f,
            "  {boot}/firstrun.sh   runs {BUNDLE_DIR}/install.sh once, then removes itself"
        )?;
        writeln!(f, "  {boot}/cmdline.txt   + {FIRST_RUN_ARGS}")?;
        if self.imager_first_run {
            writeln!(f, "  Raspberry Pi Imager's own firstrun.sh (user, SSH, Wi-Fi) runs first.")?;
        } else {
            writeln!(
                f,
                "  No Raspberry Pi Imager settings were found: make sure the Pi has a network\n  \
                 (Ethernet, or Wi-Fi set in Imager's OS customisation) and a way to log in."
            )?;
        }
        writeln!(
            f,
            "The token and access code are on the card until its first boot: keep it safe, and\n\
             eject it properly before removing it. After boot: {boot}/kitt-firstrun.log."
        )
    }
}

/// Prepares the mounted boot partition `boot` of a Raspberry Pi OS card for `request`.
pub fn prepare_boot(boot: &Path, request: &Request) -> anyhow::Result<BootReport> {
    let cmdline_path = boot.join("cmdline.txt");
    let cmdline = std::fs::read_to_string(&cmdline_path).with_context(|| {
        format!(
            "{} has no readable cmdline.txt: give the mounted boot partition (`bootfs`) of a \
             Raspberry Pi OS card",
            boot.display()
        )
    })?;
    let new_cmdline = with_first_run(&cmdline)?;

    // Raspberry Pi Imager's firstrun.sh, from this run or kept by an earlier one.
    let bundle = boot.join(BUNDLE_DIR);
    let firstrun = boot.join("firstrun.sh");
    let existing = std::fs::read_to_string(&firstrun).ok();
    let imager = match existing {
        Some(script) if !script.contains(FIRSTRUN_MARK) => Some(script),
        _ => std::fs::read_to_string(bundle.join("imager-firstrun.sh")).ok(),
    };
    if bundle.exists() {
        std::fs::remove_dir_all(&bundle)
            .with_context(|| format!("cannot remove the earlier {}", bundle.display()))?;
    }
    std::fs::create_dir(&bundle).with_context(|| format!("cannot create {}", bundle.display()))?;
    request.write_bundle(&bundle)?;
    if let Some(script) = &imager {
        write_file(&bundle.join("imager-firstrun.sh"), script.as_bytes(), 0o755)?;
    }
    write_file(&firstrun, FIRSTRUN_SH.as_bytes(), 0o755)?;
    // Last: until the command line names it, nothing runs.
    write_file(&cmdline_path, new_cmdline.as_bytes(), 0o644)?;
    Ok(BootReport { boot: boot.to_owned(), imager_first_run: imager.is_some() })
}

/// `cmdline` (one line) with [`FIRST_RUN_ARGS`] at its end, where firstrun.sh's
/// `sed 's| systemd.run.*||'` removes them again.
pub fn with_first_run(cmdline: &str) -> anyhow::Result<String> {
    let line = cmdline.lines().next().unwrap_or_default().trim_end();
    if line.trim().is_empty() {
        bail!("cmdline.txt is empty; it should hold the Pi's kernel command line");
    }
    let Some(at) = line.find(" systemd.run") else {
        return Ok(format!("{line} {FIRST_RUN_ARGS}\n"));
    };
    let (kept, first_run) = line.split_at(at);
    if first_run.trim_start().starts_with("systemd.run=/boot/firmware/firstrun.sh ") {
        return Ok(format!("{kept} {FIRST_RUN_ARGS}\n"));
    }
    if first_run.trim_start().starts_with("systemd.run=/boot/firstrun.sh ") {
        bail!(
            "cmdline.txt runs /boot/firstrun.sh: this card is Raspberry Pi OS Bullseye or older; \
             kitt-agent needs Bookworm or later (glibc 2.34+)"
        );
    }
    bail!(
        "cmdline.txt already runs something else once on boot ({}); remove it first",
        first_run.trim()
    )
}

fn is_hostname(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("cannot write {}", path.display()))?;
    // FAT has no modes; elsewhere an existing file keeps its old one without this.
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode));
    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))
}

/// Provisioning over SSH with the system's `ssh` and `scp`.
#[derive(Debug)]
pub struct Ssh {
    /// `[user@]host`.
    pub destination: String,
    pub port: Option<String>,
    /// `-o` options, `Key=Value`.
    pub options: Vec<String>,
}

impl Ssh {
    pub fn provision(&self, request: &Request) -> anyhow::Result<()> {
        let local = LocalBundle::create()?;
        request.write_bundle(&local.0)?;

        let output = self
            .ssh()
            .arg("mktemp -d /tmp/kitt-provision.XXXXXXXX")
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run ssh")?;
        if !output.status.success() {
            bail!(
                "ssh {} failed ({}); check the address and your login",
                self.destination,
                output.status
            );
        }
        let remote = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let safe = remote.strip_prefix("/tmp/kitt-provision.").is_some_and(|suffix| {
            !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !safe {
            bail!("mktemp on {} answered {remote:?}, not a directory name", self.destination);
        }

        let mut scp = self.scp();
        scp.arg("-q");
        for entry in std::fs::read_dir(&local.0)? {
            scp.arg(entry?.path());
        }
        scp.arg(format!("{}:{remote}/", self.destination));
        crate::status(scp).context("copying the bundle to the Pi")?;

        let script = format!(
            "if [ \"$(id -u)\" = 0 ]; then as_root=; else as_root=sudo; fi; \
             $as_root sh {remote}/install.sh {remote} --start; status=$?; \
             $as_root rm -rf {remote}; exit $status"
        );
        let mut install = self.ssh();
        if std::io::stdin().is_terminal() {
            install.arg("-t"); // sudo may ask for a password
        }
        install.arg(script);
        crate::status(install).context("installing on the Pi")?;
        println!("{}: provisioned (install.sh's report is above)", self.destination);
        Ok(())
    }

    fn ssh(&self) -> Command {
        let mut command = Command::new("ssh");
        if let Some(port) = &self.port {
            command.args(["-p", port]);
        }
        for option in &self.options {
            command.args(["-o", option]);
        }
        command.arg(&self.destination);
        command
    }

    fn scp(&self) -> Command {
        let mut command = Command::new("scp");
        if let Some(port) = &self.port {
            command.args(["-P", port]);
        }
        for option in &self.options {
            command.args(["-o", option]);
        }
        command
    }
}

/// A private local directory for the bundle (it holds secrets), removed when dropped.
struct LocalBundle(PathBuf);

impl LocalBundle {
    fn create() -> anyhow::Result<LocalBundle> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("kitt-provision-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(LocalBundle(dir))
    }
}

impl Drop for LocalBundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot splash plymouth.ignore-serial-consoles\n";
    const TOKEN: &str =
        "kitt1.abcdefgh.0123456789abcdef0123456789abcdef.00112233445566778899aabbccddeeff";

    fn request(dir: &Path) -> Request {
        let deb = dir.join("kitt-agent_0.1.0_arm64.deb");
        std::fs::write(&deb, b"!<arch>\n").unwrap();
        Request {
            deb,
            hub: "hub.lan:7070".into(),
            token: TOKEN.into(),
            serial: "01P00A391800001".into(),
            printer_host: "192.168.1.50".into(),
            access_code: "12345678".into(),
            printer_name: Some("P1S \"window\"".into()),
            printer_model: None,
            hostname: Some("kitt-pi-01".into()),
        }
    }

    /// Runs firstrun.sh's cleanup line on a command line, as the Pi will.
    fn firstrun_cleanup(cmdline: &str) -> String {
        let output = Command::new("sed")
            .args(["s| systemd.run.*||g"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(cmdline.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn the_first_run_arguments_go_at_the_end_and_the_cleanup_restores_the_line() {
        let with = with_first_run(CMDLINE).unwrap();
        assert_eq!(with, format!("{} {FIRST_RUN_ARGS}\n", CMDLINE.trim_end()));
        assert_eq!(firstrun_cleanup(&with), CMDLINE, "firstrun.sh's sed gives the line back");
        assert_eq!(with_first_run(&with).unwrap(), with, "a second run adds nothing");
        assert!(FIRSTRUN_SH.contains(FIRSTRUN_MARK));
        assert!(FIRSTRUN_SH.contains("sed -i 's| systemd.run.*||g' \"$BOOT/cmdline.txt\""));
    }

    #[test]
    fn imagers_first_run_is_kept_and_foreign_or_old_ones_are_refused() {
        let imager =
            format!("{} cfg80211.ieee80211_regdom=GB {FIRST_RUN_ARGS}\n", CMDLINE.trim_end());
        assert_eq!(with_first_run(&imager).unwrap(), imager);
        let bullseye = format!(
            "{} systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot\n",
            CMDLINE.trim_end()
        );
        let error = with_first_run(&bullseye).unwrap_err().to_string();
        assert!(error.contains("Bookworm"), "{error}");
        let foreign = format!("{} systemd.run=/boot/firmware/other.sh\n", CMDLINE.trim_end());
        let error = with_first_run(&foreign).unwrap_err().to_string();
        assert!(error.contains("other.sh"), "{error}");
        assert!(with_first_run("\n").is_err());
    }

    #[test]
    fn a_boot_directory_gets_the_bundle_firstrun_and_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("bootfs");
        std::fs::create_dir(&boot).unwrap();
        std::fs::write(boot.join("cmdline.txt"), CMDLINE).unwrap();
        let request = request(dir.path());

        let report = prepare_boot(&boot, &request).unwrap();
        assert!(!report.imager_first_run);
        let read = |name: &str| std::fs::read_to_string(boot.join(name)).unwrap();
        assert_eq!(read("cmdline.txt"), format!("{} {FIRST_RUN_ARGS}\n", CMDLINE.trim_end()));
        assert_eq!(read("firstrun.sh"), FIRSTRUN_SH);
        assert_eq!(read("kitt/install.sh"), INSTALL_SH);
        assert_eq!(read("kitt/enroll-token"), format!("{TOKEN}\n"));
        assert_eq!(read("kitt/enroll.env"), "KITT_HUB=hub.lan:7070\n");
        assert_eq!(read("kitt/hostname"), "kitt-pi-01\n");
        assert_eq!(
            std::fs::read(boot.join("kitt/kitt-agent_0.1.0_arm64.deb")).unwrap(),
            b"!<arch>\n"
        );
        let config: toml::Table = read("kitt/agent.toml").parse().unwrap();
        let printer = &config["printer"].as_array().unwrap()[0];
        assert_eq!(printer["serial"].as_str(), Some("01P00A391800001"));
        assert_eq!(printer["access_code"].as_str(), Some("12345678"));
        assert_eq!(printer["name"].as_str(), Some("P1S \"window\""), "quoted, not spliced");
        use std::os::unix::fs::PermissionsExt;
        for secret in ["kitt/agent.toml", "kitt/enroll-token"] {
            let mode = std::fs::metadata(boot.join(secret)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
    }

    #[test]
    fn imagers_firstrun_survives_provisioning_twice() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path();
        let imager_line = format!("{} {FIRST_RUN_ARGS}\n", CMDLINE.trim_end());
        std::fs::write(boot.join("cmdline.txt"), &imager_line).unwrap();
        let imager = "#!/bin/bash\nset +e\necho imager\nrm -f /boot/firmware/firstrun.sh\nsed -i 's| systemd.run.*||g' /boot/firmware/cmdline.txt\nexit 0\n";
        std::fs::write(boot.join("firstrun.sh"), imager).unwrap();
        let request = request(dir.path());

        for _ in 0..2 {
            let report = prepare_boot(boot, &request).unwrap();
            assert!(report.imager_first_run);
            let kept = std::fs::read_to_string(boot.join("kitt/imager-firstrun.sh")).unwrap();
            assert_eq!(kept, imager);
            assert_eq!(std::fs::read_to_string(boot.join("firstrun.sh")).unwrap(), FIRSTRUN_SH);
            assert_eq!(std::fs::read_to_string(boot.join("cmdline.txt")).unwrap(), imager_line);
        }
    }

    #[test]
    fn a_directory_that_is_not_a_boot_partition_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let request = request(dir.path());
        let error = prepare_boot(&dir.path().join("nothing"), &request).unwrap_err();
        assert!(error.to_string().contains("cmdline.txt"), "{error}");
        let boot = dir.path().join("foreign");
        std::fs::create_dir(&boot).unwrap();
        std::fs::write(boot.join("cmdline.txt"), "root=/dev/sda1 systemd.run=/x.sh\n").unwrap();
        assert!(prepare_boot(&boot, &request).is_err());
        assert!(!boot.join("kitt").exists() && !boot.join("firstrun.sh").exists());
    }

    #[test]
    fn every_bad_input_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = request(dir.path());
        bad.deb = dir.path().join("agent.deb");
        bad.hub = "hub.lan".into();
        bad.token = "kitt1.nope".into();
        bad.serial = "01P 00".into();
        bad.access_code = String::new();
        bad.printer_host = "a b".into();
        bad.hostname = Some("Kitt_Pi".into());
        let problems = bad.problems();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(request(dir.path()).problems().is_empty());
        for name in ["pi", "kitt-pi-01", "a1"] {
            assert!(is_hostname(name), "{name}");
        }
        for name in ["", "-pi", "pi-", "Pi", "pi.lan", &"a".repeat(64)] {
            assert!(!is_hostname(name), "{name}");
        }
    }
}
