//! The `/api/v1` handlers and the operational endpoints.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proto::{
    AgentId, Command, CommandAction, CommandId, LightMode, LightNode, Precondition, PrintState,
    PrinterId, SpeedLevel, StartPrint, UnixMillis,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::{Caller, Role};
use super::error::{ApiError, from_rejection};
use super::{AppState, Metrics};
use crate::db::read::EventFilter;

/// A JSON body whose rejections (malformed JSON, wrong content type, too large) come back in
/// the API's error shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(from_rejection(rejection.status(), rejection.body_text())),
        }
    }
}

/// Query parameters, with rejections in the API's error shape.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(from_rejection(StatusCode::BAD_REQUEST, rejection.body_text())),
        }
    }
}

pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    Metrics::count(&state.metrics.http_requests);
    let response = next.run(request).await;
    if response.status().is_server_error() {
        Metrics::count(&state.metrics.http_errors);
    }
    response
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API route; see /api/v1/openapi.json")
}

// --- operations ----------------------------------------------------------------------------

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "starting" }))).into_response()
    }
}

/// Prometheus text format. Needs a caller like every API route (a viewer token for the
/// scraper): fleet names are not for anonymous eyes.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if super::auth::caller(&state, &headers).await?.is_none() {
        return Err(ApiError::unauthorized());
    }
    let m = &state.metrics;
    let connected = state.sync.connected().len();
    let text = format!(
        "# HELP kitt_http_requests_total HTTP requests served.\n# TYPE kitt_http_requests_total counter\nkitt_http_requests_total {}\n\
         # HELP kitt_http_errors_total HTTP requests that failed inside the hub.\n# TYPE kitt_http_errors_total counter\nkitt_http_errors_total {}\n\
         # HELP kitt_logins_failed_total Failed dashboard logins.\n# TYPE kitt_logins_failed_total counter\nkitt_logins_failed_total {}\n\
         # HELP kitt_ws_messages_total Live updates sent over WebSockets.\n# TYPE kitt_ws_messages_total counter\nkitt_ws_messages_total {}\n\
         # HELP kitt_ws_clients WebSocket clients connected.\n# TYPE kitt_ws_clients gauge\nkitt_ws_clients {}\n\
         # HELP kitt_agents_connected Agents connected over QUIC.\n# TYPE kitt_agents_connected gauge\nkitt_agents_connected {}\n\
         # HELP kitt_uptime_seconds Seconds since the hub started.\n# TYPE kitt_uptime_seconds gauge\nkitt_uptime_seconds {}\n",
        m.http_requests.load(Ordering::Relaxed),
        m.http_errors.load(Ordering::Relaxed),
        m.logins_failed.load(Ordering::Relaxed),
        m.ws_messages.load(Ordering::Relaxed),
        state.sync.live().subscribers(),
        connected,
        m.started.elapsed().as_secs(),
    );
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

// --- printers ------------------------------------------------------------------------------

type LatestSnapshots = std::collections::HashMap<String, crate::db::cameras::LatestSnapshot>;

fn printer_json(
    state: &AppState,
    printer: crate::db::read::PrinterRow,
    latest: &LatestSnapshots,
) -> Value {
    let online = state.sync.is_connected(&printer.agent_id);
    let snapshot = latest.get(&printer.id).map(|snapshot| {
        let mut value = serde_json::to_value(snapshot).unwrap_or(Value::Null);
        value["url"] = format!("/api/v1/snapshots/{}", snapshot.id).into();
        value
    });
    let mut value = serde_json::to_value(&printer).unwrap_or(Value::Null);
    value["agent_online"] = online.into();
    value["latest_snapshot"] = snapshot.unwrap_or(Value::Null);
    value
}

pub async fn printers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let printers = state.db.printers().await?;
    let ids: Vec<String> = printers.iter().map(|p| p.id.clone()).collect();
    let latest = state.db.latest_snapshots(&ids).await?;
    let printers: Vec<Value> =
        printers.into_iter().map(|p| printer_json(&state, p, &latest)).collect();
    Ok(Json(json!({ "printers": printers })))
}

