//! Who is calling: dashboard sessions (password login, argon2 hashes, an `HttpOnly`,
//! `SameSite=Strict` cookie holding a random session id of which only the SHA-256 is stored)
//! and bearer tokens for scripts (`kitt_<id>_<secret>`, only the secret's SHA-256 stored).
//! Failed logins are rate limited per user name and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proto::UnixMillis;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::service::{Principal, Role, Via};

pub const SESSION_COOKIE: &str = "kitt_session";
/// Failed logins allowed per user name within [`LOGIN_WINDOW`].
const LOGIN_FAILURES: usize = 5;
/// Failed logins allowed per client address (higher: many people may share one NAT).
const LOGIN_FAILURES_PER_ADDRESS: usize = 20;
const LOGIN_WINDOW: Duration = Duration::from_secs(300);

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// A hash that takes as long to check as a real one, for unknown users.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password").unwrap_or_default())
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    hex::encode((0..bytes).map(|_| rand::random::<u8>()).collect::<Vec<u8>>())
}

/// A new API token for `user`; returns the token text (shown once) and its id.
pub async fn create_api_token(
    db: &crate::db::Db,
    user: &str,
    name: Option<&str>,
) -> Result<(String, String), crate::db::DbError> {
    let id = random_hex(6);
    let secret = random_hex(24);
    db.insert_api_token(&id, &sha256_hex(&secret), user, name, UnixMillis::now()).await?;
    Ok((format!("kitt_{id}_{secret}"), id))
}

/// Remembers recent failed logins.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    /// Seconds to wait when `keys` have failed too often, else `None`.
    fn blocked(&self, keys: &[String]) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for key in keys {
            let list = failures.entry(key.clone()).or_default();
            list.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
            let allowed =
                if key.starts_with("ip:") { LOGIN_FAILURES_PER_ADDRESS } else { LOGIN_FAILURES };
            if list.len() >= allowed {
                let oldest = list[0];
                let left = LOGIN_WINDOW.saturating_sub(now.duration_since(oldest)).as_secs().max(1);
                wait = Some(wait.map_or(left, |w: u64| w.max(left)));
            }
        }
        wait
    }

    fn failed(&self, keys: &[String]) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            failures.entry(key.clone()).or_default().push(Instant::now());
        }
        if failures.len() > 10_000 {
            let now = Instant::now();
            failures.retain(|_, list| list.iter().any(|t| now.duration_since(*t) < LOGIN_WINDOW));
        }
    }

    fn succeeded(&self, user_key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(user_key);
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

fn client_ip(request_headers: &HeaderMap, peer: Option<IpAddr>) -> String {
    // Behind a reverse proxy the peer is the proxy; the proxy's header is only trusted
    // for display, the limiter keys on both.
    let forwarded = request_headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .unwrap_or("");
    format!("{}|{}", peer.map(|p| p.to_string()).unwrap_or_default(), forwarded)
}

/// The client's address, when the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// Who logged in.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LoggedIn {
    pub name: String,
    pub role: Role,
}

