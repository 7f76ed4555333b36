//! The agent's configuration file (`/etc/kitt-agent/agent.toml`), validated up front.
//!
//! A serde [`RawConfig`] with unknown keys refused converts into [`AgentConfig`] with real
//! types; the conversion reports every problem at once, each naming its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::{CameraId, PrinterId};
use serde::Deserialize;

use crate::camera::planner::SnapshotPolicy;
use crate::printer::bambu::link::AccessCode;
use crate::printer::moonraker::link::{ApiKey, MoonrakerUrl};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/kitt-agent";
const DEFAULT_CAPACITY_MB: u64 = 64;
const DEFAULT_SNAPSHOT_CAPACITY_MB: u64 = 16;
const DEFAULT_KEEP_ALIVE_S: u64 = 15;
const DEFAULT_IDLE_TIMEOUT_S: u64 = 60;
const DEFAULT_TELEMETRY_INTERVAL_MS: u64 = 1000;
const DEFAULT_FILE_CACHE_MB: u64 = 2048;
const DEFAULT_HEALTH_INTERVAL_S: u64 = 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the identity, the outbox and pinned printer keys live.
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub discovery: RawDiscovery,
    #[serde(default)]
    pub files: RawFiles,
    /// One entry per printer this agent watches.
    #[serde(default, rename = "printer")]
    pub printers: Vec<RawPrinter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// Budget for telemetry, events and health, in MiB (at least 8).
    pub capacity_mb: Option<u64>,
    /// Separate budget for camera snapshots, in MiB.
    pub snapshot_capacity_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    /// The print files from the hub kept on this machine, MiB (default 2048; at least 64).
    /// A file larger than this is refused; older files are evicted for room.
    pub cache_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// QUIC keep-alive interval, seconds.
    pub keep_alive_s: Option<u64>,
    /// Drop the hub connection after this long without traffic, seconds.
    pub idle_timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// At most one telemetry sample per printer per interval; changes in between are
    /// coalesced into the next sample.
    pub interval_ms: Option<u64>,
    /// How often the agent reports its own health (outbox depth, drops), seconds.
    pub health_interval_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    /// Listen for the printers on the LAN and tell the hub, so an admin can add them from
    /// the dashboard (default true). Listening only: nothing is scanned.
    pub enabled: Option<bool>,
    /// Minutes between listening spells (default 10); each spell lasts 65 s, long enough to
    /// hear every Bambu printer's once-a-minute announcement.
    pub interval_min: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrinter {
    /// `bambu` (the default) or `moonraker` (Klipper printers).
    pub kind: Option<String>,
    /// Bambu: the printer's serial number, which is its id in kitt.
    pub serial: Option<String>,
    /// Moonraker: the printer's id in kitt (letters, digits, `-`, `_`, `.`), e.g. `voron-1`.
    pub id: Option<String>,
    /// Bambu: the printer's address.
    pub host: Option<String>,
    /// Bambu: the MQTT port (default 8883).
    pub port: Option<u16>,
    /// Bambu: the port of the printer's FTPS server, where job files go (default 990).
    pub ftps_port: Option<u16>,
    /// Bambu: the 8-character LAN access code.
    pub access_code: Option<String>,
    /// Bambu: PEM file with the CA that signs the printer's certificate; without it the
    /// printer's key is pinned on first use.
    pub ca: Option<PathBuf>,
    /// Moonraker: its address, `http://host:7125` (port 7125 unless named).
    pub url: Option<String>,
    /// Moonraker: its API key, when it requires one.
    pub api_key: Option<String>,
    /// Moonraker: the port of the host's web server (Mainsail, Fluidd), where the relative
    /// webcam URLs Moonraker lists resolve (default 80).
    pub web_port: Option<u16>,
    pub name: Option<String>,
    pub model: Option<String>,
    /// Watch the printer's own camera when no `[[printer.camera]]` is listed (default true):
    /// port 6000 on A1/P1, RTSPS (through ffmpeg) on X1/H2/P2S, the first webcam Moonraker
    /// lists on a Klipper printer.
    pub builtin_camera: Option<bool>,
    /// Cameras that watch this printer.
    #[serde(default, rename = "camera")]
    pub cameras: Vec<RawCamera>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// A name for the camera, unique per printer (default `chamber`; `webcam` for a
    /// `moonraker` source).
    pub id: Option<String>,
    /// `bambu` (port 6000), `rtsp`, `mjpeg`, `snapshot`, `usb`, or `moonraker` (the first
    /// webcam a Klipper printer's Moonraker lists, followed as the list changes).
    pub source: String,
    /// `bambu`: the camera port (default 6000).
    pub port: Option<u16>,
    /// `rtsp`, `mjpeg`, `snapshot`: the URL (`rtsp` defaults to the printer's own stream).
    pub url: Option<String>,
    /// `rtsp`: the ffmpeg binary (default `ffmpeg` on the PATH).
    pub ffmpeg: Option<PathBuf>,
    /// `rtsp`, `usb`: frames per second to take from the camera (default 1).
    pub fps: Option<u32>,
    /// `snapshot`: seconds between polls (default 2).
    pub interval_s: Option<u64>,
    /// `usb`: `/dev/videoN` or an index (default `/dev/video0`).
    pub device: Option<String>,
    /// `usb`: resolution to ask for (default 1280×720).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// A snapshot at least every this many minutes while printing (default 5; 0: never).
    pub snapshot_every_min: Option<u64>,
    /// A snapshot every this many layers (default: never).
    pub snapshot_every_layers: Option<u32>,
    /// The fastest live view sent to the hub, frames per second (default 2).
    pub live_max_fps: Option<f64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub capacity_bytes: u64,
    pub snapshot_capacity_bytes: u64,
    /// The print file cache's size (`<state_dir>/files`).
    pub file_cache_bytes: u64,
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    pub telemetry_interval: Duration,
    pub health_interval: Duration,
    /// Between listening spells for printers on the LAN; `None`: off.
    pub discovery_interval: Option<Duration>,
    pub printers: Vec<PrinterConfig>,
}

