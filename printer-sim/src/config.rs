//! The simulator's configuration: who the printer is, how fast it runs, what goes wrong.
//!
//! Values are parsed once, at the boundary (`FromStr` on the newtypes), and trusted after.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::certs::{LeafCert, PrinterCa};
use crate::replay::Replay;

/// How long one simulated layer (or preparation stage) takes, by default.
pub const DEFAULT_LAYER_INTERVAL: Duration = Duration::from_secs(1);
/// How often the printer pushes a report, by default (real P1/A1: roughly every 1–2 s).
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Layers of a job started by a `print.project_file` request, by default.
pub const DEFAULT_JOB_LAYERS: u32 = 20;
/// Where the simulator listens by default: loopback, a port chosen by the OS.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
/// HMS `print_error` a user cancel reports once (`0300_400C`, "task canceled").
pub const PRINT_ERROR_CANCELLED: u32 = 0x0300_400C;
/// HMS a printer without Developer Mode raises on a refused command:
/// `0500_0500_0001_0007`, "MQTT command verification failed".
pub const HMS_COMMAND_VERIFICATION_FAILED: Hms = Hms { attr: 0x0500_0500, code: 0x0001_0007 };
/// `err_code` in the ACK of a command refused for want of a Bambu signature (`0x05024007`).
pub const ERR_CODE_VERIFICATION_FAILED: u32 = 84_033_543;
/// HMS the runout fault raises: `0700_2000_0002_0001`. By the HMS layout (doc §3.9): module
/// 0x07 (AMS), instance 0 (AMS A), part 0x20, severity 2 (serious), message 0x0001 — chosen
/// to read as "AMS A slot 1: filament ran out". A plausible code, not one verified on
/// hardware; an agent should rely on `gcode_state` PAUSE + `stg_cur` 6 and keep the code raw.
pub const HMS_FILAMENT_RUNOUT: Hms = Hms { attr: 0x0700_2000, code: 0x0002_0001 };
/// Time between camera frames, by default (a real P1/A1 sends one every 1–2 s).
pub const DEFAULT_CAMERA_INTERVAL: Duration = Duration::from_secs(1);
/// Camera frame size, by default: 1280×720, like a P1/A1 camera.
pub const DEFAULT_CAMERA_SIZE: CameraSize = CameraSize { width: 1280, height: 720 };
/// Camera streams served at once, by default: a P1S serves two; a third connects but stalls.
pub const DEFAULT_CAMERA_STREAMS: usize = 2;
/// The most camera streams the simulator can be told to serve at once.
pub const MAX_CAMERA_STREAMS: usize = 64;

/// Everything the simulator needs to start. Build with [`SimConfig::new`], then adjust fields.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The printer's serial: the leaf certificate's CN and the topic segment.
    pub serial: PrinterSerial,
    /// The LAN access code: the MQTT password.
    pub access_code: AccessCode,
    /// Which printer to pretend to be.
    pub model: Model,
    /// Full reports every interval (X1) or deltas (P1/A1). Defaults to the model's style.
    pub report_style: ReportStyle,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Duration of one layer, and of one preparation stage.
    pub layer_interval: Duration,
    /// Interval between periodic reports.
    pub report_interval: Duration,
    /// Layers of a job started by a `print.project_file` request (a real printer reads them
    /// from the file; the simulator has no file).
    pub job_layers: u32,
    /// A job to start as soon as the simulator runs.
    pub autostart_job: Option<JobSpec>,
    /// Start another job shortly after each one ends (named `<name> #<n>`).
    pub loop_jobs: bool,
    /// Faults armed from the start.
    pub faults: Vec<Fault>,
    /// Publish these recorded reports instead of the simulated printer's own.
    pub replay: Option<Replay>,
    /// The CA that issues the printer's certificate; a fresh one when `None`.
    pub ca: Option<PrinterCa>,
    /// The printer's certificate and key; a fresh one from `ca` when `None`. Pass the leaf of
    /// a previous run (`SimHandle::leaf`) to restart "the same printer" with the same key.
    /// It must be issued by `ca` for clients to verify it.
    pub leaf: Option<LeafCert>,
    /// The A1/P1 camera server ("port 6000"); `None`: no camera.
    pub camera: Option<CameraConfig>,
    /// What the AMS's trays hold (material, `RRGGBB`), in order; `None`: white, black PLA,
    /// red PETG, green PLA.
    pub trays: Option<Vec<(String, String)>>,
    /// The FTPS server files are uploaded to; `None`: none.
    pub ftps: Option<crate::ftps::FtpsConfig>,
    /// Where to write the emit log (see [`crate::emit`]); `None`: no log.
    pub emit_log: Option<PathBuf>,
    /// Announce the printer over SSDP (UDP 2021) this often, as a real one does about once a
    /// minute; `None`: silent (the default for tests; the binary announces).
    pub announce: Option<Duration>,
    /// The printer's name, in its announcements (default: the model's product name).
    pub name: Option<String>,
}

