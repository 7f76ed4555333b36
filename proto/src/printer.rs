//! The normalised printer state and the events derived from its changes.
//!
//! These are wire types: vendor-neutral, compact (raw codes rather than strings where the
//! hub can decode them), and frozen per protocol version (see the crate docs).

use serde::{Deserialize, Serialize};

use crate::{PrinterId, UnixMillis};

/// A full normalised state sample of one printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterTelemetry {
    pub printer: PrinterId,
    /// Boxed to keep [`RecordBody`](crate::RecordBody) small; encoded like the bare value.
    pub state: Box<PrinterState>,
}

/// A printer's state as the agent knows it after merging every report so far.
///
/// `None` means "not reported by this printer (yet)", never zero.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterState {
    pub state: PrintState,
    /// The printer's current stage code (Bambu `stg_cur`); `None` when idle. Stage codes
    /// that mean "paused because …" are the machine-readable pause reasons.
    pub stage: Option<u16>,
    pub progress_percent: Option<u8>,
    pub remaining_s: Option<u32>,
    pub layer: Option<u32>,
    pub total_layers: Option<u32>,
    pub job_name: Option<String>,
    pub nozzle_temp_c: Option<f32>,
    pub nozzle_target_c: Option<f32>,
    pub bed_temp_c: Option<f32>,
    pub bed_target_c: Option<f32>,
    pub chamber_temp_c: Option<f32>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub fans: Vec<Fan>,
    pub speed_level: Option<SpeedLevel>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub ams: Vec<AmsUnit>,
    pub active_tray: Option<TrayRef>,
    pub external_spool: Option<Tray>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub hms: Vec<Hms>,
    /// The printer's error code (Bambu `print_error`, shown as `XXXX_XXXX`); `None` when 0.
    pub print_error: Option<u32>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub lights: Vec<Light>,
    pub door_open: Option<bool>,
    pub control: ControlCapability,
    /// The vendor's model code (`N1`, `C12`, `BL-P001`, …).
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub last_report_at: Option<UnixMillis>,
}

/// What the printer is doing, in the terms an operator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PrintState {
    Idle,
    Preparing,
    Printing,
    Paused,
    Finished,
    Failed,
    /// The agent cannot reach the printer. The other fields keep their last known values.
    #[default]
    Offline,
}

/// Whether the agent may send control commands to the printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ControlCapability {
    Available,
    /// The printer refuses control (Bambu: Developer Mode is off); monitoring still works.
    ReadOnly,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Fan {
    pub kind: FanKind,
    pub percent: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FanKind {
    PartCooling,
    Auxiliary,
    Chamber,
    Heatbreak,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SpeedLevel {
    Silent,
    Standard,
    Sport,
    Ludicrous,
}

/// One AMS (automatic material system) unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AmsUnit {
    /// The unit id as the printer numbers it (0–3 AMS, 128–135 AMS-HT).
    pub id: u8,
    pub kind: AmsKind,
    /// Bambu's humidity index 1 (wet) – 5 (dry).
    pub humidity: Option<u8>,
    pub temp_c: Option<f32>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub trays: Vec<Tray>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum AmsKind {
    Unknown,
    Ams,
    AmsLite,
    Ams2Pro,
    AmsHt,
}

/// A filament slot: an AMS tray or the external spool holder.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Tray {
    pub slot: u8,
    /// `PLA`, `PETG`, … ; `None` when the slot is empty or unidentified.
    pub material: Option<String>,
    pub color: Option<Rgb>,
    /// Filament left, 0–100; `None` when the printer does not know (non-RFID spools).
    pub remain_percent: Option<u8>,
    /// The spool's stable identifier (Bambu `tray_uuid`), the key for inventory.
    pub tray_uuid: Option<String>,
}

/// A colour, shown as `#RRGGBB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// `#RRGGBB`.
    pub fn to_hex(self) -> String {
        let [r, g, b] = self.0;
        format!("#{r:02X}{g:02X}{b:02X}")
    }

    /// CIELAB under D65: `[L, a, b]`.
    pub fn lab(self) -> [f64; 3] {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        let [r, g, b] = self.0.map(linear);
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
        let f = |t: f64| {
            if t > 216.0 / 24389.0 { t.cbrt() } else { (24389.0 / 27.0 * t + 16.0) / 116.0 }
        };
        let (fx, fy, fz) = (f(x), f(y), f(z));
        [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
    }

    /// CIE76 ΔE between two colours: about 2.3 is the least a person sees.
    pub fn delta_e(self, other: Rgb) -> f64 {
        let ([l1, a1, b1], [l2, a2, b2]) = (self.lab(), other.lab());
        ((l1 - l2).powi(2) + (a1 - a2).powi(2) + (b1 - b2).powi(2)).sqrt()
    }
}

/// Which slot feeds the nozzle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TrayRef {
    Ams { unit: u8, slot: u8 },
    External,
}

/// A health management system alert, as the printer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hms {
    pub attr: u32,
    pub code: u32,
}

impl Hms {
    /// The code as printed in Bambu's documentation: `AAAA_BBBB_CCCC_DDDD`.
    pub fn display_code(self) -> String {
        format!(
            "{:04X}_{:04X}_{:04X}_{:04X}",
            self.attr >> 16,
            self.attr & 0xFFFF,
            self.code >> 16,
            self.code & 0xFFFF
        )
    }

    /// The module that raised it (`attr >> 24`: 0x03 motion controller, 0x05 mainboard,
    /// 0x07 AMS, 0x08 toolhead, 0x0C AI camera, 0x12 AMS Lite, 0x18 AMS-HT).
    pub fn module(self) -> u8 {
        (self.attr >> 24) as u8
    }

