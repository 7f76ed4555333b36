//! Printer commands. [`Commands::issue`] is the only way a command comes into being: it
//! checks the principal's role, validates the request, writes the audit row, persists the
//! command and delivers it (at once when the agent is connected, else when it returns, unless
//! it expired first). HTTP, the scheduler and the assistant all call it.

use std::time::Duration;

use proto::{
    AgentId, Command, CommandAction, CommandId, LightMode, LightNode, Precondition, PrintState,
    PrinterId, Seq, SpeedLevel, StartPrint, UnixMillis,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Principal, Role, ServiceError};
use crate::db::Db;
use crate::db::read::CommandRow;
use crate::sync::server::SyncHandle;

/// The longest a command may wait for its agent.
pub const MAX_EXPIRY: Duration = Duration::from_secs(86_400);
/// The longest G-code line block accepted.
pub const MAX_GCODE_BYTES: usize = 4096;

/// What to do, with the fields that action needs. `{"action": "pause"}`,
/// `{"action": "set_light", "node": "chamber_light", "mode": "on"}`, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandSpec {
    Pause {},
    Resume {},
    Stop {},
    /// Ask the printer for its whole state now.
    FullPush {},
    SetLight {
        node: Light,
        mode: LightSetting,
    },
    SetSpeed {
        level: Speed,
    },
    /// Raw G-code, at most 4096 bytes.
    Gcode {
        #[schema(min_length = 1, max_length = 4096, pattern = "\\S")]
        gcode: String,
    },
    /// Start a file already on the printer. The plate must be confirmed clear by a person.
    StartPrint {
        /// Path on the printer's storage, e.g. `/model/benchy.gcode.3mf`.
        #[schema(min_length = 1, max_length = 1024)]
        file: String,
        /// 1-based plate number inside the project file (default 1).
        #[serde(default)]
        #[schema(minimum = 1)]
        plate: Option<u16>,
        #[serde(default)]
        job_name: Option<String>,
        /// For each filament of the project, the global tray id to feed it from; -1 unused.
        #[serde(default)]
        #[schema(max_items = 64)]
        ams_mapping: Vec<i16>,
        #[serde(default)]
        use_ams: bool,
        /// The caller confirms the plate is empty now. Must be `true`.
        plate_confirmed_clear: bool,
    },
    /// Restart the printer's firmware (Klipper's `FIRMWARE_RESTART`): ends any print. Needs
    /// `"confirmed": true`. Agents of wire version 6 and later.
    FirmwareRestart {
        /// The caller confirms the restart. Must be `true`.
        confirmed: bool,
    },
    /// Stop the printer at once (Klipper's emergency stop: heaters and motors off, firmware
    /// shut down until restarted). Needs `"confirmed": true`. Agents of wire version 6 and
    /// later.
    EmergencyStop {
        /// The caller confirms the stop. Must be `true`.
        confirmed: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Light {
    ChamberLight,
    WorkLight,
    ChamberLight2,
    HeatbedLight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LightSetting {
    On,
    Off,
    Flashing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speed {
    Silent,
    Standard,
    Sport,
    Ludicrous,
}

/// A printer's state as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Idle,
    Preparing,
    Printing,
    Paused,
    Finished,
    Failed,
    Offline,
}

impl From<StateName> for PrintState {
    fn from(state: StateName) -> PrintState {
        match state {
            StateName::Idle => PrintState::Idle,
            StateName::Preparing => PrintState::Preparing,
            StateName::Printing => PrintState::Printing,
            StateName::Paused => PrintState::Paused,
            StateName::Finished => PrintState::Finished,
            StateName::Failed => PrintState::Failed,
            StateName::Offline => PrintState::Offline,
        }
    }
}

/// A command to issue: the action, how long it may wait, and the states it may run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub spec: CommandSpec,
    pub expires_in: Duration,
    /// Execute only in one of these states (empty: any the action allows).
    pub require_state: Vec<StateName>,
}

impl CommandRequest {
    pub fn new(spec: CommandSpec) -> CommandRequest {
        CommandRequest { spec, expires_in: Duration::from_secs(60), require_state: Vec::new() }
    }
}

/// A command the hub accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub command: Command,
    pub agent: AgentId,
    /// The agent was connected when the command was persisted (delivery is under way).
    pub agent_online: bool,
}