#[derive(Debug, Clone)]
pub struct PrinterConfig {
    /// The printer's id in kitt: a Bambu printer's serial, a Klipper printer's chosen id.
    pub id: PrinterId,
    pub name: Option<String>,
    pub model: Option<String>,
    pub link: PrinterLinkConfig,
    pub cameras: Vec<CameraSpec>,
}

/// How to reach the printer: one variant per driver.
#[derive(Debug, Clone)]
pub enum PrinterLinkConfig {
    Bambu { host: String, port: u16, ftps_port: u16, access_code: AccessCode, ca: Option<PathBuf> },
    Moonraker { url: MoonrakerUrl, api_key: Option<ApiKey>, web_port: u16 },
}

impl PrinterConfig {
    /// A printer the hub manages, validated as `agent.toml`'s printers are; every problem in
    /// one message naming its field.
    pub fn from_managed(managed: &proto::ManagedPrinter) -> Result<PrinterConfig, String> {
        let (kind, serial, id, host, port, access_code, url, api_key, web_port) =
            match &managed.link {
                proto::ManagedLink::Bambu { host, port, access_code } => (
                    "bambu",
                    Some(managed.id.to_string()),
                    None,
                    Some(host.clone()),
                    Some(*port),
                    Some(access_code.clone()),
                    None,
                    None,
                    None,
                ),
                proto::ManagedLink::Moonraker { url, api_key, web_port } => (
                    "moonraker",
                    None,
                    Some(managed.id.to_string()),
                    None,
                    None,
                    None,
                    Some(url.clone()),
                    api_key.clone(),
                    Some(*web_port),
                ),
            };
        let raw = RawPrinter {
            kind: Some(kind.into()),
            serial,
            id,
            host,
            port,
            ftps_port: None,
            access_code,
            ca: None,
            url,
            api_key,
            web_port,
            name: managed.name.clone(),
            model: managed.model.clone(),
            builtin_camera: Some(managed.camera),
            cameras: Vec::new(),
        };
        let mut problems = Vec::new();
        let at = |key: &str| key.to_owned();
        match raw.validate(&at, &mut problems) {
            Some(printer) if problems.is_empty() => Ok(printer),
            _ => Err(problems.join("; ")),
        }
    }

    pub fn vendor(&self) -> proto::Vendor {
        match self.link {
            PrinterLinkConfig::Bambu { .. } => proto::Vendor::BambuLab,
            PrinterLinkConfig::Moonraker { .. } => proto::Vendor::Moonraker,
        }
    }
}

