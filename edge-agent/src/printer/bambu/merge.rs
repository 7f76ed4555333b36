//! Merging Bambu reports into one document (sans-IO).
//!
//! P1/A1 firmware sends a full report (`msg: 0`) after `pushall` and deltas (`msg: 1`)
//! after that; X1 firmware sends full reports. The merger keeps the `print` object as the
//! printer last described it:
//!
//! 1. Objects deep-merge: a missing key means "unchanged".
//! 2. Arrays of records merge by key: `ams.ams[]` and `ams.ams[].tray[]` by `id`,
//!    `lights_report[]` by `node`, `device.extruder.info[]` and `device.nozzle.info[]` and
//!    `vir_slot[]` by `id`. Every other array (`hms`, `stg`, `s_obj`, …) is replaced
//!    wholesale, so an empty `hms: []` clears the alerts.
//! 3. A tray delta holding only `id` (and maybe `state`) means the slot is empty.
//! 4. Command acknowledgements (objects with `result`) are returned, never merged.
//! 5. A full report replaces the document.

use serde_json::{Map, Value};

/// The largest report accepted, in bytes. Real full reports are 5–15 KB.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// Why a report was rejected. The merged document is unchanged when this is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("report of {len} bytes exceeds the {MAX_REPORT_BYTES}-byte limit")]
    Oversized { len: usize },
    #[error("report is not valid JSON: {0}")]
    NotJson(String),
    #[error("report is not a JSON object")]
    NotAnObject,
    #[error("`{category}` in the report is not an object")]
    CategoryNotAnObject { category: String },
}

/// What one MQTT message held, besides state merged into the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Part of `print` was merged; `full` when it was a full report.
    Report {
        full: bool,
    },
    Ack(Ack),
    /// The reply to `info.get_version`.
    Version(VersionInfo),
}

/// A command acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub category: String,
    pub command: Option<String>,
    pub sequence_id: Option<String>,
    pub success: bool,
    pub reason: Option<String>,
    pub err_code: Option<i64>,
}

/// What `get_version` says about the printer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionInfo {
    /// The marketing name, e.g. "Bambu Lab A1 mini", on newer firmware.
    pub product_name: Option<String>,
    /// The OTA (main firmware) version.
    pub firmware: Option<String>,
    /// The `project_name` of a module, which is the model code on older firmware.
    pub project_name: Option<String>,
}

/// The merged `print` document of one printer.
#[derive(Debug, Default, Clone)]
pub struct ReportMerger {
    print: Map<String, Value>,
    has_full: bool,
}

impl ReportMerger {
    pub fn new() -> ReportMerger {
        ReportMerger::default()
    }

    /// The merged `print` object.
    pub fn document(&self) -> &Map<String, Value> {
        &self.print
    }

    /// Whether a full report has arrived since the last [`ReportMerger::reset`].
    pub fn has_full_report(&self) -> bool {
        self.has_full
    }

    /// Forgets everything: after a reconnect the next full report starts afresh.
    pub fn reset(&mut self) {
        self.print.clear();
        self.has_full = false;
    }

    /// Applies one MQTT payload from `device/<serial>/report`.
    pub fn apply(&mut self, payload: &[u8]) -> Result<Vec<Incoming>, ReportError> {
        if payload.len() > MAX_REPORT_BYTES {
            return Err(ReportError::Oversized { len: payload.len() });
        }
        let root: Value =
            serde_json::from_slice(payload).map_err(|e| ReportError::NotJson(e.to_string()))?;
        let Value::Object(root) = root else {
            return Err(ReportError::NotAnObject);
        };
        // Validate every category before changing anything.
        for (category, body) in &root {
            if !body.is_object() {
                return Err(ReportError::CategoryNotAnObject { category: category.clone() });
            }
        }
        let mut out = Vec::new();
        for (category, body) in root {
            let Value::Object(body) = body else { continue };
            if body.contains_key("result") {
                out.push(Incoming::Ack(ack(&category, &body)));
                continue;
            }
            match category.as_str() {
                "print" if is_report(&body) => {
                    let full = body.get("msg").and_then(as_i64) == Some(0);
                    if full {
                        self.print = body;
                        self.has_full = true;
                    } else {
                        merge_object(&mut self.print, body, "");
                    }
                    out.push(Incoming::Report { full });
                }
                "info" if body.get("command").and_then(Value::as_str) == Some("get_version") => {
                    out.push(Incoming::Version(version_info(&body)));
                }
                // Log lines (`mc_print.push_info`) and echoes carry no state.
                _ => {}
            }
        }
        Ok(out)
    }
}

