//! The `kitt-printer-sim` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tracing::info;

use crate::config::{
    AccessCode, CameraConfig, CameraFault, CameraSize, ConfigError, DEFAULT_CAMERA_STREAMS,
    DEFAULT_JOB_LAYERS, Fault, Hms, JobSpec, Model, PrinterSerial, ReportStyle, SimConfig,
    parse_print_error,
};
use crate::moonraker::{KlipperFault, MoonrakerConfig};
use crate::replay::{Replay, ReplayError};
use crate::sim::{SimError, Simulator};

/// Name of the job `--loop-jobs` starts when `--autostart-job` names none.
const DEFAULT_LOOP_JOB: &str = "Demo job";
/// A printer's MQTT port; a simulator bound to it puts its camera on [`CAMERA_PORT`].
const MQTT_PORT: u16 = 8883;
/// A real A1/P1's camera port.
const CAMERA_PORT: u16 = 6000;
/// Moonraker's port.
const MOONRAKER_PORT: u16 = 7125;

/// A simulated Bambu Lab printer: MQTT 3.1.1 over TLS on the real LAN protocol, the A1/P1
/// camera stream (JPEG frames over TLS), and the FTPS server files are uploaded to.
///
/// Prints a line on stdout once listening, "kitt-printer-sim listening on ADDR serial=…
/// model=…", then, unless --no-camera, "kitt-printer-sim camera listening on ADDR", and,
/// unless --no-ftps, "kitt-printer-sim ftps listening on ADDR"; logs go to stderr (RUST_LOG
/// sets the level).
///
/// With --kind moonraker: a Klipper printer behind Moonraker instead, its WebSocket JSON-RPC
/// and HTTP API on --bind (default 127.0.0.1:7125) and its webcam on --web-bind; it prints
/// "kitt-printer-sim moonraker listening on ADDR name=…" and "kitt-printer-sim webcam
/// listening on ADDR".
#[derive(Debug, Parser)]
#[command(name = "kitt-printer-sim", version, about)]
pub struct Cli {
    /// What to simulate: bambu (the default) or moonraker (a Klipper printer).
    #[arg(long, value_enum)]
    pub kind: Option<SimKind>,
    /// Printer serial: the certificate's CN and the topic segment (device/SERIAL/report).
    #[arg(long, required_unless_present = "kind")]
    pub serial: Option<PrinterSerial>,
    /// LAN access code, the MQTT password (8 letters or digits).
    #[arg(long, required_unless_present = "kind")]
    pub access_code: Option<AccessCode>,
    /// Model code: N1 (A1 mini), N2S (A1), C11 (P1P), C12 (P1S), BL-P001 (X1C), BL-P002 (X1),
    /// C13 (X1E).
    #[arg(long, required_unless_present = "kind")]
    pub model: Option<Model>,
    /// Address to listen on (default 127.0.0.1:8883; moonraker: 127.0.0.1:7125).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Moonraker: require this API key (X-Api-Key, one-shot tokens, identify).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Moonraker: the host's web server, serving the webcam at /webcam/ (default: the host
    /// of --bind, a port chosen by the OS).
    #[arg(long, value_name = "ADDR")]
    pub web_bind: Option<SocketAddr>,
    /// The printer's name: in a Bambu printer's announcements (default: the model's name),
    /// on a Moonraker's webcam and in its mDNS name (default voron-sim).
    #[arg(long)]
    pub name: Option<String>,
    /// Announce the printer as a real one does, this often: SSDP on UDP 2021 (Bambu), mDNS
    /// announcements and answers (Moonraker, which announces at start and then answers
    /// queries; any value but 0 turns it on). 0: silent.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub announce_ms: u64,
    /// Moonraker: Klippy shuts down at this layer of every job (lost communication with
    /// the MCU).
    #[arg(long, value_name = "N")]
    pub shutdown_at_layer: Option<u32>,
    /// Moonraker: the extruder heater runs away at this layer (Klippy shuts down with
    /// verify_heater's message).
    #[arg(long, value_name = "N")]
    pub thermal_runaway_at_layer: Option<u32>,
    /// Moonraker: every job fails at this layer (print_stats error, Klippy stays ready).
    #[arg(long, value_name = "N")]
    pub error_at_layer: Option<u32>,
    /// Moonraker: the G-code sets no layer information (print_stats.info stays null).
    #[arg(long)]
    pub no_layer_info: bool,
    /// Report style: delta (P1/A1) or full (X1). Defaults to the model's.
    #[arg(long)]
    pub style: Option<ReportStyle>,
    /// Directory to write the CA certificate to, as ca.pem (pass it to the agent's --ca).
    #[arg(long, value_name = "DIR")]
    pub ca_out: Option<PathBuf>,
    /// Start a job with this name at once.
    #[arg(long, value_name = "NAME")]
    pub autostart_job: Option<String>,
    /// Layers of each job (autostarted, looped or started by a project_file request).
    #[arg(long, default_value_t = DEFAULT_JOB_LAYERS)]
    pub layers: u32,
    /// Milliseconds per layer (and per preparation stage).
    #[arg(long, default_value_t = 1000)]
    pub layer_ms: u64,
    /// Milliseconds between reports.
    #[arg(long, default_value_t = 1000)]
    pub report_ms: u64,
    /// Fail every job at this layer, with --hms and --print-error.
    #[arg(long, value_name = "N", requires_all = ["hms", "print_error"])]
    pub fail_at_layer: Option<u32>,
    /// HMS code raised by --fail-at-layer, AAAA_BBBB_CCCC_DDDD.
    #[arg(long, requires = "fail_at_layer")]
    pub hms: Option<Hms>,
    /// print_error reported by --fail-at-layer, XXXX_XXXX (hex).
    #[arg(long, requires = "fail_at_layer", value_parser = parse_print_error)]
    pub print_error: Option<u32>,
    /// Pause every job at this layer for a filament runout (stg_cur 6, HMS 0700_2000_0002_0001).
    #[arg(long, value_name = "N")]
    pub runout_at_layer: Option<u32>,
    /// Refuse control commands like a printer without Developer Mode (err_code 84033543).
    #[arg(long)]
    pub refuse_control: bool,
    /// Publish the reports of this JSON-lines file instead of simulated ones.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Start another job shortly after each one ends (autostarts "Demo job" if no
    /// --autostart-job).
    #[arg(long)]
    pub loop_jobs: bool,
    /// Address of the camera (the A1/P1 JPEG stream over TLS, port 6000 on a printer).
    /// Default: the host of --bind, on port 6000 when --bind uses port 8883, else on a port
    /// chosen by the OS (printed on the second line).
    #[arg(long, value_name = "ADDR")]
    pub camera_bind: Option<SocketAddr>,
    /// Milliseconds between camera frames.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub camera_interval_ms: u64,
    /// Size of the camera frames, WxH (each side 16-4096).
    #[arg(long, value_name = "WxH", default_value = "1280x720")]
    pub camera_size: CameraSize,
    /// Camera streams served at once; further clients connect and authenticate, then stall
    /// until one ends (a P1S serves 2).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAMERA_STREAMS)]
    pub camera_streams: usize,
    /// A camera fault from the start: garbage (random bytes for frames), endless-jpeg (a frame
    /// that never ends), huge-header (headers claiming 2 GiB) or off (connections closed).
    #[arg(long, value_name = "FAULT")]
    pub camera_fault: Option<CameraFault>,
    /// Write every transition the printer goes through (job started and finished, gcode_state,
    /// layer, pause, resume, HMS, print_error) and every request it receives to FILE, one JSON
    /// object per line, each written at once (see the `emit` module).
    #[arg(long, value_name = "FILE")]
    pub emit_log: Option<PathBuf>,
    /// Address of the FTPS server files are uploaded to (implicit TLS, port 990 on a
    /// printer). Default: the host of --bind, on port 990 when --bind uses port 8883, else on
    /// a port the OS chooses.
    #[arg(long, value_name = "ADDR")]
    pub ftps_bind: Option<SocketAddr>,
    /// The SD card's size for FTPS uploads, MiB (a full card answers 452).
    #[arg(long, value_name = "MIB", default_value_t = 32 * 1024)]
    pub sd_card_mb: u64,
    /// Serve no FTPS (a `project_file` request then starts any file name).
    #[arg(long, conflicts_with_all = ["ftps_bind"])]
    pub no_ftps: bool,
    /// A file on the SD card from the start, as if uploaded before (repeatable), taking
    /// MIB of the card's room when given: a `project_file` request starts only files on the
    /// card, as a printer does.
    #[arg(long, value_name = "NAME[:MIB]", conflicts_with = "no_ftps")]
    pub card_file: Vec<String>,
    /// What the AMS's trays hold, in order: MATERIAL:RRGGBB, comma-separated (up to four).
    #[arg(long, value_name = "TRAYS", value_parser = parse_trays)]
    pub trays: Option<Trays>,
    /// Refuse the first N FTPS sessions with 421 (a printer whose FTP service is not up yet).
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "no_ftps")]
    pub ftps_refuse_sessions: u32,
    /// Serve no camera.
    #[arg(
        long,
        conflicts_with_all = [
            "camera_bind", "camera_interval_ms", "camera_size", "camera_streams", "camera_fault",
        ]
    )]
    pub no_camera: bool,
}

