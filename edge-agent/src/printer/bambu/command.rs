//! kitt commands as Bambu request payloads (published to `device/<serial>/request`).

use proto::CommandAction;
use serde_json::{Value, json};

/// The request for `action`, tagged with `sequence_id`, and the command name its ACK echoes;
/// or why a Bambu printer has no such command.
pub fn request(
    action: &CommandAction,
    sequence_id: &str,
) -> Result<(Value, &'static str), &'static str> {
    let print = |command: &'static str, param: Value| {
        (
            json!({ "print": { "sequence_id": sequence_id, "command": command, "param": param } }),
            command,
        )
    };
    Ok(match action {
        CommandAction::Pause => print("pause", json!("")),
        CommandAction::Resume => print("resume", json!("")),
        CommandAction::Stop => print("stop", json!("")),
        CommandAction::SetSpeed(level) => {
            let level = match level {
                proto::SpeedLevel::Silent => "1",
                proto::SpeedLevel::Standard => "2",
                proto::SpeedLevel::Sport => "3",
                proto::SpeedLevel::Ludicrous => "4",
            };
            print("print_speed", json!(level))
        }
        CommandAction::Gcode(lines) => {
            let mut lines = lines.clone();
            if !lines.ends_with('\n') {
                lines.push('\n');
            }
            print("gcode_line", json!(lines))
        }
        CommandAction::SetLight { node, mode } => (
            json!({ "system": {
                "sequence_id": sequence_id,
                "command": "ledctrl",
                "led_node": proto::json::light_node(node),
                "led_mode": proto::json::light_mode(*mode),
                "led_on_time": 500,
                "led_off_time": 500,
                "loop_times": 0,
                "interval_time": 0,
            }}),
            "ledctrl",
        ),
        CommandAction::RequestFullPush => (pushall(sequence_id), "pushall"),
        CommandAction::StartPrint(start) => project_file(start, false, sequence_id),
        // A job of the hub's queue, its file on the printer already (the agent's executor
        // uploaded it): `print.file` names it there.
        CommandAction::StartJob(job) => project_file(&job.print, job.flow_calibration, sequence_id),
        CommandAction::FirmwareRestart => {
            return Err("a Bambu printer has no firmware restart over the LAN");
        }
        CommandAction::EmergencyStop => {
            return Err("a Bambu printer has no emergency stop over the LAN; stop the print");
        }
    })
}

/// `print.project_file`: a file on the printer's card started (LAN mode's form: the ids
/// are "0" and `md5` is empty, as Bambu Studio and the LAN clients send it).
fn project_file(
    start: &proto::StartPrint,
    flow_calibration: bool,
    sequence_id: &str,
) -> (Value, &'static str) {
    let file = start.file.trim_start_matches('/');
    (
        json!({ "print": {
            "sequence_id": sequence_id,
            "command": "project_file",
            "param": format!("Metadata/plate_{}.gcode", start.plate),
            "url": format!("ftp:///{file}"),
            "file": file,
            "md5": "",
            "subtask_name": start.job_name,
            "project_id": "0",
            "profile_id": "0",
            "task_id": "0",
            "subtask_id": "0",
            "bed_type": "auto",
            "timelapse": start.timelapse,
            "bed_leveling": start.bed_leveling,
            "flow_cali": flow_calibration,
            "vibration_cali": false,
            "layer_inspect": false,
            "use_ams": start.use_ams,
            "ams_mapping": start.ams_mapping,
        }}),
        "project_file",
    )
}

pub fn pushall(sequence_id: &str) -> Value {
    json!({ "pushing": { "sequence_id": sequence_id, "command": "pushall", "version": 1, "push_target": 1 } })
}

pub fn get_version(sequence_id: &str) -> Value {
    json!({ "info": { "sequence_id": sequence_id, "command": "get_version" } })
}

/// Whether the printer acknowledges this action (pushall gets a report, not an ACK).
pub fn expects_ack(action: &CommandAction) -> bool {
    !matches!(action, CommandAction::RequestFullPush)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(file: &str) -> proto::StartPrint {
        proto::StartPrint {
            file: file.into(),
            plate: 2,
            job_name: "Benchy".into(),
            ams_mapping: vec![0, -1, 254],
            use_ams: true,
            bed_leveling: false,
            timelapse: true,
        }
    }

    #[test]
    fn a_job_of_the_queue_starts_as_project_file_with_its_options() {
        let job = proto::StartJob {
            job: 12,
            sha256: [0; 32],
            size: 10,
            print: start("kitt-12-0.gcode.3mf"),
            flow_calibration: true,
        };
        let (body, name) = request(&CommandAction::StartJob(job), "7").unwrap();
        assert_eq!(name, "project_file");
        let print = &body["print"];
        assert_eq!(print["url"], "ftp:///kitt-12-0.gcode.3mf");
        assert_eq!(print["param"], "Metadata/plate_2.gcode");
        assert_eq!(print["subtask_name"], "Benchy");
        assert_eq!(print["ams_mapping"], json!([0, -1, 254]));
        assert_eq!(
            (&print["flow_cali"], &print["bed_leveling"], &print["timelapse"]),
            (&json!(true), &json!(false), &json!(true))
        );
        // A plain start keeps what it always sent: no flow calibration.
        let (body, _) = request(&CommandAction::StartPrint(start("/a.3mf")), "8").unwrap();
        assert_eq!(
            (&body["print"]["url"], &body["print"]["flow_cali"]),
            (&json!("ftp:///a.3mf"), &json!(false))
        );
    }
}
