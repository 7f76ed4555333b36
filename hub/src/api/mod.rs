//! The HTTP API under `/api/v1` (axum), plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Every `/api/v1` route except `login` requires a caller: a dashboard session cookie or a
//! bearer token ([`auth`]). Roles: viewer (read), operator (printer commands), admin (users,
//! agents, tokens); each route's role is declared once, in [`router`]'s table, which both
//! enforces it and writes it into the OpenAPI document. Every mutating request is written to
//! the audit log with who, what, when and the resulting status. Bodies are Rust types (the
//! document's schemas come from them). Errors are `{"error": {"code", "message"}}` with the
//! right status; internal details go to the log, never to the client. Handlers are thin: the
//! behaviour lives in [`crate::service`].

mod assistant;
pub mod auth;
mod cameras;
mod error;
pub mod extract;
mod files;
pub mod hash_gate;
pub mod limiter;
mod memory;
mod openai;
pub mod openapi;
mod outcomes;
mod passwords;
pub mod proxies;
mod queue;
mod routes;
mod scheduler;
pub mod spoolman;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

pub use self::error::{ApiError, ErrorBody};
use self::openapi::Access;
pub use self::routes::validate_user_name;
pub use self::ws::lagged_message;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::service::{Role, Services};
use crate::sync::server::SyncHandle;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub sync: SyncHandle,
    pub services: Services,
    /// The assistant: no model tiers until `app::start` gives it the configured ones.
    pub assistant: crate::assistant::Assistant,
    /// The assistant's memory: none until `app::start` opens it (it needs the embedding
    /// model).
    pub memory: Option<crate::memory::Memory>,
    /// This replica's scheduler: none when `[scheduler] enabled = false` (the jobs are then
    /// still listed, changed and triggered; another replica runs them).
    pub scheduler: Option<crate::scheduler::driver::Scheduler>,
    pub settings: Arc<ApiSettings>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<limiter::LoginLimiter>,
    /// Every password hash runs through it.
    pub hash_gate: hash_gate::HashGate,
    /// Starting, ready or draining: what `/readyz` answers.
    pub readiness: Readiness,
    /// The OpenAPI document, built once.
    pub openapi: Arc<serde_json::Value>,
}

/// Where the hub is in its life, as `/readyz` tells load balancers: starting (503), ready
/// (200), or draining after SIGTERM (404: not ready to every prober, and to HAProxy's
/// `http-check disable-on-404` "send nothing new, let what is under way finish", where a
/// 503 would mark it DOWN and `on-marked-down shutdown-sessions` would cut requests still
/// being answered). Shared by every clone of the state.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

/// A phase of [`Readiness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
}

impl Readiness {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Serving: every part is up.
    pub fn ready(&self) {
        // Never back from draining: a hub told to stop stays on its way out.
        let _ = self.0.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Told to stop: still serving what comes, but asking for nothing new.
    pub fn drain(&self) {
        self.0.store(2, Ordering::Release);
    }
}

/// HTTP behaviour from the configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The `Secure` attribute on session cookies: always, never, or `None` for automatic —
    /// set when the request arrived over TLS at a reverse proxy (`X-Forwarded-Proto: https`).
    /// The hub itself speaks plain HTTP, and browsers drop Secure cookies received over plain
    /// HTTP from a LAN address, so "always" would lock LAN users out.
    pub secure_cookies: Option<bool>,
    pub session_lifetime: std::time::Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client; none by default.
    pub trusted_proxies: proxies::TrustedProxies,
    /// The hub's sync addresses that enrollment tokens name (`[sync] advertise`).
    pub advertise: Vec<String>,
    /// This replica's name (`replica_name`, filled in by `app::start`), in every answer's
    /// `x-kitt-replica`.
    pub replica: String,
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            secure_cookies: None,
            session_lifetime: std::time::Duration::from_secs(12 * 3600),
            max_body_bytes: 64 * 1024,
            trusted_proxies: proxies::TrustedProxies::default(),
            advertise: Vec::new(),
            replica: "hub".into(),
        }
    }
}

