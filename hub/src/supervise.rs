//! What a panic does in the hub. The hub is built to unwind (the workspace's release profile
//! does not abort; see ARCHITECTURE.md, "Panics"), so a panic ends only the task it happened
//! in, and the hub catches it at the task's edge:
//!
//! - a **request** handler's panic becomes a 500 in the API's error shape ([`catch_panics`]);
//! - a **connection** task's panic ends that connection ([`contained`]); the agent
//!   reconnects and resends whatever was not acknowledged; a panic while the SQLite writer
//!   projects a batch fails that batch's transaction only (`db.rs`), the writer goes on;
//! - a panic in a task the hub cannot run without (the sync endpoint, the HTTP server, the
//!   SQLite writer, housekeeping) stops the whole hub with [`EXIT_PANICKED`] ([`essential`]),
//!   so that its supervisor restarts it rather than leaving a hub that answers but no longer
//!   ingests.
//!
//! Each is logged and counted in one call ([`Metrics::panicked`], `kitt_panics_total`). The
//! panic hook ([`install_hook`]) writes the panic's message and place as a log line, so the
//! default hook's unstructured text never interleaves with the log.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::metrics::Metrics;

/// The exit code of a hub stopped by a panic in an essential task (sysexits `EX_SOFTWARE`).
pub const EXIT_PANICKED: u8 = 70;

/// Replaces the default panic hook with one that logs the panic (message, place, thread) as
/// an `ERROR` line. The hook runs before unwinding, wherever the panic is then caught.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(
            panic = message(info.payload()),
            place = place.as_deref().unwrap_or("unknown"),
            thread,
            "Panicked."
        );
    }));
}

/// A panic's message, when it has one.
pub fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Runs `work`; a panic in it is logged and counted under `task`, and ends only `work`.
pub async fn contained(metrics: &Metrics, task: &'static str, work: impl Future<Output = ()>) {
    if let Err(payload) = AssertUnwindSafe(work).catch_unwind().await {
        metrics.panicked(task, message(payload.as_ref()));
    }
}

/// Runs `work`, a task the hub cannot do without; if it panics, the panic is logged and
/// counted, `failed` fires and the hub shuts down (its `serve` exits with
/// [`EXIT_PANICKED`]).
pub async fn essential(
    metrics: Arc<Metrics>,
    name: &'static str,
    failed: CancellationToken,
    work: impl Future<Output = ()>,
) {
    if let Err(payload) = AssertUnwindSafe(work).catch_unwind().await {
        metrics.panicked("background", message(payload.as_ref()));
        tracing::error!(task = name, "An essential task panicked; the hub stops.");
        failed.cancel();
    }
}

/// Middleware: a handler that panics answers 500 (the API's error shape) and is logged and
/// counted; the connection and every other request go on.
pub async fn catch_panics(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = format!("{} {}", request.method(), request.uri().path());
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let what = format!("{route}: {}", message(payload.as_ref()));
            metrics.panicked("http", &what);
            let message = "the hub failed while answering; the failure is in its log";
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_contained_panic_is_counted_and_ends_only_its_task() {
        let metrics = Metrics::new();
        contained(&metrics, "sync_connection", async { panic!("a bad frame") }).await;
        contained(&metrics, "sync_connection", async {}).await;
        assert_eq!(metrics.panics("sync_connection"), 1);
    }

    #[tokio::test]
    async fn an_essential_task_that_panics_stops_the_hub() {
        let metrics = Arc::new(Metrics::new());
        let failed = CancellationToken::new();
        essential(metrics.clone(), "writer", failed.clone(), async {}).await;
        assert!(!failed.is_cancelled(), "a task that returns is not a failure");
        essential(metrics.clone(), "writer", failed.clone(), async { panic!("boom") }).await;
        assert!(failed.is_cancelled());
        assert_eq!(metrics.panics("background"), 1);
    }

    async fn boom() -> &'static str {
        panic!("a handler's bug")
    }

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_and_the_next_request_is_served() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;

        let metrics = Arc::new(Metrics::new());
        let router = axum::Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn_with_state(metrics.clone(), catch_panics));
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let boom = router.clone().oneshot(get("/boom")).await.unwrap();
        assert_eq!(boom.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(boom.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        let fine = router.oneshot(get("/fine")).await.unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
        assert_eq!(metrics.panics("http"), 1);
    }

    /// With `panic = "abort"` nothing above could catch anything: the process would end.
    /// Only the `agent` profile aborts; `cargo xtask` builds `-p edge-agent` alone with it.
    #[test]
    fn no_profile_the_hub_is_built_with_aborts_on_panic() {
        let path = format!(
            "{}/../Cargo.toml",
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
        );
        let manifest: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        let profiles = manifest.get("profile").and_then(toml::Value::as_table);
        for (name, profile) in profiles.into_iter().flatten() {
            let panic = profile.get("panic").and_then(toml::Value::as_str);
            if name == "agent" {
                assert_eq!(panic, Some("abort"), "the agent's profile");
                continue;
            }
            assert_ne!(panic, Some("abort"), "profile.{name} aborts on panic");
        }
    }

    #[test]
    fn messages_come_from_str_and_string_payloads() {
        let from_str: Box<dyn Any + Send> = Box::new("static");
        let from_string: Box<dyn Any + Send> = Box::new(String::from("formatted 7"));
        let other: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(message(from_str.as_ref()), "static");
        assert_eq!(message(from_string.as_ref()), "formatted 7");
        assert_eq!(message(other.as_ref()), "(no message)");
    }
}