pub async fn printer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let printer = state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let latest = state.db.latest_snapshots(std::slice::from_ref(&printer.id)).await?;
    Ok(Json(printer_json(&state, printer, &latest)))
}

fn unknown_printer(id: &str) -> ApiError {
    ApiError::not_found(format!("no printer {id:?}; GET /api/v1/printers lists them"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryQuery {
    /// Unix milliseconds; default: 6 hours before `to`.
    from: Option<i64>,
    /// Unix milliseconds; default: now.
    to: Option<i64>,
    /// `raw`, `1m`, `15m`, or `auto` (by the range).
    resolution: Option<String>,
    limit: Option<i64>,
}

pub async fn telemetry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<TelemetryQuery>,
) -> Result<Json<Value>, ApiError> {
    state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let to = query.to.unwrap_or_else(|| UnixMillis::now().0);
    let from = query.from.unwrap_or(to - 6 * 3600 * 1000);
    if from > to {
        return Err(ApiError::bad_request("`from` is after `to`"));
    }
    let span = to - from;
    let resolution = match query.resolution.as_deref().unwrap_or("auto") {
        "raw" => 0,
        "1m" => 60,
        "15m" => 900,
        "auto" if span <= 6 * 3600 * 1000 => 0,
        "auto" if span <= 7 * 24 * 3600 * 1000 => 60,
        "auto" => 900,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown resolution {other:?}; use raw, 1m, 15m or auto"
            )));
        }
    };
    let limit = query.limit.unwrap_or(5000).clamp(1, 20_000);
    let samples = state.db.telemetry(&id, resolution, from, to, limit).await?;
    Ok(Json(
        json!({ "printer": id, "resolution_s": resolution, "from": from, "to": to, "samples": samples }),
    ))
}

// --- events --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    printer: Option<String>,
    kind: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

pub async fn events(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = EventFilter {
        printer: query.printer,
        kind: query.kind,
        from: query.from,
        to: query.to,
        before_id: query.before,
        limit: query.limit.unwrap_or(200).clamp(1, 1000),
    };
    let events = state.db.events(&filter).await?;
    let next = (events.len() as i64 == filter.limit).then(|| events.last().map(|e| e.id)).flatten();
    Ok(Json(json!({ "events": events, "next_before": next })))
}

// --- commands ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// `pause`, `resume`, `stop`, `set_light`, `set_speed`, `full_push`, `start_print`, `gcode`.
    action: String,
    /// For `set_light`: `chamber_light`, `work_light`, …; and `on`, `off` or `flashing`.
    node: Option<String>,
    mode: Option<String>,
    /// For `set_speed`: `silent`, `standard`, `sport`, `ludicrous`.
    level: Option<String>,
    /// For `gcode`.
    gcode: Option<String>,
    /// For `start_print`.
    file: Option<String>,
    plate: Option<u16>,
    job_name: Option<String>,
    ams_mapping: Option<Vec<i16>>,
    use_ams: Option<bool>,
    /// For `start_print`: the caller confirms the plate is clear now. Required.
    plate_confirmed_clear: Option<bool>,
    /// Seconds until the command expires if not executed (default 60, at most 86400).
    expires_in_s: Option<u64>,
    /// Execute only in one of these states (`idle`, `printing`, …).
    require_state: Option<Vec<String>>,
}

fn parse_state(text: &str) -> Option<PrintState> {
    Some(match text {
        "idle" => PrintState::Idle,
        "preparing" => PrintState::Preparing,
        "printing" => PrintState::Printing,
        "paused" => PrintState::Paused,
        "finished" => PrintState::Finished,
        "failed" => PrintState::Failed,
        "offline" => PrintState::Offline,
        _ => return None,
    })
}

