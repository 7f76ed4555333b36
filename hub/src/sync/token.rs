//! Single-use enrollment tokens: `kitt1.<id>.<secret>.<ca>[.<hubs>]`.
//!
//! `hubs`, when present, is the hub's sync addresses (`[sync] advertise`: every replica's),
//! comma-separated and base64url-encoded without padding: the agent enrolls with the first
//! it reaches and keeps them all, moving to another when its replica stops answering.
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
    /// The hub's sync addresses (`host:port`), maybe none.
    pub hubs: Vec<String>,
}

/// The most addresses a token carries.
pub const MAX_HUBS: usize = 16;

/// Whether `address` is fit for a token's list: `host:port`, no commas or spaces.
pub fn valid_hub_address(address: &str) -> bool {
    (3..=255).contains(&address.len())
        && !address.contains([',', ' ', '\t', '/'])
        && address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an enrollment token (expected kitt1.<id>.<secret>.<ca>[.<hubs>], as `kitt-hub token create` prints)"
)]
pub struct MalformedToken;

impl Token {
    pub fn generate(ca_fingerprint: &[u8; 32]) -> Token {
        Token {
            id: hex::encode(rand::random::<[u8; 4]>()),
            secret: hex::encode(rand::random::<[u8; 16]>()),
            ca_fingerprint: hex::encode(&ca_fingerprint[..16]),
            hubs: Vec::new(),
        }
    }

    pub fn parse(text: &str) -> Result<Token, MalformedToken> {
        use base64::Engine as _;
        let parts: Vec<&str> = text.trim().split('.').collect();
        let (id, secret, ca, hubs) = match parts.as_slice() {
            [PREFIX, id, secret, ca] => (id, secret, ca, Vec::new()),
            [PREFIX, id, secret, ca, hubs] => {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(hubs)
                    .map_err(|_| MalformedToken)?;
                let text = String::from_utf8(bytes).map_err(|_| MalformedToken)?;
                let hubs: Vec<String> = text.split(',').map(str::to_owned).collect();
                if hubs.len() > MAX_HUBS || !hubs.iter().all(|h| valid_hub_address(h)) {
                    return Err(MalformedToken);
                }
                (id, secret, ca, hubs)
            }
            _ => return Err(MalformedToken),
        };
        let hex_of = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(hex_of(id, 8) && hex_of(secret, 32) && hex_of(ca, 32)) {
            return Err(MalformedToken);
        }
        Ok(Token { id: (*id).into(), secret: (*secret).into(), ca_fingerprint: (*ca).into(), hubs })
    }

    pub fn secret_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::Engine as _;
        write!(f, "{PREFIX}.{}.{}.{}", self.id, self.secret, self.ca_fingerprint)?;
        if !self.hubs.is_empty() {
            let list = self.hubs.join(",");
            write!(f, ".{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(list))?;
        }
        Ok(())
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
    create_advertised(db, ca_fingerprint, name, printers, &[], ttl, now).await
}

/// Like [`create_for_printers`], naming the hub's sync addresses `hubs` in the token.
pub async fn create_advertised(
    db: &Db,
    ca_fingerprint: &[u8; 32],
    name: Option<&str>,
    printers: &[proto::PrinterId],
    hubs: &[String],
    ttl: Duration,
    now: UnixMillis,
) -> Result<(Token, UnixMillis), DbError> {
    let mut token = Token::generate(ca_fingerprint);
    token.hubs = hubs.iter().take(MAX_HUBS).cloned().collect();
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
        // With the replicas' addresses: they come back in order.
        let mut token = Token::generate(&[7; 32]);
        token.hubs = vec!["10.0.0.11:7070".into(), "hub2.lab:7070".into(), "[::1]:7070".into()];
        let text = token.to_string();
        assert_eq!(text.split('.').count(), 5, "{text}");
        assert_eq!(Token::parse(&text), Ok(token.clone()));
        use base64::Engine as _;
        let encode = |list: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(list);
        let base = token.to_string().rsplit_once('.').unwrap().0.to_owned();
        for bad in ["", "no-port", "a:b", "a:1,", "a b:1", &vec!["h:1"; MAX_HUBS + 1].join(",")] {
            let text = format!("{base}.{}", encode(bad));
            assert_eq!(Token::parse(&text), Err(MalformedToken), "{bad:?}");
        }
        assert_eq!(Token::parse(&format!("{base}.!!")), Err(MalformedToken));
    }
}