impl AppState {
    pub fn new(
        db: Db,
        sync: SyncHandle,
        settings: ApiSettings,
        metrics: Arc<Metrics>,
        files: crate::files::FileStore,
    ) -> AppState {
        let services = Services::new(db.clone(), sync.clone(), files);
        AppState {
            assistant: crate::assistant::Assistant::new(
                db.clone(),
                services.clone(),
                Vec::new(),
                crate::assistant::service::Settings::default(),
            ),
            memory: None,
            scheduler: None,
            services,
            db,
            sync,
            settings: Arc::new(settings),
            metrics,
            limiter: Arc::new(limiter::LoginLimiter::default()),
            hash_gate: hash_gate::HashGate::for_this_machine(),
            readiness: Readiness::default(),
            openapi: Arc::new(serde_json::to_value(spec()).unwrap_or_default()),
        }
    }
}

/// Every `/api/v1` route with the least role it needs: the one place roles are stated.
fn table() -> Vec<(Access, UtoipaMethodRouter<AppState>)> {
    use Access::Anyone;
    const VIEWER: Access = Access::Role(Role::Viewer);
    const OPERATOR: Access = Access::Role(Role::Operator);
    const ADMIN: Access = Access::Role(Role::Admin);
    vec![
        (Anyone, routes!(auth::login)),
        (VIEWER, routes!(auth::logout)),
        (VIEWER, routes!(routes::me)),
        (VIEWER, routes!(passwords::change_own_password)),
        (VIEWER, routes!(routes::printers)),
        (VIEWER, routes!(routes::printer)),
        (VIEWER, routes!(routes::telemetry)),
        (OPERATOR, routes!(routes::create_command)),
        (VIEWER, routes!(cameras::cameras)),
        (OPERATOR, routes!(cameras::take_snapshot)),
        (VIEWER, routes!(cameras::live)),
        (VIEWER, routes!(cameras::snapshots)),
        (VIEWER, routes!(cameras::latest_snapshot)),
        (VIEWER, routes!(cameras::snapshot_image)),
        (OPERATOR, routes!(files::upload)),
        (VIEWER, routes!(files::files)),
        (VIEWER, routes!(files::file)),
        (OPERATOR, routes!(files::delete_file)),
        (VIEWER, routes!(files::thumbnail)),
        (VIEWER, routes!(files::content)),
        (OPERATOR, routes!(queue::add_job)),
        (VIEWER, routes!(queue::jobs)),
        (VIEWER, routes!(queue::job)),
        (OPERATOR, routes!(queue::hold_job)),
        (OPERATOR, routes!(queue::release_job)),
        (OPERATOR, routes!(queue::approve_job)),
        (OPERATOR, routes!(queue::cancel_job)),
        (OPERATOR, routes!(queue::retry_job)),
        (OPERATOR, routes!(queue::move_job)),
        (OPERATOR, routes!(queue::plate_clear)),
        (VIEWER, routes!(outcomes::outcomes)),
        (VIEWER, routes!(outcomes::outcome)),
        (OPERATOR, routes!(outcomes::review_outcome)),
        (VIEWER, routes!(outcomes::analytics)),
        (VIEWER, routes!(outcomes::analytics_export)),
        (VIEWER, routes!(outcomes::estimate)),
        (VIEWER, routes!(outcomes::inventory)),
        (VIEWER, routes!(outcomes::slots)),
        (OPERATOR, routes!(outcomes::assign_slot)),
        (ADMIN, routes!(outcomes::spoolman_clients)),
        (ADMIN, routes!(outcomes::add_spoolman_client)),
        (ADMIN, routes!(outcomes::revoke_spoolman_client)),
        (VIEWER, routes!(assistant::conversations)),
        (VIEWER, routes!(assistant::create_conversation)),
        (VIEWER, routes!(assistant::conversation)),
        (VIEWER, routes!(assistant::delete_conversation)),
        (VIEWER, routes!(assistant::send_message)),
        (VIEWER, routes!(assistant::pending)),
        // Deciding needs a person; confirming also the action's own role (checked by the
        // assistant's `pending::decide`, since a viewer may reject what they asked for).
        (VIEWER, routes!(assistant::confirm)),
        (VIEWER, routes!(assistant::reject)),
        (VIEWER, routes!(assistant::models)),
        (VIEWER, routes!(memory::overview)),
        (VIEWER, routes!(memory::search)),
        (VIEWER, routes!(memory::documents)),
        (ADMIN, routes!(memory::add_document)),
        (VIEWER, routes!(memory::document)),
        (ADMIN, routes!(memory::replace_document)),
        (ADMIN, routes!(memory::delete_document)),
        (ADMIN, routes!(memory::reindex)),
        (VIEWER, routes!(scheduler::jobs)),
        (ADMIN, routes!(scheduler::add)),
        (VIEWER, routes!(scheduler::job)),
        (ADMIN, routes!(scheduler::change)),
        (ADMIN, routes!(scheduler::delete)),
        (ADMIN, routes!(scheduler::pause)),
        (ADMIN, routes!(scheduler::resume)),
        (ADMIN, routes!(scheduler::trigger)),
        (VIEWER, routes!(scheduler::reports)),
        (VIEWER, routes!(routes::events)),
        (VIEWER, routes!(routes::commands)),
        (VIEWER, routes!(routes::command)),
        (VIEWER, routes!(routes::agents)),
        (VIEWER, routes!(routes::cluster)),
        (ADMIN, routes!(routes::revoke_agent)),
        (ADMIN, routes!(routes::managed_printers)),
        (ADMIN, routes!(routes::put_managed_printer, routes::delete_managed_printer)),
        (ADMIN, routes!(routes::discovered_printers)),
        (ADMIN, routes!(routes::printer_claims)),
        (ADMIN, routes!(routes::approve_printer)),
        (ADMIN, routes!(routes::move_printer)),
        (ADMIN, routes!(routes::create_enrollment_token)),
        (ADMIN, routes!(routes::users)),
        (ADMIN, routes!(routes::create_user)),
        (ADMIN, routes!(routes::delete_user)),
        (ADMIN, routes!(passwords::reset_password)),
        (ADMIN, routes!(routes::tokens)),
        (ADMIN, routes!(routes::create_token)),
        (ADMIN, routes!(routes::revoke_token)),
        (ADMIN, routes!(routes::audit)),
        (VIEWER, routes!(ws::upgrade)),
        (VIEWER, routes!(openapi::document)),
    ]
}

