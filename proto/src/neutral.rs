//! The vendor-neutral printer state (wire version 5): what every kind of printer reports, in
//! the same terms, and what only one kind has, in its own part ([`VendorDetail`]).
//!
//! Version 4's [`PrinterState`] was a Bambu report in disguise (`stage` is Bambu's `stg_cur`,
//! `print_error`, HMS, the AMS humidity index). [`PrinterStateV2`] keeps what an operator
//! reads on any printer at the top (state, progress, layers, heaters, fans, speed, lights,
//! filament slots, the printer's own message, the controls it supports) and moves the rest to
//! [`BambuDetail`] or [`KlipperDetail`]. A next kind (Elegoo's SDCP, Snapmaker's HTTP API)
//! adds a [`VendorDetail`] variant at the end and maps its status onto the common fields.
//!
//! [`PrinterStateV2::from_v1`] and [`PrinterStateV2::to_v1`] convert both ways: a hub reads a
//! version-4 agent's telemetry as the new state, and an agent talks to a version-4 hub in the
//! old one. For a Bambu printer the round trip is exact (a test checks it on arbitrary states).

use serde::{Deserialize, Serialize};

use crate::printer::{
    AmsKind, AmsUnit, ControlCapability, Fan, Hms, Light, PrintState, PrinterState, SpeedLevel,
    Tray, TrayRef,
};
use crate::{PrinterId, UnixMillis};

/// A full state sample of one printer (wire version 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterTelemetryV2 {
    pub printer: PrinterId,
    /// Boxed to keep [`RecordBody`](crate::RecordBody) small; encoded like the bare value.
    pub state: Box<PrinterStateV2>,
}

/// A printer's state after merging every report so far, in terms every kind shares.
///
/// `None` means "not reported by this printer (yet)", never zero.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PrinterStateV2 {
    pub state: PrintState,
    pub progress_percent: Option<u8>,
    pub remaining_s: Option<u32>,
    pub layer: Option<u32>,
    pub total_layers: Option<u32>,
    pub job_name: Option<String>,
    /// Every heater the printer reports, nozzles first.
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub heaters: Vec<Heater>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub fans: Vec<Fan>,
    /// The print speed as a percentage of the sliced speed.
    pub speed_percent: Option<u16>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub lights: Vec<Light>,
    pub door_open: Option<bool>,
    /// The filament slots the printer knows: AMS trays, an external spool, a toolhead's
    /// spool, an MMU's lanes.
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub filament: Vec<FilamentSlot>,
    /// The slot feeding the nozzle, when the printer says.
    pub active_filament: Option<SlotRef>,
    /// What the printer says in its own words when a person should read it (Klippy's error
    /// or shutdown reason); `None` when it has nothing to say.
    pub message: Option<String>,
    pub control: ControlCapability,
    /// The controls this printer supports, whatever `control` says now.
    pub controls: Controls,
    /// The vendor's model code or name (`N1`, `C12`, `Voron 2.4`, …).
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub last_report_at: Option<UnixMillis>,
    /// What only this kind of printer reports.
    pub detail: VendorDetail,
}

/// One heater: its reading and its target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Heater {
    pub kind: HeaterKind,
    /// 0 for the first of its kind (`extruder`), 1 for the next (`extruder1`), ….
    pub index: u8,
    pub temp_c: Option<f32>,
    pub target_c: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum HeaterKind {
    Nozzle,
    Bed,
    Chamber,
}

/// A filament slot: which unit holds it and what is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FilamentSlot {
    /// The unit (an AMS, an MMU) by the printer's own number; `None` for a slot outside any
    /// unit (Bambu's external spool holder, a single-extruder printer's spool).
    pub unit: Option<u8>,
    pub tray: Tray,
}

/// Which slot feeds the nozzle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SlotRef {
    pub unit: Option<u8>,
    pub slot: u8,
}

/// The controls a printer supports: a bit set, so that a reader ignores bits it does not
/// know (the crate's evolution rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Controls(pub u32);

impl Controls {
    pub const PAUSE: Controls = Controls(1);
    pub const RESUME: Controls = Controls(1 << 1);
    pub const STOP: Controls = Controls(1 << 2);
    /// Start a file already on the printer.
    pub const START_FILE: Controls = Controls(1 << 3);
    pub const LIGHT: Controls = Controls(1 << 4);
    /// Speed presets (Bambu's four levels) or a percentage.
    pub const SPEED: Controls = Controls(1 << 5);
    pub const TEMPERATURE: Controls = Controls(1 << 6);
    pub const GCODE: Controls = Controls(1 << 7);
    /// Ask for a full report.
    pub const FULL_REPORT: Controls = Controls(1 << 8);
    /// Restart the firmware (Klipper's `FIRMWARE_RESTART`): needs a person's confirmation.
    pub const FIRMWARE_RESTART: Controls = Controls(1 << 9);
    /// Stop everything at once (Klipper's `M112`): needs a person's confirmation.
    pub const EMERGENCY_STOP: Controls = Controls(1 << 10);

