//! The assistant's tools: what it can look at (fleet, one printer and its events, the queue,
//! inventory, outcomes, analytics, event search, a camera's latest snapshot) and what it can
//! propose (pause, resume, stop, queue a file, change a job's priority). Every tool goes
//! through the hub's services as the person talking (`Principal::acting_for`: never more
//! than their role). Reading tools answer at once; an action tool only checks the request
//! and becomes a pending action, which runs when a person confirms it (`execute`, as that
//! person, audited under their name).

use serde_json::{Value, json};

use super::llm::{Param, ParamKind, ToolCall, ToolSpec};
use super::pending::ProposedAction;
use crate::db::Db;
use crate::db::read::EventFilter;
use crate::memory::store::Filter;
use crate::memory::{Hit, Memory};
use crate::service::commands::{CommandRequest, CommandSpec};
use crate::service::outcomes::{AnalyticsQuery, GroupBy, OutcomeQuery};
use crate::service::queue::JobRequest;
use crate::service::{Principal, Role, ServiceError, Services};

/// The actor name on the audit log and in `via`.
pub const ACTOR: &str = "assistant";

/// What the farm looks like to the tools when they are offered: the names a grammar may
/// use.
#[derive(Debug, Clone, Default)]
pub struct Farm {
    pub printers: Vec<(String, Option<String>)>,
    pub files: Vec<(String, String)>,
    /// The memory is there to search.
    pub memory: bool,
}

/// Whether a tool reads or acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    /// Needs a person's confirmation, and this role.
    Action(Role),
}

/// The tool's kind, `None` for an unknown name.
pub fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "fleet_status" | "printer_state" | "queue" | "inventory" | "outcomes" | "analytics"
        | "search_events" | "camera_snapshot" | "search_memory" => Kind::Read,
        "pause_printer" | "resume_printer" | "stop_printer" | "queue_file" | "set_job_priority" => {
            Kind::Action(Role::Operator)
        }
        _ => return None,
    })
}

/// The tools offered to someone with `role`: reading tools for all, action tools for those
/// who could confirm them.
pub fn specs(farm: &Farm, role: Role) -> Vec<ToolSpec> {
    let printers: Vec<String> = farm.printers.iter().map(|(id, _)| id.clone()).collect();
    let printer = |description: &'static str| Param {
        name: "printer",
        description,
        kind: ParamKind::OneOf(printers.clone()),
        required: true,
    };
    let mut tools = vec![
        ToolSpec {
            name: "fleet_status",
            description: "Every printer: its state, job, progress, temperatures and whether it is online.",
            params: vec![],
        },
        ToolSpec {
            name: "printer_state",
            description: "One printer's full state and its recent events.",
            params: vec![printer("the printer's id")],
        },
        ToolSpec {
            name: "queue",
            description: "The print queue: jobs waiting and running, in order.",
            params: vec![],
        },
        ToolSpec {
            name: "inventory",
            description: "Filament stock: spools, what is left, what runs low.",
            params: vec![],
        },
        ToolSpec {
            name: "outcomes",
            description: "Recent prints that ended: success or failure, the reason, the cost.",
            params: vec![],
        },
        ToolSpec {
            name: "analytics",
            description: "Success rate, failures by reason, hours and cost per printer over 30 days.",
            params: vec![],
        },
        ToolSpec {
            name: "search_events",
            description: "Find recent printer events (errors, HMS codes, pauses) whose text contains words.",
            params: vec![Param {
                name: "text",
                description: "words to look for",
                kind: ParamKind::Text { max: 80 },
                required: true,
            }],
        },
        ToolSpec {
            name: "camera_snapshot",
            description: "A printer's newest camera snapshot: when it was taken and its link.",
            params: vec![printer("the printer's id")],
        },
    ];
    if farm.memory {
        tools.push(ToolSpec {
            name: "search_memory",
            description: "Search the farm's history by meaning: reviewed outcomes, notes, event summaries, manuals and data sheets. Cite what you use.",
            params: vec![
                Param {
                    name: "text",
                    description: "what to look for",
                    kind: ParamKind::Text { max: 200 },
                    required: true,
                },
                Param {
                    name: "printer",
                    description: "only about this printer",
                    kind: ParamKind::OneOf(printers.clone()),
                    required: false,
                },
            ],
        });
    }
    if role >= Role::Operator {
        tools.extend([
            ToolSpec {
                name: "pause_printer",
                description: "Propose pausing a printer's print (a person confirms).",
                params: vec![printer("the printer to pause")],
            },
            ToolSpec {
                name: "resume_printer",
                description: "Propose resuming a paused print (a person confirms).",
                params: vec![printer("the printer to resume")],
            },
            ToolSpec {
                name: "stop_printer",
                description: "Propose stopping a print for good (a person confirms).",
                params: vec![printer("the printer to stop")],
            },
            ToolSpec {
                name: "queue_file",
                description: "Propose queueing a print file (a person confirms).",
                params: vec![
                    Param {
                        name: "file",
                        description: "the file's id",
                        kind: ParamKind::OneOf(farm.files.iter().map(|(id, _)| id.clone()).collect()),
                        required: true,
                    },
                    Param {
                        name: "printer",
                        description: "only this printer",
                        kind: ParamKind::OneOf(printers.clone()),
                        required: false,
                    },
                ],
            },
            ToolSpec {
                name: "set_job_priority",
                description: "Propose a queued job's new priority, -100 to 100 (a person confirms).",
                params: vec![
                    Param { name: "job", description: "the job's id", kind: ParamKind::Integer, required: true },
                    Param {
                        name: "priority",
                        description: "higher runs first",
                        kind: ParamKind::Integer,
                        required: true,
                    },
                ],
            },
        ]);
    }
    tools
}

