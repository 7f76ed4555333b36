//! The emit log (`--emit-log FILE`): what the printer did, one JSON object per line, for a
//! checker in another process to compare with what reached the hub.
//!
//! Every line has `seq` (1, 2, … in the order written), `at` (Unix milliseconds) and `kind`:
//!
//! | kind | fields | when |
//! |---|---|---|
//! | `job_started` | `job`, `layers` | a job started (`subtask_name`, `total_layer_num`) |
//! | `gcode_state` | `from`, `to` | `gcode_state` changed (IDLE, PREPARE, RUNNING, PAUSE, FINISH, FAILED) |
//! | `layer` | `layer`, `layers` | the printer reached a layer |
//! | `paused` | `stage` | the job paused (`stg_cur`: 16 by the user, 6 for a filament runout) |
//! | `resumed` | | the job went on after a pause |
//! | `hms_raised`, `hms_cleared` | `code` | an HMS entry appeared or went (`AAAA_BBBB_CCCC_DDDD`) |
//! | `print_error_raised`, `print_error_cleared` | `code` | `print_error` changed (`XXXX_XXXX`) |
//! | `job_finished` | `job`, `gcode_state`, `print_error`, `layer`, `layers` | the job ended: FINISH or FAILED |
//! | `request` | `category`, `command`, `sequence_id` | a request arrived (logged before it is handled) |
//!
//! The log says what the printer went through, at the printer's own level (no agent, no hub
//! terms): a state that lasted less than a report interval is in the log even though no
//! client could have seen it. Within one change the lines come in the order of the table.
//!
//! Each line goes out in one `write` to an unbuffered file, so it is in the kernel before
//! the simulator moves on: killing any process, the simulator included, loses no line
//! already written. A failed write is logged and the simulator carries on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tracing::warn;

use crate::config::Hms;
use crate::printer::{GcodeState, Printer};

/// Writes the emit log of one simulator run.
#[derive(Debug)]
pub struct EmitLog {
    file: File,
    path: PathBuf,
    seq: u64,
    last: Observed,
}

/// What the log compares between two moments.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    gcode_state: GcodeState,
    layer: u32,
    layers: u32,
    job: String,
    jobs_started: u32,
    stage: i64,
    hms: Vec<Hms>,
    print_error: u32,
}

impl Observed {
    fn of(printer: &Printer) -> Observed {
        let (layer, layers) = printer.layers();
        Observed {
            gcode_state: printer.gcode_state(),
            layer,
            layers,
            job: printer.job_name().to_owned(),
            jobs_started: printer.jobs_started(),
            stage: printer.stage(),
            hms: printer.hms().to_vec(),
            print_error: printer.print_error(),
        }
    }

    /// A printer just switched on: idle, no job, no alerts.
    fn power_on() -> Observed {
        Observed {
            gcode_state: GcodeState::Idle,
            layer: 0,
            layers: 0,
            job: String::new(),
            jobs_started: 0,
            stage: 0,
            hms: Vec::new(),
            print_error: 0,
        }
    }
}

impl EmitLog {
    /// Creates (or empties) the log at `path` and writes what `printer` did since power-on
    /// (an autostarted job).
    pub fn create(path: &Path, printer: &Printer) -> std::io::Result<EmitLog> {
        let file = File::create(path)?;
        let mut log = EmitLog { file, path: path.to_owned(), seq: 0, last: Observed::power_on() };
        log.observe(printer);
        Ok(log)
    }

    /// Writes a line for every change since the last call.
    pub fn observe(&mut self, printer: &Printer) {
        let now = Observed::of(printer);
        if now == self.last {
            return;
        }
        let last = std::mem::replace(&mut self.last, now.clone());
        if now.jobs_started > last.jobs_started {
            self.write("job_started", json!({ "job": now.job, "layers": now.layers }));
        }
        if now.gcode_state != last.gcode_state {
            let (from, to) = (last.gcode_state.as_str(), now.gcode_state.as_str());
            self.write("gcode_state", json!({ "from": from, "to": to }));
        }
        if now.layer != last.layer && now.layer > 0 {
            self.write("layer", json!({ "layer": now.layer, "layers": now.layers }));
        }
        let paused = now.gcode_state == GcodeState::Pause;
        if paused && last.gcode_state != GcodeState::Pause {
            self.write("paused", json!({ "stage": now.stage }));
        }
        if last.gcode_state == GcodeState::Pause
            && matches!(now.gcode_state, GcodeState::Running | GcodeState::Prepare)
        {
            self.write("resumed", json!({}));
        }
        for hms in now.hms.iter().filter(|hms| !last.hms.contains(hms)) {
            self.write("hms_raised", json!({ "code": hms.to_string() }));
        }
        for hms in last.hms.iter().filter(|hms| !now.hms.contains(hms)) {
            self.write("hms_cleared", json!({ "code": hms.to_string() }));
        }
        if now.print_error != last.print_error {
            if last.print_error != 0 {
                self.write("print_error_cleared", json!({ "code": code(last.print_error) }));
            }
            if now.print_error != 0 {
                self.write("print_error_raised", json!({ "code": code(now.print_error) }));
            }
        }
        if last.gcode_state.is_busy() && !now.gcode_state.is_busy() {
            self.write(
                "job_finished",
                json!({
                    "job": now.job,
                    "gcode_state": now.gcode_state.as_str(),
                    "print_error": code(now.print_error),
                    "layer": now.layer,
                    "layers": now.layers,
                }),
            );
        }
    }