/// Turns a request into the wire command's action and preconditions; pure, so every rule
/// is tested without a hub. `seen_through` is the seq through which the hub holds the
/// agent's records now, as the person confirms: a start's plate check names it, and the
/// agent refuses the start if a job ended after it (no clock involved; see
/// `Precondition::PlateClearThrough`).
pub fn plan(
    request: &CommandRequest,
    principal: &Principal,
    seen_through: Seq,
) -> Result<(CommandAction, Vec<Precondition>), ServiceError> {
    if request.expires_in.is_zero() || request.expires_in > MAX_EXPIRY {
        return Err(ServiceError::Invalid("expires_in_s must be between 1 and 86400".into()));
    }
    let mut preconditions = vec![Precondition::ControlAvailable];
    let action = match &request.spec {
        CommandSpec::Pause {} => CommandAction::Pause,
        CommandSpec::Resume {} => CommandAction::Resume,
        CommandSpec::Stop {} => CommandAction::Stop,
        CommandSpec::FullPush {} => CommandAction::RequestFullPush,
        CommandSpec::SetLight { node, mode } => CommandAction::SetLight {
            node: match node {
                Light::ChamberLight => LightNode::ChamberLight,
                Light::WorkLight => LightNode::WorkLight,
                Light::ChamberLight2 => LightNode::ChamberLight2,
                Light::HeatbedLight => LightNode::HeatbedLight,
            },
            mode: match mode {
                LightSetting::On => LightMode::On,
                LightSetting::Off => LightMode::Off,
                LightSetting::Flashing => LightMode::Flashing,
            },
        },
        CommandSpec::SetSpeed { level } => CommandAction::SetSpeed(match level {
            Speed::Silent => SpeedLevel::Silent,
            Speed::Standard => SpeedLevel::Standard,
            Speed::Sport => SpeedLevel::Sport,
            Speed::Ludicrous => SpeedLevel::Ludicrous,
        }),
        CommandSpec::Gcode { gcode } => {
            if gcode.len() > MAX_GCODE_BYTES {
                return Err(ServiceError::Invalid("G-code is limited to 4096 bytes".into()));
            }
            if gcode.trim().is_empty() {
                return Err(ServiceError::Invalid("the G-code is empty".into()));
            }
            CommandAction::Gcode(gcode.clone())
        }
        CommandSpec::StartPrint {
            file,
            plate,
            job_name,
            ams_mapping,
            use_ams,
            plate_confirmed_clear,
        } => {
            if !plate_confirmed_clear {
                return Err(ServiceError::Invalid(
                    "start_print needs \"plate_confirmed_clear\": true — confirm the plate is empty"
                        .into(),
                ));
            }
            if file.is_empty() || file.len() > 1024 {
                return Err(ServiceError::Invalid("file must be 1–1024 bytes".into()));
            }
            if plate == &Some(0) {
                return Err(ServiceError::Invalid("plates are numbered from 1".into()));
            }
            if ams_mapping.len() > 64 {
                return Err(ServiceError::Invalid("ams_mapping has at most 64 entries".into()));
            }
            preconditions.push(Precondition::PlateClearThrough {
                by: principal.name().to_owned(),
                through: seen_through,
            });
            preconditions.push(Precondition::StateIn(vec![
                PrintState::Idle,
                PrintState::Finished,
                PrintState::Failed,
            ]));
            CommandAction::StartPrint(StartPrint {
                file: file.clone(),
                plate: plate.unwrap_or(1),
                job_name: job_name.clone().unwrap_or_default(),
                ams_mapping: ams_mapping.clone(),
                use_ams: *use_ams,
                bed_leveling: true,
                timelapse: false,
            })
        }
        CommandSpec::FirmwareRestart { confirmed } => {
            if !confirmed {
                return Err(ServiceError::Invalid(
                    "firmware_restart needs \"confirmed\": true — it ends any print".into(),
                ));
            }
            CommandAction::FirmwareRestart
        }
        CommandSpec::EmergencyStop { confirmed } => {
            if !confirmed {
                return Err(ServiceError::Invalid(
                    "emergency_stop needs \"confirmed\": true — it halts the printer until its firmware restarts"
                        .into(),
                ));
            }
            CommandAction::EmergencyStop
        }
    };
    if !request.require_state.is_empty() {
        preconditions
            .push(Precondition::StateIn(request.require_state.iter().map(|&s| s.into()).collect()));
    }
    Ok((action, preconditions))
}

