//! Who is calling: dashboard sessions (password login, argon2 hashes, an `HttpOnly`,
//! `SameSite=Strict` cookie holding a random session id of which only the SHA-256 is stored)
//! and bearer tokens for scripts (`kitt_<id>_<secret>`, only the secret's SHA-256 stored).
//! Failed logins are rate limited per user name and per client address ([`super::limiter`];
//! the address is the TCP peer's unless the peer is a trusted proxy, [`super::proxies`]);
//! every argon2 run goes through the [`HashGate`], checked after the limiter and the name's
//! shape, so what a flood costs is bounded in memory and in cores.

use std::net::IpAddr;
use std::time::Instant;

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
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
use super::hash_gate::{Busy, HashGate, HashMemory, Lane};
use super::limiter::{AddressKey, Verdict};
use crate::service::{Principal, Role, Via};

pub const SESSION_COOKIE: &str = "kitt_session";
/// The longest password accepted, bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The shortest new password, characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Hashes a password with argon2id and a random salt (PHC string), in a fresh [`HashMemory`]
/// (the CLI and the demo; requests hash through the [`HashGate`] and [`hash_password_in`]).
pub fn hash_password(password: &str) -> Result<String, String> {
    hash_password_in(&mut HashMemory::default(), password)
}

/// Hashes a password with argon2id (default parameters) and a random salt, in `memory`.
pub fn hash_password_in(memory: &mut HashMemory, password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    let argon = Argon2::default();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| e.to_string())?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        memory
            .with_blocks(argon.params().block_count(), |blocks| {
                argon.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks)
            })
            .map_err(|_| password_hash::Error::Crypto)
    })
    .map_err(|e| e.to_string())?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Checks `password` against a PHC string in `memory`: the hash's own algorithm, version and
/// parameters, its output compared in constant time. Anything unparsable is a mismatch.
pub(super) fn verify_password(memory: &mut HashMemory, password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = memory.with_blocks(argon.params().block_count(), |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
    });
    // `Output`'s equality is constant-time.
    hashed.is_ok() && Output::new(&out).is_ok_and(|out| out == expected)
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// A hash that takes as long to check as a real one, for unknown users.
pub(super) fn decoy_hash() -> &'static str {
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

/// A new password's rules: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes.
pub fn validate_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "the password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    validate_password_length(password)
}

/// Any password offered is at most [`MAX_PASSWORD_BYTES`] bytes (argon2 reads all of it).
pub fn validate_password_length(password: &str) -> Result<(), ApiError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!(
            "the password is limited to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Runs a hash through the gate; [`Busy`] becomes the 503 (with `Retry-After`) every
/// caller answers with.
pub async fn gated<T: Send + 'static>(
    gate: &HashGate,
    lane: Lane,
    work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
) -> Result<T, ApiError> {
    gate.run(lane, work).await.map_err(|Busy| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the hub is busy checking passwords; try again in a second",
        )
        .retry_after(1)
    })
}

/// Admits a password attempt for `name` from `address` under the login limiter (which charges
/// it until [`super::limiter::LoginLimiter::succeeded`] or `refund`); a refusal is counted,
/// and the first after a charge is logged and audited.
pub async fn admit_attempt(
    state: &AppState,
    name: &str,
    address: AddressKey,
    action: &str,
) -> Result<Option<Response>, ApiError> {
    let verdict = match state.limiter.admit(name, address, Instant::now()) {
        Verdict::Allowed if shares_failures(state) => {
            let keys = super::limiter::shared_keys(name, address);
            let checks: Vec<(&str, i64)> =
                keys.iter().map(|(key, _, tolerance)| (key.as_str(), *tolerance)).collect();
            match state.db.login_blocked(&checks).await {
                Ok(None) => return Ok(None),
                // Refused for what the other replicas saw: this replica's charge goes back.
                Ok(Some(block)) => {
                    state.limiter.refund(name, address);
                    let retry_after = (block.wait_ms.max(1) as u64).div_ceil(1000);
                    Verdict::Blocked { retry_after, first: block.first }
                }
                Err(error) => {
                    state.limiter.refund(name, address);
                    return Err(error.into());
                }
            }
        }
        verdict => verdict,
    };
    let Verdict::Blocked { retry_after, first } = verdict else {
        return Ok(None);
    };
    if first {
        state.metrics.login_refused("rate_limited", name);
        let detail = "rate limited; repeats are counted in kitt_logins_refused_total";
        state.db.audit(name, action, 429, Some(detail), UnixMillis::now()).await?;
    } else {
        state.metrics.login_refusal_counted("rate_limited");
    }
    let error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many failed attempts; try again in {retry_after} s"),
    );
    Ok(Some(error.retry_after(retry_after).into_response()))
}

