//! The HTTP API under `/api/v1` (axum), plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Every `/api/v1` route except `login` requires a caller: a dashboard session cookie or a
//! bearer token ([`auth`]). Roles: viewer (read), operator (printer commands), admin (users,
//! agents, tokens). Every mutating request is written to the audit log with who, what, when
//! and the resulting status. Errors are `{"error": {"code", "message"}}` with the right
//! status; internal details go to the log, never to the client.

pub mod auth;
mod cameras;
mod error;
pub mod openapi;
mod routes;
mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use self::auth::Role;
pub use self::error::ApiError;
pub use self::routes::validate_user_name as routes_validate_user_name;
use crate::db::Db;
use crate::sync::server::SyncHandle;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub sync: SyncHandle,
    pub settings: Arc<ApiSettings>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<auth::LoginLimiter>,
    pub ready: Arc<AtomicBool>,
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
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            secure_cookies: None,
            session_lifetime: std::time::Duration::from_secs(12 * 3600),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    pub started: Instant,
    pub http_requests: AtomicU64,
    pub http_errors: AtomicU64,
    pub logins_failed: AtomicU64,
    pub ws_messages: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: Instant::now(),
            http_requests: AtomicU64::new(0),
            http_errors: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            ws_messages: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl AppState {
    pub fn new(db: Db, sync: SyncHandle, settings: ApiSettings) -> AppState {
        AppState {
            db,
            sync,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
            limiter: Arc::new(auth::LoginLimiter::default()),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/printers", get(routes::printers))
        .route("/printers/{id}", get(routes::printer))
        .route("/printers/{id}/telemetry", get(routes::telemetry))
        .route("/printers/{id}/commands", post(routes::create_command))
        .route("/printers/{id}/cameras", get(cameras::cameras))
        .route("/printers/{id}/cameras/{camera}/snapshot", post(cameras::take_snapshot))
        .route("/printers/{id}/cameras/{camera}/live", get(cameras::live))
        .route("/printers/{id}/snapshots", get(cameras::snapshots))
        .route("/printers/{id}/snapshots/latest", get(cameras::latest_snapshot))
        .route("/snapshots/{id}", get(cameras::snapshot_image))
        .route("/events", get(routes::events))
        .route("/commands", get(routes::commands))
        .route("/commands/{id}", get(routes::command))
        .route("/agents", get(routes::agents))
        .route("/agents/{id}/revoke", post(routes::revoke_agent))
        .route("/enrollment-tokens", post(routes::create_enrollment_token))
        .route("/users", get(routes::users).post(routes::create_user))
        .route("/users/{name}", axum::routing::delete(routes::delete_user))
        .route("/tokens", get(routes::tokens).post(routes::create_token))
        .route("/tokens/{id}", axum::routing::delete(routes::revoke_token))
        .route("/audit", get(routes::audit))
        .route("/me", get(routes::me))
        .route("/logout", post(auth::logout))
        .route("/ws", get(ws::upgrade))
        .route("/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_caller))
        // Login is the one route without a caller.
        .route("/login", post(auth::login))
        .fallback(routes::not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .merge(crate::web::router())
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::count_requests))
        .with_state(state)
}
