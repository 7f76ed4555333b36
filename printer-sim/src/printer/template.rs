//! The parts of a report that the simulation never changes, and the `get_version` reply.
//!
//! Shapes follow the real A1 mini captures in `shared/fixtures/bambu/` (field names, which
//! numbers are strings); values are the simulator's own.

use serde_json::{Map, Value, json};

use crate::config::{Family, Model, PrinterSerial};

/// `home_flag` as captured on an idle A1 mini (axes homed, SD card present, …).
pub const HOME_FLAG: i64 = 847_201_680;
/// `wifi_signal` the simulator reports.
pub const WIFI_SIGNAL: &str = "-45dBm";
/// X1 `fun` feature flags without the "MQTT signature required" bit.
pub const FUN_BASE: u64 = 0x3EC1_8FFF_9CFF;
/// The `fun` bit that says control commands need a Bambu signature.
pub const FUN_SIGNATURE_REQUIRED: u64 = 0x2000_0000;

/// The fields of a full report that never change, keyed by report field name.
pub fn static_fields(model: Model) -> Map<String, Value> {
    let mut fields = object(json!({
        "ams_rfid_status": 0,
        "ams_status": 0,
        "cali_version": 0,
        "fan_gear": 0,
        "filam_bak": [],
        "force_upgrade": false,
        "gcode_file_prepare_percent": "0",
        "home_flag": HOME_FLAG,
        "hw_switch_state": 1,
        "k": "0.0200",
        "lifecycle": "product",
        "mc_print_error_code": "0",
        "mc_print_line_number": "0",
        "mc_print_sub_stage": 0,
        "mess_production_state": "active",
        "nozzle_diameter": "0.4",
        "nozzle_type": "stainless_steel",
        "profile_id": "0",
        "project_id": "0",
        "queue_est": 0,
        "queue_number": 0,
        "queue_sts": 0,
        "queue_total": 0,
        "s_obj": [],
        "sdcard": true,
        "subtask_id": "0",
        "task_id": "0",
        "wifi_signal": WIFI_SIGNAL
    }));
    let nested = [
        (
            "ipcam",
            json!({
                "ipcam_dev": "1",
                "ipcam_record": "enable",
                "mode_bits": 3,
                "resolution": "1080p",
                "rtsp_url": "disable",
                "timelapse": "disable",
                "tutk_server": "disable"
            }),
        ),
        ("net", json!({ "conf": 0, "info": [{ "ip": 16_777_343, "mask": 16_777_215 }] })),
        ("online", json!({ "ahb": false, "rfid": false, "version": 1 })),
        (
            "upgrade_state",
            json!({
                "consistency_request": false,
                "cur_state_code": 0,
                "dis_state": 0,
                "err_code": 0,
                "force_upgrade": false,
                "message": "",
                "module": "",
                "new_ver_list": [],
                "new_version_state": 2,
                "progress": "",
                "sequence_id": 0,
                "status": "IDLE"
            }),
        ),
        ("upload", json!({ "message": "", "progress": 0, "status": "idle" })),
        ("vt_tray", external_spool()),
        (
            "xcam",
            json!({
                "buildplate_marker_detector": true,
                "first_layer_inspector": model.family() == Family::X1,
                "halt_print_sensitivity": "medium",
                "print_halt": true,
                "printing_monitor": true,
                "spaghetti_detector": true
            }),
        ),
    ];
    for (key, value) in nested {
        fields.insert(key.to_owned(), value);
    }
    fields
}

/// The external spool (`vt_tray`).
fn external_spool() -> Value {
    json!({
        "bed_temp": "0",
        "bed_temp_type": "0",
        "cali_idx": -1,
        "id": "254",
        "k": 0.02,
        "n": 1,
        "nozzle_temp_max": "220",
        "nozzle_temp_min": "190",
        "remain": 0,
        "tag_uid": "0000000000000000",
        "tray_color": "161616FF",
        "tray_diameter": "0.00",
        "tray_id_name": "",
        "tray_info_idx": "GFA00",
        "tray_sub_brands": "",
        "tray_temp": "0",
        "tray_time": "0",
        "tray_type": "PLA",
        "tray_uuid": "00000000000000000000000000000000",
        "tray_weight": "0",
        "xcam_info": "000000000000000000000000"
    })
}

/// The map of a JSON object literal.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The AMS block without `tray_now` (which the simulation sets).
/// The AMS's four trays; `loaded` replaces their material and colour (`RRGGBB`), in order.
/// A tagged spool's `tray_uuid`, unique to this printer's tray (each printer's spools are
/// spools of their own): the template's, its last eight digits a hash of the serial.
fn tray_uuid(template: &str, serial: &str) -> String {
    if template.bytes().all(|b| b == b'0') {
        return template.to_owned();
    }
    // FNV-1a.
    let hash =
        serial.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{}{hash:08X}", &template[..template.len() - 8])
}