/// What a tool call gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A reading tool's answer.
    Read(Value),
    /// An action tool's proposal, checked and ready to wait for a person.
    Propose(ProposedAction),
    /// The memory's records, cited in the answer.
    Recalled(Vec<Hit>),
    /// Refused or failed: the reason, told to the model and the person.
    Error(String),
}

/// Memory records as a tool's result: numbered, to be cited as [n].
pub fn records(hits: &[Hit], first: usize) -> Value {
    let records: Vec<Value> = hits
        .iter()
        .enumerate()
        .map(|(n, hit)| {
            json!({
                "ref": format!("[{}]", first + n),
                "title": hit.title,
                "text": hit.text.strip_prefix(&hit.title).unwrap_or(&hit.text).trim(),
                "link": hit.link,
            })
        })
        .collect();
    json!({"records": records, "note": "cite the records you use by their ref"})
}

/// How many records a memory search gives the model.
pub const MEMORY_HITS: usize = 5;

/// Runs `call` for `person`.
pub async fn call(
    services: &Services,
    db: &Db,
    memory: Option<&Memory>,
    person: &Principal,
    call: &ToolCall,
) -> Outcome {
    let principal = Principal::acting_for(ACTOR, Role::Admin, person);
    if call.name == "search_memory" {
        let Some(memory) = memory else {
            return Outcome::Error("the memory is off on this hub".into());
        };
        let text = match text_arg(call, "text") {
            Ok(text) => text,
            Err(error) => return Outcome::Error(error.to_string()),
        };
        let filter = Filter {
            printer: call.arguments["printer"].as_str().map(str::to_owned),
            viewer: Some(person.name().to_owned()),
            ..Filter::default()
        };
        return match memory.search(&text, &filter, MEMORY_HITS).await {
            Ok(hits) => Outcome::Recalled(hits),
            Err(error) => Outcome::Error(error.to_string()),
        };
    }
    match run(services, db, &principal, call).await {
        Ok(outcome) => outcome,
        Err(error) => Outcome::Error(error.to_string()),
    }
}

fn text_arg(call: &ToolCall, name: &str) -> Result<String, ServiceError> {
    call.arguments[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ServiceError::Invalid(format!("{} needs \"{name}\", a string", call.name)))
}

fn int_arg(call: &ToolCall, name: &str) -> Result<i64, ServiceError> {
    let value = &call.arguments[name];
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| ServiceError::Invalid(format!("{} needs \"{name}\", an integer", call.name)))
}

