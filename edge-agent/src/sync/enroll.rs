//! `kitt-agent enroll`: trade a single-use token for a certificate from the hub.
//!
//! The key pair is generated here and never leaves the device; the hub sees only a CSR.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::net::{ENROLLMENT_TOKEN_PREFIX, HUB_SERVER_NAME};
use proto::{AgentMessage, EnrollRefusal, EnrollRequest, HubMessage, SoftwareVersion};
use sha2::{Digest, Sha256};

use super::identity::{Identity, IdentityError};
use super::tls;
use proto_io::{self as frames, FrameReader};

const ENROLL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "not an enrollment token (expected kitt1.<id>.<secret>.<ca>[.<hubs>], as `kitt-hub token create` prints)"
    )]
    MalformedToken,
    #[error(
        "the token names no hub address (made before `[sync] advertise` was set): give --hub host:port"
    )]
    NoHub,
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("the state directory {} is not writable: {detail}", path.display())]
    StateDirNotWritable { path: std::path::PathBuf, detail: String },
    #[error("cannot resolve the hub address {hub}: {detail}")]
    Resolve { hub: String, detail: String },
    #[error("{0}")]
    WrongHub(String),
    #[error("cannot reach the hub at {hub}: {detail}")]
    Unreachable { hub: String, detail: String },
    #[error("the hub does not know this token; create one with `kitt-hub token create`")]
    UnknownToken,
    #[error("the token has expired; create a new one with `kitt-hub token create`")]
    ExpiredToken,
    #[error("the token has already been used; each token enrolls one agent")]
    TokenAlreadyUsed,
    #[error("the hub refused the certificate request: {0}")]
    BadCsr(String),
    #[error("the hub answered unexpectedly: {0}")]
    Protocol(String),
    #[error("cannot create a key: {0}")]
    Key(String),
}

/// Enrolls with the hub at `hub`, or (`None`) with the first of the token's hub addresses
/// that answers, and saves the identity in `state_dir`. The identity keeps every address
/// (the one enrolled with first), so the agent moves to another replica when its own stops
/// answering.
pub async fn enroll_any(
    hub: Option<&str>,
    token: &str,
    state_dir: &Path,
) -> Result<Identity, EnrollError> {
    let (_, hubs) = parse_token(token)?;
    let candidates: Vec<String> = match hub {
        Some(hub) => vec![hub.to_owned()],
        None if hubs.is_empty() => return Err(EnrollError::NoHub),
        None => hubs,
    };
    let mut last = None;
    for candidate in &candidates {
        match enroll(candidate, token, state_dir).await {
            // Another replica may answer; anything else is the hub's word.
            Err(error @ (EnrollError::Unreachable { .. } | EnrollError::Resolve { .. })) => {
                tracing::warn!(hub = %candidate, %error, "Trying the token's next hub address.");
                last = Some(error);
            }
            done => return done,
        }
    }
    Err(last.unwrap_or(EnrollError::NoHub))
}