/// The AMS block; `serial` makes the tagged spools' identities this printer's own.
pub fn ams(model: Model, loaded: Option<&[(String, String)]>, serial: &str) -> Map<String, Value> {
    let (info, temp) = match model.family() {
        // AMS Lite (type 2), which has no temperature sensor.
        Family::A1 => ("1002", "0.0"),
        // AMS (type 1).
        Family::P1 | Family::X1 => ("1001", "24.5"),
    };
    let trays = [
        ("0", "PLA", "PLA Basic", "FFFFFFFF", "GFA00", 87, "A3F1C2D4E5F60718293A4B5C6D7E8F90"),
        ("1", "PLA", "PLA Basic", "000000FF", "GFA00", 42, "0B1C2D3E4F5061728394A5B6C7D8E9F0"),
        ("2", "PETG", "PETG HF", "C12E1FFF", "GFG02", 100, "5E6F708192A3B4C5D6E7F8091A2B3C4D"),
        ("3", "PLA", "", "00AE42FF", "GFL99", -1, "00000000000000000000000000000000"),
    ];
    let colors: Vec<String>;
    let trays: Vec<_> = match loaded {
        Some(loaded) => {
            colors = loaded.iter().map(|(_, color)| format!("{color}FF")).collect();
            trays
                .iter()
                .zip(loaded.iter().zip(&colors))
                .map(|(&(id, _, _, _, _, remain, uuid), ((tray_type, _), color))| {
                    (id, tray_type.as_str(), "", color.as_str(), "GFL99", remain, uuid)
                })
                .collect()
        }
        None => trays.to_vec(),
    };
    let tray: Vec<Value> = trays
        .into_iter()
        .map(|(id, tray_type, sub_brand, color, info_idx, remain, uuid)| {
            json!({
                "bed_temp": "35",
                "bed_temp_type": "1",
                "cali_idx": -1,
                "cols": [color],
                "ctype": 0,
                "id": id,
                "k": 0.02,
                "n": 1,
                "nozzle_temp_max": if tray_type == "PETG" { "270" } else { "230" },
                "nozzle_temp_min": if tray_type == "PETG" { "230" } else { "190" },
                "remain": remain,
                "state": 3,
                "tag_uid": if remain < 0 { "0000000000000000" } else { "5A1E0B7C00000100" },
                "total_len": 330_000,
                "tray_color": color,
                "tray_diameter": "1.75",
                "tray_id_name": "",
                "tray_info_idx": info_idx,
                "tray_sub_brands": sub_brand,
                "tray_temp": "55",
                "tray_time": "8",
                "tray_type": tray_type,
                "tray_uuid": tray_uuid(uuid, serial),
                "tray_weight": "1000",
                "xcam_info": "000000000000000000000000"
            })
        })
        .collect();
    let ams = json!({
        "ams": [{
            "dry_time": 0,
            "humidity": "4",
            "humidity_raw": "31",
            "id": "0",
            "info": info,
            "temp": temp,
            "tray": tray
        }],
        "ams_exist_bits": "1",
        "insert_flag": true,
        "power_on_flag": false,
        "tray_exist_bits": "f",
        "tray_is_bbl_bits": "7",
        "tray_pre": "255",
        "tray_read_done_bits": "f",
        "tray_reading_bits": "0",
        "tray_tar": "255",
        "version": 3
    });
    object(ams)
}

/// The lights a model reports, all off.
pub fn lights(model: Model) -> Vec<(String, String)> {
    let nodes: &[&str] = match model.family() {
        Family::A1 => &["chamber_light"],
        Family::P1 | Family::X1 => &["chamber_light", "work_light"],
    };
    nodes.iter().map(|node| ((*node).to_owned(), "off".to_owned())).collect()
}

/// The firmware version the simulated `model` runs.
pub fn firmware_version(model: Model) -> &'static str {
    match model {
        Model::A1Mini | Model::A1 => "01.07.02.00",
        Model::P1P | Model::P1S => "01.08.02.00",
        Model::X1C | Model::X1 | Model::X1E => "01.09.00.00",
    }
}

/// The `info.get_version` reply, modelled on a real A1 mini's.
pub fn version_reply(model: Model, serial: &PrinterSerial, sequence_id: Value) -> Value {
    let ota_version = firmware_version(model);
    let (ap_name, ap_hw) = match model {
        Model::A1Mini | Model::A1 => ("esp32", "AP05"),
        Model::P1P | Model::P1S => ("esp32", "AP04"),
        Model::X1C | Model::X1 => ("rv1126", "AP05"),
        Model::X1E => ("rv1126", "AP02"),
    };
    let (ams_name, ams_hw, ams_product) = match model.family() {
        Family::A1 => ("ams_f1/0", "AMS_F102", "AMS Lite"),
        Family::P1 | Family::X1 => ("ams/0", "AMS08", "AMS"),
    };
    let module_sn = |suffix: &str| format!("{}{suffix}", serial.as_str());
    json!({
        "info": {
            "command": "get_version",
            "module": [
                {
                    "flag": 3,
                    "hw_ver": "OTA",
                    "loader_ver": "00.00.00.00",
                    "name": "ota",
                    "product_name": model.product_name(),
                    "sn": serial.as_str(),
                    "sw_ver": ota_version,
                    "visible": true
                },
                {
                    "flag": 0,
                    "hw_ver": ap_hw,
                    "loader_ver": "00.00.00.00",
                    "name": ap_name,
                    "product_name": "",
                    "project_name": model.code(),
                    "sn": module_sn("AP"),
                    "sw_ver": "01.16.39.58",
                    "visible": false
                },
                {
                    "flag": 0,
                    "hw_ver": "MC02",
                    "loader_ver": "00.00.00.32",
                    "name": "mc",
                    "product_name": "",
                    "sn": module_sn("MC"),
                    "sw_ver": "00.01.30.10",
                    "visible": false
                },
                {
                    "flag": 0,
                    "hw_ver": "TH03",
                    "loader_ver": "00.00.00.26",
                    "name": "th",
                    "product_name": "",
                    "sn": module_sn("TH"),
                    "sw_ver": "00.00.07.72",
                    "visible": false
                },
                {
                    "flag": 0,
                    "hw_ver": ams_hw,
                    "loader_ver": "00.00.00.00",
                    "name": ams_name,
                    "product_name": ams_product,
                    "sn": module_sn("AMS"),
                    "sw_ver": "00.00.08.15",
                    "visible": true
                }
            ],
            "sequence_id": sequence_id
        }
    })
}