/// What `kitt-printer-sim` simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimKind {
    /// A Bambu Lab printer (LAN MQTT over TLS, the port-6000 camera).
    Bambu,
    /// A Klipper printer behind Moonraker (WebSocket JSON-RPC and HTTP, a webcam).
    Moonraker,
}

impl Cli {
    /// The simulator configuration these arguments describe.
    pub fn to_config(&self) -> Result<SimConfig, CliError> {
        let (Some(serial), Some(access_code), Some(model)) =
            (self.serial.clone(), self.access_code.clone(), self.model)
        else {
            return Err(CliError::Usage(
                "a Bambu printer needs --serial, --access-code and --model".into(),
            ));
        };
        let mut config = SimConfig::new(serial, access_code, model).with_intervals(
            Duration::from_millis(self.layer_ms),
            Duration::from_millis(self.report_ms),
        );
        let bind = self.bind.unwrap_or(SocketAddr::from(([127, 0, 0, 1], MQTT_PORT)));
        config.bind = bind;
        if let Some(style) = self.style {
            config.report_style = style;
        }
        config.job_layers = self.layers;
        config.loop_jobs = self.loop_jobs;
        let autostart = match (&self.autostart_job, self.loop_jobs) {
            (Some(name), _) => Some(name.clone()),
            (None, true) => Some(DEFAULT_LOOP_JOB.to_owned()),
            (None, false) => None,
        };
        config.autostart_job = autostart.map(|name| JobSpec { name, layers: self.layers });
        if let (Some(layer), Some(hms), Some(print_error)) =
            (self.fail_at_layer, self.hms, self.print_error)
        {
            config.faults.push(Fault::FailAtLayer { layer, hms, print_error });
        }
        if let Some(layer) = self.runout_at_layer {
            config.faults.push(Fault::RunoutAtLayer { layer });
        }
        if self.refuse_control {
            config.faults.push(Fault::RefuseControl);
        }
        if let Some(path) = &self.replay {
            config.replay = Some(Replay::from_file(path)?);
        }
        config.emit_log = self.emit_log.clone();
        config.announce = (self.announce_ms > 0).then(|| Duration::from_millis(self.announce_ms));
        config.name = self.name.clone();
        config.ftps = (!self.no_ftps).then(|| crate::ftps::FtpsConfig {
            bind: Some(self.ftps_bind.unwrap_or_else(|| default_ftps_bind(bind))),
            capacity_bytes: self.sd_card_mb.saturating_mul(1 << 20),
            require_session_reuse: true,
            card_files: self
                .card_file
                .iter()
                .map(|file| {
                    let sized = file.rsplit_once(':').and_then(|(name, mib)| {
                        mib.parse::<u64>().ok().map(|mib| (name.to_owned(), mib << 20))
                    });
                    sized.unwrap_or_else(|| (file.clone(), 0))
                })
                .collect(),
            refuse_sessions: self.ftps_refuse_sessions,
        });
        config.trays = self.trays.clone().map(|trays| trays.0);
        config.camera = (!self.no_camera).then(|| CameraConfig {
            bind: Some(self.camera_bind.unwrap_or_else(|| default_camera_bind(bind))),
            frame_interval: Duration::from_millis(self.camera_interval_ms),
            size: self.camera_size,
            max_streams: self.camera_streams,
            fault: self.camera_fault,
        });
        Ok(config)
    }

