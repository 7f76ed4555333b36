//! Print files: upload (multipart, streamed to disk, never through the body limit or into
//! memory), list, describe, pictures, download, delete.

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::QueryParams;
use crate::service::Principal;
use crate::service::files::FileView;

/// Room for the multipart framing around the file.
const FRAMING: u64 = 64 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The printer the file is meant for: a file sliced for another model or nozzle is
    /// refused (422, `wrong_printer`).
    printer: Option<String>,
}

/// The upload's form: the file in a part named `file`, with its file name.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Describes the body for the document; the handler streams it.
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a sliced file (`.gcode.3mf`, `.3mf` with sliced plates, `.gcode`): it is read
/// (plates, filaments, times, printer, pictures) and kept once per content. 201 when new,
/// 200 when the same bytes were there already.
#[utoipa::path(post, path = "/files", tag = "files",
    params(UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = FileView),
        (status = 200, description = "The same bytes were stored already", body = FileView),
        (status = 413, description = "Larger than files.max_upload_mb", body = super::ErrorBody),
        (status = 415, description = "Not a multipart/form-data body", body = super::ErrorBody),
        (status = 422, description = "Not a print file this hub can read (`invalid_file`), or one for another printer (`wrong_printer`)", body = super::ErrorBody),
        (status = 507, description = "The hub's disk has no room", body = super::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    principal.require(crate::service::Role::Operator)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let boundary = multer::parse_boundary(&content_type).map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data with the file in a part named \"file\"",
        )
    })?;
    let store = state.services.files.store().clone();
    let max = store.settings().max_bytes;
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(max.saturating_add(FRAMING)));
    let body = request.into_body().into_data_stream();
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut received = None;
    while let Some(mut field) =
        multipart.next_field().await.map_err(|e| multipart_error(&e, max))?
    {
        if field.name() != Some("file") {
            continue;
        }
        if received.is_some() {
            return Err(ApiError::bad_request("one file per upload"));
        }
        let name = field.file_name().map(str::to_owned).ok_or_else(|| {
            ApiError::bad_request(
                "the \"file\" part has no filename; the name says what kind of file it is",
            )
        })?;
        let mut upload =
            store.begin(length.map(|n| n.saturating_sub(FRAMING))).await.map_err(service)?;
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e, max))? {
            upload.write(&chunk).await.map_err(service)?;
        }
        received = Some((name, upload.finish().await.map_err(service)?));
    }
    let (name, received) =
        received.ok_or_else(|| ApiError::bad_request("no part named \"file\" in the form"))?;
    let (view, created) =
        state.services.files.add(&principal, &name, received, query.printer.as_deref()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)).into_response())
}

fn service(error: crate::files::StoreError) -> ApiError {
    crate::service::ServiceError::from(error).into()
}

fn multipart_error(error: &multer::Error, max: u64) -> ApiError {
    match error {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            service(crate::files::StoreError::TooLarge { max })
        }
        error => ApiError::bad_request(format!("the multipart body is malformed: {error}")),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilesQuery {
    /// Only files uploaded before this time (Unix milliseconds), to page on.
    before: Option<i64>,
    /// At most this many (default 50, at most 500).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    pub files: Vec<FileView>,
}

/// Files, newest first.
#[utoipa::path(get, path = "/files", tag = "files", params(FilesQuery),
    responses((status = 200, body = FileList)))]
pub async fn files(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<FilesQuery>,
) -> Result<Json<FileList>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(FileList { files: state.services.files.list(query.before, limit).await? }))
}

/// A file and what it says.
#[utoipa::path(get, path = "/files/{id}", tag = "files",
    params(("id" = String, Path, description = "The file's id (its SHA-256)")),
    responses((status = 200, body = FileView)))]
pub async fn file(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FileView>, ApiError> {
    Ok(Json(state.services.files.get(&id).await?))
}

/// Delete a file (its bytes and pictures).
#[utoipa::path(delete, path = "/files/{id}", tag = "files",
    params(("id" = String, Path, description = "The file's id (its SHA-256)")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_file(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.services.files.delete(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One of a file's pictures (a file's content never changes, so neither do they).
#[utoipa::path(get, path = "/files/{id}/thumbnails/{n}", tag = "files",
    params(("id" = String, Path, description = "The file's id"), ("n" = u32, Path, description = "The picture's number, from 0")),
    responses((status = 200, description = "The picture", content_type = "image/png", body = Vec<u8>)))]
pub async fn thumbnail(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    // Parsed here, so a number out of range is the API's 404, not axum's text rejection.
    let n: u32 =
        n.parse().map_err(|_| ApiError::not_found(format!("file {id:?} has no picture {n:?}")))?;
    let (mime, data) = state.services.files.thumbnail(&id, i64::from(n)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "private, max-age=31536000, immutable".to_owned()),
        ],
        data,
    )
        .into_response())
}

/// The file itself, as uploaded.
#[utoipa::path(get, path = "/files/{id}/content", tag = "files",
    params(("id" = String, Path, description = "The file's id")),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>)))]
pub async fn content(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.services.files.get(&id).await?;
    let path = state.services.files.store().path_of(&view.id);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::not_found(format!(
                "file {} is recorded but its bytes are gone from the disk",
                view.id
            ))
        } else {
            ApiError::internal(&e)
        }
    })?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    let disposition = format!(
        "attachment; filename=\"{}\"",
        view.name.replace(['"', '\\'], "_").chars().filter(char::is_ascii).collect::<String>()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, view.size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::ETAG, format!("\"{}\"", view.id)),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