    /// Every control with a name, and the name the API uses for it.
    pub const NAMED: [(Controls, &'static str); 11] = [
        (Controls::PAUSE, "pause"),
        (Controls::RESUME, "resume"),
        (Controls::STOP, "stop"),
        (Controls::START_FILE, "start_file"),
        (Controls::LIGHT, "light"),
        (Controls::SPEED, "speed"),
        (Controls::TEMPERATURE, "temperature"),
        (Controls::GCODE, "gcode"),
        (Controls::FULL_REPORT, "full_report"),
        (Controls::FIRMWARE_RESTART, "firmware_restart"),
        (Controls::EMERGENCY_STOP, "emergency_stop"),
    ];

    pub const fn union(self, other: Controls) -> Controls {
        Controls(self.0 | other.0)
    }

    pub const fn contains(self, other: Controls) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the controls in the set that this build knows, in [`Controls::NAMED`]'s
    /// order.
    pub fn names(self) -> Vec<&'static str> {
        Controls::NAMED
            .iter()
            .filter(|(control, _)| self.contains(*control))
            .map(|(_, name)| *name)
            .collect()
    }

    /// What a Bambu printer over LAN MQTT supports.
    pub const BAMBU: Controls = Controls::PAUSE
        .union(Controls::RESUME)
        .union(Controls::STOP)
        .union(Controls::START_FILE)
        .union(Controls::LIGHT)
        .union(Controls::SPEED)
        .union(Controls::GCODE)
        .union(Controls::FULL_REPORT);
}

/// What only one kind of printer reports. Append-only: a new kind adds a variant at the end.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum VendorDetail {
    /// Nothing beyond the common fields.
    #[default]
    None,
    Bambu(BambuDetail),
    Klipper(KlipperDetail),
}

/// What a Bambu printer reports beyond the common fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BambuDetail {
    /// The current stage (`stg_cur`); `None` when idle. Stage codes that mean "paused
    /// because …" are the machine-readable pause reasons.
    pub stage: Option<u16>,
    pub speed_level: Option<SpeedLevel>,
    /// The AMS units, their trays in [`PrinterStateV2::filament`].
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub ams: Vec<AmsInfo>,
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub hms: Vec<Hms>,
    /// `print_error`, shown as `XXXX_XXXX`; `None` when 0.
    pub print_error: Option<u32>,
}

/// One AMS unit without its trays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AmsInfo {
    pub id: u8,
    pub kind: AmsKind,
    /// Bambu's humidity index 1 (wet) – 5 (dry).
    pub humidity: Option<u8>,
    pub temp_c: Option<f32>,
}

/// What a Klipper printer (through Moonraker) reports beyond the common fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct KlipperDetail {
    /// Klippy's own state (`webhooks.state`).
    pub klippy: KlippyState,
    /// `print_stats.state` as Klipper says it (`standby`, `printing`, `paused`, `complete`,
    /// `cancelled`, `error`).
    pub print_stats_state: Option<String>,
    /// `display_status.message`: the last `M117` text.
    pub display_message: Option<String>,
    /// Filament switch and motion sensors.
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub sensors: Vec<FilamentSensor>,
    /// Objects excluded from the current print (`exclude_object.excluded_objects`).
    #[cfg_attr(test, proptest(strategy = "crate::tests::small_vec()"))]
    pub excluded_objects: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum KlippyState {
    #[default]
    Unknown,
    Startup,
    Ready,
    Error,
    Shutdown,
    /// Moonraker is up, Klippy is not connected to it.
    Disconnected,
}

/// A filament switch or motion sensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FilamentSensor {
    /// The sensor's name in the printer's configuration.
    pub name: String,
    pub enabled: bool,
    /// `None` until the sensor has reported.
    pub detected: Option<bool>,
}

impl PrinterStateV2 {
    /// The heater of `kind` at `index`, if reported.
    pub fn heater(&self, kind: HeaterKind, index: u8) -> Option<&Heater> {
        self.heaters.iter().find(|h| h.kind == kind && h.index == index)
    }

    /// The Bambu part, if this is a Bambu printer.
    pub fn bambu(&self) -> Option<&BambuDetail> {
        match &self.detail {
            VendorDetail::Bambu(detail) => Some(detail),
            _ => None,
        }
    }