    /// The simulated Moonraker these arguments describe.
    pub fn to_moonraker_config(&self) -> Result<MoonrakerConfig, CliError> {
        let bambu_only = [
            ("--serial", self.serial.is_some()),
            ("--access-code", self.access_code.is_some()),
            ("--model", self.model.is_some()),
            ("--style", self.style.is_some()),
            ("--ca-out", self.ca_out.is_some()),
            ("--fail-at-layer", self.fail_at_layer.is_some()),
            ("--refuse-control", self.refuse_control),
            ("--replay", self.replay.is_some()),
            ("--camera-bind", self.camera_bind.is_some()),
            ("--camera-fault", self.camera_fault.is_some()),
            ("--ftps-bind", self.ftps_bind.is_some()),
            ("--emit-log", self.emit_log.is_some()),
        ];
        if let Some((flag, _)) = bambu_only.iter().find(|(_, given)| *given) {
            return Err(CliError::Usage(format!(
                "{flag} is for a Bambu printer, not --kind moonraker"
            )));
        }
        let mut config = MoonrakerConfig::new(self.name.as_deref().unwrap_or("voron-sim"));
        config.zeroconf = self.announce_ms > 0;
        config.bind = self.bind.unwrap_or(SocketAddr::from(([127, 0, 0, 1], MOONRAKER_PORT)));
        config.web_bind = (!self.no_camera)
            .then(|| self.web_bind.unwrap_or(SocketAddr::new(config.bind.ip(), 0)));
        config.api_key = self.api_key.clone();
        config.step_interval = Duration::from_millis(self.layer_ms.max(1));
        config.camera_interval = Duration::from_millis(self.camera_interval_ms.max(1));
        config.camera_size = self.camera_size;
        config.klipper.layers = self.layers.max(1);
        config.klipper.step_seconds = self.layer_ms as f64 / 1000.0;
        config.klipper.layer_info = !self.no_layer_info;
        config.klipper.loop_jobs = self.loop_jobs;
        let faults = [
            self.shutdown_at_layer.map(KlipperFault::ShutdownAtLayer),
            self.thermal_runaway_at_layer.map(KlipperFault::ThermalRunawayAtLayer),
            self.runout_at_layer.map(KlipperFault::RunoutAtLayer),
            self.error_at_layer.map(KlipperFault::FailAtLayer),
        ];
        config.klipper.faults = faults.into_iter().flatten().collect();
        config.autostart = match (&self.autostart_job, self.loop_jobs) {
            (Some(name), _) => Some(gcode_name(name)),
            (None, true) => Some("benchy.gcode".to_owned()),
            (None, false) => None,
        };
        Ok(config)
    }
}

