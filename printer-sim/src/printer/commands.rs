//! Requests published to `device/<serial>/request`, and the ACKs the printer answers with.
//!
//! An ACK is the request's category object echoed back (`sequence_id`, `command`, `param` and
//! every other field as sent) plus `result` (`success` or `failed`) and, on failure, `reason`.
//! Commands that make no sense in the current state (pausing an idle printer, starting a job
//! on a busy one) are ACKed `failed` with a reason; unknown commands too.

use serde_json::{Map, Value, json};
use tracing::{debug, warn};

use super::{DEFAULT_GCODE_FILE, Outgoing, Printer, template};
use crate::config::{ERR_CODE_VERIFICATION_FAILED, HMS_COMMAND_VERIFICATION_FAILED, JobSpec};

impl Printer {
    /// Handles one request (any number of categories in one message). Returns what to
    /// publish: ACKs, the `get_version` reply, a full report after `pushall`. Silent printers
    /// return nothing.
    pub fn handle_request(&mut self, request: &Value) -> Vec<Outgoing> {
        if self.faults.silent {
            return Vec::new();
        }
        let Value::Object(categories) = request else {
            warn!("Ignoring a request that is not a JSON object.");
            return Vec::new();
        };
        let mut outgoing = Vec::new();
        for (category, body) in categories {
            let Value::Object(body) = body else {
                warn!(category, "Ignoring a request category that is not an object.");
                continue;
            };
            outgoing.extend(self.handle_command(category, body));
        }
        outgoing
    }

    fn handle_command(&mut self, category: &str, body: &Map<String, Value>) -> Option<Outgoing> {
        let command = body.get("command").and_then(Value::as_str).unwrap_or_default();
        debug!(category, command, "Request.");
        match (category, command) {
            ("pushing", "pushall") => return Some(Outgoing::Report(self.full_report())),
            // `start` re-enables pushes on a real printer; ours never stop. No ACK either way.
            ("pushing", _) => return None,
            ("info", "get_version") => {
                let sequence_id = body.get("sequence_id").cloned().unwrap_or(json!("0"));
                let reply = template::version_reply(
                    self.settings.model,
                    &self.settings.serial,
                    sequence_id,
                );
                return Some(Outgoing::Reply(reply));
            }
            _ => {}
        }
        if self.faults.refuse_control {
            if !self.state.hms.contains(&HMS_COMMAND_VERIFICATION_FAILED) {
                self.state.hms.push(HMS_COMMAND_VERIFICATION_FAILED);
            }
            let mut reply = ack(category, body, Err("mqtt message verify failed".into()));
            if let Some(Value::Object(inner)) = reply.get_mut(category) {
                inner.insert("err_code".into(), json!(ERR_CODE_VERIFICATION_FAILED));
            }
            return Some(Outgoing::Reply(reply));
        }
        let result = match (category, command) {
            ("print", "pause") => self.pause().map_err(String::from),
            ("print", "resume") => self.resume().map_err(String::from),
            ("print", "stop") => self.stop().map_err(String::from),
            ("print", "print_speed") => self.print_speed(body),
            ("print", "gcode_line") => self.gcode_line(body),
            ("print", "project_file") => self.project_file(body),
            ("system", "ledctrl") => self.ledctrl(body),
            _ => Err("unsupported command".into()),
        };
        Some(Outgoing::Reply(ack(category, body, result)))
    }

    fn print_speed(&mut self, body: &Map<String, Value>) -> Result<(), String> {
        let level = match body.get("param") {
            Some(Value::String(text)) => text.trim().parse::<u8>().ok(),
            Some(Value::Number(number)) => number.as_u64().and_then(|n| u8::try_from(n).ok()),
            _ => None,
        };
        match level {
            Some(level @ 1..=4) => {
                self.state.spd_lvl = level;
                Ok(())
            }
            _ => Err("param must be \"1\" to \"4\"".into()),
        }
    }