fn parse_action(
    request: &CommandRequest,
    caller: &Caller,
) -> Result<(CommandAction, Vec<Precondition>), ApiError> {
    let missing =
        |field: &str| ApiError::bad_request(format!("{:?} needs {field:?}", request.action));
    let mut preconditions = vec![Precondition::ControlAvailable];
    let action = match request.action.as_str() {
        "pause" => CommandAction::Pause,
        "resume" => CommandAction::Resume,
        "stop" => CommandAction::Stop,
        "full_push" => CommandAction::RequestFullPush,
        "set_light" => {
            let node = match request.node.as_deref().ok_or_else(|| missing("node"))? {
                "chamber_light" => LightNode::ChamberLight,
                "work_light" => LightNode::WorkLight,
                "chamber_light2" => LightNode::ChamberLight2,
                "heatbed_light" => LightNode::HeatbedLight,
                other => return Err(ApiError::bad_request(format!("unknown light {other:?}"))),
            };
            let mode = match request.mode.as_deref().ok_or_else(|| missing("mode"))? {
                "on" => LightMode::On,
                "off" => LightMode::Off,
                "flashing" => LightMode::Flashing,
                other => {
                    return Err(ApiError::bad_request(format!("unknown light mode {other:?}")));
                }
            };
            CommandAction::SetLight { node, mode }
        }
        "set_speed" => CommandAction::SetSpeed(
            match request.level.as_deref().ok_or_else(|| missing("level"))? {
                "silent" => SpeedLevel::Silent,
                "standard" => SpeedLevel::Standard,
                "sport" => SpeedLevel::Sport,
                "ludicrous" => SpeedLevel::Ludicrous,
                other => {
                    return Err(ApiError::bad_request(format!("unknown speed level {other:?}")));
                }
            },
        ),
        "gcode" => {
            let gcode = request.gcode.clone().ok_or_else(|| missing("gcode"))?;
            if gcode.len() > 4096 {
                return Err(ApiError::bad_request("G-code is limited to 4096 bytes"));
            }
            CommandAction::Gcode(gcode)
        }
        "start_print" => {
            if request.plate_confirmed_clear != Some(true) {
                return Err(ApiError::bad_request(
                    "start_print needs \"plate_confirmed_clear\": true — confirm the plate is empty",
                ));
            }
            preconditions.push(Precondition::PlateConfirmedClear {
                by: caller.user.clone(),
                at: UnixMillis::now(),
            });
            preconditions.push(Precondition::StateIn(vec![
                PrintState::Idle,
                PrintState::Finished,
                PrintState::Failed,
            ]));
            CommandAction::StartPrint(StartPrint {
                file: request.file.clone().ok_or_else(|| missing("file"))?,
                plate: request.plate.unwrap_or(1),
                job_name: request.job_name.clone().unwrap_or_default(),
                ams_mapping: request.ams_mapping.clone().unwrap_or_default(),
                use_ams: request.use_ams.unwrap_or(false),
                bed_leveling: true,
                timelapse: false,
            })
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action {other:?}; use pause, resume, stop, set_light, set_speed, full_push, start_print or gcode"
            )));
        }
    };
    if let Some(states) = &request.require_state {
        let states = states
            .iter()
            .map(|s| {
                parse_state(s).ok_or_else(|| ApiError::bad_request(format!("unknown state {s:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        preconditions.push(Precondition::StateIn(states));
    }
    Ok((action, preconditions))
}

pub async fn create_command(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CommandRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let printer = state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let (action, preconditions) = parse_action(&request, &caller)?;
    let expires_in = request.expires_in_s.unwrap_or(60);
    if expires_in == 0 || expires_in > 86_400 {
        return Err(ApiError::bad_request("expires_in_s must be between 1 and 86400"));
    }
    let now = UnixMillis::now();
    let command = Command {
        id: CommandId(rand::random()),
        printer: PrinterId::new(printer.id.clone()).map_err(|e| ApiError::internal(&e))?,
        issued_at: now,
        expires_at: now.plus_millis(Duration::from_secs(expires_in).as_millis() as i64),
        preconditions,
        action,
    };
    let agent = AgentId::new(printer.agent_id.clone()).map_err(|e| ApiError::internal(&e))?;
    state.sync.send_command(&agent, &command).await?;
    let online = state.sync.is_connected(agent.as_str());
    let body = json!({
        "id": command.id.to_string(),
        "printer": printer.id,
        "status": if online { "sent" } else { "queued: the agent is offline; held until it returns or the command expires" },
        "expires_at": command.expires_at.0,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsQuery {
    printer: Option<String>,
    limit: Option<i64>,
}

pub async fn commands(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CommandsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let commands = state.db.commands(query.printer.as_deref(), limit).await?;
    Ok(Json(json!({ "commands": commands })))
}

pub async fn command(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let command = state
        .db
        .command(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no command {id:?}")))?;
    Ok(Json(serde_json::to_value(command).unwrap_or(Value::Null)))
}

// --- agents and enrollment -----------------------------------------------------------------

pub async fn agents(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let agents: Vec<Value> = state
        .db
        .agent_details()
        .await?
        .into_iter()
        .map(|agent| {
            let online = state.sync.is_connected(&agent.id);
            let mut value = serde_json::to_value(agent).unwrap_or(Value::Null);
            value["online"] = online.into();
            value
        })
        .collect();
    Ok(Json(json!({ "agents": agents })))
}

pub async fn revoke_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let agent =
        AgentId::new(id.clone()).map_err(|_| ApiError::not_found(format!("no agent {id:?}")))?;
    if !state.sync.revoke(&agent).await? {
        return Err(ApiError::not_found(format!("no agent {id:?}")));
    }
    Ok(Json(json!({ "agent": id, "revoked": true })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenRequest {
    name: Option<String>,
    ttl_s: Option<u64>,
}

pub async fn create_enrollment_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<EnrollmentTokenRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let ttl = Duration::from_secs(request.ttl_s.unwrap_or(3600).clamp(60, 7 * 86_400));
    if let Some(name) = &request.name
        && AgentId::new(name.clone()).is_err()
    {
        return Err(ApiError::bad_request(format!("{name:?} is not a valid agent name")));
    }
    let (token, expires_at) = crate::sync::token::create(
        &state.db,
        &state.sync.ca_fingerprint(),
        request.name.as_deref(),
        ttl,
        UnixMillis::now(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token.to_string(), "expires_at": expires_at.0 })),
    )
        .into_response())
}

// --- users and tokens ----------------------------------------------------------------------

pub async fn me(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({ "name": caller.user, "role": caller.role, "via": caller.via }))
}

pub async fn users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(json!({ "users": state.db.users().await? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    name: String,
    password: String,
    role: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<UserRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let role = Role::parse(&request.role)
        .ok_or_else(|| ApiError::bad_request("role must be viewer, operator or admin"))?;
    validate_user_name(&request.name)?;
    if request.password.chars().count() < 10 {
        return Err(ApiError::bad_request("the password needs at least 10 characters"));
    }
    let password = request.password.clone();
    let hash = tokio::task::spawn_blocking(move || super::auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    if !state.db.insert_user(&request.name, &hash, role.as_str(), UnixMillis::now()).await? {
        return Err(ApiError::conflict(format!("a user {:?} exists already", request.name)));
    }
    Ok((StatusCode::CREATED, Json(json!({ "name": request.name, "role": role }))).into_response())
}

pub fn validate_user_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("a user name is 1–64 letters, digits or -_.@"))
    }
}

pub async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    if name == caller.user {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    if !state.db.delete_user(&name).await? {
        return Err(ApiError::not_found(format!("no user {name:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(json!({ "tokens": state.db.api_tokens().await? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Whose token (default: the caller). The token carries that user's role.
    user: Option<String>,
    name: Option<String>,
}

pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let user = request.user.unwrap_or_else(|| caller.user.clone());
    if state.db.user_role(&user).await?.is_none() {
        return Err(ApiError::not_found(format!("no user {user:?}")));
    }
    let (token, id) =
        super::auth::create_api_token(&state.db, &user, request.name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "token": token, "user": user })))
        .into_response())
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    if !state.db.revoke_api_token(&id, UnixMillis::now()).await? {
        return Err(ApiError::not_found(format!("no active token {id:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<i64>,
}

pub async fn audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let limit = query.limit.unwrap_or(200).clamp(1, 1000);
    Ok(Json(json!({ "audit": state.db.audit_log(limit).await? })))
}