/// The host of `bind`, on the camera port when `bind` is on the MQTT port, else on a port
/// chosen by the OS.
/// What `--trays` names: each tray's material and colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trays(pub Vec<(String, String)>);

/// `PLA:FFFFFF,PETG:FF6A13`: each tray's material and colour.
fn parse_trays(text: &str) -> Result<Trays, String> {
    let trays: Vec<(String, String)> = text
        .split(',')
        .map(|tray| {
            let (material, color) =
                tray.split_once(':').ok_or_else(|| format!("{tray:?}: want MATERIAL:RRGGBB"))?;
            let color = color.trim_start_matches('#').to_ascii_uppercase();
            if material.is_empty()
                || color.len() != 6
                || !color.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(format!("{tray:?}: want MATERIAL:RRGGBB"));
            }
            Ok((material.to_owned(), color))
        })
        .collect::<Result<_, String>>()?;
    if trays.len() > 4 {
        return Err("an AMS holds four trays".into());
    }
    Ok(Trays(trays))
}

/// A printer's FTPS port.
const FTPS_PORT: u16 = 990;

fn default_ftps_bind(bind: SocketAddr) -> SocketAddr {
    let port = if bind.port() == MQTT_PORT { FTPS_PORT } else { 0 };
    SocketAddr::new(bind.ip(), port)
}

fn default_camera_bind(bind: SocketAddr) -> SocketAddr {
    let port = if bind.port() == MQTT_PORT { CAMERA_PORT } else { 0 };
    SocketAddr::new(bind.ip(), port)
}

/// A job name as a G-code file name: `Demo job` → `Demo_job.gcode`.
fn gcode_name(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    if stem.to_ascii_lowercase().ends_with(".gcode") { stem } else { format!("{stem}.gcode") }
}

