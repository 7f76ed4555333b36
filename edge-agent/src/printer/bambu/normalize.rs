//! From the merged Bambu document to kitt's normalised [`PrinterState`] (sans-IO).
//!
//! Both layouts are read: the classic fields (`nozzle_temper`, `tray_now`, …) and the newer
//! `device` block with packed temperatures (low 16 bits current, high 16 bits target), which
//! wins where both are present. Numbers may arrive as strings; fans arrive as 0–15;
//! remaining time arrives in minutes.

use proto::{
    AmsKind, AmsUnit, ControlCapability, Fan, FanKind, Hms, Light, LightMode, LightNode,
    PrintState, PrinterState, Rgb, SpeedLevel, Tray, TrayRef, UnixMillis,
};
use serde_json::{Map, Value};

use super::merge::{VersionInfo, as_i64};

/// Bambu's `fun` flag that says control commands need a signature (Developer Mode off).
const FUN_SIGNATURE_REQUIRED: i64 = 0x2000_0000;
/// `home_flag` / `stat` bit for an open door (X1, P1S, H2).
const DOOR_OPEN: i64 = 0x0080_0000;

/// What the agent knows about a printer besides its reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The model code from configuration or `get_version`.
    pub model: Option<String>,
    pub version: Option<VersionInfo>,
    /// What command acknowledgements taught us about control; wins over the `fun` hint.
    pub control_from_acks: Option<ControlCapability>,
    pub last_report_at: Option<UnixMillis>,
}

/// Builds the normalised state from the merged `print` document.
pub fn normalize(print: &Map<String, Value>, context: &Context) -> PrinterState {
    let device = print.get("device");
    let model = model_code(context);
    let state = print_state(print.get("gcode_state").and_then(Value::as_str));
    PrinterState {
        state,
        stage: stage(print, state),
        progress_percent: int(print, "mc_percent").map(|p| p.clamp(0, 100) as u8),
        remaining_s: int(print, "mc_remaining_time")
            .filter(|m| *m >= 0)
            .map(|m| u32::try_from(m.saturating_mul(60)).unwrap_or(u32::MAX)),
        layer: int(print, "layer_num").and_then(|l| u32::try_from(l).ok()),
        total_layers: int(print, "total_layer_num")
            .and_then(|l| u32::try_from(l).ok())
            .filter(|&l| l > 0),
        job_name: text(print, "subtask_name"),
        nozzle_temp_c: active_extruder_temp(device)
            .map(|(t, _)| t)
            .or_else(|| float(print, "nozzle_temper")),
        nozzle_target_c: active_extruder_temp(device)
            .map(|(_, t)| t)
            .or_else(|| float(print, "nozzle_target_temper")),
        bed_temp_c: packed(device, &["bed", "info", "temp"])
            .map(|(t, _)| t)
            .or_else(|| float(print, "bed_temper")),
        bed_target_c: packed(device, &["bed", "info", "temp"])
            .map(|(_, t)| t)
            .or_else(|| float(print, "bed_target_temper")),
        chamber_temp_c: chamber_temp(print, device, model.as_deref()),
        fans: fans(print),
        speed_level: int(print, "spd_lvl").and_then(speed_level),
        ams: ams_units(print),
        active_tray: active_tray(print, device),
        external_spool: print.get("vt_tray").and_then(Value::as_object).map(|t| tray(t, 0)),
        hms: hms(print),
        print_error: int(print, "print_error")
            .filter(|&e| e != 0)
            .and_then(|e| u32::try_from(e).ok()),
        lights: lights(print),
        door_open: door_open(print, model.as_deref()),
        control: control(print, context),
        firmware: context.version.as_ref().and_then(|v| v.firmware.clone()),
        model,
        last_report_at: context.last_report_at,
    }
}

fn print_state(gcode_state: Option<&str>) -> PrintState {
    match gcode_state.map(str::to_ascii_uppercase).as_deref() {
        Some("PREPARE" | "SLICING" | "INIT") => PrintState::Preparing,
        Some("RUNNING") => PrintState::Printing,
        Some("PAUSE") => PrintState::Paused,
        Some("FINISH") => PrintState::Finished,
        Some("FAILED") => PrintState::Failed,
        // IDLE, and anything a newer firmware invents, reads as idle rather than busy.
        _ => PrintState::Idle,
    }
}