impl SimConfig {
    /// A configuration with the defaults: loopback on an OS-chosen port, the model's report
    /// style, 1 s layers and 1 s reports, no job, no faults, a fresh CA, a camera with
    /// [`CameraConfig::default`], and no emit log.
    pub fn new(serial: PrinterSerial, access_code: AccessCode, model: Model) -> Self {
        SimConfig {
            serial,
            access_code,
            report_style: model.default_report_style(),
            model,
            bind: DEFAULT_BIND,
            layer_interval: DEFAULT_LAYER_INTERVAL,
            report_interval: DEFAULT_REPORT_INTERVAL,
            job_layers: DEFAULT_JOB_LAYERS,
            autostart_job: None,
            loop_jobs: false,
            faults: Vec::new(),
            replay: None,
            ca: None,
            leaf: None,
            camera: Some(CameraConfig::default()),
            ftps: Some(crate::ftps::FtpsConfig::default()),
            trays: None,
            emit_log: None,
            announce: None,
            name: None,
        }
    }

    /// Sets both timings; tests use a few milliseconds so a job runs in well under a second.
    pub fn with_intervals(mut self, layer_interval: Duration, report_interval: Duration) -> Self {
        self.layer_interval = layer_interval;
        self.report_interval = report_interval;
        self
    }
}

/// The camera server: where it listens, what it sends, how many it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraConfig {
    /// Address to listen on; `None`: the IP address the MQTT broker listens on, with a port
    /// chosen by the OS.
    pub bind: Option<SocketAddr>,
    /// Time between frames.
    pub frame_interval: Duration,
    /// Width and height of the frames.
    pub size: CameraSize,
    /// Streams that get frames at once; further authenticated connections stall until one
    /// ends. At least 1, at most [`MAX_CAMERA_STREAMS`].
    pub max_streams: usize,
    /// A camera fault armed from the start (`SimHandle::set_camera_fault` changes it).
    pub fault: Option<CameraFault>,
}

impl Default for CameraConfig {
    /// The broker's IP address on an OS-chosen port, 1280×720 every second, 2 streams, no
    /// fault.
    fn default() -> Self {
        CameraConfig {
            bind: None,
            frame_interval: DEFAULT_CAMERA_INTERVAL,
            size: DEFAULT_CAMERA_SIZE,
            max_streams: DEFAULT_CAMERA_STREAMS,
            fault: None,
        }
    }
}

/// The size of camera frames: each side 16 to 4096 pixels. Written `WxH` (`1280x720`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CameraSize {
    width: u16,
    height: u16,
}

impl CameraSize {
    /// The smallest side.
    pub const MIN_SIDE: u16 = 16;
    /// The largest side.
    pub const MAX_SIDE: u16 = 4096;

    /// A size, if both sides are within [`Self::MIN_SIDE`]..=[`Self::MAX_SIDE`].
    pub fn new(width: u16, height: u16) -> Result<CameraSize, ConfigError> {
        let valid = |side| (Self::MIN_SIDE..=Self::MAX_SIDE).contains(&side);
        if valid(width) && valid(height) {
            Ok(CameraSize { width, height })
        } else {
            Err(ConfigError::CameraSize(format!("{width}x{height}")))
        }
    }

    /// Width in pixels.
    pub fn width(self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub fn height(self) -> u16 {
        self.height
    }
}

impl FromStr for CameraSize {
    type Err = ConfigError;

    /// Parses `WxH`, e.g. `1280x720`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ConfigError::CameraSize(s.to_owned());
        let (width, height) = s.split_once(['x', 'X']).ok_or_else(error)?;
        let width = width.parse().map_err(|_| error())?;
        let height = height.parse().map_err(|_| error())?;
        CameraSize::new(width, height).map_err(|_| error())
    }
}