/// Runs the simulator until Ctrl-C (or SIGTERM).
pub async fn run(cli: Cli) -> Result<(), CliError> {
    if cli.kind == Some(SimKind::Moonraker) {
        let config = cli.to_moonraker_config()?;
        let handle = crate::moonraker::start(config).await.map_err(CliError::Moonraker)?;
        #[allow(clippy::print_stdout, reason = "the CLI's output, for scripts")]
        {
            println!(
                "kitt-printer-sim moonraker listening on {} name={}",
                handle.addr(),
                cli.name.as_deref().unwrap_or("voron-sim")
            );
            if let Some(web) = handle.web_addr() {
                println!("kitt-printer-sim webcam listening on {web}");
            }
        }
        wait_for_signal().await.map_err(CliError::Signal)?;
        info!("Shutting down.");
        handle.shutdown().await;
        return Ok(());
    }
    let config = cli.to_config()?;
    let handle = Simulator::start(config).await?;
    if let Some(dir) = &cli.ca_out {
        let path = dir.join("ca.pem");
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, handle.ca_pem()))
            .map_err(|source| CliError::CaOut { path: path.display().to_string(), source })?;
        info!(path = %path.display(), "Wrote the CA certificate.");
    }
    #[allow(clippy::print_stdout, reason = "the CLI's output, for scripts")]
    {
        // Scripts wait for this line: it stays first and unchanged.
        println!(
            "kitt-printer-sim listening on {} serial={} model={}",
            handle.addr(),
            handle.serial(),
            handle.model()
        );
        if let Some(camera_addr) = handle.camera_addr() {
            println!("kitt-printer-sim camera listening on {camera_addr}");
        }
        if let Some(ftps_addr) = handle.ftps_addr() {
            println!("kitt-printer-sim ftps listening on {ftps_addr}");
        }
    }
    wait_for_signal().await.map_err(CliError::Signal)?;
    info!("Shutting down.");
    handle.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