/// `stg_cur` while a job is active. Idle sentinels are -1 (X1) and 255 (P1); the A1 mini
/// reports 0 both idle and printing, so the stage only counts during a job.
fn stage(print: &Map<String, Value>, state: PrintState) -> Option<u16> {
    let active = matches!(state, PrintState::Preparing | PrintState::Printing | PrintState::Paused);
    let stage = int(print, "stg_cur")?;
    (active && (0..255).contains(&stage)).then_some(stage as u16)
}

/// Marketing names from `get_version` to model codes (Bambu Studio's printer list).
fn model_code(context: &Context) -> Option<String> {
    if let Some(model) = &context.model {
        return Some(model.clone());
    }
    let version = context.version.as_ref()?;
    let by_name = version.product_name.as_deref().and_then(|name| {
        Some(match name.trim_start_matches("Bambu Lab ") {
            "X1 Carbon" | "X1C" => "BL-P001",
            "X1" => "BL-P002",
            "X1E" => "C13",
            "P1P" => "C11",
            "P1S" => "C12",
            "A1 mini" => "N1",
            "A1" => "N2S",
            "P2S" => "N7",
            "H2D" => "O1D",
            "H2S" => "O1S",
            _ => return None,
        })
    });
    // A model this agent does not know yet keeps the name the printer gave, so the user sees
    // what it is; model-specific fields (door, chamber sensor) are then left unknown.
    by_name
        .map(str::to_owned)
        .or_else(|| version.project_name.clone())
        .or_else(|| version.product_name.clone().filter(|name| !name.is_empty()))
}

/// Whether kitt knows this model code's hardware (door switch, chamber sensor, AMS kind).
pub fn is_known_model(code: &str) -> bool {
    KNOWN_MODELS.contains(&code)
}

const KNOWN_MODELS: [&str; 12] =
    ["BL-P001", "BL-P002", "C13", "C11", "C12", "N1", "N2S", "N7", "O1D", "O1S", "O1C", "O1E"];

fn has_door(model: Option<&str>) -> bool {
    matches!(
        model,
        Some(
            "BL-P001"
                | "BL-P002"
                | "C13"
                | "C12"
                | "N7"
                | "O1D"
                | "O1E"
                | "O2D"
                | "O1S"
                | "O1C"
                | "N6"
        )
    )
}

fn has_chamber_sensor(model: Option<&str>) -> bool {
    matches!(
        model,
        Some("BL-P001" | "BL-P002" | "C13" | "O1D" | "O1E" | "O2D" | "O1S" | "O1C" | "N6")
    )
}

fn chamber_temp(
    print: &Map<String, Value>,
    device: Option<&Value>,
    model: Option<&str>,
) -> Option<f32> {
    if let Some((current, _)) = packed(device, &["ctc", "info", "temp"]) {
        return Some(current);
    }
    // The A1 and P1 report a placeholder, not a sensor reading.
    has_chamber_sensor(model).then(|| float(print, "chamber_temper")).flatten()
}

fn door_open(print: &Map<String, Value>, model: Option<&str>) -> Option<bool> {
    if let Some(stat) = print.get("stat").and_then(Value::as_str)
        && let Ok(bits) = i64::from_str_radix(stat, 16)
    {
        return Some(bits & DOOR_OPEN != 0);
    }
    let home_flag = int(print, "home_flag")?;
    has_door(model).then_some(home_flag & DOOR_OPEN != 0)
}

fn control(print: &Map<String, Value>, context: &Context) -> ControlCapability {
    if let Some(known) = context.control_from_acks {
        return known;
    }
    let fun =
        print.get("fun").and_then(Value::as_str).and_then(|f| i64::from_str_radix(f, 16).ok());
    match fun {
        Some(bits) if bits & FUN_SIGNATURE_REQUIRED != 0 => ControlCapability::ReadOnly,
        Some(_) => ControlCapability::Available,
        None => ControlCapability::Unknown,
    }
}

