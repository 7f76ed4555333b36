//! Password changes: a user changes their own (`POST /me/password`, the current password
//! required, checked under the login limiter like a login; their other sessions end), an
//! admin resets anyone's (`POST /users/{name}/password`: a given or generated password, all
//! the user's sessions ended and API tokens revoked). Both hash through the hash gate's
//! priority lane and are audited like every mutating request.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use proto::UnixMillis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{self, PeerAddr, SESSION_COOKIE};
use super::error::ApiError;
use super::extract::JsonBody;
use super::hash_gate::Lane;
use super::limiter::AddressKey;
use crate::service::Principal;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password in use now.
    #[schema(max_length = 1024)]
    current_password: String,
    /// 10 characters or more, at most 1024 bytes.
    #[schema(min_length = 10, max_length = 1024)]
    new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChanged {
    /// The caller's other dashboard sessions, now ended (the calling session stays).
    pub sessions_ended: u64,
}

/// Change your own password; your other sessions end. API tokens stay.
#[utoipa::path(post, path = "/me/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, body = PasswordChanged)))]
pub async fn change_own_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    auth::validate_password_length(&request.current_password)?;
    auth::validate_new_password(&request.new_password)?;
    let name = principal.name().to_owned();
    let action = "change password";
    let address = AddressKey::new(state.settings.trusted_proxies.client(peer, &headers));
    if let Some(refused) = auth::admit_attempt(&state, &name, address, action).await? {
        return Ok(refused);
    }
    let Some((hash, _)) = state.db.user_credentials(&name).await? else {
        return Err(ApiError::not_found(format!("no user {name:?}")));
    };
    let (current, new) = (request.current_password, request.new_password);
    let checked = auth::gated(&state.hash_gate, Lane::Priority, move |memory| {
        auth::verify_password(memory, &current, &hash).then(|| auth::hash_password_in(memory, &new))
    })
    .await;
    let new_hash = match checked {
        Ok(Some(hashed)) => hashed.map_err(|e| ApiError::internal(&e))?,
        Ok(None) => {
            // The attempt was charged when admitted.
            auth::record_failure(&state, &name, address).await;
            state.metrics.login_refused("bad_credentials", &name);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_credentials",
                "the current password is wrong",
            ));
        }
        Err(busy) => {
            state.limiter.refund(&name, address);
            state.metrics.login_refusal_counted("busy");
            return Err(busy);
        }
    };
    let keep = auth::cookie(&headers, SESSION_COOKIE).map(|session| auth::sha256_hex(&session));
    let Some(sessions_ended) = state.db.change_password(&name, &new_hash, keep.as_deref()).await?
    else {
        return Err(ApiError::not_found(format!("no user {name:?}")));
    };
    state.limiter.succeeded(&name, address);
    auth::forget_failures(&state, &name).await;
    Ok(Json(PasswordChanged { sessions_ended }).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The new password (10 characters or more, at most 1024 bytes); generated when absent.
    #[schema(min_length = 10, max_length = 1024)]
    password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordResetDone {
    pub name: String,
    /// The generated password, shown this once; absent when the request gave one.
    pub password: Option<String>,
    /// The user's dashboard sessions, now ended.
    pub sessions_ended: u64,
    /// The user's API tokens, now revoked.
    pub tokens_revoked: u64,
}

/// Reset a user's password: every session of theirs ends and every API token of theirs is
/// revoked. Without a password in the request one is generated and shown once.
#[utoipa::path(post, path = "/users/{name}/password", tag = "users",
    params(("name" = String, Path, description = "The user's name")),
    request_body = PasswordReset,
    responses((status = 200, body = PasswordResetDone)))]
pub async fn reset_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<PasswordReset>,
) -> Result<Response, ApiError> {
    let (password, generated) = match request.password {
        Some(password) => {
            auth::validate_new_password(&password)?;
            (password, false)
        }
        None => (auth::generate_password(), true),
    };
    if state.db.user_role(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no user {name:?}")));
    }
    let to_hash = password.clone();
    let hash = auth::gated(&state.hash_gate, Lane::Priority, move |memory| {
        auth::hash_password_in(memory, &to_hash)
    })
    .await?
    .map_err(|e| ApiError::internal(&e))?;
    let Some((sessions_ended, tokens_revoked)) =
        state.db.reset_password(&name, &hash, UnixMillis::now()).await?
    else {
        return Err(ApiError::not_found(format!("no user {name:?}")));
    };
    // A fresh start: the name's failed attempts are forgotten.
    state.limiter.forget(&name);
    auth::forget_failures(&state, &name).await;
    let body = PasswordResetDone {
        name,
        password: generated.then_some(password),
        sessions_ended,
        tokens_revoked,
    };
    Ok(Json(body).into_response())
}