impl fmt::Display for CameraSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// A scripted camera misbehaviour, for testing a client's defences. Each stream applies the
/// fault in force when its next frame is due (`Off` applies at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CameraFault {
    /// After auth, each frame is a plausible header (the size of a real frame, itrack 0,
    /// flags 1) followed by that many random bytes that are not a JPEG (never `FF D8`).
    Garbage,
    /// After auth, one header claiming the size of a real frame, then `FF D8` and filler
    /// bytes (never `FF D9`), a little at a time, forever: the frame never ends, and runs on
    /// past the size claimed. The stream stays so until the client closes it.
    EndlessJpeg,
    /// Each frame's header claims 2 GiB (`0x8000_0000`); a real frame follows.
    HugeHeader,
    /// The camera is disabled: open streams close, and new connections are accepted and
    /// closed at once, before TLS.
    Off,
}

impl FromStr for CameraFault {
    type Err = ConfigError;

    /// Parses `garbage`, `endless-jpeg`, `huge-header` or `off`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "garbage" => Ok(CameraFault::Garbage),
            "endless-jpeg" => Ok(CameraFault::EndlessJpeg),
            "huge-header" => Ok(CameraFault::HugeHeader),
            "off" => Ok(CameraFault::Off),
            other => Err(ConfigError::CameraFault(other.to_owned())),
        }
    }
}

/// A job to print: its name (`subtask_name`) and its number of layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Shown as `subtask_name`.
    pub name: String,
    /// `total_layer_num`; at least 1.
    pub layers: u32,
}

/// A scripted misbehaviour. Armed faults stay armed (and hit every job) until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// On reaching `layer`, the job fails: `gcode_state` FAILED, `hms` gets the entry and
    /// `print_error` the code, both until the next job starts.
    FailAtLayer {
        /// Layer (1-based) at which the job fails.
        layer: u32,
        /// The HMS entry that appears.
        hms: Hms,
        /// The `print_error` reported.
        print_error: u32,
    },
    /// On reaching `layer`, the job pauses for a filament runout: `gcode_state` PAUSE,
    /// `stg_cur` 6, [`HMS_FILAMENT_RUNOUT`] in `hms` until resumed. Once per job.
    RunoutAtLayer {
        /// Layer (1-based) at which the filament runs out.
        layer: u32,
    },
    /// Keep connections open but publish nothing and ignore every request; the simulated
    /// printer keeps printing. MQTT keep-alive (PINGREQ) is still answered.
    Silent,
    /// Behave like a printer without Developer Mode: every control command is ACKed
    /// `failed` with `err_code` 84033543 and raises [`HMS_COMMAND_VERIFICATION_FAILED`];
    /// `pushing.pushall` and `info.get_version` still work.
    RefuseControl,
}

impl Fault {
    /// Which kind of fault this is (to clear it later).
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::FailAtLayer { .. } => FaultKind::FailAtLayer,
            Fault::RunoutAtLayer { .. } => FaultKind::RunoutAtLayer,
            Fault::Silent => FaultKind::Silent,
            Fault::RefuseControl => FaultKind::RefuseControl,
        }
    }
}

/// The kinds of [`Fault`], for clearing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// [`Fault::FailAtLayer`].
    FailAtLayer,
    /// [`Fault::RunoutAtLayer`].
    RunoutAtLayer,
    /// [`Fault::Silent`].
    Silent,
    /// [`Fault::RefuseControl`].
    RefuseControl,
}

/// Whether periodic reports are full snapshots or deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportStyle {
    /// P1/A1: changed fields only (`msg: 1`); a full snapshot (`msg: 0`) after `pushall`.
    Delta,
    /// X1: a full snapshot (`msg: 0`) every interval.
    Full,
}

impl FromStr for ReportStyle {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delta" => Ok(ReportStyle::Delta),
            "full" => Ok(ReportStyle::Full),
            other => Err(ConfigError::ReportStyle(other.to_owned())),
        }
    }
}

/// The printer families whose behaviour differs in ways the simulator models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A1, A1 mini.
    A1,
    /// P1P, P1S.
    P1,
    /// X1, X1 Carbon, X1E.
    X1,
}

