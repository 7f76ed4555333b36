//! A simulated Klipper behind Moonraker, sans-IO: the printer objects Moonraker serves, a
//! job engine (heating, then one layer per step), Klippy's lifecycle, the job history and
//! the G-code files. The server (`server.rs`) steps it on a clock, asks it for the status
//! and passes requests in; nothing here touches a socket or a clock.
//!
//! Behaviour follows a real Klipper with a real Moonraker (`docs/printer-protocols.md` §6):
//! - `print_stats.state` is `standby`, `printing`, `paused`, `complete`, `cancelled` or
//!   `error`; a Klippy shutdown mid-print leaves it at `paused` and the history job ends
//!   `klippy_shutdown`; faults are read from `webhooks.state`/`state_message`.
//! - `print_stats.info.current_layer`/`total_layer` stay null unless the G-code sets them
//!   (`SET_PRINT_STATS_INFO`); [`KlipperSettings::layer_info`] chooses.
//! - After a firmware restart the temperatures read 0.0 until the first sensor report.
//! - A runout on a `filament_switch_sensor` with `pause_on_runout` pauses the print
//!   (`pause_resume.is_paused`); a resume with no filament is refused.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Klipper's version, as `printer.info` gives it.
pub const KLIPPER_VERSION: &str = "v0.12.0-396-g8a4f3b1b";
/// Moonraker's version, as `server.info` gives it.
pub const MOONRAKER_VERSION: &str = "v0.9.3-12-g5c0a5a3";
/// The filament sensor's object name.
pub const RUNOUT_SENSOR: &str = "filament_switch_sensor runout";
/// Klipper's words on a thermal runaway (its `verify_heater` check).
pub const THERMAL_RUNAWAY: &str = "Heater extruder not heating at expected rate\nSee the 'verify_heater' section in docs/Config_Reference.md\nfor the parameters that control this check.\nOnce the underlying issue is corrected, use the\n\"FIRMWARE_RESTART\" command to reset the firmware, reload the\nconfig, and restart the host software.\nPrinter is shutdown";
/// Klipper's words on a lost MCU, the common mid-print shutdown.
pub const MCU_LOST: &str = "Lost communication with MCU 'mcu'\nOnce the underlying issue is corrected, use the\n\"FIRMWARE_RESTART\" command to reset the firmware, reload the\nconfig, and restart the host software.\nPrinter is shutdown";
/// What `print_stats.message` says when a job fails (`--fail-at-layer`).
pub const MOVE_OUT_OF_RANGE: &str = "Move out of range: 250.000 -10.000 0.600 [1234.567]";

const NOZZLE_TARGET: f64 = 215.0;
const BED_TARGET: f64 = 60.0;
const AMBIENT: f64 = 24.0;
/// Steps of heating before the first layer.
const HEATING_STEPS: u32 = 2;
/// Steps Klippy takes to come back after a firmware restart.
const STARTUP_STEPS: u32 = 2;
/// The largest G-code file accepted.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// A fault the printer runs into, every job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KlipperFault {
    /// Klippy shuts down at this layer: lost communication with the MCU.
    ShutdownAtLayer(u32),
    /// The extruder heater runs away at this layer: Klippy shuts down with verify_heater's
    /// message.
    ThermalRunawayAtLayer(u32),
    /// The runout sensor loses filament at this layer: the print pauses.
    RunoutAtLayer(u32),
    /// The print fails at this layer (`print_stats.state = error`, Klippy stays ready).
    FailAtLayer(u32),
}

#[derive(Debug, Clone)]
pub struct KlipperSettings {
    /// Layers of each job (a file's own count when it was uploaded with one).
    pub layers: u32,
    /// Seconds one step stands for (print duration, remaining time).
    pub step_seconds: f64,
    /// The G-code calls `SET_PRINT_STATS_INFO` (layers are known).
    pub layer_info: bool,
    /// Start the same file again a few steps after each job ends.
    pub loop_jobs: bool,
    pub faults: Vec<KlipperFault>,
}

impl Default for KlipperSettings {
    fn default() -> KlipperSettings {
        KlipperSettings {
            layers: 20,
            step_seconds: 1.0,
            layer_info: true,
            loop_jobs: false,
            faults: Vec::new(),
        }
    }
}

