//! Camera routes: health, snapshots (list, image, latest, take one now) and live view as
//! MJPEG, which every browser shows in an `<img>`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::{CameraId, LiveViewAction, PrinterId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::QueryParams;
use crate::db::cameras::{CameraRow, SnapshotFilter, SnapshotRow};
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

/// Marks a live view relayed from another replica.
const RELAYED: &str = "x-kitt-relayed";

/// The live view as the replica the agent is connected to serves it, with the viewer's own
/// credentials (that replica checks them again).
async fn relay_live(
    state: &AppState,
    replica: &str,
    printer: &PrinterId,
    camera: &CameraId,
    headers: &axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let offline = |detail: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_offline",
            format!(
                "the agent serving {printer} is connected to replica {replica}, which cannot be reached: {detail}"
            ),
        )
    };
    let address = state
        .db
        .replica_http_addr(replica)
        .await?
        .ok_or_else(|| offline("it is not registered".into()))?;
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address.as_str()),
    )
    .await
    .map_err(|_| offline("no answer".into()))?
    .map_err(|e| offline(e.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| offline(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = format!(
        "/api/v1/printers/{}/cameras/{}/live",
        urlencoding(printer.as_str()),
        urlencoding(camera.as_str())
    );
    let mut request = hyper::Request::get(path).header(header::HOST, address.as_str());
    for name in [header::AUTHORIZATION, header::COOKIE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .header(RELAYED, "1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| offline(e.to_string()))?;
    let answer = sender.send_request(request).await.map_err(|e| offline(e.to_string()))?;
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    Ok(response)
}

/// Percent-encodes an id for a path segment (ids are plain, but a camera id may hold `:`).
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn unknown_printer(id: &str) -> ApiError {
    ApiError::not_found(format!("no printer {id:?}; GET /api/v1/printers lists them"))
}

/// A snapshot with the URL of its image.
#[derive(Debug, Serialize, ToSchema)]
pub struct Snapshot {
    #[serde(flatten)]
    pub row: SnapshotRow,
    pub url: String,
}

impl Snapshot {
    fn new(row: SnapshotRow) -> Snapshot {
        Snapshot { url: format!("/api/v1/snapshots/{}", row.id), row }
    }
}

/// A camera's health with what the hub measured of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Camera {
    #[serde(flatten)]
    pub row: CameraRow,
    /// The last requested snapshot's round trip, if one was taken since the hub started.
    pub snapshot_round_trip_ms: Option<u64>,
    pub snapshot_round_trip_at: Option<i64>,
    /// People watching its live view now.
    pub viewers: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CameraList {
    pub cameras: Vec<Camera>,
}

/// Each camera's health: state, fps, last frame, last error, live viewers, snapshot round trip.
#[utoipa::path(get, path = "/printers/{id}/cameras", tag = "cameras",
    params(("id" = String, Path, description = "The printer's id")),
    responses((status = 200, body = CameraList)))]
pub async fn cameras(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CameraList>, ApiError> {
    state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let printer = PrinterId::new(id.as_str()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let rows = state.db.cameras(&id).await?;
    let cameras = rows
        .into_iter()
        .map(|row| {
            let camera = CameraId::new(row.camera_id.as_str()).ok();
            let trip = camera.as_ref().and_then(|c| state.sync.cameras().round_trip(&printer, c));
            let viewers = camera.map_or(0, |c| state.sync.cameras().viewers(&printer, &c));
            Camera {
                row,
                snapshot_round_trip_ms: trip.map(|(ms, _)| ms),
                snapshot_round_trip_at: trip.map(|(_, at)| at.0),
                viewers: viewers as u64,
            }
        })
        .collect();
    Ok(Json(CameraList { cameras }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotsQuery {
    /// Only the job that started at this time (a snapshot's `job_started_at`).
    job_started_at: Option<i64>,
    /// Only snapshots captured before this time (Unix milliseconds).
    before: Option<i64>,
    /// At most this many (default 50, at most 500).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotList {
    pub snapshots: Vec<Snapshot>,
}

/// Snapshots, newest first, each linked to its job and event.
#[utoipa::path(get, path = "/printers/{id}/snapshots", tag = "cameras",
    params(("id" = String, Path, description = "The printer's id"), SnapshotsQuery),
    responses((status = 200, body = SnapshotList)))]
pub async fn snapshots(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<SnapshotsQuery>,
) -> Result<Json<SnapshotList>, ApiError> {
    state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let filter = SnapshotFilter {
        printer: id,
        job_started_at: query.job_started_at,
        before: query.before,
        limit: query.limit.unwrap_or(50).clamp(1, 500),
    };
    let rows = state.db.snapshots(&filter).await?;
    Ok(Json(SnapshotList { snapshots: rows.into_iter().map(Snapshot::new).collect() }))
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

/// A snapshot image.
#[utoipa::path(get, path = "/snapshots/{id}", tag = "cameras",
    params(("id" = String, Path, description = "The snapshot's id")),
    responses((status = 200, description = "The JPEG", content_type = "image/jpeg", body = Vec<u8>)))]
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

/// The newest snapshot image (not cached: it changes).
#[utoipa::path(get, path = "/printers/{id}/snapshots/latest", tag = "cameras",
    params(("id" = String, Path, description = "The printer's id")),
    responses((status = 200, description = "The JPEG", content_type = "image/jpeg", body = Vec<u8>)))]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotTaken {
    pub snapshot: Option<Snapshot>,
    pub round_trip_ms: u64,
}

/// Take a snapshot now: asks the agent and waits. Answers with the stored snapshot and the
/// measured round trip, or with the camera's own reason (503) — never a success the camera
/// did not deliver.
#[utoipa::path(post, path = "/printers/{id}/cameras/{camera}/snapshot", tag = "cameras",
    params(("id" = String, Path, description = "The printer's id"),
        ("camera" = String, Path, description = "The camera's id")),
    responses((status = 200, body = SnapshotTaken)))]
pub async fn take_snapshot(
    State(state): State<AppState>,
    Path((id, camera)): Path<(String, String)>,
) -> Result<Response, ApiError> {
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
            match updates.recv().await.map(|stamped| stamped.update) {
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
            let body = SnapshotTaken { snapshot: row.map(Snapshot::new), round_trip_ms: elapsed };
            Ok(Json(body).into_response())
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

/// Live view as MJPEG (`multipart/x-mixed-replace`). The first viewer starts the agent's
/// stream; the last one to leave stops it. A slow viewer skips frames rather than slowing
/// the others.
#[utoipa::path(get, path = "/printers/{id}/cameras/{camera}/live", tag = "cameras",
    params(("id" = String, Path, description = "The printer's id"),
        ("camera" = String, Path, description = "The camera's id")),
    responses((status = 200, description = "An endless MJPEG stream",
        content_type = "multipart/x-mixed-replace", body = Vec<u8>)))]
pub async fn live(
    State(state): State<AppState>,
    Path((id, camera)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let printer_row = state.db.printer(&id).await?.ok_or_else(|| unknown_printer(&id))?;
    let (printer, camera) = ids(&id, &camera)?;
    let agent = &printer_row.agent_id;
    // The agent is connected to another replica: its frames arrive there, so the view is
    // relayed from there (once: a relayed request is never relayed again).
    if !state.sync.is_connected_here(agent)
        && !headers.contains_key(RELAYED)
        && let Some(replica) = state.sync.live().elsewhere().get(agent.as_str())
    {
        return relay_live(&state, replica, &printer, &camera, &headers).await;
    }
    if !state.sync.is_connected_here(agent) {
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
