//! The scheduler's jobs: listed with their next run and last result, each with its history;
//! an admin adds, changes, pauses, resumes, triggers or deletes one. The hub's own jobs can
//! be paused and triggered, not changed or deleted (their schedules are the configuration's).
//! Thin: the decisions are `scheduler`, the storage `db::scheduler`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use crate::db::scheduler::{JobRow, RunRow};
use crate::scheduler::jobs::{Action, DEFAULT_LEASE_MS, Job, ScheduleSpec, valid_name};
use crate::service::Principal;

/// A job as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledJob {
    pub name: String,
    /// What it runs: `queue_sweep`, `measure_outcomes`, `telemetry_retention`,
    /// `certificate_sweep`, `low_stock`, `health_report`, `maintenance` or `mark`.
    pub action: String,
    pub description: String,
    pub schedule: ScheduleSpec,
    /// The hub's own: it can be paused and triggered, not changed or deleted.
    pub builtin: bool,
    pub paused: bool,
    /// Milliseconds a run holds its lease before another replica may take it over.
    pub lease_ms: i64,
    /// The action's parameters.
    pub params: serde_json::Value,
    /// The next scheduled occurrence (Unix ms); `null` when paused, or a one-off that ran.
    pub next_run: Option<i64>,
    /// Its newest run, if any.
    pub last_run: Option<ScheduledRun>,
    /// Why the stored job cannot run, when it cannot.
    pub problem: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One run of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledRun {
    /// When it was due (Unix ms); for a manual run, when it was asked for.
    pub occurrence: i64,
    /// Asked for by a person, not by the schedule.
    pub manual: bool,
    pub triggered_by: Option<String>,
    /// The replica that ran it (last, after any takeover); empty while a manual run waits.
    pub holder: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// 1, plus one per takeover after a replica was lost mid-run.
    pub attempts: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// What it did, or why it failed.
    pub result: Option<String>,
}

impl From<RunRow> for ScheduledRun {
    fn from(run: RunRow) -> ScheduledRun {
        ScheduledRun {
            occurrence: run.key.occurrence,
            manual: run.key.manual,
            triggered_by: run.triggered_by,
            holder: run.holder,
            state: run.state,
            attempts: run.attempts,
            started_at: run.started_at,
            duration_ms: run.ended_at.map(|end| end - run.started_at),
            ended_at: run.ended_at,
            result: run.result,
        }
    }
}

fn spec_of(row: &JobRow) -> ScheduleSpec {
    ScheduleSpec {
        cron: row.cron.clone(),
        every_ms: row.every_ms,
        at: row.at_ms,
        time_zone: Some(row.time_zone.clone()),
        misfire: Some(row.misfire.clone()),
    }
}

async fn view(state: &AppState, row: JobRow, now: i64) -> Result<ScheduledJob, ApiError> {
    let last_run =
        state.db.scheduler_runs(&row.name, 1).await?.into_iter().next().map(ScheduledRun::from);
    let (next_run, problem) = match Job::from_row(&row) {
        Ok(job) if job.paused => (None, None),
        Ok(job) => {
            // The next occurrence not yet claimed.
            let after = job.last_occurrence.unwrap_or(job.created_at - 1).max(now - 1);
            let due_now = crate::scheduler::due(
                &job.schedule,
                job.misfire,
                job.created_at,
                job.last_occurrence,
                now,
            );
            (due_now.first().copied().or_else(|| job.schedule.next_after(after)), None)
        }
        Err(problem) => (None, Some(problem)),
    };
    Ok(ScheduledJob {
        schedule: spec_of(&row),
        params: serde_json::from_str(&row.params).unwrap_or_default(),
        name: row.name,
        action: row.action,
        description: row.description,
        builtin: row.builtin,
        paused: row.paused,
        lease_ms: row.lease_ms,
        next_run,
        last_run,
        problem,
        created_by: row.created_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledJobs {
    /// The database's clock when this was read (Unix ms): what `next_run` is measured on.
    pub now: i64,
    /// Whether this replica runs jobs (`[scheduler] enabled`).
    pub running_here: bool,
    pub jobs: Vec<ScheduledJob>,
}

/// Every job with its next run and last result.
#[utoipa::path(get, path = "/scheduler/jobs", tag = "scheduler",
    responses((status = 200, body = ScheduledJobs)))]
pub async fn jobs(State(state): State<AppState>) -> Result<Json<ScheduledJobs>, ApiError> {
    let now = state.db.clock().await?;
    let mut jobs = Vec::new();
    for row in state.db.scheduler_jobs().await? {
        jobs.push(view(&state, row, now).await?);
    }
    Ok(Json(ScheduledJobs { now, running_here: state.scheduler.is_some(), jobs }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// At most this many runs, newest first (1–500, default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledJobDetail {
    pub job: ScheduledJob,
    /// Its runs, newest first.
    pub runs: Vec<ScheduledRun>,
}

fn no_job(name: &str) -> ApiError {
    ApiError::not_found(format!("no job {name:?}; GET /api/v1/scheduler/jobs lists them"))
}

/// One job and its history: who ran each run, when, how long, the result.
#[utoipa::path(get, path = "/scheduler/jobs/{name}", tag = "scheduler",
    params(("name" = String, Path), HistoryQuery),
    responses((status = 200, body = ScheduledJobDetail), (status = 404, body = super::ErrorBody)))]
pub async fn job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<ScheduledJobDetail>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit: 1 to 500"));
    }
    let row = state.db.scheduler_job(&name).await?.ok_or_else(|| no_job(&name))?;
    let now = state.db.clock().await?;
    let runs =
        state.db.scheduler_runs(&name, limit).await?.into_iter().map(ScheduledRun::from).collect();
    Ok(Json(ScheduledJobDetail { job: view(&state, row, now).await?, runs }))
}

