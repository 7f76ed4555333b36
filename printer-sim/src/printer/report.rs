//! `push_status` reports: the full snapshot, and deltas against the last one published.

use serde_json::{Map, Value, json};

use super::{GcodeState, Printer, template};
use crate::config::{Family, ReportStyle};

/// `msg` of a full snapshot.
const MSG_FULL: u8 = 0;
/// `msg` of a delta.
const MSG_DELTA: u8 = 1;

impl Printer {
    /// The periodic report: a delta (`msg: 1`) or a full snapshot (`msg: 0`) depending on the
    /// report style; `None` while silent.
    pub fn report(&mut self) -> Option<Value> {
        if self.faults.silent {
            return None;
        }
        match self.settings.report_style {
            ReportStyle::Full => Some(self.full_report()),
            ReportStyle::Delta => {
                let fields = self.fields();
                let mut delta = match &self.last_published {
                    Some(last) => diff(last, &fields),
                    None => fields.clone(),
                };
                if delta.is_empty() {
                    // Real P1/A1 keep pushing small deltas while nothing happens.
                    delta.insert("wifi_signal".into(), json!(template::WIFI_SIGNAL));
                }
                Some(self.publish(delta, fields, MSG_DELTA))
            }
        }
    }

    /// A full snapshot (`msg: 0`), as sent after `pushing.pushall`. Later deltas are relative
    /// to it.
    pub fn full_report(&mut self) -> Value {
        let fields = self.fields();
        self.publish(fields.clone(), fields, MSG_FULL)
    }

    /// The full state as a report would show it, without publishing anything.
    pub fn snapshot(&self) -> Value {
        json!({ "print": self.fields() })
    }

    fn publish(
        &mut self,
        mut body: Map<String, Value>,
        fields: Map<String, Value>,
        msg: u8,
    ) -> Value {
        self.push_counter += 1;
        body.insert("command".into(), json!("push_status"));
        body.insert("msg".into(), json!(msg));
        body.insert("sequence_id".into(), json!(self.push_counter.to_string()));
        self.last_published = Some(fields);
        if self.print_error_transient {
            // The cancel code is reported once, then cleared (doc §3.6).
            self.print_error_transient = false;
            self.state.print_error = 0;
        }
        json!({ "print": body })
    }

    /// Every field of a full report except `command`, `msg` and `sequence_id`.
    pub(super) fn fields(&self) -> Map<String, Value> {
        let model = self.settings.model;
        let state = &self.state;
        let mut fields = template::static_fields(model);
        let serial = self.settings.serial.to_string();
        let mut ams = template::ams(model, self.settings.trays.as_deref(), &serial);
        ams.insert("tray_now".into(), json!(state.tray_now));
        let hms: Vec<Value> =
            state.hms.iter().map(|hms| json!({ "attr": hms.attr, "code": hms.code })).collect();
        let lights: Vec<Value> =
            state.lights.iter().map(|(node, mode)| json!({ "node": node, "mode": mode })).collect();
        let chamber_temper = match model.family() {
            // A1 and P1 have no chamber sensor and report a placeholder.
            Family::A1 | Family::P1 => json!(5),
            Family::X1 => json!(if state.gcode_state.is_busy() { 31.0 } else { 28.0 }),
        };
        let mc_print_stage = match state.gcode_state {
            GcodeState::Prepare | GcodeState::Running => "2",
            GcodeState::Pause => "3",
            GcodeState::Idle | GcodeState::Finish | GcodeState::Failed => "1",
        };
        let heatbreak_fan = if state.nozzle.current > 50.0 { 15 } else { 0 };
        let dynamic = json!({
            "ams": ams,
            "bed_target_temper": state.bed.target,
            "bed_temper": state.bed.current,
            "big_fan1_speed": state.aux_fan.to_string(),
            "big_fan2_speed": state.chamber_fan.to_string(),
            "chamber_temper": chamber_temper,
            "cooling_fan_speed": state.cooling_fan.to_string(),
            "fail_reason": "0",
            "gcode_file": state.gcode_file,
            "gcode_state": state.gcode_state.as_str(),
            "heatbreak_fan_speed": heatbreak_fan.to_string(),
            "hms": hms,
            "layer_num": state.layer_num,
            "lights_report": lights,
            "mc_percent": state.mc_percent,
            "mc_print_stage": mc_print_stage,
            "mc_remaining_time": state.mc_remaining_time,
            "nozzle_target_temper": state.nozzle.target,
            "nozzle_temper": state.nozzle.current,
            "print_error": state.print_error,
            "print_type": state.print_type,
            "spd_lvl": state.spd_lvl,
            "spd_mag": speed_magnitude(state.spd_lvl),
            "stg": state.stg,
            "stg_cur": state.stg_cur,
            "subtask_name": state.subtask_name,
            "total_layer_num": state.total_layer_num,
        });
        if let Value::Object(dynamic) = dynamic {
            fields.extend(dynamic);
        }
        if model.family() == Family::X1 {
            let mut fun = template::FUN_BASE;
            if self.faults.refuse_control {
                fun |= template::FUN_SIGNATURE_REQUIRED;
            }
            fields.insert("fun".into(), json!(format!("{fun:X}")));
        }
        fields
    }
}

/// `spd_mag` (%) for a speed level.
fn speed_magnitude(level: u8) -> u32 {
    match level {
        1 => 50,
        3 => 124,
        4 => 166,
        _ => 100,
    }
}

/// The fields of `new` that differ from `old`; objects are compared key by key (a delta
/// carries only the changed keys of a nested object), arrays and scalars as a whole.
fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut changed = Map::new();
    for (key, value) in new {
        match (old.get(key), value) {
            (Some(before), _) if before == value => {}
            (Some(Value::Object(before)), Value::Object(after)) => {
                let nested = diff(before, after);
                if !nested.is_empty() {
                    changed.insert(key.clone(), Value::Object(nested));
                }
            }
            _ => {
                changed.insert(key.clone(), value.clone());
            }
        }
    }
    changed
}