/// Klippy's state as Moonraker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Klippy {
    /// Moonraker has no connection to Klippy (during a restart).
    Disconnected {
        steps_left: u32,
    },
    Startup {
        steps_left: u32,
    },
    Ready,
    Shutdown {
        message: String,
    },
}

impl Klippy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Klippy::Disconnected { .. } => "disconnected",
            Klippy::Startup { .. } => "startup",
            Klippy::Ready => "ready",
            Klippy::Shutdown { .. } => "shutdown",
        }
    }
}

/// `print_stats.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Standby,
    Printing,
    Paused,
    Complete,
    Cancelled,
    Error,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Standby => "standby",
            JobState::Printing => "printing",
            JobState::Paused => "paused",
            JobState::Complete => "complete",
            JobState::Cancelled => "cancelled",
            JobState::Error => "error",
        }
    }

    fn is_active(self) -> bool {
        matches!(self, JobState::Printing | JobState::Paused)
    }
}

/// What Moonraker notifies every connection of, besides status updates.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// `notify_history_changed` with `action` and the job.
    History {
        action: &'static str,
        job: Value,
    },
    KlippyReady,
    KlippyShutdown,
    KlippyDisconnected,
}

impl Notice {
    /// The JSON-RPC notification.
    pub fn to_json(&self) -> Value {
        match self {
            Notice::History { action, job } => json!({ "jsonrpc": "2.0",
                "method": "notify_history_changed", "params": [{ "action": action, "job": job }] }),
            Notice::KlippyReady => json!({ "jsonrpc": "2.0", "method": "notify_klippy_ready" }),
            Notice::KlippyShutdown => {
                json!({ "jsonrpc": "2.0", "method": "notify_klippy_shutdown" })
            }
            Notice::KlippyDisconnected => {
                json!({ "jsonrpc": "2.0", "method": "notify_klippy_disconnected" })
            }
        }
    }
}

/// A refused request, as Moonraker words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into() }
    }

    fn not_ready(klippy: &Klippy) -> RpcError {
        match klippy {
            Klippy::Disconnected { .. } => RpcError::new(503, "Klippy Disconnected"),
            Klippy::Startup { .. } => RpcError::new(503, "Klippy host not ready"),
            Klippy::Shutdown { .. } => RpcError::new(503, "Klippy is shutdown"),
            Klippy::Ready => RpcError::new(500, "internal error"),
        }
    }
}

#[derive(Debug, Clone)]
struct Job {
    id: String,
    filename: String,
    start_time: f64,
    end_time: Option<f64>,
    status: &'static str,
    print_duration: f64,
    total_layers: u32,
}

impl Job {
    fn to_json(&self) -> Value {
        json!({
            "job_id": self.id,
            "exists": true,
            "end_time": self.end_time,
            "filament_used": self.print_duration * 12.5,
            "filename": self.filename,
            "metadata": { "size": 1_048_576, "layer_count": self.total_layers,
                          "estimated_time": f64::from(self.total_layers) * 60.0,
                          "slicer": "PrusaSlicer", "filament_type": "PLA" },
            "print_duration": self.print_duration,
            "status": self.status,
            "start_time": self.start_time,
            "total_duration": self.print_duration,
        })
    }
}

/// The simulated Klipper.
#[derive(Debug)]
pub struct Klipper {
    settings: KlipperSettings,
    pub klippy: Klippy,
    pub state: JobState,
    filename: String,
    layer: u32,
    total_layers: u32,
    heating_left: u32,
    nozzle: f64,
    nozzle_target: f64,
    bed: f64,
    bed_target: f64,
    fan: f64,
    speed_factor: f64,
    filament_detected: bool,
    message: String,
    print_duration: f64,
    /// Seconds since "boot", the `eventtime` of updates.
    pub eventtime: f64,
    /// Temperatures read 0.0 until the first sensor report after a restart.
    sensors_read: bool,
    files: BTreeMap<String, u32>,
    history: Vec<Job>,
    next_job: u32,
    steps_until_loop: Option<u32>,
    excluded: Vec<String>,
}

