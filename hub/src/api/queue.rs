//! The print queue: jobs (add, list, read with history, hold, release, approve, cancel,
//! retry, move) and "plate clear". Thin: the behaviour is `service::queue`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::service::Principal;
use crate::service::queue::{JobDetail, JobRequest, JobView, Move, PlateState};

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// Queue a file's plate: one job per copy. The dispatcher gives each to a printer that fits
/// it, is free, has its plate confirmed clear and the filament loaded.
#[utoipa::path(post, path = "/jobs", tag = "queue", request_body = JobRequest,
    responses((status = 201, description = "Queued", body = JobList),
        (status = 422, description = "The file does not fit the printer named (`wrong_printer`)", body = super::ErrorBody)))]
pub async fn add_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<JobRequest>,
) -> Result<Response, ApiError> {
    let jobs = state.services.queue.add(&principal, request).await?;
    Ok((StatusCode::CREATED, Json(JobList { jobs })).into_response())
}

/// Every job not yet done, in the order they go (`queue_place`), each queued one with why it
/// waits; then the 50 that ended last.
#[utoipa::path(get, path = "/jobs", tag = "queue", responses((status = 200, body = JobList)))]
pub async fn jobs(State(state): State<AppState>) -> Result<Json<JobList>, ApiError> {
    Ok(Json(JobList { jobs: state.services.queue.list().await? }))
}

fn job_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(format!("no job {id:?}; job ids are numbers")))
}

/// A job with its history: every change, when, and who made it.
#[utoipa::path(get, path = "/jobs/{id}", tag = "queue",
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, body = JobDetail)))]
pub async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(state.services.queue.get(job_id(&id)?).await?))
}

macro_rules! job_action {
    ($name:ident, $path:literal, $doc:literal, |$queue:ident, $principal:ident, $id:ident| $call:expr) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "queue",
            params(("id" = i64, Path, description = "The job's id")),
            responses((status = 200, body = JobDetail),
                (status = 409, description = "Not possible in the job's state", body = super::ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension($principal): Extension<Principal>,
            Path(id): Path<String>,
        ) -> Result<Json<JobDetail>, ApiError> {
            let $id = job_id(&id)?;
            let $queue = &state.services.queue;
            Ok(Json($call.await?))
        }
    };
}

job_action!(
    hold_job,
    "/jobs/{id}/hold",
    "Hold a queued job: it waits until released.",
    |queue, principal, id| queue.hold(&principal, id, true)
);
job_action!(release_job, "/jobs/{id}/release", "Release a held job.", |queue, principal, id| queue
    .hold(&principal, id, false));
job_action!(
    approve_job,
    "/jobs/{id}/approve",
    "Approve a job that needs an operator's approval.",
    |queue, principal, id| queue.approve(&principal, id)
);
job_action!(
    cancel_job,
    "/jobs/{id}/cancel",
    "Cancel a job that is not printing (a print is stopped on the printer).",
    |queue, principal, id| queue.cancel(&principal, id)
);
job_action!(
    retry_job,
    "/jobs/{id}/retry",
    "Put a failed or cancelled job back in the queue.",
    |queue, principal, id| queue.retry(&principal, id)
);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// `top`, `up`, `down` or `bottom`, among the queued jobs of its priority.
    pub to: Move,
}

/// Move a queued job among the queued jobs of its priority.
#[utoipa::path(post, path = "/jobs/{id}/move", tag = "queue", request_body = MoveRequest,
    params(("id" = i64, Path, description = "The job's id")),
    responses((status = 200, body = JobDetail),
        (status = 409, description = "The job is not queued", body = super::ErrorBody)))]
pub async fn move_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<MoveRequest>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(state.services.queue.reorder(&principal, job_id(&id)?, request.to).await?))
}

/// "Plate clear": a person confirms the printer's build plate is empty. It holds until the
/// printer's next job ends; nothing starts from the queue without it.
#[utoipa::path(post, path = "/printers/{id}/plate-clear", tag = "queue",
    params(("id" = String, Path, description = "The printer's id")),
    responses((status = 200, body = PlateState)))]
pub async fn plate_clear(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<PlateState>, ApiError> {
    Ok(Json(state.services.queue.confirm_plate(&principal, &id).await?))
}