fn fans(print: &Map<String, Value>) -> Vec<Fan> {
    [
        ("cooling_fan_speed", FanKind::PartCooling),
        ("big_fan1_speed", FanKind::Auxiliary),
        ("big_fan2_speed", FanKind::Chamber),
        ("heatbreak_fan_speed", FanKind::Heatbreak),
    ]
    .into_iter()
    .filter_map(|(key, kind)| {
        let level = int(print, key)?.clamp(0, 15);
        Some(Fan { kind, percent: ((level * 100 + 7) / 15) as u8 })
    })
    .collect()
}

fn speed_level(level: i64) -> Option<SpeedLevel> {
    Some(match level {
        1 => SpeedLevel::Silent,
        2 => SpeedLevel::Standard,
        3 => SpeedLevel::Sport,
        4 => SpeedLevel::Ludicrous,
        _ => return None,
    })
}

fn ams_units(print: &Map<String, Value>) -> Vec<AmsUnit> {
    let units = print.get("ams").and_then(|a| a.get("ams")).and_then(Value::as_array);
    units
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|unit| {
            let id = u8::try_from(int(unit, "id")?).ok()?;
            let kind = match unit
                .get("info")
                .and_then(Value::as_str)
                .and_then(|i| i64::from_str_radix(i, 16).ok())
            {
                Some(info) => match info & 0xF {
                    1 => AmsKind::Ams,
                    2 => AmsKind::AmsLite,
                    3 => AmsKind::Ams2Pro,
                    4 => AmsKind::AmsHt,
                    _ => AmsKind::Unknown,
                },
                None if id >= 128 => AmsKind::AmsHt,
                None => AmsKind::Unknown,
            };
            let trays = unit.get("tray").and_then(Value::as_array);
            let trays = trays
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .filter_map(|t| Some(tray(t, u8::try_from(int(t, "id")?).ok()?)))
                .collect();
            // The AMS Lite has neither a humidity nor a temperature sensor; it reports
            // placeholders.
            let sensors = kind != AmsKind::AmsLite;
            Some(AmsUnit {
                id,
                kind,
                humidity: int(unit, "humidity")
                    .filter(|h| sensors && (1..=5).contains(h))
                    .map(|h| h as u8),
                temp_c: float(unit, "temp").filter(|_| sensors),
                trays,
            })
        })
        .collect()
}

/// The tagged spools the report's trays hold, with what their RFID tags say (a tray without
/// a tag, `tray_uuid` all zeros, has none).
pub fn spool_tags(print: &Map<String, Value>) -> Vec<proto::SpoolTag> {
    let tag = |unit: Option<u8>, slot: u8, tray: &Map<String, Value>| -> Option<proto::SpoolTag> {
        let described = self::tray(tray, slot);
        let tray_uuid = described.tray_uuid?;
        let grams = int(tray, "tray_weight").and_then(|g| u32::try_from(g).ok()).filter(|g| *g > 0);
        let diameter = float(tray, "tray_diameter")
            .filter(|d| *d > 0.5 && *d < 5.0)
            .map(|d| (f64::from(d) * 1000.0).round() as u32);
        Some(proto::SpoolTag {
            unit,
            slot,
            tray_uuid,
            product: text(tray, "tray_sub_brands"),
            material: described.material,
            color: described.color,
            weight_g: grams,
            diameter_um: diameter,
            remain_percent: described.remain_percent,
        })
    };
    let mut tags = Vec::new();
    let units = print.get("ams").and_then(|a| a.get("ams")).and_then(Value::as_array);
    for unit in units.into_iter().flatten().filter_map(Value::as_object) {
        let Some(id) = int(unit, "id").and_then(|i| u8::try_from(i).ok()) else { continue };
        let trays = unit.get("tray").and_then(Value::as_array);
        for tray in trays.into_iter().flatten().filter_map(Value::as_object) {
            let Some(slot) = int(tray, "id").and_then(|i| u8::try_from(i).ok()) else { continue };
            tags.extend(tag(Some(id), slot, tray));
        }
    }
    if let Some(external) = print.get("vt_tray").and_then(Value::as_object) {
        tags.extend(tag(None, 0, external));
    }
    tags
}

