//! The JSON view of printer state and events: the field names the hub's API, the
//! dashboard, `kitt-agent watch` and external checks rely on. Defined once, here.

use serde_json::{Value, json};

use crate::{
    AmsKind, ControlCapability, FanKind, HeaterKind, Hms, JobOutcome, KlippyState, LightMode,
    LightNode, PrintState, PrinterEventKind, PrinterState, PrinterStateV2, SpeedLevel, Tray,
    TrayRef, VendorDetail,
};

pub fn print_state(state: PrintState) -> &'static str {
    match state {
        PrintState::Idle => "idle",
        PrintState::Preparing => "preparing",
        PrintState::Printing => "printing",
        PrintState::Paused => "paused",
        PrintState::Finished => "finished",
        PrintState::Failed => "failed",
        PrintState::Offline => "offline",
    }
}

pub fn control(control: ControlCapability) -> &'static str {
    match control {
        ControlCapability::Available => "available",
        ControlCapability::ReadOnly => "read_only",
        ControlCapability::Unknown => "unknown",
    }
}

/// A Bambu `print_error` as `XXXX_XXXX`.
pub fn print_error_code(code: u32) -> String {
    format!("{:04X}_{:04X}", code >> 16, code & 0xFFFF)
}

/// A stage code and its meaning (Bambu `stg_cur`).
pub fn stage(code: u16) -> Value {
    json!({ "code": code, "name": stage_name(code) })
}

/// Bambu's stage names (OrcaSlicer `get_stage_string`); "paused: …" names are pause reasons.
pub fn stage_name(code: u16) -> &'static str {
    const NAMES: [&str; 36] = [
        "printing",
        "auto bed leveling",
        "heatbed preheating",
        "vibration compensation",
        "changing filament",
        "M400 pause",
        "paused: filament runout",
        "heating hotend",
        "calibrating extrusion",
        "scanning bed surface",
        "inspecting first layer",
        "identifying build plate",
        "calibrating micro-lidar",
        "homing toolhead",
        "cleaning nozzle tip",
        "checking extruder temperature",
        "paused by user",
        "paused: front cover fell",
        "calibrating micro-lidar",
        "calibrating extrusion flow",
        "paused: nozzle temperature malfunction",
        "paused: bed temperature malfunction",
        "filament unloading",
        "paused: skipped step",
        "filament loading",
        "motor noise calibration",
        "paused: AMS lost",
        "paused: heat-break fan slow",
        "paused: chamber temperature control error",
        "cooling chamber",
        "paused by user G-code",
        "motor noise showoff",
        "paused: nozzle filament covered",
        "paused: cutter error",
        "paused: first-layer error",
        "paused: nozzle clog",
    ];
    NAMES.get(usize::from(code)).copied().unwrap_or("unknown stage")
}

pub fn hms(hms: Hms) -> Value {
    json!({
        "code": hms.display_code(),
        "module": format!("0x{:02X}", hms.module()),
        "severity": hms.severity().as_str(),
    })
}

fn tray(tray: &Tray) -> Value {
    json!({
        "slot": tray.slot,
        "material": tray.material,
        "color": tray.color.map(|c| c.to_hex()),
        "remain_percent": tray.remain_percent,
        "tray_uuid": tray.tray_uuid,
    })
}

fn tray_ref(tray: Option<TrayRef>) -> Value {
    match tray {
        None => Value::Null,
        Some(TrayRef::Ams { unit, slot }) => json!({ "ams": unit, "slot": slot }),
        Some(TrayRef::External) => json!("external"),
    }
}

fn fan_kind(kind: FanKind) -> &'static str {
    match kind {
        FanKind::PartCooling => "part_cooling",
        FanKind::Auxiliary => "auxiliary",
        FanKind::Chamber => "chamber",
        FanKind::Heatbreak => "heatbreak",
    }
}

fn ams_kind(kind: AmsKind) -> &'static str {
    match kind {
        AmsKind::Unknown => "unknown",
        AmsKind::Ams => "ams",
        AmsKind::AmsLite => "ams_lite",
        AmsKind::Ams2Pro => "ams_2_pro",
        AmsKind::AmsHt => "ams_ht",
    }
}

pub fn light_node(node: &LightNode) -> &str {
    match node {
        LightNode::ChamberLight => "chamber_light",
        LightNode::WorkLight => "work_light",
        LightNode::ChamberLight2 => "chamber_light2",
        LightNode::HeatbedLight => "heatbed_light",
        LightNode::Other(name) => name,
    }
}

