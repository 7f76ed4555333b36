//! The `/api/v1` handlers and the operational endpoints. Handlers are thin: they read the
//! request into types, call a service or a query, and answer with a type. Roles are declared
//! with the routes in [`super::router`], not here.

use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proto::UnixMillis;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use super::hash_gate::Lane;
use crate::db::owners::ClaimRow;
use crate::db::read::{CommandRow, EventFilter, EventRow, Sample};
use crate::db::users::{AuditRow, TokenRow, UserRow};
use crate::metrics::Source;
use crate::service::commands::StateName;
use crate::service::fleet::{Agent, Printer};
use crate::service::managed::{
    DiscoveredList, ManagedList, ManagedPrinterRequest, ManagedPrinterView,
};
use crate::service::{CommandRequest, CommandSpec, Principal, Role};

/// Counts and times every request by its route template (never the raw path, so ids do not
/// explode the series).
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    state.metrics.http_request(method.as_str(), &route, status, started.elapsed());
    // Input refused: logged and counted like any other refused input.
    let refused = match status {
        StatusCode::BAD_REQUEST => Some("bad_request"),
        StatusCode::PAYLOAD_TOO_LARGE => Some("too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Some("media_type"),
        StatusCode::UNPROCESSABLE_ENTITY => Some("invalid_body"),
        _ => None,
    };
    if let Some(reason) = refused {
        state.metrics.refused(Source::Http, reason, &format_args!("{method} {route}"));
    }
    let mut response = response;
    // Which replica answered, behind a load balancer (operators, and the replica tests).
    if let Ok(replica) = axum::http::HeaderValue::from_str(&state.settings.replica) {
        response.headers_mut().insert("x-kitt-replica", replica);
    }
    response
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API route; see /api/v1/openapi.json")
}

/// A known route called with a method it does not have: 405 in the API's error shape (axum's
/// own answer has no body).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}; see /api/v1/openapi.json", uri.path()),
    )
}

// --- operations ----------------------------------------------------------------------------

/// `{"status": …}` of the operational endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}

pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok".into() })
}

/// 200 ready, 503 starting, 404 draining (see [`super::Readiness`]).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (code, status) = match state.readiness.phase() {
        super::Phase::Ready => (StatusCode::OK, "ready"),
        super::Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        super::Phase::Draining => (StatusCode::NOT_FOUND, "draining"),
    };
    (code, Json(Status { status: status.into() })).into_response()
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
    let text = state.metrics.render(&state).await;
    Ok(([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

// --- printers ------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct PrinterList {
    pub printers: Vec<Printer>,
}

/// Every printer with its normalised state and reachability.
#[utoipa::path(get, path = "/printers", tag = "fleet",
    responses((status = 200, body = PrinterList)))]
pub async fn printers(State(state): State<AppState>) -> Result<Json<PrinterList>, ApiError> {
    Ok(Json(PrinterList { printers: state.services.fleet.printers().await? }))
}

/// One printer.
#[utoipa::path(get, path = "/printers/{id}", tag = "fleet",
    params(("id" = String, Path, description = "The printer's id (its serial)")),
    responses((status = 200, body = Printer)))]