/// The command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The replay file is unusable.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The simulator could not start.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The CA certificate could not be written.
    #[error("cannot write {path}")]
    CaOut {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for Ctrl-C failed.
    #[error("cannot wait for signals")]
    Signal(#[source] std::io::Error),
    /// The arguments do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The simulated Moonraker could not start.
    #[error("cannot start the simulated Moonraker")]
    Moonraker(#[source] std::io::Error),
}

impl CliError {
    /// Whether the user can fix this by changing the arguments (exit code 64).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CliError::Config(_)
                | CliError::Replay(_)
                | CliError::Sim(SimError::Config(_))
                | CliError::Usage(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_a_config() {
        let cli = Cli::try_parse_from([
            "kitt-printer-sim",
            "--serial",
            "01P00A000000001",
            "--access-code",
            "12345678",
            "--model",
            "C12",
            "--fail-at-layer",
            "3",
            "--hms",
            "0300_0100_0001_0007",
            "--print-error",
            "0300_8001",
            "--refuse-control",
            "--loop-jobs",
            "--layer-ms",
            "10",
            "--emit-log",
            "/tmp/emit.jsonl",
        ])
        .unwrap();
        let config = cli.to_config().unwrap();
        assert_eq!(config.emit_log, Some("/tmp/emit.jsonl".into()));
        assert_eq!(config.model, Model::P1S);
        assert_eq!(config.report_style, ReportStyle::Delta);
        assert_eq!(config.layer_interval, Duration::from_millis(10));
        assert_eq!(config.autostart_job.unwrap().name, DEFAULT_LOOP_JOB);
        assert_eq!(config.faults.len(), 2);
        assert_eq!(
            config.faults[0],
            Fault::FailAtLayer {
                layer: 3,
                hms: Hms { attr: 0x0300_0100, code: 0x0001_0007 },
                print_error: 0x0300_8001
            }
        );
    }

    fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
        let base = ["kitt-printer-sim", "--serial", "S1", "--access-code", "12345678"];
        Cli::try_parse_from(base.iter().chain(["--model", "C12"].iter()).chain(extra))
    }

    #[test]
    fn the_camera_follows_the_mqtt_address_unless_told_otherwise() {
        let camera = |extra: &[&str]| parse(extra).unwrap().to_config().unwrap().camera;
        let default = camera(&[]).unwrap();
        assert_eq!(default.bind, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(default.size.to_string(), "1280x720");
        assert_eq!(default.frame_interval, Duration::from_secs(1));
        assert_eq!(default.max_streams, 2);
        assert_eq!(default.fault, None);
        let ephemeral = camera(&["--bind", "0.0.0.0:18883"]).unwrap();
        assert_eq!(ephemeral.bind, Some("0.0.0.0:0".parse().unwrap()));
        let custom = camera(&[
            "--camera-bind",
            "127.0.0.2:6001",
            "--camera-interval-ms",
            "250",
            "--camera-size",
            "640x360",
            "--camera-streams",
            "3",
            "--camera-fault",
            "huge-header",
        ])
        .unwrap();
        assert_eq!(custom.bind, Some("127.0.0.2:6001".parse().unwrap()));
        assert_eq!(custom.frame_interval, Duration::from_millis(250));
        assert_eq!((custom.size.width(), custom.size.height()), (640, 360));
        assert_eq!(custom.max_streams, 3);
        assert_eq!(custom.fault, Some(CameraFault::HugeHeader));
        assert_eq!(camera(&["--no-camera"]), None);
        assert!(parse(&["--no-camera", "--camera-size", "640x360"]).is_err());
        assert!(parse(&["--camera-size", "640by360"]).is_err());
        assert!(parse(&["--camera-fault", "broken"]).is_err());
    }

    #[test]
    fn trays_card_files_and_ftps_refusals_are_configured() {
        let cli = Cli::try_parse_from([
            "kitt-printer-sim",
            "--serial",
            "01P00A000000001",
            "--access-code",
            "12345678",
            "--model",
            "C12",
            "--trays",
            "PETG:ff6a13,ABS:#000000",
            "--card-file",
            "/old.avi:64",
            "--card-file",
            "/model/next.gcode.3mf",
            "--ftps-refuse-sessions",
            "2",
        ])
        .unwrap();
        let config = cli.to_config().unwrap();
        let trays = [("PETG", "FF6A13"), ("ABS", "000000")].map(|(m, c)| (m.into(), c.into()));
        assert_eq!(config.trays, Some(trays.to_vec()));
        let ftps = config.ftps.unwrap();
        assert_eq!(
            ftps.card_files,
            [("/old.avi".to_owned(), 64 << 20), ("/model/next.gcode.3mf".to_owned(), 0)]
        );
        assert_eq!(ftps.refuse_sessions, 2);
        for bad in
            ["PLA", "PLA:12345", "PLA:GGGGGG", "A:000000,B:000000,C:000000,D:000000,E:000000"]
        {
            let parsed = Cli::try_parse_from([
                "kitt-printer-sim",
                "--serial",
                "01P00A000000001",
                "--access-code",
                "12345678",
                "--model",
                "C12",
                "--trays",
                bad,
            ]);
            assert!(parsed.is_err(), "{bad}");
        }
    }

    #[test]
    fn a_moonraker_is_configured_by_its_own_flags() {
        let cli = Cli::try_parse_from([
            "kitt-printer-sim",
            "--kind",
            "moonraker",
            "--api-key",
            "k3y",
            "--thermal-runaway-at-layer",
            "4",
            "--runout-at-layer",
            "2",
            "--autostart-job",
            "Demo job",
            "--no-layer-info",
        ])
        .unwrap();
        let config = cli.to_moonraker_config().unwrap();
        assert_eq!(config.bind, "127.0.0.1:7125".parse().unwrap());
        assert_eq!(config.web_bind, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(config.api_key.as_deref(), Some("k3y"));
        assert_eq!(
            config.klipper.faults,
            [KlipperFault::ThermalRunawayAtLayer(4), KlipperFault::RunoutAtLayer(2)]
        );
        assert_eq!(config.autostart.as_deref(), Some("Demo_job.gcode"));
        assert!(!config.klipper.layer_info);
        let bambu_flag =
            Cli::try_parse_from(["kitt-printer-sim", "--kind", "moonraker", "--refuse-control"])
                .unwrap();
        assert!(bambu_flag.to_moonraker_config().is_err());
        assert!(
            Cli::try_parse_from(["kitt-printer-sim"]).is_err(),
            "a Bambu printer needs a serial"
        );
    }

    #[test]
    fn fail_at_layer_requires_hms_and_print_error() {
        let result = Cli::try_parse_from([
            "kitt-printer-sim",
            "--serial",
            "S1",
            "--access-code",
            "12345678",
            "--model",
            "N1",
            "--fail-at-layer",
            "3",
        ]);
        assert!(result.is_err());
    }
}
