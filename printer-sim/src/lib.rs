//! A simulated Bambu Lab printer that speaks the real LAN protocol over real sockets: the
//! independent reference kitt's edge agent is tested against (it shares no code with the
//! agent).
//!
//! What it models:
//! - **TLS** like a printer's: a chain of a version-1 leaf `CN=<serial>` issued by
//!   `CN=BBL CA, O=BBL Technologies Co., Ltd` ([`certs`]), which rustls/webpki refuse — a
//!   client needs the same custom verification it needs for a real printer. TLS 1.2 and 1.3.
//! - **MQTT 3.1.1** (the private `broker` module): `bblp` + access code or CONNACK 5; QoS 0
//!   reports on `device/<serial>/report` to every subscriber; requests on
//!   `device/<serial>/request` (QoS 0/1/2); several clients at once; P1/A1 drop a client that
//!   subscribes to the request topic.
//! - **The printer** ([`printer`]): `push_status` reports with the real field names and types
//!   (numbers as strings where firmware sends strings), full (`msg: 0`, X1) or delta
//!   (`msg: 1`, P1/A1; full after `pushing.pushall`); a job IDLE → PREPARE → RUNNING → FINISH
//!   with stages, heaters, layers, progress; ACKs echoing `sequence_id` for pause, resume,
//!   stop, print_speed, gcode_line, project_file, ledctrl; `info.get_version`.
//! - **Faults** ([`Fault`]): fail at a layer with HMS and `print_error`, filament runout,
//!   silence, refusing control (no Developer Mode); plus dropping every connection and
//!   rotating the certificate from the [`SimHandle`].
//! - **Replay** ([`Replay`]) of recorded reports instead of simulated ones.
//! - **The emit log** ([`emit`], `--emit-log`): every transition the printer went through and
//!   every request it received, as JSON lines, for checkers in other processes.
//! - **The A1/P1 camera** (the private `camera` module, "port 6000"): TLS with the same
//!   certificate, the 80-byte auth packet, then generated 1280×720 JPEG frames showing the
//!   printer's live state, each behind a 16-byte header; two streams at once (a third stalls);
//!   [`CameraFault`]s for a client's defences. Every model gets it, X1 included.
//!
//! - **Announcements** ([`announce`]): SSDP `NOTIFY`s on UDP 2021 like a real printer's
//!   (`SimConfig::announce`), and the Moonraker's mDNS service.
//!
//! What it does not model: RSA keys (the simulator uses ECDSA P-256), cloud mode, the X1's RTSPS camera (port 322), FTPS, signed commands, AMS commands and
//! filament changes, the new-protocol `device` block, MQTT connection limits, MQTT sessions
//! surviving a reconnect, retained messages and wills. Timing is compressed: one step per
//! layer.
//!
//! Use from tests: [`Simulator::start`] with a [`SimConfig`] (binds `127.0.0.1:0` by default;
//! set short intervals), connect to [`SimHandle::addr`] (the camera: [`SimHandle::camera_addr`])
//! trusting [`SimHandle::ca_der`], and wait on [`SimHandle::events`] rather than sleeping.

pub mod announce;
pub mod certs;
pub mod cli;
pub mod config;
pub mod emit;
pub mod events;
pub mod ftps;
pub mod moonraker;
pub mod printer;
pub mod replay;

mod broker;
mod camera;
mod sim;

pub use broker::USERNAME;
pub use certs::{CertError, LeafCert, PrinterCa};
pub use config::{
    AccessCode, CameraConfig, CameraFault, CameraSize, ConfigError, Fault, FaultKind, Hms, JobSpec,
    Model, PrinterSerial, ReportStyle, SimConfig,
};
pub use events::{PublishedKind, SimEvent, SimEvents, WaitError};
pub use replay::{Replay, ReplayError};
pub use sim::{SimError, SimHandle, Simulator};