pub async fn printer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Printer>, ApiError> {
    Ok(Json(state.services.fleet.printer(&id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimList {
    /// Agents that announced a printer another agent owns, newest first. Their records
    /// about it are kept in the ingest log but never shown or used.
    pub claims: Vec<ClaimRow>,
}

/// Refused printer claims: an agent announced (or reported on) a printer another agent owns.
#[utoipa::path(get, path = "/printer-claims", tag = "fleet",
    responses((status = 200, body = ClaimList)))]
pub async fn printer_claims(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ClaimList>, ApiError> {
    Ok(Json(ClaimList { claims: state.services.fleet.claims(&principal).await? }))
}

/// Approve the owning agent's claim on a printer: it takes commands from now on. Audited.
#[utoipa::path(post, path = "/printers/{id}/approve", tag = "fleet",
    params(("id" = String, Path, description = "The printer's id (its serial)")),
    responses((status = 200, body = Printer)))]
pub async fn approve_printer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Printer>, ApiError> {
    Ok(Json(state.services.fleet.approve_printer(&principal, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovePrinter {
    /// The agent that owns the printer from now on.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub agent: String,
}

/// Move a printer to another agent, approved: commands go to that agent, and the previous
/// owner's records about the printer are refused from now on. Audited.
#[utoipa::path(post, path = "/printers/{id}/owner", tag = "fleet",
    params(("id" = String, Path, description = "The printer's id (its serial)")),
    request_body = MovePrinter,
    responses((status = 200, body = Printer)))]
pub async fn move_printer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<MovePrinter>,
) -> Result<Json<Printer>, ApiError> {
    Ok(Json(state.services.fleet.move_printer(&principal, &id, &request.agent).await?))
}

/// Sample spacing of a telemetry query.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub enum Resolution {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "15m")]
    QuarterHour,
    /// raw up to 6 hours, 1m up to a week, 15m beyond.
    #[serde(rename = "auto")]
    Auto,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// Unix milliseconds; default: 6 hours before `to`.
    from: Option<i64>,
    /// Unix milliseconds; default: now.
    to: Option<i64>,
    /// `raw`, `1m`, `15m`, or `auto` (by the range; the default).
    #[param(inline)]
    resolution: Option<Resolution>,
    /// At most this many samples, the newest of the range (default 5000, at most 20000).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Telemetry {
    pub printer: String,
    /// 0 for raw samples, else the bucket width in seconds.
    pub resolution_s: i64,
    pub from: i64,
    pub to: i64,
    pub samples: Vec<Sample>,
}

/// Telemetry history.
#[utoipa::path(get, path = "/printers/{id}/telemetry", tag = "fleet",
    params(("id" = String, Path, description = "The printer's id"), TelemetryQuery),
    responses((status = 200, body = Telemetry)))]
pub async fn telemetry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<TelemetryQuery>,
) -> Result<Json<Telemetry>, ApiError> {
    state.services.fleet.printer(&id).await?;
    let to = query.to.unwrap_or_else(|| UnixMillis::now().0);
    let from = query.from.unwrap_or(to.saturating_sub(6 * 3600 * 1000));
    if from > to {
        return Err(ApiError::bad_request("`from` is after `to`"));
    }
    let span = to.saturating_sub(from);
    let resolution = match query.resolution.unwrap_or(Resolution::Auto) {
        Resolution::Raw => 0,
        Resolution::Minute => 60,
        Resolution::QuarterHour => 900,
        Resolution::Auto if span <= 6 * 3600 * 1000 => 0,
        Resolution::Auto if span <= 7 * 24 * 3600 * 1000 => 60,
        Resolution::Auto => 900,
    };
    let limit = query.limit.unwrap_or(5000).clamp(1, 20_000);
    let samples = state.db.telemetry(&id, resolution, from, to, limit).await?;
    Ok(Json(Telemetry { printer: id, resolution_s: resolution, from, to, samples }))
}

// --- events --------------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this printer's events.
    printer: Option<String>,
    /// Only events of this kind (`job_started`, `hms_raised`, …).
    kind: Option<String>,
    /// Unix milliseconds, inclusive.
    from: Option<i64>,
    /// Unix milliseconds, inclusive.
    to: Option<i64>,
    /// Only events with an id below this (the previous page's `next_before`).
    before: Option<i64>,
    /// Page size (default 200, at most 1000).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventRow>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
}

/// The event log, newest first.
#[utoipa::path(get, path = "/events", tag = "fleet", params(EventsQuery),
    responses((status = 200, body = EventPage)))]
pub async fn events(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let filter = EventFilter {
        printer: query.printer,
        kind: query.kind,
        from: query.from,
        to: query.to,
        before_id: query.before,
        limit: query.limit.unwrap_or(200).clamp(1, 1000),
    };
    let events = state.db.events(&filter).await?;
    let next_before =
        (events.len() as i64 == filter.limit).then(|| events.last().map(|e| e.id)).flatten();
    Ok(Json(EventPage { events, next_before }))
}

// --- commands ------------------------------------------------------------------------------

/// A command to send: the action with its fields, and how long it may wait.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CommandRequest)]
pub struct CommandBody {
    #[serde(flatten)]
    pub command: CommandSpec,
    /// Seconds until the command expires if not executed (default 60, 1–86400).
    #[schema(minimum = 1, maximum = 86400)]
    pub expires_in_s: Option<u64>,
    /// Execute only in one of these states.
    pub require_state: Option<Vec<StateName>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    pub id: String,
    pub printer: String,
    /// `sent`, or why it waits (`queued: the agent is offline; …`).
    pub status: String,
    pub expires_at: i64,
}