impl Klipper {
    pub fn new(settings: KlipperSettings) -> Klipper {
        let mut files = BTreeMap::new();
        files.insert("benchy.gcode".to_owned(), settings.layers);
        Klipper {
            settings,
            klippy: Klippy::Ready,
            state: JobState::Standby,
            filename: String::new(),
            layer: 0,
            total_layers: 0,
            heating_left: 0,
            nozzle: AMBIENT,
            nozzle_target: 0.0,
            bed: AMBIENT,
            bed_target: 0.0,
            fan: 0.0,
            speed_factor: 1.0,
            filament_detected: true,
            message: String::new(),
            print_duration: 0.0,
            eventtime: 1000.0,
            sensors_read: true,
            files,
            history: Vec::new(),
            next_job: 1,
            steps_until_loop: None,
            excluded: Vec::new(),
        }
    }

    /// The objects `printer.objects.list` names.
    pub fn object_names(&self) -> Vec<&'static str> {
        vec![
            "webhooks",
            "configfile",
            "mcu",
            "gcode_move",
            "print_stats",
            "virtual_sdcard",
            "pause_resume",
            "display_status",
            "idle_timeout",
            "toolhead",
            "extruder",
            "heater_bed",
            "fan",
            "heaters",
            "exclude_object",
            RUNOUT_SENSOR,
            "gcode_macro PAUSE",
            "gcode_macro RESUME",
            "gcode_macro CANCEL_PRINT",
        ]
    }

    pub fn layer(&self) -> u32 {
        self.layer
    }

    pub fn total_layers(&self) -> u32 {
        self.total_layers
    }

    pub fn filename(&self) -> &str {
        &self.filename
    }

    pub fn percent(&self) -> u32 {
        (self.layer * 100).checked_div(self.total_layers).unwrap_or(0)
    }

    fn progress(&self) -> f64 {
        match self.state {
            JobState::Complete => 1.0,
            _ if self.total_layers == 0 => 0.0,
            _ => f64::from(self.layer) / f64::from(self.total_layers),
        }
    }

    fn temperature(&self, value: f64) -> f64 {
        if self.sensors_read { (value * 100.0).round() / 100.0 } else { 0.0 }
    }

    /// Every object's whole status, as `printer.objects.query` with `null` field lists.
    pub fn status(&self) -> Map<String, Value> {
        let (state, state_message) = match &self.klippy {
            Klippy::Ready => ("ready", "Printer is ready".to_owned()),
            Klippy::Startup { .. } => (
                "startup",
                "Printer is not ready\nThe klippy host software is attempting to connect."
                    .to_owned(),
            ),
            Klippy::Disconnected { .. } => ("disconnected", "Klippy Disconnected".to_owned()),
            Klippy::Shutdown { message } => ("shutdown", message.clone()),
        };
        let layer_info = if self.settings.layer_info && self.total_layers > 0 {
            json!({ "total_layer": self.total_layers, "current_layer": self.layer })
        } else {
            json!({ "total_layer": null, "current_layer": null })
        };
        let printing = self.state == JobState::Printing;
        let objects: Vec<Value> = if self.state.is_active() {
            ["part_1", "part_2"]
                .iter()
                .map(|name| json!({ "name": name, "center": [100.0, 100.0] }))
                .collect()
        } else {
            Vec::new()
        };
        let mut status = Map::new();
        let mut put = |name: &str, value: Value| {
            status.insert(name.to_owned(), value);
        };
        put("webhooks", json!({ "state": state, "state_message": state_message }));
        put(
            "print_stats",
            json!({
                "filename": self.filename,
                "total_duration": self.print_duration,
                "print_duration": self.print_duration,
                "filament_used": self.print_duration * 12.5,
                "state": self.state.as_str(),
                "message": self.message,
                "info": layer_info,
            }),
        );
        put(
            "virtual_sdcard",
            json!({
                "file_path": if self.filename.is_empty() { Value::Null } else { json!(format!("/home/pi/printer_data/gcodes/{}", self.filename)) },
                "progress": self.progress(),
                "is_active": printing,
                "file_position": (self.progress() * 1_048_576.0) as u64,
                "file_size": if self.filename.is_empty() { 0 } else { 1_048_576 },
            }),
        );
        put("display_status", json!({ "progress": self.progress(), "message": Value::Null }));
        put("pause_resume", json!({ "is_paused": self.state == JobState::Paused }));
        put(
            "idle_timeout",
            json!({
                "state": if printing { "Printing" } else if self.state.is_active() { "Ready" } else { "Idle" },
                "printing_time": if printing { self.print_duration } else { 0.0 },
            }),
        );
        put(
            "extruder",
            json!({
                "temperature": self.temperature(self.nozzle),
                "target": self.nozzle_target,
                "power": if self.nozzle_target > 0.0 { 0.42 } else { 0.0 },
                "can_extrude": self.nozzle > 170.0,
                "pressure_advance": 0.04,
                "smooth_time": 0.04,
            }),
        );
        put(
            "heater_bed",
            json!({
                "temperature": self.temperature(self.bed),
                "target": self.bed_target,
                "power": if self.bed_target > 0.0 { 0.3 } else { 0.0 },
            }),
        );
        put("fan", json!({ "speed": self.fan, "rpm": Value::Null }));
        put(
            "heaters",
            json!({ "available_heaters": ["heater_bed", "extruder"],
            "available_sensors": ["heater_bed", "extruder"] }),
        );
        put(
            "toolhead",
            json!({
                "homed_axes": if self.state.is_active() { "xyz" } else { "" },
                "position": [100.0, 100.0, f64::from(self.layer) * 0.2, 0.0],
                "print_time": self.print_duration,
                "estimated_print_time": self.print_duration,
                "max_velocity": 500.0,
                "max_accel": 10000.0,
                "extruder": "extruder",
            }),
        );
        put(
            "gcode_move",
            json!({ "speed_factor": self.speed_factor, "extrude_factor": 1.0,
            "absolute_coordinates": true, "speed": 6000.0 }),
        );
        put(RUNOUT_SENSOR, json!({ "filament_detected": self.filament_detected, "enabled": true }));
        put(
            "exclude_object",
            json!({ "objects": objects, "excluded_objects": self.excluded,
            "current_object": if printing { json!("part_1") } else { Value::Null } }),
        );
        put(
            "mcu",
            json!({ "mcu_version": "v0.12.0-396", "mcu_build_versions": "gcc: (15:12.2.rel1-1) 12.2.1" }),
        );
        put("configfile", json!({ "save_config_pending": false }));
        for name in ["gcode_macro PAUSE", "gcode_macro RESUME", "gcode_macro CANCEL_PRINT"] {
            put(name, json!({}));
        }
        status
    }

    /// One step of the clock: heaters move, a job heats or prints one layer, faults fire,
    /// Klippy comes back from a restart.
    pub fn step(&mut self) -> Vec<Notice> {
        let mut notices = Vec::new();
        self.eventtime += self.settings.step_seconds;
        self.sensors_read = true;
        match &mut self.klippy {
            Klippy::Disconnected { steps_left } => {
                *steps_left = steps_left.saturating_sub(1);
                if *steps_left == 0 {
                    self.klippy = Klippy::Startup { steps_left: STARTUP_STEPS };
                    // Temperatures are unknown until the first report after a restart.
                    self.sensors_read = false;
                }
                return notices;
            }
            Klippy::Startup { steps_left } => {
                *steps_left = steps_left.saturating_sub(1);
                if *steps_left == 0 {
                    self.klippy = Klippy::Ready;
                    self.sensors_read = false;
                    notices.push(Notice::KlippyReady);
                }
                return notices;
            }
            Klippy::Shutdown { .. } => {
                self.cool();
                return notices;
            }
            Klippy::Ready => {}
        }
        match self.state {
            JobState::Printing if self.heating_left > 0 => {
                self.heating_left -= 1;
                self.nozzle = if self.heating_left == 0 { self.nozzle_target } else { 150.0 };
                self.bed = self.bed_target;
            }
            JobState::Printing => {
                self.layer += 1;
                self.print_duration += self.settings.step_seconds;
                self.fan = 1.0;
                self.nozzle =
                    self.nozzle_target + if self.layer.is_multiple_of(2) { 0.3 } else { -0.2 };
                self.bed = self.bed_target;
                if let Some(notice) = self.fault_at(self.layer) {
                    notices.extend(notice);
                } else if self.layer >= self.total_layers {
                    notices.extend(self.end_job(JobState::Complete, "completed"));
                }
            }
            JobState::Paused => self.nozzle = (self.nozzle - 5.0).max(self.nozzle_target),
            _ => {
                self.cool();
                if let Some(steps) = &mut self.steps_until_loop {
                    *steps = steps.saturating_sub(1);
                    if *steps == 0 {
                        self.steps_until_loop = None;
                        let file = self.filename.clone();
                        if let Ok(started) = self.start(&file) {
                            notices.extend(started);
                        }
                    }
                }
            }
        }
        notices
    }

    fn cool(&mut self) {
        self.nozzle_target = 0.0;
        self.bed_target = 0.0;
        self.fan = 0.0;
        self.nozzle = (self.nozzle - 20.0).max(AMBIENT);
        self.bed = (self.bed - 5.0).max(AMBIENT);
    }

    fn fault_at(&mut self, layer: u32) -> Option<Vec<Notice>> {
        let fault = self.settings.faults.iter().copied().find(|fault| match fault {
            KlipperFault::ShutdownAtLayer(l)
            | KlipperFault::ThermalRunawayAtLayer(l)
            | KlipperFault::RunoutAtLayer(l)
            | KlipperFault::FailAtLayer(l) => *l == layer,
        })?;
        Some(match fault {
            KlipperFault::ShutdownAtLayer(_) => self.shutdown(MCU_LOST),
            KlipperFault::ThermalRunawayAtLayer(_) => {
                self.nozzle = 142.7;
                self.shutdown(THERMAL_RUNAWAY)
            }
            KlipperFault::RunoutAtLayer(_) => {
                self.filament_detected = false;
                self.state = JobState::Paused;
                Vec::new()
            }
            KlipperFault::FailAtLayer(_) => {
                self.message = MOVE_OUT_OF_RANGE.to_owned();
                self.end_job(JobState::Error, "error")
            }
        })
    }

    /// Klippy shuts down: heaters off, the print left `paused`, the job ends
    /// `klippy_shutdown`.
    fn shutdown(&mut self, message: &str) -> Vec<Notice> {
        self.klippy = Klippy::Shutdown { message: message.to_owned() };
        self.nozzle_target = 0.0;
        self.bed_target = 0.0;
        self.fan = 0.0;
        let mut notices = vec![Notice::KlippyShutdown];
        if self.state.is_active() {
            self.state = JobState::Paused;
            notices.extend(self.finish_history("klippy_shutdown"));
        }
        notices
    }

    fn end_job(&mut self, state: JobState, status: &'static str) -> Vec<Notice> {
        self.state = state;
        self.nozzle_target = 0.0;
        self.bed_target = 0.0;
        self.fan = 0.0;
        if self.settings.loop_jobs && state == JobState::Complete {
            self.steps_until_loop = Some(3);
        }
        self.finish_history(status)
    }

    fn finish_history(&mut self, status: &'static str) -> Vec<Notice> {
        let end = self.eventtime;
        let duration = self.print_duration;
        match self.history.last_mut() {
            Some(job) if job.end_time.is_none() => {
                job.end_time = Some(end);
                job.status = status;
                job.print_duration = duration;
                vec![Notice::History { action: "finished", job: job.to_json() }]
            }
            _ => Vec::new(),
        }
    }

    fn ready(&self) -> Result<(), RpcError> {
        match self.klippy {
            Klippy::Ready => Ok(()),
            _ => Err(RpcError::not_ready(&self.klippy)),
        }
    }

    /// Whether Klippy answers object queries (ready or shut down).
    pub fn objects_available(&self) -> Result<(), RpcError> {
        match self.klippy {
            Klippy::Ready | Klippy::Shutdown { .. } => Ok(()),
            _ => Err(RpcError::not_ready(&self.klippy)),
        }
    }

    /// `printer.print.start`.
    pub fn start(&mut self, filename: &str) -> Result<Vec<Notice>, RpcError> {
        self.ready()?;
        if self.state.is_active() {
            return Err(RpcError::new(400, "Printer is busy"));
        }
        let filename = filename.trim_start_matches('/');
        let Some(&layers) = self.files.get(filename) else {
            return Err(RpcError::new(400, format!("File {filename} does not exist")));
        };
        self.filename = filename.to_owned();
        self.state = JobState::Printing;
        self.layer = 0;
        self.total_layers = layers.max(1);
        self.heating_left = HEATING_STEPS;
        self.nozzle_target = NOZZLE_TARGET;
        self.bed_target = BED_TARGET;
        self.message.clear();
        self.print_duration = 0.0;
        self.excluded.clear();
        self.filament_detected = true;
        let job = Job {
            id: format!("{:06X}", self.next_job),
            filename: self.filename.clone(),
            start_time: self.eventtime,
            end_time: None,
            status: "in_progress",
            print_duration: 0.0,
            total_layers: self.total_layers,
        };
        self.next_job += 1;
        let notice = Notice::History { action: "added", job: job.to_json() };
        self.history.push(job);
        Ok(vec![notice])
    }

    /// `printer.print.pause` (the `PAUSE` macro).
    pub fn pause(&mut self) -> Result<Vec<Notice>, RpcError> {
        self.ready()?;
        match self.state {
            JobState::Printing => {
                self.state = JobState::Paused;
                Ok(Vec::new())
            }
            JobState::Paused => Err(RpcError::new(400, "Print already paused")),
            _ => Err(RpcError::new(400, "No active print to pause")),
        }
    }

    /// `printer.print.resume` (the `RESUME` macro); refused while the runout sensor reads
    /// no filament. Resuming after a runout means the filament was loaded again.
    pub fn resume(&mut self) -> Result<Vec<Notice>, RpcError> {
        self.ready()?;
        match self.state {
            JobState::Paused => {
                // The person loads filament and resumes: the sensor reads it again.
                self.filament_detected = true;
                self.state = JobState::Printing;
                Ok(Vec::new())
            }
            _ => Err(RpcError::new(400, "Print is not paused, resume aborted")),
        }
    }

    /// `printer.print.cancel` (the `CANCEL_PRINT` macro).
    pub fn cancel(&mut self) -> Result<Vec<Notice>, RpcError> {
        self.ready()?;
        if !self.state.is_active() {
            return Err(RpcError::new(400, "No active print to cancel"));
        }
        Ok(self.end_job(JobState::Cancelled, "cancelled"))
    }

    /// `printer.emergency_stop` (`M112`).
    pub fn emergency_stop(&mut self) -> Vec<Notice> {
        self.shutdown("Shutdown due to M112 command\nOnce the underlying issue is corrected, use the\n\"FIRMWARE_RESTART\" command to reset the firmware, reload the\nconfig, and restart the host software.\nPrinter is shutdown")
    }

    /// `printer.firmware_restart`: Klippy disconnects, starts up, and is ready again a few
    /// steps later; a print in progress ends.
    pub fn firmware_restart(&mut self) -> Vec<Notice> {
        let mut notices = Vec::new();
        if self.state.is_active() {
            self.state = JobState::Standby;
            notices.extend(self.finish_history("klippy_disconnect"));
        }
        if matches!(self.state, JobState::Paused) || matches!(self.klippy, Klippy::Shutdown { .. })
        {
            self.state = JobState::Standby;
        }
        self.message.clear();
        self.filament_detected = true;
        self.klippy = Klippy::Disconnected { steps_left: 1 };
        self.nozzle_target = 0.0;
        self.bed_target = 0.0;
        notices.push(Notice::KlippyDisconnected);
        notices
    }

    /// `printer.gcode.script`: the commands a farm sends.
    pub fn gcode(&mut self, script: &str) -> Result<Vec<Notice>, RpcError> {
        let mut notices = Vec::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let upper = line.to_ascii_uppercase();
            let word = upper.split_whitespace().next().unwrap_or("");
            if word == "M112" {
                notices.extend(self.emergency_stop());
                continue;
            }
            if word == "FIRMWARE_RESTART" {
                notices.extend(self.firmware_restart());
                continue;
            }
            self.ready()?;
            match word {
                "PAUSE" => notices.extend(self.pause()?),
                "RESUME" => notices.extend(self.resume()?),
                "CANCEL_PRINT" => notices.extend(self.cancel()?),
                "M220" => {
                    let percent = number(&upper, 'S')
                        .ok_or_else(|| RpcError::new(400, format!("Error on '{line}'")))?;
                    self.speed_factor = percent / 100.0;
                }
                "M104" | "M109" => self.nozzle_target = number(&upper, 'S').unwrap_or(0.0),
                "M140" | "M190" => self.bed_target = number(&upper, 'S').unwrap_or(0.0),
                "M106" => self.fan = (number(&upper, 'S').unwrap_or(255.0) / 255.0).min(1.0),
                "M107" => self.fan = 0.0,
                "EXCLUDE_OBJECT" => {
                    if let Some(name) = upper.split("NAME=").nth(1) {
                        self.excluded.push(name.trim().to_ascii_lowercase());
                    }
                }
                "G28" | "G0" | "G1" | "G90" | "G91" | "M83" | "M84" | "SET_PIN" | "M117" => {}
                _ => return Err(RpcError::new(400, format!("Unknown command:\"{word}\""))),
            }
        }
        Ok(notices)
    }

    /// Stores an uploaded file (`POST /server/files/upload`); its layers are the
    /// simulator's default.
    pub fn add_file(&mut self, path: &str) -> Result<String, RpcError> {
        let path = path.trim_start_matches('/');
        let hostile = path.is_empty()
            || path.len() > 255
            || path.split('/').any(|part| part.is_empty() || part == "." || part == "..")
            || path.contains('\\')
            || path.chars().any(char::is_control);
        if hostile {
            return Err(RpcError::new(400, format!("Invalid file name {path:?}")));
        }
        let lower = path.to_ascii_lowercase();
        if !(lower.ends_with(".gcode") || lower.ends_with(".g") || lower.ends_with(".gco")) {
            return Err(RpcError::new(400, format!("File {path} is not a G-code file")));
        }
        self.files.insert(path.to_owned(), self.settings.layers);
        Ok(path.to_owned())
    }

    /// `server.history.list`, newest first.
    pub fn history(&self) -> Value {
        let jobs: Vec<Value> = self.history.iter().rev().map(Job::to_json).collect();
        json!({ "count": jobs.len(), "jobs": jobs })
    }

    /// `server.files.list`.
    pub fn files(&self) -> Value {
        Value::Array(
            self.files
                .keys()
                .map(|path| json!({ "path": path, "modified": 1_764_000_000.0, "size": 1_048_576, "permissions": "rw" }))
                .collect(),
        )
    }

    /// The camera's picture of the printer: `(state, layer, total, percent, job)`.
    pub fn view(&self) -> (JobState, u32, u32, u32, String) {
        (self.state, self.layer, self.total_layers, self.percent(), self.filename.clone())
    }
}