fn printer_brief(p: &crate::service::fleet::Printer) -> Value {
    // What a question about the fleet needs, not the whole state (a small model's context
    // holds a few thousand tokens).
    let full = serde_json::to_value(&p.row.state).unwrap_or(Value::Null);
    let mut state = serde_json::Map::new();
    for key in [
        "state",
        "stage",
        "job_name",
        "progress_percent",
        "layer",
        "total_layers",
        "remaining_s",
        "nozzle_temp_c",
        "bed_temp_c",
        "print_error",
        "hms",
    ] {
        if let Some(value) = full.get(key).filter(|v| !v.is_null()) {
            state.insert(key.to_owned(), value.clone());
        }
    }
    json!({
        "id": p.row.id,
        "name": p.row.name,
        "model": p.row.model,
        "online": p.agent_online,
        "state": state,
    })
}

async fn run(
    services: &Services,
    db: &Db,
    principal: &Principal,
    call: &ToolCall,
) -> Result<Outcome, ServiceError> {
    let Some(kind) = kind(&call.name) else {
        return Err(ServiceError::NotFound(format!("there is no tool {:?}", call.name)));
    };
    if let Kind::Action(needed) = kind {
        principal.require(needed)?;
        return propose(services, call).await.map(Outcome::Propose);
    }
    let value = match call.name.as_str() {
        "fleet_status" => {
            let printers = services.fleet.printers().await?;
            json!({"printers": printers.iter().map(printer_brief).collect::<Vec<_>>()})
        }
        "printer_state" => {
            let id = text_arg(call, "printer")?;
            let printer = services.fleet.printer(&id).await?;
            let filter = EventFilter { printer: Some(id), limit: 10, ..EventFilter::default() };
            let events = db.events(&filter).await?;
            json!({"printer": printer_brief(&printer), "recent_events": events})
        }
        "queue" => {
            let jobs = services.queue.list().await?;
            let waiting: Vec<_> = jobs
                .iter()
                .filter(|j| !matches!(j.state.as_str(), "finished" | "failed" | "cancelled"))
                .take(30)
                .map(|j| {
                    json!({"id": j.id, "name": j.name, "state": j.state, "priority": j.priority,
                        "place": j.queue_place, "printer": j.target_printer, "held": j.held})
                })
                .collect();
            json!({"jobs": waiting})
        }
        "inventory" => serde_json::to_value(services.inventory.overview(principal).await?)
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        "outcomes" => {
            let query = OutcomeQuery { limit: Some(15), ..OutcomeQuery::default() };
            let list = services.outcomes.list(principal, &query).await?;
            let outcomes: Vec<Value> = list
                .outcomes
                .iter()
                .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
                .map(|mut o| {
                    if let Some(map) = o.as_object_mut() {
                        map.retain(|k, _| {
                            matches!(
                                k.as_str(),
                                "id" | "printer_id"
                                    | "name"
                                    | "result"
                                    | "reason"
                                    | "ended_at"
                                    | "material"
                                    | "filament_g"
                                    | "duration_s"
                                    | "review"
                            )
                        });
                    }
                    o
                })
                .collect();
            json!({"total": list.total, "outcomes": outcomes})
        }
        "analytics" => {
            let query =
                AnalyticsQuery { by: GroupBy::Printer, from: None, to: None, printer: None };
            serde_json::to_value(services.outcomes.analytics(principal, &query).await?)
                .map_err(|e| ServiceError::Internal(e.to_string()))?
        }
        "search_events" => {
            let text = text_arg(call, "text")?.to_lowercase();
            let words: Vec<&str> = text.split_whitespace().collect();
            let events = db.events(&EventFilter { limit: 1000, ..EventFilter::default() }).await?;
            let found: Vec<_> = events
                .into_iter()
                .filter(|e| {
                    let hay = format!(
                        "{} {}",
                        e.kind,
                        serde_json::to_string(&e.event).unwrap_or_default()
                    )
                    .to_lowercase();
                    words.iter().all(|w| hay.contains(w))
                })
                .take(20)
                .collect();
            json!({"events": found})
        }
        "camera_snapshot" => {
            let id = text_arg(call, "printer")?;
            let printer = services.fleet.printer(&id).await?;
            match &printer.latest_snapshot {
                Some(link) => json!({"printer": id, "snapshot": link}),
                None => json!({"printer": id, "snapshot": null, "note": "no snapshot yet"}),
            }
        }
        other => return Err(ServiceError::NotFound(format!("there is no tool {other:?}"))),
    };
    Ok(Outcome::Read(value))
}