/// Send a command to a printer; it expires if not executed in time.
#[utoipa::path(post, path = "/printers/{id}/commands", tag = "commands",
    params(("id" = String, Path, description = "The printer's id")),
    request_body = CommandBody,
    responses((status = 202, description = "Accepted; delivered now or when the agent returns", body = CommandAccepted)))]
pub async fn create_command(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CommandBody>,
) -> Result<Response, ApiError> {
    let request = CommandRequest {
        spec: body.command,
        expires_in: Duration::from_secs(body.expires_in_s.unwrap_or(60).min(u64::MAX / 1000)),
        require_state: body.require_state.unwrap_or_default(),
    };
    let issued = state.services.commands.issue(&principal, &id, request).await?;
    let status = if issued.agent_online {
        "sent".to_owned()
    } else {
        "queued: the agent is offline; held until it returns or the command expires".to_owned()
    };
    let body = CommandAccepted {
        id: issued.command.id.to_string(),
        printer: issued.command.printer.to_string(),
        status,
        expires_at: issued.command.expires_at.0,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CommandsQuery {
    /// Only this printer's commands.
    printer: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandList {
    pub commands: Vec<CommandRow>,
}

/// Commands with delivery and outcome, newest first.
#[utoipa::path(get, path = "/commands", tag = "commands", params(CommandsQuery),
    responses((status = 200, body = CommandList)))]
pub async fn commands(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CommandsQuery>,
) -> Result<Json<CommandList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    let commands = state.services.commands.list(query.printer.as_deref(), limit).await?;
    Ok(Json(CommandList { commands }))
}

/// One command.
#[utoipa::path(get, path = "/commands/{id}", tag = "commands",
    params(("id" = String, Path, description = "The command's id")),
    responses((status = 200, body = CommandRow)))]
pub async fn command(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CommandRow>, ApiError> {
    Ok(Json(state.services.commands.get(&id).await?))
}

// --- the hub's replicas ---------------------------------------------------------------------

/// The hub's replicas (`GET /cluster`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    /// The replica that answered (also in `x-kitt-replica`).
    pub here: String,
    /// `sqlite` (one hub) or `postgres` (any number of replicas).
    pub database: String,
    /// Now, on the database's clock (Unix ms).
    pub now: i64,
    pub replicas: Vec<ReplicaView>,
}

/// One replica: alive while its heartbeat (every 2 s) is under 10 s old.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaView {
    /// Its `replica_name`.
    pub name: String,
    /// This start of it: `<name>/<suffix>` (the scheduler's history names runs by it).
    pub instance: String,
    /// Where its API and its agents' sync listen, as it registered them; none on SQLite.
    pub http_addr: Option<String>,
    pub sync_addr: Option<String>,
    pub started_at: Option<i64>,
    pub heartbeat_at: i64,
    pub alive: bool,
    /// Agents connected to it.
    pub agents: i64,
    /// The replica that answered.
    pub here: bool,
}

/// The hub's replicas: each with its heartbeat, whether it is alive and the agents connected
/// to it. A single hub on SQLite is one replica.
#[utoipa::path(get, path = "/cluster", tag = "agents",
    responses((status = 200, body = ClusterView)))]
pub async fn cluster(State(state): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    let here = state.settings.replica.clone();
    let (now, rows) = state.db.cluster_replicas(crate::cluster::STALE_MS).await?;
    let name_of = |instance: &str| instance.split('/').next().unwrap_or_default().to_owned();
    let mut replicas: Vec<ReplicaView> = rows
        .into_iter()
        .map(|row| ReplicaView {
            name: name_of(&row.instance),
            here: name_of(&row.instance) == here,
            instance: row.instance,
            http_addr: Some(row.http_addr),
            sync_addr: Some(row.sync_addr),
            started_at: Some(row.started_at),
            heartbeat_at: row.heartbeat_at,
            alive: row.alive,
            agents: row.agents,
        })
        .collect();
    let database = match state.db.backend() {
        crate::db::Backend::Sqlite => "sqlite",
        crate::db::Backend::Postgres => "postgres",
    };
    if replicas.is_empty() {
        // One hub (SQLite keeps no replicas' table): itself.
        let agents = state.services.fleet.agents().await?;
        replicas.push(ReplicaView {
            name: here.clone(),
            instance: here.clone(),
            http_addr: None,
            sync_addr: None,
            started_at: None,
            heartbeat_at: now,
            alive: true,
            agents: agents.iter().filter(|a| a.online).count() as i64,
            here: true,
        });
    }
    Ok(Json(ClusterView { here, database: database.into(), now, replicas }))
}