/// The number after `letter` in a G-code line (`M220 S124` → 124).
fn number(line: &str, letter: char) -> Option<f64> {
    line.split_whitespace()
        .filter_map(|word| word.strip_prefix(letter))
        .find_map(|value| value.parse().ok())
}

/// The changed part of `new` against `old`: for objects, the keys whose values differ
/// (nested objects by their own changed keys); `None` when nothing changed.
pub fn diff(old: Option<&Value>, new: &Value) -> Option<Value> {
    match (old, new) {
        (Some(Value::Object(old)), Value::Object(new)) => {
            let mut changed = Map::new();
            for (key, value) in new {
                if let Some(delta) = diff(old.get(key), value) {
                    changed.insert(key.clone(), delta);
                }
            }
            (!changed.is_empty()).then_some(Value::Object(changed))
        }
        (Some(old), new) if old == new => None,
        (_, new) => Some(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printing(settings: KlipperSettings) -> Klipper {
        let mut klipper = Klipper::new(settings);
        let started = klipper.start("benchy.gcode").unwrap();
        assert!(matches!(&started[..], [Notice::History { action: "added", .. }]));
        klipper
    }

    fn run_to_end(klipper: &mut Klipper) -> Vec<Notice> {
        let mut all = Vec::new();
        for _ in 0..100 {
            all.extend(klipper.step());
            if !klipper.state.is_active() || klipper.klippy != Klippy::Ready {
                break;
            }
        }
        all
    }

    #[test]
    fn a_job_heats_prints_every_layer_and_completes() {
        let mut klipper = printing(KlipperSettings { layers: 5, ..Default::default() });
        klipper.step();
        klipper.step();
        assert_eq!(klipper.layer(), 0, "heating first");
        klipper.step();
        let status = klipper.status();
        assert_eq!(status["print_stats"]["info"]["current_layer"], 1);
        assert_eq!(status["print_stats"]["state"], "printing");
        let ended = run_to_end(&mut klipper);
        assert_eq!(klipper.state, JobState::Complete);
        assert!(
            matches!(&ended[..], [Notice::History { action: "finished", job }] if job["status"] == "completed")
        );
        assert_eq!(klipper.status()["virtual_sdcard"]["progress"], 1.0);
    }

    #[test]
    fn a_thermal_runaway_shuts_klippy_down_and_leaves_the_print_paused() {
        let settings = KlipperSettings {
            layers: 10,
            faults: vec![KlipperFault::ThermalRunawayAtLayer(3)],
            ..Default::default()
        };
        let mut klipper = printing(settings);
        let notices = run_to_end(&mut klipper);
        assert_eq!(notices[0], Notice::KlippyShutdown);
        assert!(
            matches!(&notices[1], Notice::History { job, .. } if job["status"] == "klippy_shutdown")
        );
        let status = klipper.status();
        assert_eq!(status["webhooks"]["state"], "shutdown");
        assert!(
            status["webhooks"]["state_message"].as_str().unwrap().starts_with("Heater extruder")
        );
        assert_eq!(status["print_stats"]["state"], "paused", "as a real Klipper leaves it");
        assert!(klipper.pause().is_err(), "nothing but a restart works now");
        let restart = klipper.firmware_restart();
        assert_eq!(restart, [Notice::KlippyDisconnected]);
        assert!(klipper.objects_available().is_err());
        let mut ready = Vec::new();
        for _ in 0..5 {
            ready.extend(klipper.step());
            if !ready.is_empty() {
                break;
            }
        }
        assert_eq!(ready, [Notice::KlippyReady]);
        assert_eq!(klipper.status()["extruder"]["temperature"], 0.0, "no reading yet");
        klipper.step();
        assert_ne!(klipper.status()["extruder"]["temperature"], 0.0);
        assert_eq!(klipper.status()["print_stats"]["state"], "standby");
    }

    #[test]
    fn a_runout_pauses_and_resuming_loads_filament() {
        let settings = KlipperSettings {
            layers: 6,
            faults: vec![KlipperFault::RunoutAtLayer(2)],
            ..Default::default()
        };
        let mut klipper = printing(settings);
        run_to_end(&mut klipper);
        for _ in 0..4 {
            klipper.step();
        }
        assert_eq!(klipper.state, JobState::Paused);
        assert_eq!(klipper.status()[RUNOUT_SENSOR]["filament_detected"], false);
        assert_eq!(klipper.status()["pause_resume"]["is_paused"], true);
        klipper.resume().unwrap();
        assert_eq!(klipper.status()[RUNOUT_SENSOR]["filament_detected"], true);
        let ended = run_to_end(&mut klipper);
        assert!(
            matches!(&ended[..], [Notice::History { job, .. }] if job["status"] == "completed")
        );
    }

    #[test]
    fn commands_are_refused_as_klipper_refuses_them() {
        let mut klipper = Klipper::new(KlipperSettings::default());
        assert_eq!(klipper.pause().unwrap_err().message, "No active print to pause");
        assert!(klipper.start("missing.gcode").is_err());
        klipper.start("benchy.gcode").unwrap();
        assert_eq!(klipper.start("benchy.gcode").unwrap_err().message, "Printer is busy");
        klipper.gcode("M220 S124\nPAUSE").unwrap();
        assert_eq!(klipper.status()["gcode_move"]["speed_factor"], 1.24);
        assert_eq!(klipper.state, JobState::Paused);
        let cancelled = klipper.gcode("CANCEL_PRINT").unwrap();
        assert!(
            matches!(&cancelled[..], [Notice::History { job, .. }] if job["status"] == "cancelled")
        );
        assert!(klipper.gcode("FROBNICATE").is_err());
        for hostile in ["../etc/passwd", "/a/../../b.gcode", "x.sh", "", "a\u{0}.gcode"] {
            assert!(klipper.add_file(hostile).is_err(), "{hostile:?}");
        }
        assert_eq!(klipper.add_file("/sub/cube.gcode").unwrap(), "sub/cube.gcode");
    }

    #[test]
    fn without_layer_info_the_layers_are_null() {
        let mut klipper = printing(KlipperSettings { layer_info: false, ..Default::default() });
        klipper.step();
        assert_eq!(
            klipper.status()["print_stats"]["info"],
            json!({ "total_layer": null, "current_layer": null })
        );
    }

    #[test]
    fn a_diff_carries_only_what_changed_nested_included() {
        let old = json!({ "state": "printing", "info": { "current_layer": 3, "total_layer": 9 } });
        let new = json!({ "state": "printing", "info": { "current_layer": 4, "total_layer": 9 } });
        assert_eq!(diff(Some(&old), &new), Some(json!({ "info": { "current_layer": 4 } })));
        assert_eq!(diff(Some(&new), &new), None);
        assert_eq!(diff(None, &new), Some(new.clone()));
    }
}