    /// The Klipper part, if this is a Klipper printer.
    pub fn klipper(&self) -> Option<&KlipperDetail> {
        match &self.detail {
            VendorDetail::Klipper(detail) => Some(detail),
            _ => None,
        }
    }

    /// A version-4 state (always a Bambu one) in the new terms.
    pub fn from_v1(v1: &PrinterState) -> PrinterStateV2 {
        let mut heaters = Vec::new();
        let mut heater = |kind, temp_c: Option<f32>, target_c: Option<f32>| {
            if temp_c.is_some() || target_c.is_some() {
                heaters.push(Heater { kind, index: 0, temp_c, target_c });
            }
        };
        heater(HeaterKind::Nozzle, v1.nozzle_temp_c, v1.nozzle_target_c);
        heater(HeaterKind::Bed, v1.bed_temp_c, v1.bed_target_c);
        heater(HeaterKind::Chamber, v1.chamber_temp_c, None);
        let mut filament: Vec<FilamentSlot> = v1
            .ams
            .iter()
            .flat_map(|unit| {
                unit.trays
                    .iter()
                    .map(|tray| FilamentSlot { unit: Some(unit.id), tray: tray.clone() })
            })
            .collect();
        filament.extend(
            v1.external_spool.iter().map(|tray| FilamentSlot { unit: None, tray: tray.clone() }),
        );
        let active_filament = v1.active_tray.map(|active| match active {
            TrayRef::Ams { unit, slot } => SlotRef { unit: Some(unit), slot },
            TrayRef::External => {
                SlotRef { unit: None, slot: v1.external_spool.as_ref().map_or(0, |tray| tray.slot) }
            }
        });
        PrinterStateV2 {
            state: v1.state,
            progress_percent: v1.progress_percent,
            remaining_s: v1.remaining_s,
            layer: v1.layer,
            total_layers: v1.total_layers,
            job_name: v1.job_name.clone(),
            heaters,
            fans: v1.fans.clone(),
            speed_percent: v1.speed_level.map(SpeedLevel::percent),
            lights: v1.lights.clone(),
            door_open: v1.door_open,
            filament,
            active_filament,
            message: None,
            control: v1.control,
            controls: Controls::BAMBU,
            model: v1.model.clone(),
            firmware: v1.firmware.clone(),
            last_report_at: v1.last_report_at,
            detail: VendorDetail::Bambu(BambuDetail {
                stage: v1.stage,
                speed_level: v1.speed_level,
                ams: v1
                    .ams
                    .iter()
                    .map(|unit| AmsInfo {
                        id: unit.id,
                        kind: unit.kind,
                        humidity: unit.humidity,
                        temp_c: unit.temp_c,
                    })
                    .collect(),
                hms: v1.hms.clone(),
                print_error: v1.print_error,
            }),
        }
    }