/// Replicas on one PostgreSQL share failed password checks (`db::limits`), so a flood spread
/// over them behind a load balancer gets one allowance; a single hub on SQLite counts them in
/// memory only, which is exact there.
fn shares_failures(state: &AppState) -> bool {
    state.db.backend() == crate::db::Backend::Postgres
}

/// A password check failed: told to the other replicas (this replica's charge stays).
pub async fn record_failure(state: &AppState, name: &str, address: AddressKey) {
    if !shares_failures(state) {
        return;
    }
    let keys = super::limiter::shared_keys(name, address);
    let failed: Vec<(&str, i64)> =
        keys.iter().map(|(key, interval, _)| (key.as_str(), *interval)).collect();
    if let Err(error) = state.db.login_failed(&failed).await {
        tracing::warn!(%error, "Cannot share a failed login with the other replicas; this replica still counts it.");
    }
}

/// A name's failures are forgotten by every replica (its right password; an admin's reset).
pub async fn forget_failures(state: &AppState, name: &str) {
    if !shares_failures(state) {
        return;
    }
    if let Err(error) = state.db.login_forget(&super::limiter::shared_name_key(name)).await {
        tracing::warn!(%error, "Cannot clear a name's failed logins for the other replicas.");
    }
    // Their own limiters counted the attempts they admitted: they forget the name too.
    state.sync.live().logins_forgiven(name);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// 1–64 letters, digits or `-_.@`, as every user name.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$", max_length = 64)]
    pub name: String,
    #[schema(max_length = 1024)]
    pub password: String,
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
    // Cheap refusals first: a name no user can have and an oversized password never reach
    // the limiter's memory or the hash gate.
    super::validate_user_name(&request.name)?;
    validate_password_length(&request.password)?;
    let address = AddressKey::new(state.settings.trusted_proxies.client(peer, &headers));
    if let Some(refused) = admit_attempt(&state, &request.name, address, "login").await? {
        return Ok(refused);
    }
    let credentials = state.db.user_credentials(&request.name).await?;
    let password = request.password.clone();
    let (hash, role, lane) = match credentials {
        Some((hash, role)) => (Some(hash), Role::parse(&role), Lane::Priority),
        None => (None, None, Lane::Other),
    };
    let checked = gated(&state.hash_gate, lane, move |memory| match &hash {
        Some(hash) => verify_password(memory, &password, hash),
        None => verify_password(memory, &password, decoy_hash()),
    })
    .await;
    let valid = match checked {
        Ok(valid) => valid,
        Err(busy) => {
            state.limiter.refund(&request.name, address);
            state.metrics.login_refusal_counted("busy");
            return Err(busy);
        }
    };
    let Some(role) = role.filter(|_| valid) else {
        // The attempt was charged when admitted.
        record_failure(&state, &request.name, address).await;
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
    state.limiter.succeeded(&request.name, address);
    forget_failures(&state, &request.name).await;
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
        let memory = &mut HashMemory::default();
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password(memory, "correct horse", &hash));
        assert!(!verify_password(memory, "Correct horse", &hash));
        assert!(!verify_password(memory, "correct horse", "not a hash"));
        let truncated = &hash[..hash.len() - 4];
        assert!(!verify_password(memory, "correct horse", truncated));
    }

    #[test]
    fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let memory = &mut HashMemory::default();
        // Hashes stored before the hub hashed in its own memory.
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let theirs = Argon2::default().hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(verify_password(memory, "correct horse", &theirs));
        assert!(!verify_password(memory, "correct horses", &theirs));
        let ours = hash_password_in(memory, "correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        // Other parameters and algorithms are read from the stored hash.
        let params = Params::new(32 * 1024, 1, 1, Some(24)).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x10, params);
        let other = argon2i.hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(verify_password(memory, "correct horse", &other), "{other}");
        assert!(!verify_password(memory, "correct horsE", &other));
    }

    #[test]
    fn the_hash_memory_is_kept_at_the_default_size_and_reused() {
        let memory = &mut HashMemory::default();
        let first = hash_password_in(memory, "one password").unwrap();
        let kept = format!("{memory:?}");
        assert_eq!(kept, format!("HashMemory({} blocks)", Params::DEFAULT.block_count()));
        assert!(verify_password(memory, "one password", &first));
        // A hash needing more memory gets it for itself; the kept memory does not grow.
        let params = Params::new(64 * 1024, 1, 1, None).unwrap();
        let big = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            b"big",
            &SaltString::encode_b64(b"sixteen byte slt").unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(verify_password(memory, "big", &big));
        assert_eq!(format!("{memory:?}"), kept);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; kitt_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