/// A job to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScheduledJob {
    /// 1–64 of `a-z 0-9 - _ .`, starting with a letter or digit.
    pub name: String,
    /// What it runs. A person may add `mark` jobs (a canary: each run writes one row, so a
    /// duplicate or missed run shows) and `command` jobs (a printer command at set times);
    /// the others are the hub's own.
    pub action: String,
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub description: String,
    /// `mark`: `{"work_ms": N}` stretches each run by N ms before its mark. `command`:
    /// `{"printer": "<id>", "command": {"action": "set_light", "node": "chamber_light",
    /// "mode": "off"}}` (any command but a start, a firmware restart or an emergency stop).
    #[serde(default)]
    pub params: Option<serde_json::Value>,
    /// How long a run holds its lease (1000–3600000 ms, default 30000).
    pub lease_ms: Option<i64>,
}

fn check_params(action: Action, params: Option<&serde_json::Value>) -> Result<String, ApiError> {
    if action == Action::Command {
        let params = params.ok_or_else(|| {
            ApiError::bad_request("params: a command job needs {\"printer\": …, \"command\": …}")
        })?;
        crate::scheduler::jobs::CommandParams::parse(params).map_err(ApiError::bad_request)?;
        return Ok(params.to_string());
    }
    let Some(params) = params else { return Ok("{}".into()) };
    let object = params.as_object().ok_or_else(|| ApiError::bad_request("params: an object"))?;
    for (key, value) in object {
        match (action, key.as_str()) {
            (Action::Mark, "work_ms") if value.as_u64().is_some_and(|ms| ms <= 600_000) => {}
            (Action::Mark, "work_ms") => {
                return Err(ApiError::bad_request("params.work_ms: 0 to 600000"));
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "params.{key}: not a parameter of {}",
                    action.name()
                )));
            }
        }
    }
    Ok(params.to_string())
}

fn check_lease(lease_ms: Option<i64>) -> Result<i64, ApiError> {
    let lease = lease_ms.unwrap_or(DEFAULT_LEASE_MS);
    if !(1_000..=3_600_000).contains(&lease) {
        return Err(ApiError::bad_request("lease_ms: 1000 to 3600000"));
    }
    Ok(lease)
}

/// Adds a job.
#[utoipa::path(post, path = "/scheduler/jobs", tag = "scheduler", request_body = NewScheduledJob,
    responses((status = 201, body = ScheduledJob), (status = 400, body = super::ErrorBody),
        (status = 409, description = "A job of that name exists", body = super::ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<NewScheduledJob>,
) -> Result<(StatusCode, Json<ScheduledJob>), ApiError> {
    if !valid_name(&body.name) {
        return Err(ApiError::bad_request(
            "name: 1-64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
        ));
    }
    let action = Action::parse(&body.action).filter(|a| a.user_creatable()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "action: {:?} cannot be added; use mark or command",
            body.action
        ))
    })?;
    if body.description.chars().count() > 500 {
        return Err(ApiError::bad_request("description: at most 500 characters"));
    }
    let now = state.db.clock().await?;
    let checked =
        body.schedule.check(now).map_err(|e| ApiError::bad_request(format!("schedule: {e}")))?;
    let row = JobRow {
        name: body.name.clone(),
        action: action.name().into(),
        params: check_params(action, body.params.as_ref())?,
        description: body.description,
        cron: checked.cron,
        every_ms: checked.every_ms,
        at_ms: checked.at,
        time_zone: checked.time_zone,
        misfire: checked.misfire,
        lease_ms: check_lease(body.lease_ms)?,
        paused: false,
        builtin: false,
        created_by: principal.name().to_owned(),
        created_at: now,
        updated_at: now,
        last_occurrence: None,
    };
    if !state.db.insert_scheduler_job(&row).await? {
        return Err(ApiError::conflict(format!("a job named {:?} exists", body.name)));
    }
    wake(&state);
    Ok((StatusCode::CREATED, Json(view(&state, row, now).await?)))
}

/// Changes to a job; what is left out stays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduledJobChange {
    pub schedule: Option<ScheduleSpec>,
    pub description: Option<String>,
    pub params: Option<serde_json::Value>,
    pub lease_ms: Option<i64>,
}