pub fn light_mode(mode: LightMode) -> &'static str {
    match mode {
        LightMode::On => "on",
        LightMode::Off => "off",
        LightMode::Flashing => "flashing",
    }
}

pub fn speed_level(level: SpeedLevel) -> &'static str {
    match level {
        SpeedLevel::Silent => "silent",
        SpeedLevel::Standard => "standard",
        SpeedLevel::Sport => "sport",
        SpeedLevel::Ludicrous => "ludicrous",
    }
}

/// The normalised state with the field names of the printer-link contract.
pub fn printer_state(state: &PrinterState) -> Value {
    let fans: serde_json::Map<String, Value> =
        state.fans.iter().map(|f| (fan_kind(f.kind).to_owned(), json!(f.percent))).collect();
    let ams: Vec<Value> = state
        .ams
        .iter()
        .map(|unit| {
            json!({
                "id": unit.id,
                "kind": ams_kind(unit.kind),
                "humidity": unit.humidity,
                "temp_c": unit.temp_c,
                "trays": unit.trays.iter().map(tray).collect::<Vec<_>>(),
            })
        })
        .collect();
    let lights: serde_json::Map<String, Value> = state
        .lights
        .iter()
        .map(|l| (light_node(&l.node).to_owned(), json!(light_mode(l.mode))))
        .collect();
    json!({
        "state": print_state(state.state),
        "stage": state.stage.map(stage),
        "progress_percent": state.progress_percent,
        "remaining_s": state.remaining_s,
        "layer": state.layer,
        "total_layers": state.total_layers,
        "job_name": state.job_name,
        "nozzle_temp_c": state.nozzle_temp_c,
        "nozzle_target_c": state.nozzle_target_c,
        "bed_temp_c": state.bed_temp_c,
        "bed_target_c": state.bed_target_c,
        "chamber_temp_c": state.chamber_temp_c,
        "fans": fans,
        "speed_level": state.speed_level.map(speed_level),
        "ams": ams,
        "active_tray": tray_ref(state.active_tray),
        "external_spool": state.external_spool.as_ref().map(tray),
        "hms": state.hms.iter().copied().map(hms).collect::<Vec<_>>(),
        "print_error": state.print_error.map(print_error_code),
        "lights": lights,
        "door_open": state.door_open,
        "control": control(state.control),
        "model": state.model,
        "firmware": state.firmware,
        "last_report_at": state.last_report_at.map(|t| t.0),
    })
}

/// The vendor-neutral state (wire version 5): every field of [`printer_state`] (from
/// [`PrinterStateV2::to_v1`], so clients of the old shape read it unchanged; the Bambu-only
/// ones are null or empty for other printers), then the neutral fields that shape lacked:
/// `kind` (`bambu`, `klipper`, or null), `heaters`, `speed_percent`, `filament`,
/// `active_filament`, `message`, `controls` (the names of the controls the printer supports)
/// and `klipper` (Klippy's state, sensors, excluded objects; null for other printers).
pub fn printer_state_v2(state: &PrinterStateV2) -> Value {
    let kind = match &state.detail {
        VendorDetail::None => Value::Null,
        VendorDetail::Bambu(_) => json!("bambu"),
        VendorDetail::Klipper(_) => json!("klipper"),
    };
    let heaters: Vec<Value> = state
        .heaters
        .iter()
        .map(|h| {
            json!({
                "kind": heater_kind(h.kind),
                "index": h.index,
                "temp_c": h.temp_c,
                "target_c": h.target_c,
            })
        })
        .collect();
    let filament: Vec<Value> = state
        .filament
        .iter()
        .map(|slot| {
            let mut value = tray(&slot.tray);
            if let Some(object) = value.as_object_mut() {
                object.insert("unit".into(), json!(slot.unit));
            }
            value
        })
        .collect();
    let klipper = state.klipper().map(|detail| {
        json!({
            "klippy": klippy_state(detail.klippy),
            "print_stats_state": detail.print_stats_state,
            "display_message": detail.display_message,
            "sensors": detail.sensors.iter().map(|sensor| json!({
                "name": sensor.name,
                "enabled": sensor.enabled,
                "detected": sensor.detected,
            })).collect::<Vec<_>>(),
            "excluded_objects": detail.excluded_objects,
        })
    });
    let mut value = printer_state(&state.to_v1());
    let Some(object) = value.as_object_mut() else { return value };
    object.insert("kind".into(), kind);
    object.insert("heaters".into(), json!(heaters));
    object.insert("speed_percent".into(), json!(state.speed_percent));
    object.insert("filament".into(), json!(filament));
    object.insert(
        "active_filament".into(),
        state.active_filament.map_or(Value::Null, |a| json!({ "unit": a.unit, "slot": a.slot })),
    );
    object.insert("message".into(), json!(state.message));
    object.insert("controls".into(), json!(state.controls.names()));
    object.insert("klipper".into(), klipper.unwrap_or(Value::Null));
    value
}