/// The printer models the simulator can be, by Bambu model code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// `N1`, A1 mini.
    A1Mini,
    /// `N2S`, A1.
    A1,
    /// `C11`, P1P.
    P1P,
    /// `C12`, P1S.
    P1S,
    /// `BL-P001`, X1 Carbon.
    X1C,
    /// `BL-P002`, X1.
    X1,
    /// `C13`, X1E.
    X1E,
}

impl Model {
    /// Every model, for help texts and tests.
    pub const ALL: [Model; 7] =
        [Model::A1Mini, Model::A1, Model::P1P, Model::P1S, Model::X1C, Model::X1, Model::X1E];

    /// The Bambu model code (`DevModel.bambu.com`, Bambu Studio's printer id).
    pub fn code(self) -> &'static str {
        match self {
            Model::A1Mini => "N1",
            Model::A1 => "N2S",
            Model::P1P => "C11",
            Model::P1S => "C12",
            Model::X1C => "BL-P001",
            Model::X1 => "BL-P002",
            Model::X1E => "C13",
        }
    }

    /// The marketing name, as `product_name` of the `ota` module says it.
    pub fn product_name(self) -> &'static str {
        match self {
            Model::A1Mini => "Bambu Lab A1 mini",
            Model::A1 => "Bambu Lab A1",
            Model::P1P => "Bambu Lab P1P",
            Model::P1S => "Bambu Lab P1S",
            Model::X1C => "Bambu Lab X1 Carbon",
            Model::X1 => "Bambu Lab X1",
            Model::X1E => "Bambu Lab X1E",
        }
    }

    /// The family, which decides report style, idle stage and broker quirks.
    pub fn family(self) -> Family {
        match self {
            Model::A1Mini | Model::A1 => Family::A1,
            Model::P1P | Model::P1S => Family::P1,
            Model::X1C | Model::X1 | Model::X1E => Family::X1,
        }
    }

    /// X1 pushes full reports; P1 and A1 push deltas.
    pub fn default_report_style(self) -> ReportStyle {
        match self.family() {
            Family::X1 => ReportStyle::Full,
            Family::A1 | Family::P1 => ReportStyle::Delta,
        }
    }
}

impl FromStr for Model {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Model::ALL
            .into_iter()
            .find(|model| model.code().eq_ignore_ascii_case(s))
            .ok_or_else(|| ConfigError::Model(s.to_owned()))
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A printer serial: 1–32 ASCII letters and digits (it becomes a topic segment and a CN).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrinterSerial(String);

impl PrinterSerial {
    /// The serial as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PrinterSerial {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if valid { Ok(PrinterSerial(s.to_owned())) } else { Err(ConfigError::Serial(s.to_owned())) }
    }
}

impl fmt::Display for PrinterSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A LAN access code: exactly 8 ASCII letters or digits.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessCode(String);

impl AccessCode {
    /// The code as text (the MQTT password).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccessCode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 8 && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(AccessCode(s.to_owned()))
        } else {
            Err(ConfigError::AccessCode)
        }
    }
}

impl fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessCode(..)")
    }
}

/// One HMS entry, `{attr, code}` on the wire, `AAAA_BBBB_CCCC_DDDD` for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hms {
    /// Module, instance and part (`AAAA_BBBB`).
    pub attr: u32,
    /// Severity and message (`CCCC_DDDD`).
    pub code: u32,
}

impl FromStr for Hms {
    type Err = ConfigError;

    /// Parses `AAAA_BBBB_CCCC_DDDD` (16 hex digits; underscores optional).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.chars().filter(|c| *c != '_').collect();
        let error = || ConfigError::Hms(s.to_owned());
        if digits.len() != 16 {
            return Err(error());
        }
        let attr = digits.get(..8).ok_or_else(error)?;
        let code = digits.get(8..).ok_or_else(error)?;
        Ok(Hms {
            attr: u32::from_str_radix(attr, 16).map_err(|_| error())?,
            code: u32::from_str_radix(code, 16).map_err(|_| error())?,
        })
    }
}

impl fmt::Display for Hms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04X}_{:04X}_{:04X}_{:04X}",
            self.attr >> 16,
            self.attr & 0xFFFF,
            self.code >> 16,
            self.code & 0xFFFF
        )
    }
}

