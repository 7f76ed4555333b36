//! The printer state and printer events as the API and the WebSocket show them: the JSON of
//! `proto::json` (which the hub stores) read back into types, so the OpenAPI document
//! describes every field. A test checks that reading proto's JSON into these types and
//! writing it out again loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A printer's normalised state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrinterState {
    /// `idle`, `preparing`, `printing`, `paused`, `finished`, `failed` or `offline`.
    pub state: String,
    /// What the printer is doing within its state (Bambu's stage).
    pub stage: Option<Stage>,
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
    /// Fan speeds in percent by fan: `part_cooling`, `auxiliary`, `chamber`, `heatbreak`.
    pub fans: BTreeMap<String, u8>,
    /// `silent`, `standard`, `sport` or `ludicrous`.
    pub speed_level: Option<String>,
    pub ams: Vec<AmsUnit>,
    pub active_tray: Option<TrayRef>,
    pub external_spool: Option<Tray>,
    /// Active HMS alerts.
    pub hms: Vec<Hms>,
    /// The printer's current error, `XXXX_XXXX`.
    pub print_error: Option<String>,
    /// Light modes (`on`, `off`, `flashing`) by light.
    pub lights: BTreeMap<String, String>,
    pub door_open: Option<bool>,
    /// `available`, `read_only` (the printer refuses control) or `unknown`.
    pub control: String,
    pub model: Option<String>,
    pub firmware: Option<String>,
    /// When the printer last reported (the agent's clock, Unix ms).
    pub last_report_at: Option<i64>,
    // The vendor-neutral fields (wire version 5). Absent from a state stored before, hence
    // the defaults; the fields above stay for clients of the older shape (the Bambu-only
    // ones are null or empty for other printers).
    /// `bambu` or `klipper`: which part of the state beyond the common fields the printer
    /// reports; null when none.
    #[serde(default)]
    pub kind: Option<String>,
    /// Every heater: `kind` (`nozzle`, `bed`, `chamber`), `index` (0 for the first).
    #[serde(default)]
    pub heaters: Vec<Heater>,
    /// The print speed in percent of the sliced speed.
    #[serde(default)]
    pub speed_percent: Option<u16>,
    /// Every filament slot the printer knows, with its unit (an AMS) or null.
    #[serde(default)]
    pub filament: Vec<FilamentSlot>,
    #[serde(default)]
    pub active_filament: Option<SlotRef>,
    /// What the printer says for a person to read (Klippy's error), when it says something.
    #[serde(default)]
    pub message: Option<String>,
    /// The controls the printer supports: `pause`, `resume`, `stop`, `start_file`, `light`,
    /// `speed`, `temperature`, `gcode`, `full_report`, `firmware_restart`,
    /// `emergency_stop`. The dashboard offers these and no others.
    #[serde(default)]
    pub controls: Vec<String>,
    /// A Klipper printer's own part; null for other printers.
    #[serde(default)]
    pub klipper: Option<KlipperState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Heater {
    /// `nozzle`, `bed` or `chamber`.
    pub kind: String,
    pub index: u8,
    pub temp_c: Option<f32>,
    pub target_c: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilamentSlot {
    /// The unit (an AMS) by its number; null outside any unit (an external spool).
    pub unit: Option<u8>,
    pub slot: u8,
    pub material: Option<String>,
    /// `#RRGGBB`.
    pub color: Option<String>,
    pub remain_percent: Option<u8>,
    pub tray_uuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SlotRef {
    pub unit: Option<u8>,
    pub slot: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KlipperState {
    /// `unknown`, `startup`, `ready`, `error`, `shutdown` or `disconnected`.
    pub klippy: String,
    /// `print_stats.state` as Klipper says it.
    pub print_stats_state: Option<String>,
    /// The last `M117` text.
    pub display_message: Option<String>,
    pub sensors: Vec<FilamentSensor>,
    pub excluded_objects: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FilamentSensor {
    pub name: String,
    pub enabled: bool,
    pub detected: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Stage {
    pub code: u16,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AmsUnit {
    pub id: u8,
    /// `unknown`, `ams`, `ams_lite`, `ams_2_pro` or `ams_ht`.
    pub kind: String,
    /// Bambu's humidity index, 1 (wet) – 5 (dry).
    pub humidity: Option<u8>,
    pub temp_c: Option<f32>,
    pub trays: Vec<Tray>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tray {
    pub slot: u8,
    pub material: Option<String>,
    /// `#RRGGBB`.
    pub color: Option<String>,
    pub remain_percent: Option<u8>,
    pub tray_uuid: Option<String>,
}

/// A filament source: an AMS slot, or the external spool (`"external"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TrayRef {
    Ams { ams: u8, slot: u8 },
    External(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hms {
    /// As Bambu's wiki shows it, `XXXX_XXXX_XXXX_XXXX`.
    pub code: String,
    pub module: String,
    /// `fatal`, `serious`, `common`, `info` or `unknown`.
    pub severity: String,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    pub print_error: Option<String>,
    pub hms: Vec<Hms>,
}

/// A printer event, by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PrinterEvent {
    StateChanged {
        from: String,
        to: String,
    },
    JobStarted {
        job_name: Option<String>,
        total_layers: Option<u32>,
    },
    JobPaused {
        reason: Option<Stage>,
    },
    JobResumed,
    JobFinished {
        job_name: Option<String>,
        error: Option<JobError>,
    },
    JobCancelled {
        job_name: Option<String>,
        error: Option<JobError>,
    },
    JobFailed {
        job_name: Option<String>,
        error: Option<JobError>,
    },
    HmsRaised {
        hms: Hms,
    },
    HmsCleared {
        hms: Hms,
    },
    PrintErrorRaised {
        print_error: String,
    },
    PrintErrorCleared {
        print_error: String,
    },
    ActiveTrayChanged {
        from: Option<TrayRef>,
        to: Option<TrayRef>,
    },
    TrayChanged {
        ams: u8,
        tray: Tray,
    },
    PrinterReachable,
    PrinterUnreachable {
        reason: String,
    },
    ControlChanged {
        from: String,
        to: String,
    },
    /// The printer says something a person should read (Klippy's error).
    Fault {
        message: String,
    },
    FaultCleared,
    /// The filament the job's extruder pushed, mm (Klipper's count).
    FilamentUsed {
        millimetres: f64,
    },
    /// A slot holds a spool whose RFID tag the printer read.
    SpoolTagged {
        /// The AMS unit; `null` for the external spool.
        ams: Option<u8>,
        slot: u8,
        tray_uuid: String,
        product: Option<String>,
        material: Option<String>,
        /// `#RRGGBB`.
        color: Option<String>,
        weight_g: Option<u32>,
        diameter_um: Option<u32>,
        remain_percent: Option<u8>,
    },
}

/// An event's body: a known event, or (from an agent newer than this hub) whatever it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventBody {
    Known(PrinterEvent),
    /// An event type this hub does not know yet, as stored.
    Other(serde_json::Value),
}

// By hand: a known event is also an object, so the two alternatives overlap (`anyOf`, where
// the derive would say `oneOf` and every known event would match both).
impl utoipa::PartialSchema for EventBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        AnyOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name("PrinterEvent"))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some("An event type this hub does not know yet, as stored")),
            )
            .description(Some("A printer event, by `type`"))
            .into()
    }
}

impl ToSchema for EventBody {
    fn schemas(
        schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
    ) {
        schemas.push((
            PrinterEvent::name().into_owned(),
            <PrinterEvent as utoipa::PartialSchema>::schema(),
        ));
        <PrinterEvent as ToSchema>::schemas(schemas);
    }
}

impl PrinterState {
    /// The typed view of stored state JSON; `None` when it does not fit (never for JSON
    /// that `proto::json::printer_state_v2`, or before it `printer_state`, wrote).
    pub fn from_json(value: serde_json::Value) -> Option<PrinterState> {
        serde_json::from_value(value).ok()
    }
}

impl EventBody {
    pub fn from_json(value: serde_json::Value) -> EventBody {
        match serde_json::from_value::<PrinterEvent>(value.clone()) {
            Ok(event) => EventBody::Known(event),
            Err(_) => EventBody::Other(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{
        AmsKind, ControlCapability, Fan, FanKind, Hms as ProtoHms, JobOutcome, Light, LightMode,
        LightNode, PrintState, PrinterEventKind, SpeedLevel, Tray as ProtoTray, TrayRef as Ref,
    };

    fn full_state() -> proto::PrinterState {
        let tray = ProtoTray {
            slot: 2,
            material: Some("PETG".into()),
            color: Some(proto::Rgb([0xFF, 0x80, 0x00])),
            remain_percent: Some(40),
            tray_uuid: Some("A1B2".into()),
        };
        proto::PrinterState {
            state: PrintState::Printing,
            stage: Some(2),
            progress_percent: Some(42),
            remaining_s: Some(3600),
            layer: Some(12),
            total_layers: Some(200),
            job_name: Some("gear".into()),
            nozzle_temp_c: Some(220.5),
            nozzle_target_c: Some(220.0),
            bed_temp_c: Some(60.0),
            bed_target_c: Some(60.0),
            chamber_temp_c: Some(30.0),
            fans: vec![Fan { kind: FanKind::PartCooling, percent: 100 }],
            speed_level: Some(SpeedLevel::Sport),
            ams: vec![proto::AmsUnit {
                id: 0,
                kind: AmsKind::Ams,
                humidity: Some(4),
                temp_c: Some(25.0),
                trays: vec![tray.clone()],
            }],
            active_tray: Some(Ref::Ams { unit: 0, slot: 2 }),
            external_spool: Some(tray),
            hms: vec![ProtoHms { attr: 0x0300_0100, code: 0x0001_0001 }],
            print_error: Some(0x0300_400C),
            lights: vec![Light { node: LightNode::ChamberLight, mode: LightMode::On }],
            door_open: Some(false),
            control: ControlCapability::Available,
            model: Some("C12".into()),
            firmware: Some("01.08.00.00".into()),
            last_report_at: Some(proto::UnixMillis(1_700_000_000_000)),
        }
    }

    fn klipper_state() -> proto::PrinterStateV2 {
        proto::PrinterStateV2 {
            state: PrintState::Printing,
            heaters: vec![proto::Heater {
                kind: proto::HeaterKind::Nozzle,
                index: 1,
                temp_c: Some(200.0),
                target_c: Some(205.0),
            }],
            speed_percent: Some(110),
            message: Some("Heater extruder not heating at expected rate".into()),
            controls: proto::Controls::PAUSE.union(proto::Controls::EMERGENCY_STOP),
            filament: vec![proto::FilamentSlot { unit: None, tray: ProtoTray::default() }],
            active_filament: Some(proto::SlotRef { unit: None, slot: 0 }),
            detail: proto::VendorDetail::Klipper(proto::KlipperDetail {
                klippy: proto::KlippyState::Ready,
                print_stats_state: Some("printing".into()),
                display_message: None,
                sensors: vec![proto::FilamentSensor {
                    name: "runout".into(),
                    enabled: true,
                    detected: Some(false),
                }],
                excluded_objects: vec!["part_1".into()],
            }),
            ..proto::PrinterStateV2::default()
        }
    }

    #[test]
    fn the_typed_state_reads_and_writes_protos_json_unchanged() {
        let states = [
            proto::PrinterStateV2::from_v1(&full_state()),
            proto::PrinterStateV2::default(),
            klipper_state(),
        ];
        for state in states {
            let json = proto::json::printer_state_v2(&state);
            let typed = PrinterState::from_json(json.clone()).expect("fits");
            assert_eq!(serde_json::to_value(&typed).unwrap(), json);
        }
    }

    #[test]
    fn a_state_stored_before_version_5_still_reads() {
        let json = proto::json::printer_state(&full_state());
        let typed = PrinterState::from_json(json).expect("fits");
        assert_eq!(typed.controls, Vec::<String>::new());
        assert_eq!(typed.ams.len(), 1);
    }

    #[test]
    fn every_event_reads_into_a_known_type_and_back_unchanged() {
        let hms = ProtoHms { attr: 0x0300_0100, code: 0x0001_0001 };
        let tray = full_state().external_spool.unwrap();
        let events = [
            PrinterEventKind::StateChanged { from: PrintState::Idle, to: PrintState::Printing },
            PrinterEventKind::JobStarted { job_name: Some("a".into()), total_layers: Some(3) },
            PrinterEventKind::JobPaused { reason: Some(6) },
            PrinterEventKind::JobResumed,
            PrinterEventKind::JobFinished { job_name: None, outcome: JobOutcome::Succeeded },
            PrinterEventKind::JobFinished { job_name: None, outcome: JobOutcome::Cancelled },
            PrinterEventKind::JobFinished {
                job_name: Some("b".into()),
                outcome: JobOutcome::Failed { print_error: Some(1), hms: vec![hms] },
            },
            PrinterEventKind::HmsRaised(hms),
            PrinterEventKind::HmsCleared(hms),
            PrinterEventKind::PrintErrorRaised { code: 7 },
            PrinterEventKind::PrintErrorCleared { code: 7 },
            PrinterEventKind::ActiveTrayChanged { from: None, to: Some(Ref::External) },
            PrinterEventKind::ActiveTrayChanged {
                from: Some(Ref::Ams { unit: 1, slot: 3 }),
                to: None,
            },
            PrinterEventKind::TrayChanged { unit: 0, tray },
            PrinterEventKind::Reachable,
            PrinterEventKind::Unreachable { reason: "gone".into() },
            PrinterEventKind::ControlChanged {
                from: ControlCapability::Unknown,
                to: ControlCapability::ReadOnly,
            },
            PrinterEventKind::Fault { message: "Klipper shut down".into() },
            PrinterEventKind::FaultCleared,
            PrinterEventKind::FilamentUsed { millimetres: 1234.5 },
            PrinterEventKind::SpoolTagged(proto::SpoolTag {
                unit: None,
                slot: 0,
                tray_uuid: "A1".into(),
                product: Some("PLA Basic".into()),
                material: Some("PLA".into()),
                color: Some(proto::Rgb([1, 2, 3])),
                weight_g: Some(1000),
                diameter_um: Some(1750),
                remain_percent: None,
            }),
        ];
        for event in &events {
            let json = proto::json::printer_event(event);
            let typed = EventBody::from_json(json.clone());
            assert!(matches!(typed, EventBody::Known(_)), "{json}");
            assert_eq!(serde_json::to_value(&typed).unwrap(), json);
        }
        let future = serde_json::json!({ "type": "spaghetti_detected", "confidence": 0.9 });
        assert_eq!(EventBody::from_json(future.clone()), EventBody::Other(future));
    }
}