pub fn heater_kind(kind: HeaterKind) -> &'static str {
    match kind {
        HeaterKind::Nozzle => "nozzle",
        HeaterKind::Bed => "bed",
        HeaterKind::Chamber => "chamber",
    }
}

pub fn klippy_state(state: KlippyState) -> &'static str {
    match state {
        KlippyState::Unknown => "unknown",
        KlippyState::Startup => "startup",
        KlippyState::Ready => "ready",
        KlippyState::Error => "error",
        KlippyState::Shutdown => "shutdown",
        KlippyState::Disconnected => "disconnected",
    }
}

/// An event as `{"type": "...", …}`.
pub fn printer_event(event: &PrinterEventKind) -> Value {
    match event {
        PrinterEventKind::StateChanged { from, to } => {
            json!({ "type": "state_changed", "from": print_state(*from), "to": print_state(*to) })
        }
        PrinterEventKind::JobStarted { job_name, total_layers } => {
            json!({ "type": "job_started", "job_name": job_name, "total_layers": total_layers })
        }
        PrinterEventKind::JobPaused { reason } => json!({
            "type": "job_paused",
            "reason": reason.map(stage),
        }),
        PrinterEventKind::JobResumed => json!({ "type": "job_resumed" }),
        PrinterEventKind::JobFinished { job_name, outcome } => {
            let (kind, detail) = match outcome {
                JobOutcome::Succeeded => ("job_finished", Value::Null),
                JobOutcome::Cancelled => ("job_cancelled", Value::Null),
                JobOutcome::Failed { print_error, hms: alerts } => (
                    "job_failed",
                    json!({
                        "print_error": print_error.map(print_error_code),
                        "hms": alerts.iter().copied().map(hms).collect::<Vec<_>>(),
                    }),
                ),
            };
            json!({ "type": kind, "job_name": job_name, "error": detail })
        }
        PrinterEventKind::HmsRaised(h) => json!({ "type": "hms_raised", "hms": hms(*h) }),
        PrinterEventKind::HmsCleared(h) => json!({ "type": "hms_cleared", "hms": hms(*h) }),
        PrinterEventKind::PrintErrorRaised { code } => {
            json!({ "type": "print_error_raised", "print_error": print_error_code(*code) })
        }
        PrinterEventKind::PrintErrorCleared { code } => {
            json!({ "type": "print_error_cleared", "print_error": print_error_code(*code) })
        }
        PrinterEventKind::ActiveTrayChanged { from, to } => {
            json!({ "type": "active_tray_changed", "from": tray_ref(*from), "to": tray_ref(*to) })
        }
        PrinterEventKind::TrayChanged { unit, tray: t } => {
            json!({ "type": "tray_changed", "ams": unit, "tray": tray(t) })
        }
        PrinterEventKind::Reachable => json!({ "type": "printer_reachable" }),
        PrinterEventKind::Unreachable { reason } => {
            json!({ "type": "printer_unreachable", "reason": reason })
        }
        PrinterEventKind::ControlChanged { from, to } => {
            json!({ "type": "control_changed", "from": control(*from), "to": control(*to) })
        }
        PrinterEventKind::Fault { message } => json!({ "type": "fault", "message": message }),
        PrinterEventKind::FaultCleared => json!({ "type": "fault_cleared" }),
        PrinterEventKind::FilamentUsed { millimetres } => {
            json!({ "type": "filament_used", "millimetres": millimetres })
        }
        PrinterEventKind::SpoolTagged(tag) => json!({
            "type": "spool_tagged",
            "ams": tag.unit,
            "slot": tag.slot,
            "tray_uuid": tag.tray_uuid,
            "product": tag.product,
            "material": tag.material,
            "color": tag.color.map(|c| c.to_hex()),
            "weight_g": tag.weight_g,
            "diameter_um": tag.diameter_um,
            "remain_percent": tag.remain_percent,
        }),
    }
}