    /// The state in version 4's terms, for a hub of that version: what has no place there
    /// (a second nozzle, the printer's message, a Klipper part) is left out.
    pub fn to_v1(&self) -> PrinterState {
        let heater = |kind| self.heater(kind, 0).copied();
        let nozzle = heater(HeaterKind::Nozzle);
        let bed = heater(HeaterKind::Bed);
        let chamber = heater(HeaterKind::Chamber);
        let bambu = self.bambu();
        let ams = bambu
            .map(|detail| {
                detail
                    .ams
                    .iter()
                    .map(|unit| AmsUnit {
                        id: unit.id,
                        kind: unit.kind,
                        humidity: unit.humidity,
                        temp_c: unit.temp_c,
                        trays: self
                            .filament
                            .iter()
                            .filter(|slot| slot.unit == Some(unit.id))
                            .map(|slot| slot.tray.clone())
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let external_spool =
            self.filament.iter().find(|slot| slot.unit.is_none()).map(|slot| slot.tray.clone());
        let active_tray = self.active_filament.map(|active| match active.unit {
            Some(unit) => TrayRef::Ams { unit, slot: active.slot },
            None => TrayRef::External,
        });
        PrinterState {
            state: self.state,
            stage: bambu.and_then(|detail| detail.stage),
            progress_percent: self.progress_percent,
            remaining_s: self.remaining_s,
            layer: self.layer,
            total_layers: self.total_layers,
            job_name: self.job_name.clone(),
            nozzle_temp_c: nozzle.and_then(|h| h.temp_c),
            nozzle_target_c: nozzle.and_then(|h| h.target_c),
            bed_temp_c: bed.and_then(|h| h.temp_c),
            bed_target_c: bed.and_then(|h| h.target_c),
            chamber_temp_c: chamber.and_then(|h| h.temp_c),
            fans: self.fans.clone(),
            speed_level: bambu.and_then(|detail| detail.speed_level),
            ams,
            active_tray,
            external_spool,
            hms: bambu.map(|detail| detail.hms.clone()).unwrap_or_default(),
            print_error: bambu.and_then(|detail| detail.print_error),
            lights: self.lights.clone(),
            door_open: self.door_open,
            control: self.control,
            model: self.model.clone(),
            firmware: self.firmware.clone(),
            last_report_at: self.last_report_at,
        }
    }
}

impl SpeedLevel {
    /// The level's speed as a percentage of the sliced speed (Bambu's figures).
    pub fn percent(self) -> u16 {
        match self {
            SpeedLevel::Silent => 50,
            SpeedLevel::Standard => 100,
            SpeedLevel::Sport => 124,
            SpeedLevel::Ludicrous => 166,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        // Floats make `PartialEq` unreliable (NaN): states are compared by their encoding.
        #[test]
        fn a_version_4_state_survives_the_round_trip_exactly(mut v1: PrinterState) {
            // A printer numbers its AMS units uniquely; the trays are found by unit.
            let mut seen = HashSet::new();
            v1.ams.retain(|unit| seen.insert(unit.id));
            let back = PrinterStateV2::from_v1(&v1).to_v1();
            prop_assert_eq!(postcard::to_stdvec(&back).unwrap(), postcard::to_stdvec(&v1).unwrap());
        }
    }

    #[test]
    fn a_bambu_state_reads_in_neutral_terms() {
        let v1 = PrinterState {
            state: PrintState::Printing,
            stage: Some(6),
            nozzle_temp_c: Some(219.5),
            nozzle_target_c: Some(220.0),
            bed_temp_c: Some(55.0),
            chamber_temp_c: Some(31.0),
            speed_level: Some(SpeedLevel::Sport),
            ams: vec![AmsUnit {
                id: 1,
                kind: AmsKind::Ams,
                humidity: Some(4),
                temp_c: None,
                trays: vec![Tray { slot: 2, ..Tray::default() }],
            }],
            active_tray: Some(TrayRef::Ams { unit: 1, slot: 2 }),
            external_spool: Some(Tray {
                slot: 0,
                material: Some("PETG".into()),
                ..Tray::default()
            }),
            ..PrinterState::default()
        };
        let v2 = PrinterStateV2::from_v1(&v1);
        let nozzle = v2.heater(HeaterKind::Nozzle, 0).unwrap();
        assert_eq!((nozzle.temp_c, nozzle.target_c), (Some(219.5), Some(220.0)));
        assert_eq!(v2.heater(HeaterKind::Bed, 0).unwrap().target_c, None);
        assert_eq!(v2.heater(HeaterKind::Chamber, 0).unwrap().temp_c, Some(31.0));
        assert_eq!(v2.speed_percent, Some(124));
        assert_eq!(v2.filament.len(), 2);
        assert_eq!(v2.filament[0].unit, Some(1));
        assert_eq!(v2.filament[1].unit, None, "the external spool belongs to no unit");
        assert_eq!(v2.active_filament, Some(SlotRef { unit: Some(1), slot: 2 }));
        assert_eq!(v2.controls, Controls::BAMBU);
        let bambu = v2.bambu().unwrap();
        assert_eq!(bambu.stage, Some(6));
        assert_eq!(bambu.ams[0].humidity, Some(4));
        assert!(v2.klipper().is_none());
    }

    #[test]
    fn a_klipper_state_goes_to_an_old_hub_without_its_own_part() {
        let v2 = PrinterStateV2 {
            state: PrintState::Paused,
            heaters: vec![
                Heater { kind: HeaterKind::Nozzle, index: 1, temp_c: Some(200.0), target_c: None },
                Heater { kind: HeaterKind::Nozzle, index: 0, temp_c: Some(210.0), target_c: None },
            ],
            message: Some("Klipper shut down".into()),
            detail: VendorDetail::Klipper(KlipperDetail::default()),
            ..PrinterStateV2::default()
        };
        let v1 = v2.to_v1();
        assert_eq!(v1.state, PrintState::Paused);
        assert_eq!(v1.nozzle_temp_c, Some(210.0), "the first nozzle, not the first listed");
        assert_eq!((v1.stage, v1.print_error, v1.hms.len()), (None, None, 0));
    }

    #[test]
    fn unknown_control_bits_are_ignored_by_name() {
        let controls = Controls::PAUSE.union(Controls(1 << 31));
        assert_eq!(controls.names(), ["pause"]);
        assert!(Controls::BAMBU.contains(Controls::START_FILE));
        assert!(!Controls::BAMBU.contains(Controls::EMERGENCY_STOP));
    }
}