fn is_report(body: &Map<String, Value>) -> bool {
    match body.get("command").and_then(Value::as_str) {
        None | Some("push_status") => true,
        Some(_) => false,
    }
}

fn ack(category: &str, body: &Map<String, Value>) -> Ack {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let result = text("result").unwrap_or_default().to_ascii_lowercase();
    let sequence_id = body
        .get("sequence_id")
        .or_else(|| body.get("sequenceId"))
        .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|n| n.to_string())));
    Ack {
        category: category.to_owned(),
        command: text("command"),
        sequence_id,
        success: result == "success" || result == "ok",
        reason: text("reason").filter(|r| !r.is_empty()),
        err_code: body.get("err_code").and_then(as_i64).filter(|&c| c != 0),
    }
}

fn version_info(body: &Map<String, Value>) -> VersionInfo {
    let mut info = VersionInfo::default();
    for module in body.get("module").and_then(Value::as_array).into_iter().flatten() {
        let text = |key: &str| {
            module.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
        };
        if text("name").as_deref() == Some("ota") {
            info.firmware = text("sw_ver");
            info.product_name = text("product_name");
        }
        if info.project_name.is_none() {
            info.project_name = text("project_name");
        }
    }
    info
}

/// A number that may arrive as a JSON number or a string.
pub fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Which arrays are keyed, by their path of object keys from `print`, and by which field.
fn array_key(path: &str) -> Option<&'static str> {
    match path {
        "ams.ams" | "ams.ams.tray" | "device.extruder.info" | "device.nozzle.info" | "vir_slot" => {
            Some("id")
        }
        "lights_report" => Some("node"),
        _ => None,
    }
}

fn merge_object(dst: &mut Map<String, Value>, src: Map<String, Value>, path: &str) {
    for (key, value) in src {
        let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match dst.get_mut(&key) {
            Some(existing) => merge_value(existing, value, &child),
            None => {
                dst.insert(key, value);
            }
        }
    }
}

fn merge_value(dst: &mut Value, src: Value, path: &str) {
    match (dst, src) {
        (Value::Object(dst), Value::Object(src)) => merge_object(dst, src, path),
        (Value::Array(dst), Value::Array(src)) if array_key(path).is_some() => {
            let key = array_key(path).unwrap_or("id");
            merge_keyed(dst, src, key, path);
        }
        (dst, src) => *dst = src,
    }
}

fn merge_keyed(dst: &mut Vec<Value>, src: Vec<Value>, key: &str, path: &str) {
    for item in src {
        let Some(id) = item.get(key).cloned() else {
            // An element without its key cannot be matched: take the array as sent.
            dst.clear();
            dst.push(item);
            continue;
        };
        match dst.iter_mut().find(|existing| existing.get(key) == Some(&id)) {
            Some(existing) if path == "ams.ams.tray" && is_empty_tray(&item) => *existing = item,
            Some(existing) => merge_value(existing, item, path),
            None => dst.push(item),
        }
    }
}