/// The command service.
#[derive(Debug, Clone)]
pub struct Commands {
    db: Db,
    sync: SyncHandle,
}

impl Commands {
    pub fn new(db: Db, sync: SyncHandle) -> Commands {
        Commands { db, sync }
    }

    /// Issues a command to `printer` on behalf of `principal` (at least an operator).
    pub async fn issue(
        &self,
        principal: &Principal,
        printer: &str,
        request: CommandRequest,
    ) -> Result<Issued, ServiceError> {
        self.issue_as(principal, printer, request, CommandId(rand::random())).await
    }

    /// Like [`Commands::issue`], under `id`: issued again with the same id (a scheduled run
    /// taken over by another replica), the command is the one stored already, not another.
    pub async fn issue_as(
        &self,
        principal: &Principal,
        printer: &str,
        request: CommandRequest,
        id: CommandId,
    ) -> Result<Issued, ServiceError> {
        principal.require(Role::Operator)?;
        let row = self
            .db
            .printer(printer)
            .await?
            .ok_or_else(|| ServiceError::unknown_printer(printer))?;
        if row.approved_at.is_none() {
            return Err(ServiceError::Conflict(format!(
                "printer {} awaits an admin's approval of agent {}'s claim before it takes \
                 commands (dashboard: Agents, Printer ownership; or POST /api/v1/printers/{}/approve)",
                row.id, row.agent_id, row.id
            )));
        }
        let now = UnixMillis::now();
        let printer_id =
            PrinterId::new(row.id.clone()).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let agent = AgentId::new(row.agent_id.clone())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        // What the person saw when confirming: every record of the agent the hub holds now.
        let seen_through = self.db.watermark(&agent).await?;
        let (action, preconditions) = plan(&request, principal, seen_through)?;
        let command = Command {
            id,
            printer: printer_id,
            issued_at: now,
            expires_at: now.plus_millis(request.expires_in.as_millis() as i64),
            preconditions,
            action,
        };
        // The audit row first: a command that exists was always audited.
        let detail = format!("command {} via {}", command.id, principal.via());
        let what = format!("command {} on {}", action_name(&request.spec), row.id);
        let agent_online = self.sync.is_connected(agent.as_str());
        if self.db.command(&command.id.to_string()).await?.is_some() {
            // Issued before (the same scheduled run, again): nothing new to audit or send.
            return Ok(Issued { command, agent, agent_online });
        }
        self.db.audit(principal.name(), &what, 202, Some(&detail), now).await?;
        if !self.db.insert_command_once(&agent, &command).await? {
            // Another replica issued it meanwhile.
            return Ok(Issued { command, agent, agent_online });
        }
        self.sync.commands_pending(&agent);
        Ok(Issued { command, agent, agent_online })
    }