// --- agents and enrollment -----------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

/// Agents: online, last seen, version, outbox depth, drops, certificate expiry.
#[utoipa::path(get, path = "/agents", tag = "agents",
    responses((status = 200, body = AgentList)))]
pub async fn agents(State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    Ok(Json(AgentList { agents: state.services.fleet.agents().await? }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub agent: String,
    pub revoked: bool,
}

/// Revoke an agent: disconnected within seconds, cannot reconnect.
#[utoipa::path(post, path = "/agents/{id}/revoke", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses((status = 200, body = Revoked)))]
pub async fn revoke_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    state.services.fleet.revoke_agent(&principal, &id).await?;
    Ok(Json(Revoked { agent: id, revoked: true }))
}

/// The printers the hub manages for an agent, with what the agent applied. Secrets are
/// never shown (`has_secret` says whether one is set).
#[utoipa::path(get, path = "/agents/{id}/printers", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses((status = 200, body = ManagedList)))]
pub async fn managed_printers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ManagedList>, ApiError> {
    Ok(Json(state.services.managed.list(&principal, &id).await?))
}

/// Add or replace a printer the hub manages for an agent. The agent receives the new list
/// at once, or when it reconnects, and reports whether the printer runs. Leaving out the
/// access code or API key on an edit keeps the stored one. Audited.
#[utoipa::path(put, path = "/agents/{id}/printers/{printer}", tag = "agents",
    params(
        ("id" = String, Path, description = "The agent's id"),
        ("printer" = String, Path, description = "The printer's id: a Bambu printer's serial, any id for a Klipper printer"),
    ),
    request_body = ManagedPrinterRequest,
    responses((status = 200, body = ManagedPrinterView)))]
pub async fn put_managed_printer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, printer)): Path<(String, String)>,
    JsonBody(request): JsonBody<ManagedPrinterRequest>,
) -> Result<Json<ManagedPrinterView>, ApiError> {
    Ok(Json(state.services.managed.put(&principal, &id, &printer, request).await?))
}

/// Stop managing a printer from the hub: the agent stops driving it. Its history stays.
/// Audited.
#[utoipa::path(delete, path = "/agents/{id}/printers/{printer}", tag = "agents",
    params(
        ("id" = String, Path, description = "The agent's id"),
        ("printer" = String, Path, description = "The printer's id"),
    ),
    responses((status = 204, description = "Removed")))]
