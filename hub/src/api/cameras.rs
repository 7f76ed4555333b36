//! Camera routes: health, snapshots (list, image, latest, take one now) and live view as
//! MJPEG, which every browser shows in an `<img>`.

use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::{CameraId, LiveViewAction, PrinterId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, Role};
use super::error::ApiError;
use super::routes::QueryParams;
use crate::db::cameras::{SnapshotFilter, SnapshotRow};
use crate::live::LiveUpdate;

/// How long `POST …/snapshot` waits for the agent's answer.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(20);
/// The multipart boundary of the MJPEG stream.
const BOUNDARY: &str = "kittframe";

fn ids(printer: &str, camera: &str) -> Result<(PrinterId, CameraId), ApiError> {
    let printer = PrinterId::new(printer).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let camera = CameraId::new(camera).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((printer, camera))
}

fn unknown_printer(id: &str) -> ApiError {
    ApiError::not_found(format!("no printer {id:?}; GET /api/v1/printers lists them"))
}

fn snapshot_json(row: &SnapshotRow) -> Value {
    let mut value = serde_json::to_value(row).unwrap_or(Value::Null);
    value["url"] = format!("/api/v1/snapshots/{}", row.id).into();
    value
}

/// `GET /printers/{id}/cameras`: each camera's health and its last snapshot round trip.
pub async fn cameras(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let printer = PrinterId::new(id.as_str()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let rows = state.db.cameras(&id).await?;
    let cameras: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut value = serde_json::to_value(row).unwrap_or(Value::Null);
            let camera = CameraId::new(row.camera_id.as_str()).ok();
            let trip = camera.as_ref().and_then(|c| state.sync.cameras().round_trip(&printer, c));
            value["snapshot_round_trip_ms"] = trip.map(|(ms, _)| ms).into();
            value["snapshot_round_trip_at"] = trip.map(|(_, at)| at.0).into();
            value["viewers"] =
                camera.map_or(0, |c| state.sync.cameras().viewers(&printer, &c)).into();
            value
        })
        .collect();
    Ok(Json(json!({ "cameras": cameras })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsQuery {
    /// Only the job that started at this time (a snapshot's `job_started_at`).
    job_started_at: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /printers/{id}/snapshots`: newest first.
pub async fn snapshots(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<SnapshotsQuery>,
) -> Result<Json<Value>, ApiError> {
    state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let filter = SnapshotFilter {
        printer: id,
        job_started_at: query.job_started_at,
        before: query.before,
        limit: query.limit.unwrap_or(50).clamp(1, 500),
    };
    let rows = state.db.snapshots(&filter).await?;
    Ok(Json(json!({ "snapshots": rows.iter().map(snapshot_json).collect::<Vec<_>>() })))
}

fn image(state: &AppState, row: &SnapshotRow) -> Result<Response, ApiError> {
    let store = state
        .sync
        .snapshots()
        .ok_or_else(|| ApiError::not_found("this hub keeps no snapshot images"))?;
    match store.read(&row.path) {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg".to_owned()),
                (header::CACHE_CONTROL, "private, max-age=31536000, immutable".to_owned()),
                (header::ETAG, format!("\"{}\"", row.sha256)),
            ],
            bytes,
        )
            .into_response()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found(
            format!("snapshot {} is recorded but its image is gone from the disk", row.id),
        )),
        Err(error) => Err(ApiError::internal(&error)),
    }
}

/// `GET /snapshots/{id}`: the JPEG.
pub async fn snapshot_image(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = state
        .db
        .snapshot(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no snapshot {id:?}")))?;
    image(&state, &row)
}

/// `GET /printers/{id}/snapshots/latest`: the newest JPEG (not cached: it changes).
pub async fn latest_snapshot(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let filter = SnapshotFilter { printer: id.clone(), limit: 1, ..SnapshotFilter::default() };
    let row = state
        .db
        .snapshots(&filter)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("printer {id:?} has no snapshot yet")))?;
    let mut response = image(&state, &row)?;
    response.headers_mut().insert(header::CACHE_CONTROL, "no-cache".parse().expect("valid"));
    Ok(response)
}

/// `POST /printers/{id}/cameras/{camera}/snapshot`: asks the agent for a snapshot now and
/// waits for it. Answers with the stored snapshot and the measured round trip, or with the
/// camera's own reason (503) — never a success the camera did not deliver.
pub async fn take_snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, camera)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let (printer, camera) = ids(&id, &camera)?;
    // Subscribe before asking, so the answer cannot slip past.
    let mut updates = state.sync.live().subscribe();
    let started = Instant::now();
    if !state.sync.live_view(&printer, &camera, LiveViewAction::Snapshot) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_offline",
            format!("the agent serving {printer} is not connected"),
        ));
    }
    let answer = tokio::time::timeout(SNAPSHOT_WAIT, async {
        loop {
            match updates.recv().await {
                Ok(LiveUpdate::Snapshot { id, printer: p, camera: c, trigger, .. })
                    if p == printer.as_str() && c == camera.as_str() && trigger == "requested" =>
                {
                    return Ok(id);
                }
                Ok(LiveUpdate::Camera {
                    printer: p, camera: c, last_error: Some(error), ..
                }) if p == printer.as_str()
                    && c == camera.as_str()
                    && error.starts_with("snapshot not taken") =>
                {
                    return Err(error);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err("the hub is shutting down".to_owned());
                }
            }
        }
    })
    .await;
    let elapsed = started.elapsed().as_millis() as u64;
    match answer {
        Ok(Ok(snapshot)) => {
            state.sync.cameras().record_round_trip(&printer, &camera, elapsed);
            let row = state.db.snapshot(&snapshot).await?;
            Ok(Json(json!({
                "snapshot": row.as_ref().map(snapshot_json),
                "round_trip_ms": elapsed,
            }))
            .into_response())
        }
        Ok(Err(error)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "camera_unavailable",
            format!("camera {camera} of {printer}: {error}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no snapshot from camera {camera} of {printer} within {SNAPSHOT_WAIT:?}"),
        )),
    }
}

/// `GET /printers/{id}/cameras/{camera}/live`: `multipart/x-mixed-replace` MJPEG. The first
/// viewer starts the agent's stream; the last one to leave stops it. A slow viewer skips
/// frames rather than slowing the others.
pub async fn live(
    State(state): State<AppState>,
    Path((id, camera)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let printer_row = state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let (printer, camera) = ids(&id, &camera)?;
    if !state.sync.is_connected(&printer_row.agent_id) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_offline",
            format!("the agent serving {printer} is not connected; live view needs it"),
        ));
    }
    let viewer = state.sync.watch_camera(&printer, &camera);
    let stream = futures_util::stream::unfold(viewer, |mut viewer| async move {
        loop {
            if viewer.frames.changed().await.is_err() {
                return None;
            }
            let image = viewer.frames.borrow_and_update().clone();
            if let Some(image) = image {
                let mut part = format!(
                    "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    image.jpeg.len()
                )
                .into_bytes();
                part.extend_from_slice(&image.jpeg);
                part.extend_from_slice(b"\r\n");
                return Some((Ok::<_, std::io::Error>(bytes::Bytes::from(part)), viewer));
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, format!("multipart/x-mixed-replace; boundary={BOUNDARY}")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