/// Enrolls with the hub at `hub` (`host:port`) and saves the identity in `state_dir`.
pub async fn enroll(hub: &str, token: &str, state_dir: &Path) -> Result<Identity, EnrollError> {
    let (ca_prefix, token_hubs) = parse_token(token)?;
    check_writable(state_dir)?;
    let key = rcgen::KeyPair::generate().map_err(|e| EnrollError::Key(e.to_string()))?;
    let hostname = hostname();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname.clone());
    let csr = params.serialize_request(&key).map_err(|e| EnrollError::Key(e.to_string()))?;

    let addr = resolve(hub).await?;
    let refusal = Arc::new(Mutex::new(None));
    let config = tls::enroll_config(ca_prefix, refusal.clone()).map_err(EnrollError::Protocol)?;
    let endpoint = client_endpoint(addr)
        .map_err(|detail| EnrollError::Unreachable { hub: hub.into(), detail })?;
    let unreachable = |detail: String| {
        let refused = refusal.lock().ok().and_then(|r| r.clone());
        match refused {
            Some(reason) => EnrollError::WrongHub(reason),
            None => EnrollError::Unreachable { hub: hub.into(), detail },
        }
    };
    let connecting = endpoint
        .connect_with(config, addr, HUB_SERVER_NAME)
        .map_err(|e| unreachable(e.to_string()))?;
    let connection = tokio::time::timeout(ENROLL_TIMEOUT, connecting)
        .await
        .map_err(|_| unreachable("no answer (is kitt-hub serve running there?)".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let request = AgentMessage::Enroll(EnrollRequest {
        token: token.trim().to_owned(),
        csr_der: csr.der().to_vec(),
        software: software(),
        hostname,
    });
    let answer = async {
        let (mut send, recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        frames::write(&mut send, &request).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        let mut reader = FrameReader::new(recv, 1024 * 1024);
        reader.next::<HubMessage>().await.map_err(|e| e.to_string())
    };
    let answer = tokio::time::timeout(ENROLL_TIMEOUT, answer)
        .await
        .map_err(|_| unreachable("the hub did not answer".into()))?
        .map_err(unreachable)?;
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    let enrolled = match answer {
        HubMessage::Enrolled(enrolled) => enrolled,
        HubMessage::EnrollRefused(refusal) => {
            return Err(match refusal {
                EnrollRefusal::UnknownToken => EnrollError::UnknownToken,
                EnrollRefusal::ExpiredToken => EnrollError::ExpiredToken,
                EnrollRefusal::TokenAlreadyUsed => EnrollError::TokenAlreadyUsed,
                EnrollRefusal::BadCsr { detail } => EnrollError::BadCsr(detail),
            });
        }
        other => return Err(EnrollError::Protocol(format!("{other:?}"))),
    };
    if Sha256::digest(&enrolled.hub_ca_der)[..16] != ca_prefix {
        return Err(EnrollError::WrongHub(
            "the hub sent a CA that does not match the token".into(),
        ));
    }
    let mut hubs = vec![hub.to_owned()];
    for other in token_hubs {
        if !hubs.contains(&other) {
            hubs.push(other);
        }
    }
    let identity = Identity {
        agent: enrolled.agent,
        hub: hub.to_owned(),
        hubs,
        key_der: key.serialize_der(),
        chain_der: enrolled.chain_der,
        hub_ca_der: enrolled.hub_ca_der,
        not_after: enrolled.not_after,
    };
    identity.save(state_dir)?;
    Ok(identity)
}

/// The CA fingerprint prefix a token pins.
/// The CA fingerprint prefix a token pins, and the hub addresses it names (maybe none).
fn parse_token(token: &str) -> Result<([u8; 16], Vec<String>), EnrollError> {
    use base64::Engine as _;
    let parts: Vec<&str> = token.trim().split('.').collect();
    let (id, secret, ca, hubs) = match parts.as_slice() {
        [ENROLLMENT_TOKEN_PREFIX, id, secret, ca] => (id, secret, ca, Vec::new()),
        [ENROLLMENT_TOKEN_PREFIX, id, secret, ca, hubs] => {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(hubs)
                .map_err(|_| EnrollError::MalformedToken)?;
            let text = String::from_utf8(bytes).map_err(|_| EnrollError::MalformedToken)?;
            let hubs: Vec<String> = text.split(',').map(str::to_owned).collect();
            let fit = |h: &String| {
                (3..=255).contains(&h.len())
                    && !h.contains([' ', '\t', '/'])
                    && h.rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            };
            if hubs.len() > 16 || !hubs.iter().all(fit) {
                return Err(EnrollError::MalformedToken);
            }
            (id, secret, ca, hubs)
        }
        _ => return Err(EnrollError::MalformedToken),
    };
    if id.len() != 8 || secret.len() != 32 {
        return Err(EnrollError::MalformedToken);
    }
    let ca = hex_decode(ca).ok_or(EnrollError::MalformedToken)?;
    let ca: [u8; 16] = ca.try_into().map_err(|_| EnrollError::MalformedToken)?;
    Ok((ca, hubs))
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn check_writable(state_dir: &Path) -> Result<(), EnrollError> {
    if !state_dir.is_dir() {
        return Err(IdentityError::MissingStateDir(state_dir.to_owned()).into());
    }
    let probe = state_dir.join(".write-test");
    std::fs::write(&probe, b"").map_err(|e| EnrollError::StateDirNotWritable {
        path: state_dir.to_owned(),
        detail: e.to_string(),
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Resolves `host:port`, preferring what the system lists first.
pub async fn resolve(hub: &str) -> Result<SocketAddr, EnrollError> {
    let resolve = |detail: String| EnrollError::Resolve { hub: hub.into(), detail };
    let mut addrs = tokio::net::lookup_host(hub).await.map_err(|e| resolve(e.to_string()))?;
    addrs.next().ok_or_else(|| resolve("no address".into()))
}

/// A client endpoint on an ephemeral port of the right address family.
pub fn client_endpoint(peer: SocketAddr) -> Result<quinn::Endpoint, String> {
    let local: SocketAddr =
        if peer.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }.expect("literal");
    quinn::Endpoint::client(local).map_err(|e| e.to_string())
}

pub fn software() -> SoftwareVersion {
    SoftwareVersion {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: option_env!("KITT_GIT_COMMIT").map(str::to_owned),
        target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kitt-agent".into())
}