fn tray(tray: &Map<String, Value>, slot: u8) -> Tray {
    let color = tray.get("tray_color").and_then(Value::as_str).and_then(|c| {
        let rgb = c.get(..6)?;
        let value = u32::from_str_radix(rgb, 16).ok()?;
        let [_, r, g, b] = value.to_be_bytes();
        Some(Rgb([r, g, b]))
    });
    Tray {
        slot,
        material: text(tray, "tray_type"),
        color,
        // -1 means "unknown" (a spool without RFID).
        remain_percent: int(tray, "remain").filter(|r| (0..=100).contains(r)).map(|r| r as u8),
        tray_uuid: text(tray, "tray_uuid").filter(|u| u.bytes().any(|b| b != b'0')),
    }
}

fn active_tray(print: &Map<String, Value>, device: Option<&Value>) -> Option<TrayRef> {
    if let Some(extruder) = active_extruder(device)
        && let Some(snow) = extruder.get("snow").and_then(as_i64)
    {
        let unit = snow >> 8;
        return match (snow, unit) {
            (65535, _) => None,
            (_, 254 | 255) => Some(TrayRef::External),
            _ => Some(TrayRef::Ams { unit: u8::try_from(unit).ok()?, slot: (snow & 3) as u8 }),
        };
    }
    let now = int(print.get("ams")?.as_object()?, "tray_now")?;
    match now {
        255 => None,
        254 => Some(TrayRef::External),
        128..=135 => Some(TrayRef::Ams { unit: now as u8, slot: 0 }),
        0..=15 => Some(TrayRef::Ams { unit: (now / 4) as u8, slot: (now % 4) as u8 }),
        _ => None,
    }
}

fn active_extruder(device: Option<&Value>) -> Option<&Value> {
    let extruder = device?.get("extruder")?;
    let active = extruder.get("state").and_then(as_i64).map(|s| (s >> 4) & 0xF).unwrap_or(0);
    let infos = extruder.get("info")?.as_array()?;
    infos.iter().find(|i| i.get("id").and_then(as_i64) == Some(active)).or_else(|| infos.first())
}

fn active_extruder_temp(device: Option<&Value>) -> Option<(f32, f32)> {
    unpack(active_extruder(device)?.get("temp")?)
}

fn packed(device: Option<&Value>, path: &[&str]) -> Option<(f32, f32)> {
    let mut value = device?;
    for key in path {
        value = value.get(key)?;
    }
    unpack(value)
}

fn unpack(value: &Value) -> Option<(f32, f32)> {
    let packed = as_i64(value)?;
    Some(((packed & 0xFFFF) as f32, ((packed >> 16) & 0xFFFF) as f32))
}

fn hms(print: &Map<String, Value>) -> Vec<Hms> {
    let entries = print.get("hms").and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(Hms {
                attr: u32::try_from(as_i64(e.get("attr")?)?).ok()?,
                code: u32::try_from(as_i64(e.get("code")?)?).ok()?,
            })
        })
        .collect()
}

fn lights(print: &Map<String, Value>) -> Vec<Light> {
    let entries = print.get("lights_report").and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .filter_map(|light| {
            let node = match light.get("node")?.as_str()? {
                "chamber_light" => LightNode::ChamberLight,
                "work_light" => LightNode::WorkLight,
                "chamber_light2" => LightNode::ChamberLight2,
                "heatbed_light" => LightNode::HeatbedLight,
                other => LightNode::Other(other.to_owned()),
            };
            let mode = match light.get("mode")?.as_str()? {
                "on" => LightMode::On,
                "off" => LightMode::Off,
                "flashing" => LightMode::Flashing,
                _ => return None,
            };
            Some(Light { node, mode })
        })
        .collect()
}

fn int(object: &Map<String, Value>, key: &str) -> Option<i64> {
    object.get(key).and_then(as_i64)
}

fn float(object: &Map<String, Value>, key: &str) -> Option<f32> {
    match object.get(key)? {
        Value::Number(n) => n.as_f64().map(|f| f as f32),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f32| f.is_finite())
}

fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