async fn own_job(state: &AppState, name: &str) -> Result<JobRow, ApiError> {
    let row = state.db.scheduler_job(name).await?.ok_or_else(|| no_job(name))?;
    if row.builtin {
        return Err(ApiError::conflict(format!(
            "{name} is the hub's own job: it can be paused and triggered; its schedule is the configuration's"
        )));
    }
    Ok(row)
}

/// Changes a job's schedule, description, parameters or lease.
#[utoipa::path(patch, path = "/scheduler/jobs/{name}", tag = "scheduler", request_body = ScheduledJobChange,
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduledJob), (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, description = "The hub's own job", body = super::ErrorBody)))]
pub async fn change(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ScheduledJobChange>,
) -> Result<Json<ScheduledJob>, ApiError> {
    let mut row = own_job(&state, &name).await?;
    let now = state.db.clock().await?;
    if let Some(schedule) = &body.schedule {
        let checked = schedule
            .check(row.created_at)
            .map_err(|e| ApiError::bad_request(format!("schedule: {e}")))?;
        row.cron = checked.cron;
        row.every_ms = checked.every_ms;
        row.at_ms = checked.at;
        row.time_zone = checked.time_zone;
        row.misfire = checked.misfire;
    }
    if let Some(description) = body.description {
        if description.chars().count() > 500 {
            return Err(ApiError::bad_request("description: at most 500 characters"));
        }
        row.description = description;
    }
    let action = Action::parse(&row.action)
        .ok_or_else(|| ApiError::conflict("a job of an unknown action"))?;
    if body.params.is_some() {
        row.params = check_params(action, body.params.as_ref())?;
    }
    if body.lease_ms.is_some() {
        row.lease_ms = check_lease(body.lease_ms)?;
    }
    row.updated_at = now;
    if !state.db.update_scheduler_job(&row).await? {
        return Err(no_job(&name));
    }
    wake(&state);
    Ok(Json(view(&state, row, now).await?))
}

/// Deletes a job and its history.
#[utoipa::path(delete, path = "/scheduler/jobs/{name}", tag = "scheduler",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody),
        (status = 409, description = "The hub's own job", body = super::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    own_job(&state, &name).await?;
    if !state.db.delete_scheduler_job(&name).await? {
        return Err(no_job(&name));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    state: &AppState,
    name: &str,
    paused: bool,
) -> Result<Json<ScheduledJob>, ApiError> {
    let now = state.db.clock().await?;
    if !state.db.pause_scheduler_job(name, paused, now).await? {
        return Err(no_job(name));
    }
    wake(state);
    let row = state.db.scheduler_job(name).await?.ok_or_else(|| no_job(name))?;
    Ok(Json(view(state, row, now).await?))
}

/// Pauses a job: no occurrence is claimed until it is resumed (a run under way finishes).
#[utoipa::path(post, path = "/scheduler/jobs/{name}/pause", tag = "scheduler",
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduledJob), (status = 404, body = super::ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduledJob>, ApiError> {
    set_paused(&state, &name, true).await
}

/// Resumes a paused job; what it missed meanwhile follows its misfire policy.
#[utoipa::path(post, path = "/scheduler/jobs/{name}/resume", tag = "scheduler",
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduledJob), (status = 404, body = super::ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduledJob>, ApiError> {
    set_paused(&state, &name, false).await
}

/// A run asked for by hand.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggeredRun {
    pub job: String,
    /// The run's occurrence: its history row has it.
    pub occurrence: i64,
}

/// Runs a job now, once, on whichever replica takes it first (a paused job too).
#[utoipa::path(post, path = "/scheduler/jobs/{name}/trigger", tag = "scheduler",
    params(("name" = String, Path)),
    responses((status = 202, body = TriggeredRun), (status = 404, body = super::ErrorBody)))]
pub async fn trigger(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<TriggeredRun>), ApiError> {
    state.db.scheduler_job(&name).await?.ok_or_else(|| no_job(&name))?;
    let occurrence = state.db.trigger_run(&name, principal.name()).await?;
    wake(&state);
    Ok((StatusCode::ACCEPTED, Json(TriggeredRun { job: name, occurrence })))
}

/// A daily health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReportView {
    pub occurrence: i64,
    pub created_at: i64,
    pub report: crate::scheduler::driver::HealthReport,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReportsView {
    pub reports: Vec<HealthReportView>,
}

/// The newest daily health reports (at most 30), newest first.
#[utoipa::path(get, path = "/scheduler/reports", tag = "scheduler",
    responses((status = 200, body = HealthReportsView)))]
pub async fn reports(State(state): State<AppState>) -> Result<Json<HealthReportsView>, ApiError> {
    let reports = state
        .db
        .health_reports(30)
        .await?
        .into_iter()
        .filter_map(|(occurrence, created_at, report)| {
            // One a newer hub wrote, in a shape this one cannot read, is left out.
            let report = serde_json::from_str(&report).ok()?;
            Some(HealthReportView { occurrence, created_at, report })
        })
        .collect();
    Ok(Json(HealthReportsView { reports }))
}

fn wake(state: &AppState) {
    if let Some(scheduler) = &state.scheduler {
        scheduler.wake();
    }
}
