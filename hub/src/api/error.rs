//! The one error type of the HTTP layer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db::DbError;
use crate::service::ServiceError;

/// An error as the client sees it: a status, a stable code and a clear message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// The same error, answered with `Retry-After: seconds`.
    pub fn retry_after(self, seconds: u64) -> ApiError {
        ApiError { retry_after: Some(seconds), ..self }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "log in, or send a bearer token (Authorization: Bearer kitt_…)",
        )
    }

    pub fn forbidden(needed: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("this needs the {needed} role"))
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A failure inside the hub: logged in full, reported to the client without detail.
    pub fn internal(error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "Request failed inside the hub.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the hub could not complete the request; see its log",
        )
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> ApiError {
        ApiError::internal(&error)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        match error {
            ServiceError::Forbidden { needed } => ApiError::forbidden(needed.as_str()),
            ServiceError::NotFound(message) => ApiError::not_found(message),
            ServiceError::Invalid(message) => ApiError::bad_request(message),
            ServiceError::Conflict(message) => ApiError::conflict(message),
            ServiceError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            ServiceError::Unprocessable { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            ServiceError::TooLarge(message) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            ServiceError::NoSpace(message) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", message)
            }
            ServiceError::Storage(error) => ApiError::internal(&error),
            ServiceError::Internal(error) => ApiError::internal(&error),
        }
    }
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `invalid_body`, `rate_limited`, `busy`,
    /// `agent_offline`, `camera_unavailable`, `timeout`, `invalid_file`, `wrong_printer`,
    /// `insufficient_storage`, `internal`, ….
    pub code: String,
    /// For people: what went wrong and what to do.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Turns axum's own rejections (bad JSON, wrong content type, oversized body, bad query)
/// into the same JSON shape.
pub fn from_rejection(status: StatusCode, message: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "bad_request",
    };
    ApiError::new(status, code, message)
}
