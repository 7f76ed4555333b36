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
        CommandAction::StartPrint(start) => {
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
                    "flow_cali": false,
                    "vibration_cali": false,
                    "layer_inspect": false,
                    "use_ams": start.use_ams,
                    "ams_mapping": start.ams_mapping,
                }}),
                "project_file",
            )
        }
        CommandAction::FirmwareRestart => {
            return Err("a Bambu printer has no firmware restart over the LAN");
        }
        CommandAction::EmergencyStop => {
            return Err("a Bambu printer has no emergency stop over the LAN; stop the print");
        }
        // The agent's executor uploads the file and then sends a `StartPrint`.
        CommandAction::StartJob(_) => return Err("a job start is the agent's, not the link's"),
    })
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