    pub async fn list(
        &self,
        printer: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CommandRow>, ServiceError> {
        Ok(self.db.commands(printer, limit.clamp(1, 1000)).await?)
    }

    pub async fn get(&self, id: &str) -> Result<CommandRow, ServiceError> {
        self.db
            .command(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no command {id:?}")))
    }
}

/// The action's name as the API spells it.
pub fn action_name(spec: &CommandSpec) -> &'static str {
    match spec {
        CommandSpec::Pause {} => "pause",
        CommandSpec::Resume {} => "resume",
        CommandSpec::Stop {} => "stop",
        CommandSpec::FullPush {} => "full_push",
        CommandSpec::SetLight { .. } => "set_light",
        CommandSpec::SetSpeed { .. } => "set_speed",
        CommandSpec::Gcode { .. } => "gcode",
        CommandSpec::StartPrint { .. } => "start_print",
        CommandSpec::FirmwareRestart { .. } => "firmware_restart",
        CommandSpec::EmergencyStop { .. } => "emergency_stop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Via;

    fn operator() -> Principal {
        Principal::user("otto", Role::Operator, Via::Session)
    }

    fn parse(json: &str) -> Result<CommandSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn bodies_parse_as_tagged_alternatives() {
        assert_eq!(parse(r#"{"action":"pause"}"#).unwrap(), CommandSpec::Pause {});
        assert_eq!(
            parse(r#"{"action":"set_light","node":"chamber_light","mode":"on"}"#).unwrap(),
            CommandSpec::SetLight { node: Light::ChamberLight, mode: LightSetting::On }
        );
        // A field of another action, a missing field, an unknown action, an unknown value.
        assert!(parse(r#"{"action":"pause","level":"sport"}"#).is_err());
        assert!(parse(r#"{"action":"set_speed"}"#).is_err());
        assert!(parse(r#"{"action":"explode"}"#).is_err());
        assert!(parse(r#"{"action":"set_speed","level":"warp"}"#).is_err());
        assert!(parse(r#"{"level":"sport"}"#).is_err());
    }

    #[test]
    fn a_firmware_restart_and_an_emergency_stop_need_confirmation() {
        for (json, action) in [
            (r#"{"action":"firmware_restart","confirmed":true}"#, CommandAction::FirmwareRestart),
            (r#"{"action":"emergency_stop","confirmed":true}"#, CommandAction::EmergencyStop),
        ] {
            let request = CommandRequest::new(parse(json).unwrap());
            assert_eq!(plan(&request, &operator(), Seq(0)).unwrap().0, action);
            let unconfirmed = CommandRequest::new(parse(&json.replace("true", "false")).unwrap());
            let error = plan(&unconfirmed, &operator(), Seq(0)).unwrap_err();
            assert!(error.to_string().contains("\"confirmed\": true"), "{error}");
            assert!(parse(&json.replace(r#","confirmed":true"#, "")).is_err(), "required");
        }
    }

    #[test]
    fn a_start_needs_a_confirmed_plate_and_an_idle_printer() {
        let mut request = CommandRequest::new(CommandSpec::StartPrint {
            file: "/model/a.gcode.3mf".into(),
            plate: None,
            job_name: None,
            ams_mapping: Vec::new(),
            use_ams: false,
            plate_confirmed_clear: false,
        });
        let error = plan(&request, &operator(), Seq(41)).unwrap_err();
        assert!(error.to_string().contains("plate_confirmed_clear"), "{error}");
        if let CommandSpec::StartPrint { plate_confirmed_clear, .. } = &mut request.spec {
            *plate_confirmed_clear = true;
        }
        let (action, preconditions) = plan(&request, &operator(), Seq(41)).unwrap();
        assert!(matches!(action, CommandAction::StartPrint(StartPrint { plate: 1, .. })));
        // Named by the records the hub had, not by a time.
        assert!(
            preconditions
                .contains(&Precondition::PlateClearThrough { by: "otto".into(), through: Seq(41) })
        );
        assert!(
            preconditions
                .iter()
                .any(|p| matches!(p, Precondition::StateIn(s) if s.contains(&PrintState::Idle)))
        );
    }

    #[test]
    fn expiry_and_gcode_limits_hold() {
        let now = Seq(0);
        let mut request = CommandRequest::new(CommandSpec::Stop {});
        request.expires_in = Duration::ZERO;
        assert!(plan(&request, &operator(), now).is_err());
        request.expires_in = MAX_EXPIRY + Duration::from_secs(1);
        assert!(plan(&request, &operator(), now).is_err());
        let long = CommandRequest::new(CommandSpec::Gcode { gcode: "G28\n".repeat(2000) });
        assert!(plan(&long, &operator(), now).is_err());
        let mut states = CommandRequest::new(CommandSpec::Pause {});
        states.require_state = vec![StateName::Printing];
        let (_, preconditions) = plan(&states, &operator(), now).unwrap();
        assert_eq!(
            preconditions,
            vec![Precondition::ControlAvailable, Precondition::StateIn(vec![PrintState::Printing])]
        );
    }
}