/// Describes a route's operations with its role and enforces the role on it.
fn gate(
    access: Access,
    (schemas, mut paths, method_router): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    for item in paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            openapi::describe(operation, access);
        }
    }
    let method_router = match access {
        Access::Anyone => method_router,
        Access::Role(role) => {
            method_router.route_layer(axum::middleware::from_fn(move |request, next| {
                auth::require_role(role, request, next)
            }))
        }
    };
    (schemas, paths, method_router)
}

/// The OpenAPI document of `/api/v1`.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut router = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi());
    for (access, route) in table() {
        router = router.routes(gate(access, route));
    }
    router.into_openapi()
}

/// `/openai/v1`: the assistant behind OpenAI's API, for any person (bearer API tokens, as
/// OpenAI's SDKs send them, or a session).
fn openai_router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/models", get(openai::models))
        .route("/chat/completions", axum::routing::post(openai::chat_completions))
        .route_layer(axum::middleware::from_fn(|request, next| {
            auth::require_role(Role::Viewer, request, next)
        }))
        .route_layer(axum::middleware::from_fn_with_state(state, auth::require_caller))
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let mut open = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi());
    let mut protected = OpenApiRouter::new();
    for (access, route) in table() {
        match access {
            Access::Anyone => open = open.routes(gate(access, route)),
            Access::Role(_) => protected = protected.routes(gate(access, route)),
        }
    }
    let protected = protected
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_caller));
    let (api, _) = open.merge(protected).split_for_parts();
    let api =
        api.fallback(routes::not_found).method_not_allowed_fallback(routes::method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .nest("/openai/v1", openai_router(state.clone()))
        .route("/spoolman", axum::routing::any(spoolman::handle))
        .route("/spoolman/{*rest}", axum::routing::any(spoolman::handle))
        .merge(crate::web::router())
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::supervise::catch_panics,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::count_requests))
        .with_state(state)
}