/// One camera, validated; the agent completes a `bambu` source with the printer's address,
/// access code and certificate trust.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    pub id: CameraId,
    pub source: CameraSourceSpec,
    pub policy: SnapshotPolicy,
    pub live_max_fps_milli: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSourceSpec {
    Bambu {
        port: u16,
    },
    /// `url: None`: the printer's own `rtsps://bblp:<code>@<host>:322/streaming/live/1`.
    Rtsp {
        url: Option<String>,
        ffmpeg: PathBuf,
        fps: u32,
    },
    Mjpeg {
        url: String,
    },
    Snapshot {
        url: String,
        interval: Duration,
    },
    Usb {
        device: String,
        width: u32,
        height: u32,
        fps: u32,
    },
    /// The first webcam the printer's Moonraker lists, followed as the list changes.
    Moonraker,
}

/// Models whose built-in camera is the RTSPS stream rather than port 6000.
fn has_rtsp_camera(model: Option<&str>) -> bool {
    let model = model.unwrap_or("").to_ascii_uppercase();
    // Names as people write them, and the printers' own model codes (X1C `BL-P001`, X1
    // `BL-P002`, X1E `C13`, H2D `O1D`…); P1P `C11` and P1S `C12` use port 6000.
    ["X1", "H2", "P2S", "X2D", "BL-P", "C13", "O1"].iter().any(|m| model.starts_with(m))
}

impl RawCamera {
    fn validate(
        self,
        at: &dyn Fn(&str) -> String,
        problems: &mut Vec<String>,
    ) -> Option<CameraSpec> {
        let before = problems.len();
        let default_id = if self.source == "moonraker" { "webcam" } else { "chamber" };
        let id = CameraId::new(self.id.as_deref().unwrap_or(default_id).trim())
            .map_err(|e| problems.push(format!("{}: {e}", at("id"))))
            .ok();
        let fps = self.fps.unwrap_or(1);
        if fps == 0 || fps > 30 {
            problems.push(format!("{}: {fps}: must be between 1 and 30", at("fps")));
        }
        let mut url = |kind: &str| match self.url.clone() {
            Some(url) if url.contains("://") => Some(url),
            Some(url) => {
                problems.push(format!("{}: {url:?} is not a URL", at("url")));
                None
            }
            None => {
                problems.push(format!("{}: a {kind} camera needs a url", at("url")));
                None
            }
        };
        let source = match self.source.as_str() {
            "bambu" => Some(CameraSourceSpec::Bambu { port: self.port.unwrap_or(6000) }),
            "rtsp" => Some(CameraSourceSpec::Rtsp {
                url: self.url.clone(),
                ffmpeg: self.ffmpeg.clone().unwrap_or_else(|| PathBuf::from("ffmpeg")),
                fps,
            }),
            "mjpeg" => url("mjpeg").map(|url| CameraSourceSpec::Mjpeg { url }),
            "snapshot" => url("snapshot").map(|url| CameraSourceSpec::Snapshot {
                url,
                interval: Duration::from_secs(self.interval_s.unwrap_or(2).max(1)),
            }),
            "usb" => Some(CameraSourceSpec::Usb {
                device: self.device.clone().unwrap_or_else(|| "/dev/video0".into()),
                width: self.width.unwrap_or(1280),
                height: self.height.unwrap_or(720),
                fps,
            }),
            "moonraker" => Some(CameraSourceSpec::Moonraker),
            other => {
                problems.push(format!(
                    "{}: {other:?}: must be bambu, rtsp, mjpeg, snapshot, usb or moonraker",
                    at("source")
                ));
                None
            }
        };
        let live = self.live_max_fps.unwrap_or(2.0);
        if !(0.05..=30.0).contains(&live) {
            problems.push(format!("{}: {live}: must be between 0.05 and 30", at("live_max_fps")));
        }
        let policy = SnapshotPolicy {
            every: match self.snapshot_every_min.unwrap_or(5) {
                0 => None,
                minutes => Some(Duration::from_secs(minutes * 60)),
            },
            every_layers: self.snapshot_every_layers.filter(|&n| n > 0),
        };
        if problems.len() > before {
            return None;
        }
        Some(CameraSpec {
            id: id?,
            source: source?,
            policy,
            live_max_fps_milli: (live * 1000.0).round() as u32,
        })
    }