/// A tray delta with nothing but `id` (and `state`) says the slot was emptied.
fn is_empty_tray(tray: &Value) -> bool {
    tray.as_object().is_some_and(|t| t.keys().all(|k| k == "id" || k == "state"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply(merger: &mut ReportMerger, value: Value) -> Vec<Incoming> {
        merger.apply(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn deltas_merge_into_the_full_report() {
        let mut merger = ReportMerger::new();
        apply(
            &mut merger,
            json!({"print": {"msg": 0, "command": "push_status", "bed_temper": 20.0,
                "ams": {"ams": [{"id": "0", "humidity": "4",
                    "tray": [{"id": "0", "tray_type": "PLA"}, {"id": "1", "tray_type": "PETG"}]}]},
                "lights_report": [{"node": "chamber_light", "mode": "off"}],
                "hms": [{"attr": 1, "code": 2}]}}),
        );
        let out = apply(
            &mut merger,
            json!({"print": {"msg": 1, "bed_temper": 55.5,
                "ams": {"ams": [{"id": "0", "tray": [{"id": "1", "remain": 40}]}]},
                "lights_report": [{"node": "chamber_light", "mode": "on"}],
                "hms": []}}),
        );
        assert_eq!(out, [Incoming::Report { full: false }]);
        let doc = Value::Object(merger.document().clone());
        assert_eq!(doc["bed_temper"], 55.5);
        assert_eq!(doc["ams"]["ams"][0]["humidity"], "4", "untouched keys stay");
        assert_eq!(doc["ams"]["ams"][0]["tray"][0]["tray_type"], "PLA");
        assert_eq!(
            doc["ams"]["ams"][0]["tray"][1],
            json!({"id": "1", "tray_type": "PETG", "remain": 40})
        );
        assert_eq!(doc["lights_report"], json!([{"node": "chamber_light", "mode": "on"}]));
        assert_eq!(doc["hms"], json!([]), "hms is replaced wholesale");
    }

    #[test]
    fn a_tray_with_only_its_id_is_emptied() {
        let mut merger = ReportMerger::new();
        apply(
            &mut merger,
            json!({"print": {"msg": 0, "ams": {"ams": [{"id": "0",
            "tray": [{"id": "2", "tray_type": "PLA", "tray_color": "FF0000FF"}]}]}}}),
        );
        apply(
            &mut merger,
            json!({"print": {"msg": 1, "ams": {"ams": [{"id": "0",
            "tray": [{"id": "2", "state": 0}]}]}}}),
        );
        let tray = &merger.document()["ams"]["ams"][0]["tray"][0];
        assert_eq!(tray, &json!({"id": "2", "state": 0}));
    }

    #[test]
    fn a_full_report_replaces_the_document() {
        let mut merger = ReportMerger::new();
        apply(&mut merger, json!({"print": {"msg": 0, "old_field": 1}}));
        apply(&mut merger, json!({"print": {"msg": 0, "new_field": 2}}));
        assert!(!merger.document().contains_key("old_field"));
        assert!(merger.has_full_report());
    }

    #[test]
    fn acknowledgements_are_returned_not_merged() {
        let mut merger = ReportMerger::new();
        let out = apply(
            &mut merger,
            json!({"print": {"command": "pause", "sequence_id": "7", "result": "FAIL",
                "reason": "denied", "err_code": 84033543, "param": ""}}),
        );
        assert_eq!(
            out,
            [Incoming::Ack(Ack {
                category: "print".into(),
                command: Some("pause".into()),
                sequence_id: Some("7".into()),
                success: false,
                reason: Some("denied".into()),
                err_code: Some(84033543),
            })]
        );
        assert!(merger.document().is_empty());
    }

    #[test]
    fn bad_input_is_rejected_and_changes_nothing() {
        let mut merger = ReportMerger::new();
        apply(&mut merger, json!({"print": {"msg": 0, "bed_temper": 20}}));
        let before = merger.document().clone();
        assert!(matches!(merger.apply(b"{\"print\": {"), Err(ReportError::NotJson(_))));
        assert_eq!(merger.apply(b"[1,2]"), Err(ReportError::NotAnObject));
        assert_eq!(
            merger.apply(br#"{"print": {"msg": 1, "bed_temper": 99}, "info": 3}"#),
            Err(ReportError::CategoryNotAnObject { category: "info".into() })
        );
        let huge = vec![b' '; MAX_REPORT_BYTES + 1];
        assert_eq!(merger.apply(&huge), Err(ReportError::Oversized { len: MAX_REPORT_BYTES + 1 }));
        assert_eq!(merger.document(), &before);
    }

    #[test]
    fn version_replies_are_read() {
        let fixture = include_str!("../../../test_data/bambu/get_version-a1mini.json");
        let fixture: Value = serde_json::from_str(fixture).unwrap();
        let mut merger = ReportMerger::new();
        let out = apply(&mut merger, fixture["message"].clone());
        let [Incoming::Version(info)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(info.product_name.as_deref(), Some("Bambu Lab A1 mini"));
        assert_eq!(info.firmware.as_deref(), Some("01.07.02.00"));
    }
}