    pub fn severity(self) -> HmsSeverity {
        match self.code >> 16 {
            1 => HmsSeverity::Fatal,
            2 => HmsSeverity::Serious,
            3 => HmsSeverity::Common,
            4 => HmsSeverity::Info,
            _ => HmsSeverity::Unknown,
        }
    }
}

/// An HMS alert's severity. Derived from the code, never sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HmsSeverity {
    Fatal,
    Serious,
    Common,
    Info,
    Unknown,
}

impl HmsSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            HmsSeverity::Fatal => "fatal",
            HmsSeverity::Serious => "serious",
            HmsSeverity::Common => "common",
            HmsSeverity::Info => "info",
            HmsSeverity::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Light {
    pub node: LightNode,
    pub mode: LightMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LightNode {
    ChamberLight,
    WorkLight,
    ChamberLight2,
    HeatbedLight,
    /// A light this protocol version has no name for, by the printer's own name.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LightMode {
    On,
    Off,
    Flashing,
}

/// A change the agent observed on a printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterEvent {
    pub printer: PrinterId,
    pub kind: PrinterEventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PrinterEventKind {
    /// `state` moved from one value to another.
    StateChanged {
        from: PrintState,
        to: PrintState,
    },
    JobStarted {
        job_name: Option<String>,
        total_layers: Option<u32>,
    },
    /// `reason` is the printer's stage code that names the pause cause, when it gave one.
    JobPaused {
        reason: Option<u16>,
    },
    JobResumed,
    JobFinished {
        job_name: Option<String>,
        outcome: JobOutcome,
    },
    HmsRaised(Hms),
    HmsCleared(Hms),
    PrintErrorRaised {
        code: u32,
    },
    PrintErrorCleared {
        code: u32,
    },
    ActiveTrayChanged {
        from: Option<TrayRef>,
        to: Option<TrayRef>,
    },
    /// A tray's contents changed (a spool loaded, removed, or re-identified).
    TrayChanged {
        unit: u8,
        tray: Tray,
    },
    Reachable,
    Unreachable {
        reason: String,
    },
    ControlChanged {
        from: ControlCapability,
        to: ControlCapability,
    },
    /// Since wire version 5: the printer has something a person should read, in its own
    /// words (Klippy's error or shutdown reason), or that text changed.
    Fault {
        message: String,
    },
    /// Since wire version 5: the printer's message is gone (Klippy ready again).
    FaultCleared,
    /// Since wire version 8: the filament the job's extruder pushed, as the printer counts
    /// it (Klipper's `filament_used`), sent just before the job's end.
    FilamentUsed {
        millimetres: f32,
    },
    /// Since wire version 8: a slot holds a spool whose RFID tag the printer read, and what
    /// the tag says; sent when the tag is first seen in that slot, or changes.
    SpoolTagged(SpoolTag),
}

/// What a spool's RFID tag says, as the printer reports it (Bambu's tray fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SpoolTag {
    /// The AMS unit; `None` for the external spool holder.
    pub unit: Option<u8>,
    pub slot: u8,
    /// The spool's identity (`tray_uuid`), the same whichever printer reads it.
    pub tray_uuid: String,
    /// The product line (`PLA Basic`, Bambu's `tray_sub_brands`).
    pub product: Option<String>,
    pub material: Option<String>,
    pub color: Option<Rgb>,
    /// Net filament of a full spool, grams (`tray_weight`).
    pub weight_g: Option<u32>,
    /// The filament's diameter, micrometres (`tray_diameter`).
    pub diameter_um: Option<u32>,
    /// Filament left, 0–100.
    pub remain_percent: Option<u8>,
}

impl PrinterEventKind {
    /// The first wire version that has this event.
    pub fn since(&self) -> u16 {
        match self {
            PrinterEventKind::StateChanged { .. }
            | PrinterEventKind::JobStarted { .. }
            | PrinterEventKind::JobPaused { .. }
            | PrinterEventKind::JobResumed
            | PrinterEventKind::JobFinished { .. }
            | PrinterEventKind::HmsRaised(_)
            | PrinterEventKind::HmsCleared(_)
            | PrinterEventKind::PrintErrorRaised { .. }
            | PrinterEventKind::PrintErrorCleared { .. }
            | PrinterEventKind::ActiveTrayChanged { .. }
            | PrinterEventKind::TrayChanged { .. }
            | PrinterEventKind::Reachable
            | PrinterEventKind::Unreachable { .. }
            | PrinterEventKind::ControlChanged { .. } => 1,
            PrinterEventKind::Fault { .. } | PrinterEventKind::FaultCleared => 5,
            PrinterEventKind::FilamentUsed { .. } | PrinterEventKind::SpoolTagged(_) => 8,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum JobOutcome {
    Succeeded,
    /// Failed with the printer's error code and the HMS alerts active at the time.
    Failed {
        print_error: Option<u32>,
        #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
        hms: Vec<Hms>,
    },
    /// Cancelled by a person (Bambu `print_error` 0300_400C).
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hms_decodes_like_bambu_documents_it() {
        let hms = Hms { attr: 50331904, code: 65543 };
        assert_eq!(hms.display_code(), "0300_0100_0001_0007");
        assert_eq!(hms.module(), 0x03);
        assert_eq!(hms.severity(), HmsSeverity::Fatal);
    }

    #[test]
    fn colours_are_hex() {
        assert_eq!(Rgb([0xDE, 0x43, 0x43]).to_hex(), "#DE4343");
    }
}