    /// The printer's own camera, with every default.
    fn builtin(kind: Kind, model: Option<&str>) -> RawCamera {
        let source = match kind {
            Kind::Moonraker => "moonraker",
            Kind::Bambu if has_rtsp_camera(model) => "rtsp",
            Kind::Bambu => "bambu",
        };
        RawCamera {
            id: None,
            source: source.into(),
            port: None,
            url: None,
            ffmpeg: None,
            fps: None,
            interval_s: None,
            device: None,
            width: None,
            height: None,
            snapshot_every_min: None,
            snapshot_every_layers: None,
            live_max_fps: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bambu,
    Moonraker,
}

impl RawPrinter {
    fn validate(
        self,
        at: &dyn Fn(&str) -> String,
        problems: &mut Vec<String>,
    ) -> Option<PrinterConfig> {
        let before = problems.len();
        let kind = match self.kind.as_deref().unwrap_or("bambu") {
            "bambu" => Kind::Bambu,
            "moonraker" | "klipper" => Kind::Moonraker,
            other => {
                problems.push(format!("{}: {other:?}: must be bambu or moonraker", at("kind")));
                return None;
            }
        };
        // Keys of the other kind are mistakes worth naming, not silently ignored.
        let foreign: &[(&str, bool)] = match kind {
            Kind::Bambu => &[
                ("id", self.id.is_some()),
                ("url", self.url.is_some()),
                ("api_key", self.api_key.is_some()),
                ("web_port", self.web_port.is_some()),
            ],
            Kind::Moonraker => &[
                ("serial", self.serial.is_some()),
                ("host", self.host.is_some()),
                ("port", self.port.is_some()),
                ("access_code", self.access_code.is_some()),
                ("ca", self.ca.is_some()),
            ],
        };
        let kind_name = if kind == Kind::Bambu { "bambu" } else { "moonraker" };
        for (key, _) in foreign.iter().filter(|(_, present)| *present) {
            problems.push(format!("{}: not a setting of a {kind_name} printer", at(key)));
        }
        let required = |value: Option<String>, key: &str, problems: &mut Vec<String>| {
            if value.is_none() {
                problems.push(format!("{}: a {kind_name} printer needs one", at(key)));
            }
            value
        };
        let (id_key, id) = match kind {
            Kind::Bambu => ("serial", required(self.serial, "serial", problems)),
            Kind::Moonraker => ("id", required(self.id, "id", problems)),
        };
        let id = id.and_then(|id| {
            PrinterId::new(id.trim())
                .map_err(|e| problems.push(format!("{}: {e}", at(id_key))))
                .ok()
        });
        let link = match kind {
            Kind::Bambu => {
                let host = required(self.host, "host", problems);
                let access_code =
                    required(self.access_code, "access_code", problems).and_then(|code| {
                        AccessCode::new(&code)
                            .map_err(|e| problems.push(format!("{}: {e}", at("access_code"))))
                            .ok()
                    });
                if let Some(ca) = &self.ca
                    && !ca.is_file()
                {
                    problems.push(format!("{}: {} does not exist", at("ca"), ca.display()));
                }
                match (host, access_code) {
                    (Some(host), Some(access_code)) => Some(PrinterLinkConfig::Bambu {
                        host,
                        port: self.port.unwrap_or(8883),
                        ftps_port: self.ftps_port.unwrap_or(990),
                        access_code,
                        ca: self.ca,
                    }),
                    _ => None,
                }
            }
            Kind::Moonraker => {
                let url = required(self.url, "url", problems).and_then(|url| {
                    MoonrakerUrl::parse(&url)
                        .map_err(|e| problems.push(format!("{}: {e}", at("url"))))
                        .ok()
                });
                let api_key = self.api_key.and_then(|key| {
                    ApiKey::new(&key)
                        .map_err(|e| problems.push(format!("{}: {e}", at("api_key"))))
                        .ok()
                });
                if self.web_port == Some(0) {
                    problems.push(format!("{}: 0 is not a port", at("web_port")));
                }
                url.map(|url| PrinterLinkConfig::Moonraker {
                    url,
                    api_key,
                    web_port: self.web_port.unwrap_or(80),
                })
            }
        };
        let raw_cameras = if self.cameras.is_empty() && self.builtin_camera != Some(false) {
            vec![RawCamera::builtin(kind, self.model.as_deref())]
        } else {
            self.cameras
        };
        let mut cameras: Vec<CameraSpec> = Vec::new();
        for (j, camera) in raw_cameras.into_iter().enumerate() {
            let at = |key: &str| format!("{}.camera[{j}].{key}", at("").trim_end_matches('.'));
            if let Some(camera) = camera.validate(&at, problems) {
                let wrong_kind = match (&camera.source, kind) {
                    (CameraSourceSpec::Moonraker, Kind::Bambu) => Some("a Klipper printer's"),
                    (CameraSourceSpec::Bambu { .. }, Kind::Moonraker) => Some("a Bambu printer's"),
                    (CameraSourceSpec::Rtsp { url: None, .. }, Kind::Moonraker) => {
                        problems.push(format!(
                            "{}: an rtsp camera of a Klipper printer needs a url",
                            at("url")
                        ));
                        None
                    }
                    _ => None,
                };
                if let Some(whose) = wrong_kind {
                    problems.push(format!(
                        "{}: that source is {whose} own camera, not this {kind_name} printer's",
                        at("source")
                    ));
                }
                if cameras.iter().any(|c| c.id == camera.id) {
                    problems.push(format!("{}: {} is listed twice", at("id"), camera.id));
                }
                cameras.push(camera);
            }
        }
        if problems.len() > before {
            return None;
        }
        Some(PrinterConfig { id: id?, name: self.name, model: self.model, link: link?, cameras })
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
        AgentConfig::parse(&text)
    }

    pub fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string().trim().to_owned()]))?;
        raw.validate()
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<AgentConfig, ConfigError> {
        let mut problems = Vec::new();
        let capacity_mb = self.outbox.capacity_mb.unwrap_or(DEFAULT_CAPACITY_MB);
        if capacity_mb < 8 {
            problems.push(format!("outbox.capacity_mb = {capacity_mb}: must be at least 8"));
        }
        let cache_mb = self.files.cache_mb.unwrap_or(DEFAULT_FILE_CACHE_MB);
        if cache_mb < 64 {
            problems.push(format!("files.cache_mb = {cache_mb}: must be at least 64"));
        }
        let keep_alive = self.sync.keep_alive_s.unwrap_or(DEFAULT_KEEP_ALIVE_S);
        let idle = self.sync.idle_timeout_s.unwrap_or(DEFAULT_IDLE_TIMEOUT_S);
        if keep_alive == 0 || keep_alive >= idle {
            problems.push(format!(
                "sync.keep_alive_s = {keep_alive}: must be above 0 and below sync.idle_timeout_s ({idle})"
            ));
        }
        let telemetry = self.telemetry.interval_ms.unwrap_or(DEFAULT_TELEMETRY_INTERVAL_MS);
        if telemetry < 100 {
            problems.push(format!("telemetry.interval_ms = {telemetry}: must be at least 100"));
        }
        let mut printers: Vec<PrinterConfig> = Vec::new();
        for (i, printer) in self.printers.into_iter().enumerate() {
            let at = |key: &str| format!("printer[{i}].{key}");
            if let Some(printer) = printer.validate(&at, &mut problems) {
                if printers.iter().any(|p| p.id == printer.id) {
                    problems.push(format!("{}: {} is listed twice", at("id"), printer.id));
                }
                printers.push(printer);
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(AgentConfig {
            state_dir: self.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            capacity_bytes: capacity_mb << 20,
            snapshot_capacity_bytes: self
                .outbox
                .snapshot_capacity_mb
                .unwrap_or(DEFAULT_SNAPSHOT_CAPACITY_MB)
                << 20,
            file_cache_bytes: cache_mb << 20,
            keep_alive: Duration::from_secs(keep_alive),
            idle_timeout: Duration::from_secs(idle),
            telemetry_interval: Duration::from_millis(telemetry),
            health_interval: Duration::from_secs(
                self.telemetry.health_interval_s.unwrap_or(DEFAULT_HEALTH_INTERVAL_S).max(1),
            ),
            discovery_interval: (self.discovery.enabled != Some(false)).then(|| {
                Duration::from_secs(self.discovery.interval_min.unwrap_or(10).max(1) * 60)
            }),
            printers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_named() {
        let error = AgentConfig::parse("state_dir = \"/tmp\"\ncapacity = 3\n").unwrap_err();
        assert!(error.to_string().contains("unknown field `capacity`"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [outbox]
            capacity_mb = 2
            [sync]
            keep_alive_s = 90
            [[printer]]
            serial = ""
            host = "p1"
            access_code = ""
        "#;
        let error = AgentConfig::parse(text).unwrap_err();
        assert_eq!(error.0.len(), 4, "{error}");
        assert!(error.0[0].starts_with("outbox.capacity_mb"), "{error}");
        assert!(error.0[2].starts_with("printer[0].serial"), "{error}");
        assert!(error.0[3].starts_with("printer[0].access_code"), "{error}");
    }

    #[test]
    fn defaults_fill_an_almost_empty_file() {
        let config = AgentConfig::parse(
            "[[printer]]\nserial = \"01P00A391800001\"\nhost = \"10.0.0.5\"\naccess_code = \"12345678\"\n",
        )
        .unwrap();
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(config.capacity_bytes, 64 << 20);
        assert_eq!(config.keep_alive, Duration::from_secs(15));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert!(matches!(config.printers[0].link, PrinterLinkConfig::Bambu { port: 8883, .. }));
        let camera = &config.printers[0].cameras[0];
        assert_eq!(camera.id.as_str(), "chamber");
        assert_eq!(camera.source, CameraSourceSpec::Bambu { port: 6000 });
        assert_eq!(camera.policy.every, Some(Duration::from_secs(300)));
    }

    #[test]
    fn cameras_are_validated_and_an_x1_defaults_to_rtsps() {
        let x1 = AgentConfig::parse(
            "[[printer]]\nserial = \"00M09A350100001\"\nhost = \"10.0.0.6\"\naccess_code = \"12345678\"\nmodel = \"X1C\"\n",
        )
        .unwrap();
        assert!(matches!(
            x1.printers[0].cameras[0].source,
            CameraSourceSpec::Rtsp { url: None, .. }
        ));

        let text = r#"
            [[printer]]
            serial = "01P00A391800001"
            host = "10.0.0.5"
            access_code = "12345678"
            [[printer.camera]]
            id = "top"
            source = "mjpeg"
            url = "http://10.0.0.9:8080/?action=stream"
            snapshot_every_layers = 10
            [[printer.camera]]
            id = "top"
            source = "webcam"
            [[printer.camera]]
            source = "snapshot"
            [[printer.camera]]
            source = "usb"
            fps = 0
            live_max_fps = 100
        "#;
        let error = AgentConfig::parse(text).unwrap_err();
        let expected = [
            "printer[0].camera[1].source: \"webcam\": must be bambu, rtsp, mjpeg, snapshot, usb or moonraker",
            "printer[0].camera[2].url: a snapshot camera needs a url",
            "printer[0].camera[3].fps: 0: must be between 1 and 30",
            "printer[0].camera[3].live_max_fps: 100: must be between 0.05 and 30",
        ];
        assert_eq!(error.0, expected, "{error}");
    }

    #[test]
    fn a_klipper_printer_is_configured_by_its_moonraker() {
        let config = AgentConfig::parse(
            "[[printer]]\nkind = \"moonraker\"\nid = \"voron-1\"\nurl = \"http://10.0.0.7\"\napi_key = \"abc123\"\nmodel = \"Voron 2.4\"\n",
        )
        .unwrap();
        let printer = &config.printers[0];
        assert_eq!(printer.id.as_str(), "voron-1");
        assert_eq!(printer.vendor(), proto::Vendor::Moonraker);
        let PrinterLinkConfig::Moonraker { url, api_key, web_port } = &printer.link else {
            panic!("{printer:?}")
        };
        assert_eq!((url.host(), url.port(), *web_port), ("10.0.0.7", 7125, 80));
        assert_eq!(api_key.as_ref().map(ApiKey::expose), Some("abc123"));
        assert_eq!(printer.cameras[0].id.as_str(), "webcam");
        assert_eq!(printer.cameras[0].source, CameraSourceSpec::Moonraker);

        let text = r#"
            [[printer]]
            kind = "moonraker"
            serial = "01P00A391800001"
            url = "https://10.0.0.7"
            access_code = "12345678"
            [[printer]]
            serial = "01P00A391800001"
            host = "10.0.0.5"
            access_code = "12345678"
            api_key = "k"
            [[printer.camera]]
            source = "moonraker"
            [[printer]]
            kind = "octoprint"
        "#;
        let error = AgentConfig::parse(text).unwrap_err();
        let expected = [
            "printer[0].serial: not a setting of a moonraker printer",
            "printer[0].access_code: not a setting of a moonraker printer",
            "printer[0].id: a moonraker printer needs one",
            "printer[0].url: https://10.0.0.7: https/wss is not supported; give Moonraker's plain address, e.g. http://printer.local:7125",
            "printer[1].api_key: not a setting of a bambu printer",
            "printer[1].camera[0].source: that source is a Klipper printer's own camera, not this bambu printer's",
            "printer[2].kind: \"octoprint\": must be bambu or moonraker",
        ];
        assert_eq!(error.0, expected, "{error}");
    }
}
