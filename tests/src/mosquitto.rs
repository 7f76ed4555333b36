//! A throwaway mosquitto broker (Debian's package), configured like a Bambu printer's:
//! TLS on one port with an X.509 v1 certificate for the serial, user `bblp` with the access
//! code as password, no anonymous access. A second, plain port lets the test publish
//! recorded reports as user `recorder`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

pub const RECORDER_USER: &str = "recorder";
pub const RECORDER_PASSWORD: &str = "recorder-password";

pub struct Mosquitto {
    child: Child,
    _dir: tempfile::TempDir,
    pub tls_port: u16,
    pub plain_port: u16,
    pub ca_pem_path: PathBuf,
    pub ca_der: Vec<u8>,
}

impl std::fmt::Debug for Mosquitto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mosquitto").field("tls_port", &self.tls_port).finish_non_exhaustive()
    }
}

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

impl Mosquitto {
    /// Starts a broker for a printer `serial` with LAN `access_code`.
    pub fn start(serial: &str, access_code: &str) -> anyhow::Result<Mosquitto> {
        if !std::path::Path::new(MOSQUITTO).exists() {
            bail!(
                "mosquitto is not installed; run the tests with `cargo xtask test`, which installs it"
            );
        }
        let dir = tempfile::tempdir()?;
        let ca = printer_sim::certs::PrinterCa::bbl().context("generating the printer CA")?;
        let leaf = ca.issue_leaf(serial).context("issuing the printer certificate")?;
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ca.pem"), ca.cert_pem())?;
        std::fs::write(path("printer.pem"), leaf.chain_pem())?;
        std::fs::write(path("printer.key"), leaf.key_pem())?;
        let passwords = path("passwords");
        for (i, (user, password)) in
            [("bblp", access_code), (RECORDER_USER, RECORDER_PASSWORD)].iter().enumerate()
        {
            let mut command = Command::new(MOSQUITTO_PASSWD);
            if i == 0 {
                command.arg("-c");
            }
            let status = command
                .args(["-b"])
                .arg(&passwords)
                .args([user, password])
                .stdout(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "mosquitto_passwd failed");
        }
        let tls_port = free_port()?;
        let plain_port = free_port()?;
        let config = format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {passwords}\n\
             persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n\
             listener {plain_port} 127.0.0.1\n",
            passwords = passwords.display(),
            cert = path("printer.pem").display(),
            key = path("printer.key").display(),
        );
        std::fs::write(path("mosquitto.conf"), config)?;
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(path("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting mosquitto")?;
        let mut child = child;
        let ready = announce_ready(child.stderr.take().context("mosquitto's stderr")?);
        let broker = Mosquitto {
            child,
            tls_port,
            plain_port,
            ca_pem_path: path("ca.pem"),
            ca_der: ca.cert_der().to_vec(),
            _dir: dir,
        };
        // mosquitto logs "… running" once every listener is open: its readiness event.
        match ready.recv_timeout(Duration::from_secs(20)) {
            Ok(true) => Ok(broker),
            _ => bail!("mosquitto did not start (see its log above)"),
        }
    }

    /// A client on the plain port, as the recorder user, for publishing recorded reports.
    pub fn recorder(&self) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
        let mut options = rumqttc::MqttOptions::new("recorder", "127.0.0.1", self.plain_port);
        options.set_credentials(RECORDER_USER, RECORDER_PASSWORD);
        options.set_max_packet_size(1 << 20, 1 << 20);
        rumqttc::AsyncClient::new(options, 16)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards mosquitto's log to ours and says `true` when it reports running (`false` if it
/// exits first).
fn announce_ready(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<bool> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut announced = false;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            // The test harness captures it, shown only for a failing test.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("mosquitto: {line}");
            }
            if !announced && line.contains(" running") {
                announced = true;
                let _ = tx.send(true);
            }
        }
        let _ = tx.send(false);
    });
    rx
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