/// `POST /api/v1/login`: checks the password, sets the session cookie.
#[utoipa::path(post, path = "/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Logged in; the session cookie is set.", body = LoggedIn)))]
pub async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let request = body.0;
    let keys = vec![format!("user:{}", request.name), format!("ip:{}", client_ip(&headers, peer))];
    if let Some(wait) = state.limiter.blocked(&keys) {
        state.metrics.login_refused("rate_limited", &request.name);
        state
            .db
            .audit(&request.name, "login", 429, Some("rate limited"), UnixMillis::now())
            .await?;
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed logins; try again in {wait} s"),
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    let credentials = state.db.user_credentials(&request.name).await?;
    let password = request.password.clone();
    let (hash, role) = match &credentials {
        Some((hash, role)) => (hash.clone(), Role::parse(role)),
        None => (decoy_hash().to_owned(), None),
    };
    // argon2 is deliberately slow: keep it off the async workers.
    let valid = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(role) = role.filter(|_| valid) else {
        state.limiter.failed(&keys);
        state.metrics.login_refused("bad_credentials", &request.name);
        state
            .db
            .audit(&request.name, "login", 401, Some("bad credentials"), UnixMillis::now())
            .await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "unknown user or wrong password",
        ));
    };
    state.limiter.succeeded(&keys[0]);
    let session = random_hex(32);
    let now = UnixMillis::now();
    let lifetime = state.settings.session_lifetime;
    state
        .db
        .insert_session(
            &sha256_hex(&session),
            &request.name,
            now,
            now.plus_millis(lifetime.as_millis() as i64),
        )
        .await?;
    state.db.audit(&request.name, "login", 200, None, now).await?;
    let secure = state.settings.secure_cookies.unwrap_or_else(|| {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
    });
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        lifetime.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Json(LoggedIn { name: request.name, role }).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /api/v1/logout`: ends the session.
#[utoipa::path(post, path = "/logout", tag = "auth",
    responses((status = 204, description = "The session is gone; the cookie is cleared.")))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        state.db.delete_session(&sha256_hex(&session)).await?;
    }
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Resolves the caller from a bearer token or a session cookie.
pub async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let now = UnixMillis::now();
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let Some(token) = value.strip_prefix("Bearer ") else { return Ok(None) };
        let Some((id, secret)) = token.trim().strip_prefix("kitt_").and_then(|t| t.split_once('_'))
        else {
            return Ok(None);
        };
        let Some((stored, user)) = state.db.api_token(id).await? else { return Ok(None) };
        if !constant_time_eq(stored.as_bytes(), sha256_hex(secret).as_bytes()) {
            return Ok(None);
        }
        let Some(role) = state.db.user_role(&user).await?.and_then(|r| Role::parse(&r)) else {
            return Ok(None);
        };
        state.db.touch_api_token(id, now).await?;
        return Ok(Some(Principal::user(user, role, Via::Token(id.to_owned()))));
    }
    if let Some(session) = cookie(headers, SESSION_COOKIE) {
        let Some(user) = state.db.session_user(&sha256_hex(&session), now).await? else {
            return Ok(None);
        };
        let Some(role) = state.db.user_role(&user).await?.and_then(|r| Role::parse(&r)) else {
            return Ok(None);
        };
        return Ok(Some(Principal::user(user, role, Via::Session)));
    }
    Ok(None)
}

/// Middleware: no anonymous access; audits every mutating request after it ran.
pub async fn require_caller(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(caller) = caller(&state, request.headers()).await? else {
        return Err(ApiError::unauthorized());
    };
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // The full path, not the one the nested router sees.
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path().to_owned(), |uri| uri.0.path().to_owned());
    let action = format!("{} {}", request.method(), path);
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if mutating {
        let status = response.status().as_u16();
        let detail = format!("via {}", caller.via());
        if let Err(error) =
            state.db.audit(caller.name(), &action, status, Some(&detail), UnixMillis::now()).await
        {
            tracing::error!(%error, %action, "Cannot write the audit log.");
        }
    }
    Ok(response)
}

/// Middleware for one route: the caller (put there by [`require_caller`]) must hold `role`.
/// Routes declare their role once, in [`super::router`]; this enforces it.
pub async fn require_role(role: Role, request: Request, next: Next) -> Response {
    match request.extensions().get::<Principal>() {
        Some(principal) if principal.role() >= role => next.run(request).await,
        Some(_) => ApiError::forbidden(role.as_str()).into_response(),
        None => ApiError::unauthorized().into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_wrong_ones_do_not() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("Correct horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn the_limiter_blocks_after_five_failures_per_key() {
        let limiter = LoginLimiter::default();
        let keys = vec!["user:ana".to_owned(), "ip:1.2.3.4".to_owned()];
        for _ in 0..LOGIN_FAILURES {
            assert_eq!(limiter.blocked(&keys), None);
            limiter.failed(&keys);
        }
        let wait = limiter.blocked(&keys).unwrap();
        assert!((1..=300).contains(&wait), "{wait}");
        // Another user from the same address is not locked out by one user's failures...
        let colleague = vec!["user:bo".to_owned(), "ip:1.2.3.4".to_owned()];
        assert_eq!(limiter.blocked(&colleague), None);
        // ...until the address itself has failed too often.
        for i in 0..LOGIN_FAILURES_PER_ADDRESS {
            limiter.failed(&[format!("user:guess{i}"), "ip:1.2.3.4".to_owned()]);
        }
        assert!(limiter.blocked(&colleague).is_some());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; kitt_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