/// Checks an action's arguments against the farm and says what it would do.
async fn propose(services: &Services, call: &ToolCall) -> Result<ProposedAction, ServiceError> {
    let (arguments, summary) = match call.name.as_str() {
        "pause_printer" | "resume_printer" | "stop_printer" => {
            let id = text_arg(call, "printer")?;
            let printer = services.fleet.printer(&id).await?;
            let verb = match call.name.as_str() {
                "pause_printer" => "Pause",
                "resume_printer" => "Resume",
                _ => "Stop",
            };
            let named = printer.row.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            (json!({"printer": id}), format!("{verb} printer {id}{named}"))
        }
        "queue_file" => {
            let file = text_arg(call, "file")?;
            let view = services.files.get(&file).await?;
            let printer = call.arguments["printer"].as_str().map(str::to_owned);
            if let Some(p) = &printer {
                services.fleet.printer(p).await?;
            }
            let on = printer.as_deref().map(|p| format!(" on printer {p}")).unwrap_or_default();
            (json!({"file": file, "printer": printer}), format!("Queue {}{on}", view.name))
        }
        "set_job_priority" => {
            let job = int_arg(call, "job")?;
            let priority = int_arg(call, "priority")?;
            if !(-100..=100).contains(&priority) {
                return Err(ServiceError::Invalid("priority must be between -100 and 100".into()));
            }
            let detail = services.queue.get(job).await?;
            (
                json!({"job": job, "priority": priority}),
                format!("Set job {job} ({}) to priority {priority}", detail.job.name),
            )
        }
        other => return Err(ServiceError::NotFound(format!("there is no action {other:?}"))),
    };
    Ok(ProposedAction { tool: call.name.clone(), arguments, summary })
}

/// Runs a confirmed action as `confirmer` (through the assistant, audited under their name).
pub async fn execute(
    services: &Services,
    confirmer: &Principal,
    action: &ProposedAction,
) -> Result<Value, ServiceError> {
    let principal = Principal::acting_for(ACTOR, Role::Admin, confirmer);
    let call = ToolCall {
        id: String::new(),
        name: action.tool.clone(),
        arguments: action.arguments.clone(),
    };
    let command = |spec| async {
        let printer = text_arg(&call, "printer")?;
        let issued =
            services.commands.issue(&principal, &printer, CommandRequest::new(spec)).await?;
        Ok::<Value, ServiceError>(json!({
            "command": issued.command.id.to_string(),
            "printer": printer,
            "agent_online": issued.agent_online,
        }))
    };
    match action.tool.as_str() {
        "pause_printer" => command(CommandSpec::Pause {}).await,
        "resume_printer" => command(CommandSpec::Resume {}).await,
        "stop_printer" => command(CommandSpec::Stop {}).await,
        "queue_file" => {
            let request = JobRequest {
                file: text_arg(&call, "file")?,
                printer: call.arguments["printer"].as_str().map(str::to_owned),
                ..JobRequest::default()
            };
            let jobs = services.queue.add(&principal, request).await?;
            Ok(json!({"jobs": jobs.iter().map(|j| j.id).collect::<Vec<_>>()}))
        }
        "set_job_priority" => {
            let job = int_arg(&call, "job")?;
            let priority = int_arg(&call, "priority")? as i32;
            let detail = services.queue.set_priority(&principal, job, priority).await?;
            Ok(json!({"job": job, "priority": detail.job.priority}))
        }
        other => Err(ServiceError::NotFound(format!("there is no action {other:?}"))),
    }
}