pub async fn delete_managed_printer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, printer)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.services.managed.delete(&principal, &id, &printer).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The printers an agent heard announce themselves on its LAN (Bambu SSDP, Moonraker mDNS),
/// to add from.
#[utoipa::path(get, path = "/agents/{id}/discovered", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses((status = 200, body = DiscoveredList)))]
pub async fn discovered_printers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<DiscoveredList>, ApiError> {
    Ok(Json(state.services.managed.discovered(&principal, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenRequest {
    /// The agent's name (its id once enrolled); default: generated.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: Option<String>,
    /// Seconds the token stays valid (default 3600, 60–604800).
    ttl_s: Option<u64>,
    /// Printer serials the agent will announce, approved in advance; any other printer it
    /// announces waits for an admin's approval before it takes commands.
    #[serde(default)]
    #[schema(max_items = 64)]
    printers: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentToken {
    /// `kitt1.<id>.<secret>.<ca>`: give it to `kitt-agent enroll --token`.
    pub token: String,
    pub expires_at: i64,
}

/// Create a single-use enrollment token.
#[utoipa::path(post, path = "/enrollment-tokens", tag = "agents",
    request_body = EnrollmentTokenRequest,
    responses((status = 201, body = EnrollmentToken)))]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<EnrollmentTokenRequest>,
) -> Result<Response, ApiError> {
    let ttl = Duration::from_secs(request.ttl_s.unwrap_or(3600).clamp(60, 7 * 86_400));
    if let Some(name) = &request.name
        && proto::AgentId::new(name.clone()).is_err()
    {
        return Err(ApiError::bad_request(format!("{name:?} is not a valid agent name")));
    }
    if request.printers.len() > 64 {
        return Err(ApiError::bad_request("at most 64 printers per token"));
    }
    let printers = request
        .printers
        .iter()
        .map(|p| proto::PrinterId::new(p.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::bad_request(format!("not a printer serial: {error}")))?;
    let (token, expires_at) = crate::sync::token::create_advertised(
        &state.db,
        &state.sync.ca_fingerprint(),
        request.name.as_deref(),
        &printers,
        &state.settings.advertise,
        ttl,
        UnixMillis::now(),
    )
    .await?;
    let body = EnrollmentToken { token: token.to_string(), expires_at: expires_at.0 };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

// --- users and tokens ----------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
    /// `session` or `token:<id>`.
    pub via: String,
}

/// The caller's name and role.
#[utoipa::path(get, path = "/me", tag = "auth", responses((status = 200, body = Me)))]
pub async fn me(Extension(principal): Extension<Principal>) -> Json<Me> {
    Json(Me { name: principal.name().to_owned(), role: principal.role(), via: principal.via() })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserRow>,
}

/// Users and roles.
#[utoipa::path(get, path = "/users", tag = "users", responses((status = 200, body = UserList)))]
pub async fn users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    Ok(Json(UserList { users: state.db.users().await? }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    /// 1–64 letters, digits or `-_.@`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    name: String,
    /// 10 characters or more, at most 1024 bytes.
    #[schema(min_length = 10, max_length = 1024)]
    password: String,
    role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    pub name: String,
    pub role: Role,
}

/// Add a user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = UserRequest,
    responses((status = 201, body = UserCreated)))]
pub async fn create_user(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<UserRequest>,
) -> Result<Response, ApiError> {
    validate_user_name(&request.name)?;
    super::auth::validate_new_password(&request.password)?;
    let password = request.password.clone();
    let hash = super::auth::gated(&state.hash_gate, Lane::Priority, move |memory| {
        super::auth::hash_password_in(memory, &password)
    })
    .await?
    .map_err(|e| ApiError::internal(&e))?;
    if !state.db.insert_user(&request.name, &hash, request.role.as_str(), UnixMillis::now()).await?
    {
        return Err(ApiError::conflict(format!("a user {:?} exists already", request.name)));
    }
    let body = UserCreated { name: request.name, role: request.role };
    Ok((StatusCode::CREATED, Json(body)).into_response())
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

/// Delete a user, their sessions and tokens.
#[utoipa::path(delete, path = "/users/{name}", tag = "users",
    params(("name" = String, Path, description = "The user's name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if name == principal.name() {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    if !state.db.delete_user(&name).await? {
        return Err(ApiError::not_found(format!("no user {name:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenRow>,
}

/// API tokens (without secrets).
#[utoipa::path(get, path = "/tokens", tag = "users", responses((status = 200, body = TokenList)))]
pub async fn tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList { tokens: state.db.api_tokens().await? }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Whose token (default: the caller). The token carries that user's role.
    user: Option<String>,
    /// A label for the token.
    #[schema(max_length = 200)]
    name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedToken)]
pub struct TokenCreated {
    pub id: String,
    /// `kitt_<id>_<secret>`, shown this once.
    pub token: String,
    pub user: String,
}

/// Create an API token for a user; the token is shown once.
#[utoipa::path(post, path = "/tokens", tag = "users", request_body = TokenRequest,
    responses((status = 201, body = TokenCreated)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    let user = request.user.unwrap_or_else(|| principal.name().to_owned());
    if state.db.user_role(&user).await?.is_none() {
        return Err(ApiError::not_found(format!("no user {user:?}")));
    }
    if request.name.as_ref().is_some_and(|n| n.len() > 200) {
        return Err(ApiError::bad_request("a token's name is limited to 200 bytes"));
    }
    let (token, id) =
        super::auth::create_api_token(&state.db, &user, request.name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { id, token, user })).into_response())
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "users",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.db.revoke_api_token(&id, UnixMillis::now()).await? {
        return Err(ApiError::not_found(format!("no active token {id:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many (default 200, at most 1000).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditLog)]
pub struct AuditPage {
    pub audit: Vec<AuditRow>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/audit", tag = "users", params(AuditQuery),
    responses((status = 200, body = AuditPage)))]
pub async fn audit(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = query.limit.unwrap_or(200).clamp(1, 1000);
    Ok(Json(AuditPage { audit: state.db.audit_log(limit).await? }))
}
