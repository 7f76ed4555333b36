//! Outcomes (list, read, review), analytics (JSON and CSV, the success estimate), spools in
//! printers' slots, and the Spoolman API's clients. Thin: the behaviour is
//! `service::outcomes` and `service::inventory`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use crate::service::Principal;
use crate::service::outcomes::{
    Analytics, AnalyticsQuery, Estimate, EstimateQuery, OutcomeList, OutcomeQuery, OutcomeView,
    ReviewRequest, analytics_csv,
};

fn outcome_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no outcome {id:?}; outcome ids are numbers")))
}

/// Prints that ended, newest first, each with its result, reason, usage, cost, review and
/// snapshots. `reviewed=false` is the review queue.
#[utoipa::path(get, path = "/outcomes", tag = "outcomes", params(OutcomeQuery),
    responses((status = 200, body = OutcomeList)))]
pub async fn outcomes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<OutcomeQuery>,
) -> Result<Json<OutcomeList>, ApiError> {
    Ok(Json(state.services.outcomes.list(&principal, &query).await?))
}

/// One outcome.
#[utoipa::path(get, path = "/outcomes/{id}", tag = "outcomes",
    params(("id" = i64, Path, description = "The outcome's id")),
    responses((status = 200, body = OutcomeView)))]
pub async fn outcome(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<OutcomeView>, ApiError> {
    Ok(Json(state.services.outcomes.get(&principal, outcome_id(&id)?).await?))
}

/// Review an outcome: confirm or correct its reason, score its quality (0–100) and aspects,
/// add notes. Scores are kept exactly as given.
#[utoipa::path(put, path = "/outcomes/{id}/review", tag = "outcomes", request_body = ReviewRequest,
    params(("id" = i64, Path, description = "The outcome's id")),
    responses((status = 200, body = OutcomeView)))]
pub async fn review_outcome(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReviewRequest>,
) -> Result<Json<OutcomeView>, ApiError> {
    let reviewed = state.services.outcomes.review(&principal, outcome_id(&id)?, &request).await?;
    if let Some(memory) = &state.memory {
        // The review is what the memory remembers the outcome by.
        memory.changed();
    }
    Ok(Json(reviewed))
}

/// Success rate, failure reasons, hours, filament and cost, grouped by printer, material,
/// user, day, week or month.
#[utoipa::path(get, path = "/analytics", tag = "outcomes", params(AnalyticsQuery),
    responses((status = 200, body = Analytics)))]
pub async fn analytics(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<AnalyticsQuery>,
) -> Result<Json<Analytics>, ApiError> {
    Ok(Json(state.services.outcomes.analytics(&principal, &query).await?))
}

/// The same figures as CSV, a row per group.
#[utoipa::path(get, path = "/analytics/csv", tag = "outcomes", params(AnalyticsQuery),
    responses((status = 200, content_type = "text/csv", body = String)))]
pub async fn analytics_export(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let analytics = state.services.outcomes.analytics(&principal, &query).await?;
    let mut response = (StatusCode::OK, analytics_csv(&analytics)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"kitt-analytics.csv\""),
    );
    Ok(response)
}

/// The chance a print of this material on this printer succeeds, offered only once enough
/// reviewed outcomes exist to measure it: the answer names the model, how many outcomes it
/// learned from and its accuracy on outcomes it did not learn from.
#[utoipa::path(get, path = "/analytics/estimate", tag = "outcomes", params(EstimateQuery),
    responses((status = 200, body = Estimate)))]
pub async fn estimate(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryParams(query): QueryParams<EstimateQuery>,
) -> Result<Json<Estimate>, ApiError> {
    Ok(Json(state.services.outcomes.estimate(&principal, &query).await?))
}

/// Every spool and filament with its stock: remaining grams, what prints used in the last
/// 30 days, days to empty at that pace, and whether it is low.
#[utoipa::path(get, path = "/inventory", tag = "inventory",
    responses((status = 200, body = crate::service::inventory::InventoryView)))]
pub async fn inventory(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<crate::service::inventory::InventoryView>, ApiError> {
    Ok(Json(state.services.inventory.overview(&principal).await?))
}

/// A spool in one of a printer's slots.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotView {
    /// The AMS or MMU unit; `null` for the slot outside any unit.
    pub unit: Option<u8>,
    pub slot: u8,
    pub spool_id: i64,
    /// Who put it there: a user, or `rfid` when the printer read its tag.
    pub assigned_by: String,
    pub assigned_at: i64,
    /// The spool as the Spoolman API shows it (its filament and remaining weight).
    #[schema(value_type = Object)]
    pub spool: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlotList {
    pub slots: Vec<SlotView>,
}

/// Which spool is in which of a printer's slots.
#[utoipa::path(get, path = "/printers/{id}/slots", tag = "inventory",
    params(("id" = String, Path, description = "The printer's id")),
    responses((status = 200, body = SlotList)))]