    /// Accepts any G-code; heater targets (`M104`, `M140`) and fans (`M106 P1|P2|P3`) take
    /// effect, the rest is ignored.
    fn gcode_line(&mut self, body: &Map<String, Value>) -> Result<(), String> {
        let Some(gcode) = body.get("param").and_then(Value::as_str) else {
            return Err("param must be a G-code string".into());
        };
        for line in gcode.lines() {
            let mut words = line.split(';').next().unwrap_or_default().split_whitespace();
            let Some(code) = words.next() else { continue };
            let mut s_value = None;
            let mut p_value = None;
            for word in words {
                let mut chars = word.chars();
                let letter = chars.next();
                let number = chars.as_str().parse::<f64>().ok().filter(|n| n.is_finite());
                match letter {
                    Some('S' | 's') => s_value = number,
                    Some('P' | 'p') => p_value = number,
                    _ => {}
                }
            }
            let Some(s) = s_value else { continue };
            let s = s.clamp(0.0, 400.0);
            match code.to_ascii_uppercase().as_str() {
                "M104" => self.state.nozzle.target = s as u32,
                "M140" => self.state.bed.target = s as u32,
                "M106" => {
                    let speed = (s.min(255.0) / 255.0 * 15.0).round() as u8;
                    match p_value.map(|p| p as u32) {
                        Some(2) => self.state.aux_fan = speed,
                        Some(3) => self.state.chamber_fan = speed,
                        _ => self.state.cooling_fan = speed,
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn project_file(&mut self, body: &Map<String, Value>) -> Result<(), String> {
        let text = |key: &str| body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
        let name = text("subtask_name")
            .or_else(|| text("file"))
            .or_else(|| text("url").and_then(|url| url.rsplit('/').next()))
            .unwrap_or("Untitled")
            .to_owned();
        let gcode_file = text("param").unwrap_or(DEFAULT_GCODE_FILE);
        if let Some(card) = &self.settings.card {
            // `ftp:///kitt-1-0.gcode.3mf`, `file:///sdcard/x.3mf`, or the `file` field.
            let wanted = text("url")
                .map(|url| {
                    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
                    path.trim_start_matches('/').trim_start_matches("sdcard/")
                })
                .or_else(|| text("file"))
                .unwrap_or_default()
                .trim_start_matches('/');
            // The card's names start at its root, as the FTPS server stores them.
            let present =
                card.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&format!("/{wanted}"));
            if !present {
                return Err(format!("file not found on the SD card: {wanted:?}"));
            }
        }
        let spec = JobSpec { name, layers: self.settings.project_file_layers };
        self.start_job(spec, gcode_file).map_err(|rejected| rejected.to_string())
    }

    fn ledctrl(&mut self, body: &Map<String, Value>) -> Result<(), String> {
        let node = body.get("led_node").and_then(Value::as_str);
        let mode = body.get("led_mode").and_then(Value::as_str);
        let (Some(node), Some(mode @ ("on" | "off" | "flashing"))) = (node, mode) else {
            return Err("led_node and led_mode (on, off, flashing) are required".into());
        };
        match self.state.lights.iter_mut().find(|(known, _)| known == node) {
            Some((_, current)) => mode.clone_into(current),
            None => self.state.lights.push((node.to_owned(), mode.to_owned())),
        }
        Ok(())
    }
}

/// The ACK of a request: its category object echoed, plus `result` and maybe `reason`.
fn ack(category: &str, body: &Map<String, Value>, result: Result<(), String>) -> Value {
    let mut reply = body.clone();
    match result {
        Ok(()) => {
            reply.insert("result".into(), json!("success"));
        }
        Err(reason) => {
            reply.insert("result".into(), json!("failed"));
            reply.insert("reason".into(), json!(reason));
        }
    }
    let mut message = Map::new();
    message.insert(category.to_owned(), Value::Object(reply));
    Value::Object(message)
}
