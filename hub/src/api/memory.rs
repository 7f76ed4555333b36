//! The assistant's memory: what it holds, a search, and the documents an admin adds
//! (Markdown, text or PDF as the request's body), replaces, deletes or has indexed again.
//! Thin: the behaviour is `memory`.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use crate::db::memory::DocumentRow;
use crate::memory::documents::{self, DocumentError, Format};
use crate::memory::sources::Kind;
use crate::memory::store::Filter;
use crate::memory::{Hit, Memory, MemoryError, SyncReport};
use crate::service::Principal;

fn memory(state: &AppState) -> Result<&Memory, ApiError> {
    state.memory.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the memory is off: it needs the embedding model ([assistant] embed_model)",
        )
    })
}

impl From<MemoryError> for ApiError {
    fn from(error: MemoryError) -> ApiError {
        match error {
            MemoryError::Db(error) => error.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(error: DocumentError) -> ApiError {
        let status = match error {
            DocumentError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            DocumentError::Format => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, "invalid_document", error.to_string())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryView {
    /// `embedded` (Qdrant's engine in the hub).
    pub engine: String,
    /// Items remembered, by kind: `outcome`, `document`, `conversation`, `events`.
    pub items: BTreeMap<String, usize>,
    /// Pieces of text stored (one vector each).
    pub pieces: usize,
    pub last_sync: Option<SyncReport>,
}

/// What the memory holds, and its last sync.
#[utoipa::path(get, path = "/memory", tag = "memory",
    responses((status = 200, body = MemoryView),
        (status = 503, description = "No embedding model: the memory is off", body = super::ErrorBody)))]
pub async fn overview(State(state): State<AppState>) -> Result<Json<MemoryView>, ApiError> {
    let memory = memory(&state)?;
    let (counts, pieces) = memory.counts().await?;
    Ok(Json(MemoryView {
        engine: memory.store().engine().to_owned(),
        items: counts.into_iter().map(|(k, n)| (k.as_str().to_owned(), n)).collect(),
        pieces,
        last_sync: memory.last_sync(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// What to look for, in words (at most 2000 characters).
    pub query: String,
    /// Only these kinds: `outcome`, `document`, `conversation`, `events`.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only about this printer (or about none).
    pub printer: Option<String>,
    /// Only about this material (or about none).
    pub material: Option<String>,
    /// Happened at or after (Unix ms); documents are not limited by time.
    pub since: Option<i64>,
    /// Happened before (Unix ms).
    pub until: Option<i64>,
    /// At most this many items (1–50, default 10).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchView {
    pub hits: Vec<Hit>,
}

/// Search the memory by meaning. A conversation is found only by its own person.
#[utoipa::path(post, path = "/memory/search", tag = "memory", request_body = SearchBody,
    responses((status = 200, body = SearchView),
        (status = 503, description = "No embedding model: the memory is off", body = super::ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<SearchBody>,
) -> Result<Json<SearchView>, ApiError> {
    let memory = memory(&state)?;
    let query = body.query.trim();
    if query.is_empty() || query.chars().count() > 2000 {
        return Err(ApiError::bad_request("query: 1 to 2000 characters"));
    }
    let kinds = body
        .kinds
        .iter()
        .map(|k| {
            Kind::parse(k).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "kinds: {k:?} is not one of outcome, document, conversation, events"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limit = body.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::bad_request("limit: 1 to 50"));
    }
    let filter = Filter {
        kinds,
        printer: body.printer,
        material: body.material,
        since: body.since,
        until: body.until,
        viewer: Some(principal.name().to_owned()),
    };
    Ok(Json(SearchView { hits: memory.search(query, &filter, limit).await? }))
}

/// A document as listed (without its text).
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: String,
    pub title: String,
    /// `markdown`, `text` or `pdf`.
    pub format: String,
    pub printer_id: Option<String>,
    pub material: Option<String>,
    /// Characters of text kept.
    pub chars: usize,
    /// The size of what was uploaded.
    pub bytes: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Its text, when one document is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl DocumentView {
    fn new(row: DocumentRow, with_content: bool) -> DocumentView {
        DocumentView {
            chars: row.content.chars().count(),
            content: with_content.then_some(row.content),
            id: row.id,
            title: row.title,
            format: row.format,
            printer_id: row.printer_id,
            material: row.material,
            bytes: row.bytes,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentsView {
    pub documents: Vec<DocumentView>,
}

/// The documents in the memory, newest change first.
#[utoipa::path(get, path = "/memory/documents", tag = "memory",
    responses((status = 200, body = DocumentsView)))]
pub async fn documents(State(state): State<AppState>) -> Result<Json<DocumentsView>, ApiError> {
    let rows = state.db.documents().await?;
    Ok(Json(DocumentsView {
        documents: rows.into_iter().map(|r| DocumentView::new(r, false)).collect(),
    }))
}

/// One document, with its text.
#[utoipa::path(get, path = "/memory/documents/{id}", tag = "memory",
    params(("id" = String, Path, description = "The document's id")),
    responses((status = 200, body = DocumentView), (status = 404, body = super::ErrorBody)))]
pub async fn document(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    let row = state.db.document(&id).await?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("there is no document {id:?}")))?;
    Ok(Json(DocumentView::new(row, true)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DocumentQuery {
    /// Its title (1–200 characters), e.g. the file's name.
    pub title: String,
    /// About this printer only.
    pub printer: Option<String>,
    /// About this material only (`PETG`).
    pub material: Option<String>,
}

/// What adding or replacing a document did.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentAdded {
    pub document: DocumentView,
    /// The sync that indexed it.
    pub sync: SyncReport,
}

const DOCUMENT_BODY: &str = "The document: Markdown (`text/markdown`), plain text \
    (`text/plain`) or a PDF (`application/pdf`); at most 20 MiB. The type may also come from \
    the title's extension (`.md`, `.txt`, `.pdf`).";

/// Add a document to the memory (admin). It is indexed before the answer.
#[utoipa::path(post, path = "/memory/documents", tag = "memory", params(DocumentQuery),
    request_body(content = String, description = DOCUMENT_BODY,
        content_type = "text/markdown"),
    responses((status = 201, body = DocumentAdded),
        (status = 413, description = "Over 20 MiB", body = super::ErrorBody),
        (status = 415, description = "Not Markdown, text or PDF", body = super::ErrorBody),
        (status = 422, description = "Empty, not UTF-8, or a PDF that cannot be read", body = super::ErrorBody),
        (status = 503, description = "No embedding model: the memory is off", body = super::ErrorBody)))]
pub async fn add_document(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<DocumentQuery>,
    request: Request,
) -> Result<(StatusCode, Json<DocumentAdded>), ApiError> {
    let id = format!("d-{:016x}", rand::random::<u64>());
    let added = put(&state, &principal, id, None, query, request).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Replace a document's text, title, printer or material (admin). It is indexed again
/// before the answer.
#[utoipa::path(put, path = "/memory/documents/{id}", tag = "memory",
    params(("id" = String, Path, description = "The document's id"), DocumentQuery),
    request_body(content = String, description = DOCUMENT_BODY,
        content_type = "text/markdown"),
    responses((status = 200, body = DocumentAdded), (status = 404, body = super::ErrorBody),
        (status = 413, description = "Over 20 MiB", body = super::ErrorBody),
        (status = 415, description = "Not Markdown, text or PDF", body = super::ErrorBody),
        (status = 422, description = "Empty, not UTF-8, or a PDF that cannot be read", body = super::ErrorBody)))]
pub async fn replace_document(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<DocumentQuery>,
    request: Request,
) -> Result<Json<DocumentAdded>, ApiError> {
    let existing = state.db.document(&id).await?;
    let existing =
        existing.ok_or_else(|| ApiError::not_found(format!("there is no document {id:?}")))?;
    Ok(Json(put(&state, &principal, id, Some(existing), query, request).await?))
}

async fn put(
    state: &AppState,
    principal: &Principal,
    id: String,
    existing: Option<DocumentRow>,
    query: DocumentQuery,
    request: Request,
) -> Result<DocumentAdded, ApiError> {
    let memory = memory(state)?.clone();
    let title = query.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(ApiError::bad_request("title: 1 to 200 characters, no control characters"));
    }
    let material = query
        .material
        .map(|m| crate::memory::sources::normal_material(&m))
        .filter(|m| !m.is_empty());
    if material.as_ref().is_some_and(|m| m.len() > 40) {
        return Err(ApiError::bad_request("material: at most 40 characters"));
    }
    let printer = query.printer.filter(|p| !p.trim().is_empty());
    if let Some(printer) = &printer {
        // Only a printer this hub knows (a typo would hide the document from its questions).
        state.services.fleet.printer(printer).await?;
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(request.into_body(), documents::MAX_BYTES)
        .await
        .map_err(|_| ApiError::from(DocumentError::TooLarge))?;
    let format =
        Format::detect(content_type.as_deref(), &title, &bytes).ok_or(DocumentError::Format)?;
    let size = bytes.len() as i64;
    let content = documents::read(format, Vec::from(bytes)).await?;
    let now = proto::UnixMillis::now().0;
    let row = DocumentRow {
        id,
        title,
        format: format.as_str().to_owned(),
        printer_id: printer,
        material,
        content,
        bytes: size,
        created_by: existing
            .as_ref()
            .map_or_else(|| principal.name().to_owned(), |e| e.created_by.clone()),
        created_at: existing.as_ref().map_or(now, |e| e.created_at),
        updated_at: now,
    };
    state.db.put_document(&row).await?;
    let sync = memory.sync().await?;
    Ok(DocumentAdded { document: DocumentView::new(row, false), sync })
}

/// Delete a document (admin): it is gone from the memory before the answer.
#[utoipa::path(delete, path = "/memory/documents/{id}", tag = "memory",
    params(("id" = String, Path, description = "The document's id")),
    responses((status = 200, body = SyncReport), (status = 404, body = super::ErrorBody)))]
pub async fn delete_document(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SyncReport>, ApiError> {
    let memory = memory(&state)?.clone();
    if !state.db.delete_document(&id).await? {
        return Err(ApiError::not_found(format!("there is no document {id:?}")));
    }
    Ok(Json(memory.sync().await?))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReindexBody {
    /// Embed everything again, not only what changed (after changing the embedding model's
    /// file for one of the same size, say).
    #[serde(default)]
    pub full: bool,
}

/// Bring the memory up to date now (admin): what changed is indexed, what is gone removed;
/// with `full`, everything is indexed again.
#[utoipa::path(post, path = "/memory/reindex", tag = "memory", request_body = ReindexBody,
    responses((status = 200, body = SyncReport)))]
pub async fn reindex(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ReindexBody>,
) -> Result<Json<SyncReport>, ApiError> {
    let memory = memory(&state)?.clone();
    if body.full {
        memory.forget_hashes().await;
    }
    Ok(Json(memory.sync().await?))
}