    /// Writes a line per command in a request (one per category object).
    pub fn request(&mut self, request: &Value) {
        let Value::Object(categories) = request else { return };
        for (category, body) in categories {
            let field = |key: &str| body.get(key).cloned().unwrap_or(Value::Null);
            let mut line = json!({
                "category": category,
                "command": field("command"),
                "sequence_id": field("sequence_id"),
            });
            // A G-code line's text, so a test can tell one command from another.
            if let (Some(param), Value::Object(line)) = (body.get("param"), &mut line) {
                line.insert("param".into(), param.clone());
            }
            self.write("request", line);
        }
    }

    fn write(&mut self, kind: &str, fields: Value) {
        self.seq += 1;
        let mut line = Map::new();
        line.insert("seq".into(), json!(self.seq));
        line.insert("at".into(), json!(unix_millis()));
        line.insert("kind".into(), json!(kind));
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        if let Err(error) = self.file.write_all(text.as_bytes()) {
            warn!(path = %self.path.display(), %error, "Cannot write the emit log.");
        }
    }
}

/// `print_error` as Bambu writes it, `XXXX_XXXX`.
fn code(print_error: u32) -> String {
    format!("{:04X}_{:04X}", print_error >> 16, print_error & 0xFFFF)
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{JobSpec, Model};
    use crate::printer::{DEFAULT_GCODE_FILE, PrinterSettings};

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `kind` plus the fields that say what happened, without `seq` and `at`.
    /// The line's kind and its other fields, keys sorted (whatever order serde_json's map
    /// keeps: insertion order when the workspace is built together, for the hub's Qdrant
    /// engine turns `preserve_order` on).
    fn summary(line: &Value) -> String {
        let fields: std::collections::BTreeMap<&String, &Value> = line
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "kind" | "seq" | "at"))
            .collect();
        format!("{} {}", line["kind"].as_str().unwrap(), serde_json::to_string(&fields).unwrap())
    }

    #[test]
    fn a_job_with_a_pause_is_logged_transition_by_transition_with_its_requests() {
        let settings = PrinterSettings {
            serial: "01P00A000000001".parse().unwrap(),
            model: Model::P1S,
            report_style: Model::P1S.default_report_style(),
            layer_interval: Duration::from_secs(1),
            project_file_layers: 2,
            card: None,
            trays: None,
            loop_jobs: false,
        };
        let mut printer = Printer::new(settings, &[]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("emit.jsonl");
        let mut log = EmitLog::create(&path, &printer).unwrap();
        assert!(lines(&path).is_empty(), "an idle printer did nothing yet");

        printer.start_job(JobSpec { name: "cube".into(), layers: 2 }, DEFAULT_GCODE_FILE).unwrap();
        log.observe(&printer);
        for _ in 0..4 {
            printer.step();
            log.observe(&printer);
        }
        let pause = serde_json::json!({"print": {"sequence_id": "7", "command": "pause"}});
        log.request(&pause);
        printer.handle_request(&pause);
        log.observe(&printer);
        let resume = serde_json::json!({"print": {"sequence_id": "8", "command": "resume"}});
        log.request(&resume);
        printer.handle_request(&resume);
        log.observe(&printer);
        for _ in 0..3 {
            printer.step();
            log.observe(&printer);
        }

        let written = lines(&path);
        let seqs: Vec<u64> = written.iter().map(|line| line["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=written.len() as u64).collect::<Vec<_>>());
        assert!(written.iter().all(|line| line["at"].as_u64().unwrap() > 1_600_000_000_000));
        let summaries: Vec<String> = written.iter().map(summary).collect();
        assert_eq!(
            summaries,
            [
                r#"job_started {"job":"cube","layers":2}"#,
                r#"gcode_state {"from":"IDLE","to":"PREPARE"}"#,
                r#"gcode_state {"from":"PREPARE","to":"RUNNING"}"#,
                r#"layer {"layer":1,"layers":2}"#,
                r#"request {"category":"print","command":"pause","sequence_id":"7"}"#,
                r#"gcode_state {"from":"RUNNING","to":"PAUSE"}"#,
                r#"paused {"stage":16}"#,
                r#"request {"category":"print","command":"resume","sequence_id":"8"}"#,
                r#"gcode_state {"from":"PAUSE","to":"RUNNING"}"#,
                r#"resumed {}"#,
                r#"layer {"layer":2,"layers":2}"#,
                r#"gcode_state {"from":"RUNNING","to":"FINISH"}"#,
                r#"job_finished {"gcode_state":"FINISH","job":"cube","layer":2,"layers":2,"print_error":"0000_0000"}"#,
            ]
        );
    }
}
