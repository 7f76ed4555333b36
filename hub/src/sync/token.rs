//! Single-use enrollment tokens: `kitt1.<id>.<secret>.<ca>`.
//!
//! `id` (8 hex digits) finds the token in the database; `secret` (32 hex digits, 128 bits)
//! is stored only as its SHA-256; `ca` (32 hex digits) is the first half of the SHA-256 of
//! the hub CA certificate, so the agent can tell that it reached the hub the token came from
//! before it sends anything (a wrong hub is refused by the agent, not trusted).

use std::time::Duration;

use proto::UnixMillis;
use sha2::{Digest, Sha256};

use crate::db::{Db, DbError};

pub const PREFIX: &str = proto::net::ENROLLMENT_TOKEN_PREFIX;
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// A token as printed for the user, and its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
    pub ca_fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an enrollment token (expected kitt1.<id>.<secret>.<ca>, as `kitt-hub token create` prints)"
)]
pub struct MalformedToken;

impl Token {
    pub fn generate(ca_fingerprint: &[u8; 32]) -> Token {
        Token {
            id: hex::encode(rand::random::<[u8; 4]>()),
            secret: hex::encode(rand::random::<[u8; 16]>()),
            ca_fingerprint: hex::encode(&ca_fingerprint[..16]),
        }
    }

    pub fn parse(text: &str) -> Result<Token, MalformedToken> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [PREFIX, id, secret, ca] = parts.as_slice() else { return Err(MalformedToken) };
        let hex_of = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(hex_of(id, 8) && hex_of(secret, 32) && hex_of(ca, 32)) {
            return Err(MalformedToken);
        }
        Ok(Token { id: (*id).into(), secret: (*secret).into(), ca_fingerprint: (*ca).into() })
    }

    pub fn secret_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}.{}.{}.{}", self.id, self.secret, self.ca_fingerprint)
    }
}

/// Creates and stores a token valid for `ttl`.
pub async fn create(
    db: &Db,
    ca_fingerprint: &[u8; 32],
    name: Option<&str>,
    ttl: Duration,
    now: UnixMillis,
) -> Result<(Token, UnixMillis), DbError> {
    create_for_printers(db, ca_fingerprint, name, &[], ttl, now).await
}

/// Like [`create`]; the agent that redeems the token owns `printers`, approved, when it
/// first announces them (unless another agent owns one already).
pub async fn create_for_printers(
    db: &Db,
    ca_fingerprint: &[u8; 32],
    name: Option<&str>,
    printers: &[proto::PrinterId],
    ttl: Duration,
    now: UnixMillis,
) -> Result<(Token, UnixMillis), DbError> {
    let token = Token::generate(ca_fingerprint);
    let expires_at = now.plus_millis(ttl.as_millis() as i64);
    let printers: Vec<&str> = printers.iter().map(proto::PrinterId::as_str).collect();
    let printers = (!printers.is_empty()).then(|| printers.join(" "));
    let secret = token.secret_sha256();
    db.insert_token(&token.id, &secret, name, printers.as_deref(), now, expires_at).await?;
    Ok((token, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let token = Token::generate(&[7; 32]);
        let text = token.to_string();
        assert_eq!(Token::parse(&text), Ok(token.clone()));
        assert_eq!(Token::parse(&format!("  {text}\n")), Ok(token));
        for bad in ["", "kitt1", "kitt2.00000000.0.0", "kitt1.zzzzzzzz.00.00", "a.b.c.d.e"] {
            assert_eq!(Token::parse(bad), Err(MalformedToken), "{bad}");
        }
    }
}
