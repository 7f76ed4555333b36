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
use crate::replay::{Replay, ReplayError};
use crate::sim::{SimError, Simulator};

/// Name of the job `--loop-jobs` starts when `--autostart-job` names none.
const DEFAULT_LOOP_JOB: &str = "Demo job";
/// A printer's MQTT port; a simulator bound to it puts its camera on [`CAMERA_PORT`].
const MQTT_PORT: u16 = 8883;
/// A real A1/P1's camera port.
const CAMERA_PORT: u16 = 6000;

/// A simulated Bambu Lab printer: MQTT 3.1.1 over TLS on the real LAN protocol, and the A1/P1
/// camera stream (JPEG frames over TLS).
///
/// Prints a line on stdout once listening, "kitt-printer-sim listening on ADDR serial=…
/// model=…", then, unless --no-camera, "kitt-printer-sim camera listening on ADDR"; logs go to
/// stderr (RUST_LOG sets the level).
#[derive(Debug, Parser)]
#[command(name = "kitt-printer-sim", version, about)]
pub struct Cli {
    /// Printer serial: the certificate's CN and the topic segment (device/SERIAL/report).
    #[arg(long)]
    pub serial: PrinterSerial,
    /// LAN access code, the MQTT password (8 letters or digits).
    #[arg(long)]
    pub access_code: AccessCode,
    /// Model code: N1 (A1 mini), N2S (A1), C11 (P1P), C12 (P1S), BL-P001 (X1C), BL-P002 (X1),
    /// C13 (X1E).
    #[arg(long)]
    pub model: Model,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8883")]
    pub bind: SocketAddr,
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
    /// Serve no camera.
    #[arg(
        long,
        conflicts_with_all = [
            "camera_bind", "camera_interval_ms", "camera_size", "camera_streams", "camera_fault",
        ]
    )]
    pub no_camera: bool,
}

impl Cli {
    /// The simulator configuration these arguments describe.
    pub fn to_config(&self) -> Result<SimConfig, CliError> {
        let mut config = SimConfig::new(self.serial.clone(), self.access_code.clone(), self.model)
            .with_intervals(
                Duration::from_millis(self.layer_ms),
                Duration::from_millis(self.report_ms),
            );
        config.bind = self.bind;
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
        config.camera = (!self.no_camera).then(|| CameraConfig {
            bind: Some(self.camera_bind.unwrap_or_else(|| default_camera_bind(self.bind))),
            frame_interval: Duration::from_millis(self.camera_interval_ms),
            size: self.camera_size,
            max_streams: self.camera_streams,
            fault: self.camera_fault,
        });
        Ok(config)
    }
}

/// The host of `bind`, on the camera port when `bind` is on the MQTT port, else on a port
/// chosen by the OS.
fn default_camera_bind(bind: SocketAddr) -> SocketAddr {
    let port = if bind.port() == MQTT_PORT { CAMERA_PORT } else { 0 };
    SocketAddr::new(bind.ip(), port)
}

/// Runs the simulator until Ctrl-C (or SIGTERM).
pub async fn run(cli: Cli) -> Result<(), CliError> {
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
}

impl CliError {
    /// Whether the user can fix this by changing the arguments (exit code 64).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CliError::Config(_) | CliError::Replay(_) | CliError::Sim(SimError::Config(_))
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