pub async fn slots(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<SlotList>, ApiError> {
    let inventory = &state.services.inventory;
    let mut slots = Vec::new();
    for row in inventory.slots(&principal, Some(&id)).await? {
        let spool = inventory
            .get(&principal, crate::inventory::Entity::Spool, row.spool_id)
            .await
            .unwrap_or(serde_json::Value::Null);
        slots.push(SlotView {
            unit: row.unit,
            slot: row.slot,
            spool_id: row.spool_id,
            assigned_by: row.assigned_by,
            assigned_at: row.assigned_at,
            spool,
        });
    }
    Ok(Json(SlotList { slots }))
}

/// Put a spool in a slot, or empty it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotAssignment {
    /// The AMS or MMU unit; `null` for the slot outside any unit (Bambu's external spool,
    /// a single-extruder printer's spool).
    pub unit: Option<u8>,
    pub slot: u8,
    /// `null` empties the slot.
    pub spool_id: Option<i64>,
}

/// Put a spool in one of a printer's slots (taking it out of wherever it was), or empty the
/// slot: for trays without RFID tags and Klipper printers' active spool.
#[utoipa::path(put, path = "/printers/{id}/slots", tag = "inventory", request_body = SlotAssignment,
    params(("id" = String, Path, description = "The printer's id")),
    responses((status = 200, body = SlotList)))]
pub async fn assign_slot(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<SlotAssignment>,
) -> Result<Json<SlotList>, ApiError> {
    if state.services.fleet.printer(&id).await.is_err() {
        return Err(crate::service::ServiceError::unknown_printer(&id).into());
    }
    state
        .services
        .inventory
        .assign(&principal, &id, request.unit, request.slot, request.spool_id)
        .await?;
    slots(State(state), Extension(principal), Path(id)).await
}

/// A Spoolman API client.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpoolmanClientView {
    pub id: String,
    pub name: String,
    /// The printer whose usage it reports; kitt deducts nothing itself for that printer.
    pub printer: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpoolmanClientList {
    pub clients: Vec<SpoolmanClientView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSpoolmanClient {
    /// What it is: `voron-moonraker`, `home-assistant`.
    pub name: String,
    /// The printer whose usage it reports (a Moonraker using kitt as its Spoolman): kitt then
    /// deducts nothing itself for that printer's prints, so nothing counts twice.
    pub printer: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpoolmanClientCreated {
    pub id: String,
    pub name: String,
    /// The base URL's path: configure the client with this hub's address followed by it
    /// (shown once).
    pub path: String,
}

/// Clients of the Spoolman-compatible API.
#[utoipa::path(get, path = "/spoolman-clients", tag = "inventory",
    responses((status = 200, body = SpoolmanClientList)))]
pub async fn spoolman_clients(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<SpoolmanClientList>, ApiError> {
    let clients = state.services.inventory.clients(&principal).await?;
    Ok(Json(SpoolmanClientList {
        clients: clients
            .into_iter()
            .map(|c| SpoolmanClientView {
                id: c.id,
                name: c.name,
                printer: c.printer_id,
                created_by: c.created_by,
                created_at: c.created_at,
                last_used_at: c.last_used_at,
                revoked: c.revoked_at.is_some(),
            })
            .collect(),
    }))
}

/// Add a Spoolman client: its base URL carries its token (Spoolman's clients send no
/// credentials).
#[utoipa::path(post, path = "/spoolman-clients", tag = "inventory", request_body = NewSpoolmanClient,
    responses((status = 201, body = SpoolmanClientCreated)))]
pub async fn add_spoolman_client(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<NewSpoolmanClient>,
) -> Result<Response, ApiError> {
    let (client, token) = state
        .services
        .inventory
        .add_client(&principal, &request.name, request.printer.as_deref())
        .await?;
    let created = SpoolmanClientCreated {
        id: client.id,
        name: client.name,
        path: format!("/spoolman/{token}"),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Revoke a Spoolman client: its base URL stops working at once.
#[utoipa::path(delete, path = "/spoolman-clients/{id}", tag = "inventory",
    params(("id" = String, Path, description = "The client's id")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_spoolman_client(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.services.inventory.revoke_client(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
