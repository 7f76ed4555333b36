//! Set-up for the test suite on a fresh Debian machine: system packages the tests need, and
//! throwaway services (added as the tests come to need them).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// A Debian package, and a file whose presence shows it is installed.
struct SystemPackage {
    name: &'static str,
    installs: &'static str,
}

/// What the test suite needs from the system.
const TEST_PACKAGES: &[SystemPackage] = &[
    // The printer link is tested against a real MQTT broker over TLS, the path a real
    // printer takes.
    SystemPackage { name: "mosquitto", installs: "/usr/sbin/mosquitto" },
];

/// Services started for the test run; they stop when this value is dropped.
#[derive(Debug, Default)]
pub struct TestServices {
    env: Vec<(String, String)>,
}

impl TestServices {
    /// Environment variables that tell the tests where the services are.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

pub fn prepare_test_environment() -> anyhow::Result<TestServices> {
    install_missing(TEST_PACKAGES)?;
    Ok(TestServices::default())
}

fn install_missing(packages: &[SystemPackage]) -> anyhow::Result<()> {
    let missing: Vec<&str> =
        packages.iter().filter(|p| !Path::new(p.installs).exists()).map(|p| p.name).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing system packages: {}", missing.join(" "));
    let as_root = is_root();
    let apt = |args: &[&str]| {
        let mut command = if as_root { Command::new("apt-get") } else { sudo_apt() };
        command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        command
    };
    crate::status(apt(&["update", "-q"])).context("apt-get update")?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    crate::status(install).context("installing the test suite's system packages")
}

fn sudo_apt() -> Command {
    let mut command = Command::new("sudo");
    command.arg("apt-get");
    command
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}