/// Parses a `print_error` written as `XXXX_XXXX` or `0xXXXXXXXX` (hex; underscores optional).
pub fn parse_print_error(s: &str) -> Result<u32, ConfigError> {
    let digits: String = s.trim_start_matches("0x").chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || digits.len() > 8 {
        return Err(ConfigError::PrintError(s.to_owned()));
    }
    u32::from_str_radix(&digits, 16).map_err(|_| ConfigError::PrintError(s.to_owned()))
}

/// A configuration value that does not parse or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The serial is not 1–32 ASCII letters and digits.
    #[error("invalid serial {0:?}: expected 1-32 ASCII letters and digits")]
    Serial(String),
    /// The access code is not 8 ASCII letters and digits.
    #[error("invalid access code: expected exactly 8 ASCII letters and digits")]
    AccessCode,
    /// Not a model code the simulator knows.
    #[error("unknown model code {0:?}: expected one of N1, N2S, C11, C12, BL-P001, BL-P002, C13")]
    Model(String),
    /// Not `delta` or `full`.
    #[error("invalid report style {0:?}: expected delta or full")]
    ReportStyle(String),
    /// Not an HMS code of 16 hex digits.
    #[error("invalid HMS code {0:?}: expected AAAA_BBBB_CCCC_DDDD (hex)")]
    Hms(String),
    /// Not a `print_error` of up to 8 hex digits.
    #[error("invalid print_error {0:?}: expected XXXX_XXXX (hex)")]
    PrintError(String),
    /// Not a camera size `WxH` with each side 16-4096.
    #[error("invalid camera size {0:?}: expected WxH, each side 16-4096")]
    CameraSize(String),
    /// Not a camera fault the simulator knows.
    #[error("unknown camera fault {0:?}: expected garbage, endless-jpeg, huge-header or off")]
    CameraFault(String),
    /// More camera streams than the simulator serves.
    #[error("camera stream limit {0} is too large: at most {max}", max = MAX_CAMERA_STREAMS)]
    CameraStreams(usize),
    /// A duration or count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hms_round_trips_through_its_display_form() {
        let hms: Hms = "0500_0500_0001_0007".parse().unwrap();
        assert_eq!(hms, HMS_COMMAND_VERIFICATION_FAILED);
        assert_eq!(hms.to_string(), "0500_0500_0001_0007");
        assert!("0500_0500_0001".parse::<Hms>().is_err());
        assert!("0500_0500_0001_00G7".parse::<Hms>().is_err());
    }

    #[test]
    fn print_error_parses_hex_with_or_without_underscores() {
        assert_eq!(parse_print_error("0300_400C").unwrap(), PRINT_ERROR_CANCELLED);
        assert_eq!(parse_print_error("0x0300400C").unwrap(), 50_348_044);
        assert!(parse_print_error("").is_err());
        assert!(parse_print_error("1_0000_0000").is_err());
    }

    #[test]
    fn models_parse_from_their_codes() {
        for model in Model::ALL {
            assert_eq!(model.code().parse::<Model>().unwrap(), model);
        }
        assert!("BL-A001".parse::<Model>().is_err());
    }

    #[test]
    fn camera_sizes_and_faults_parse() {
        let size: CameraSize = "640x360".parse().unwrap();
        assert_eq!((size.width(), size.height()), (640, 360));
        assert_eq!(size.to_string(), "640x360");
        assert_eq!(DEFAULT_CAMERA_SIZE.to_string(), "1280x720");
        for bad in ["640", "640x", "x360", "0x360", "8x8", "5000x360", "640x360x2", "-1x5"] {
            assert!(bad.parse::<CameraSize>().is_err(), "{bad}");
        }
        assert_eq!("endless-jpeg".parse::<CameraFault>().unwrap(), CameraFault::EndlessJpeg);
        assert!("endless".parse::<CameraFault>().is_err());
    }

    #[test]
    fn serial_and_access_code_are_validated() {
        assert!("01P00A000000001".parse::<PrinterSerial>().is_ok());
        assert!("device/+".parse::<PrinterSerial>().is_err());
        assert!("".parse::<PrinterSerial>().is_err());
        assert!("12345678".parse::<AccessCode>().is_ok());
        assert!("1234567".parse::<AccessCode>().is_err());
    }
}
