//! `GET /api/v1/openapi.json`: the API described as OpenAPI 3.1, generated from the
//! handlers' `#[utoipa::path]` annotations, the request and response types, and the role each
//! route is declared with in [`super::router`] (`x-kitt-role`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};

use super::AppState;
use super::error::ErrorBody;
use crate::service::Role;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "kitt hub API",
        description = "The hub's HTTP API. Every route but `/login` needs a caller: a dashboard \
            session cookie or a bearer token (`Authorization: Bearer kitt_<id>_<secret>`). \
            `x-kitt-role` names the least role an operation needs.",
    ),
    servers((url = "/api/v1")),
    components(schemas(
        ErrorBody,
        crate::assistant::service::Event,
        crate::live::schema::LivePrinterState,
        crate::live::schema::LiveEvent,
        crate::live::schema::LiveAgent,
        crate::live::schema::LiveCommandResult,
        crate::live::schema::LiveSnapshot,
        crate::live::schema::LiveCamera,
        crate::live::schema::LiveLagged,
        crate::live::schema::LiveJob,
        crate::live::schema::LivePlate,
        crate::live::schema::LiveSchedulerRun,
        super::spoolman::schema::SpoolmanMeasure,
        super::spoolman::schema::SpoolmanFilamentNew,
        super::spoolman::schema::SpoolmanSpoolNew,
        super::spoolman::schema::SpoolmanSpoolPatch,
        super::spoolman::schema::SpoolmanEntity,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("kitt_<id>_<secret>"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::auth::SESSION_COOKIE))),
        );
    }
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No caller needed (login).
    Anyone,
    /// A caller holding at least this role.
    Role(Role),
}

/// The statuses every operation may answer with besides its own, all with [`ErrorBody`].
fn error_statuses(access: Access) -> &'static [(u16, &'static str)] {
    const COMMON: &[(u16, &str)] = &[
        (400, "The request is malformed or invalid"),
        (401, "No valid session or token"),
        (403, "The caller's role is too low"),
        (404, "No such resource"),
        (405, "Method not allowed"),
        (409, "Conflicts with the current state"),
        (413, "The body is too large"),
        (415, "The body is not JSON"),
        (422, "The body does not match the schema"),
        (426, "A WebSocket upgrade is required"),
        (429, "Too many failed logins"),
        (500, "The hub failed; see its log"),
        (503, "An agent or camera is not reachable now"),
        (504, "The agent did not answer in time"),
    ];
    match access {
        Access::Anyone | Access::Role(_) => COMMON,
    }
}

/// Marks one operation with its role, its security and the error responses.
pub fn describe(operation: &mut Operation, access: Access) {
    let role = match access {
        Access::Anyone => "none",
        Access::Role(role) => role.as_str(),
    };
    let extensions = operation.extensions.get_or_insert_with(Default::default);
    extensions.insert("x-kitt-role".into(), role.into());
    if let Access::Role(role) = access {
        let summary = operation.description.take().unwrap_or_default();
        let needs = format!("Needs the {} role.", role.as_str());
        operation.description =
            Some(if summary.is_empty() { needs } else { format!("{summary}\n\n{needs}") });
        operation.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    } else {
        operation.security = Some(Vec::new());
    }
    for (status, description) in error_statuses(access) {
        let response = ResponseBuilder::new()
            .description(*description)
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
            )
            .build();
        operation.responses.responses.entry(status.to_string()).or_insert(response.into());
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn document(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::OK, Json(state.openapi.as_ref().clone()))
}
