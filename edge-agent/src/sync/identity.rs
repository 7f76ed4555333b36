//! The agent's identity on disk, in its state directory:
//!
//! | file | contents | mode |
//! |---|---|---|
//! | `agent.key` | the agent's private key (PKCS#8 PEM), generated here, never sent | 0600 |
//! | `agent.pem` | its certificate chain from the hub | 0600 |
//! | `hub-ca.pem` | the hub CA, the only CA trusted for the hub | 0600 |
//! | `identity.toml` | agent id, hub address, certificate expiry | 0600 |
//!
//! Every file is written to a temporary name, synced and renamed, so a power cut leaves the
//! old identity or the new one, never half of each.

use std::path::{Path, PathBuf};

use proto::{AgentId, UnixMillis};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the state directory {} does not exist; create it (the .deb creates /var/lib/kitt-agent) or pass --state-dir",
        .0.display()
    )]
    MissingStateDir(PathBuf),
    #[error("this agent is not enrolled yet ({} has no identity); run `kitt-agent enroll --hub <host:port> --token <token>`", .0.display())]
    NotEnrolled(PathBuf),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is damaged: {detail}", path.display())]
    Damaged { path: PathBuf, detail: String },
}

/// What `identity.toml` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    /// The id the hub gave this agent.
    agent: String,
    /// The hub's address, `host:port`.
    hub: String,
    /// Every address of the hub's replicas (the enrollment token's), `hub` first; absent
    /// when the hub is one address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hubs: Vec<String>,
    /// When the certificate expires, in Unix milliseconds.
    certificate_not_after: i64,
}

/// Everything the agent needs to connect to its hub.
#[derive(Clone)]
pub struct Identity {
    pub agent: AgentId,
    /// The address enrolled with.
    pub hub: String,
    /// Every address the agent may connect to, `hub` first (replicas of one hub).
    pub hubs: Vec<String>,
    pub key_der: Vec<u8>,
    pub chain_der: Vec<Vec<u8>>,
    pub hub_ca_der: Vec<u8>,
    pub not_after: UnixMillis,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("agent", &self.agent)
            .field("hub", &self.hub)
            .field("hubs", &self.hubs)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain_der.iter().map(|c| CertificateDer::from(c.clone())).collect()
    }

    /// Loads the identity from `state_dir`.
    pub fn load(state_dir: &Path) -> Result<Identity, IdentityError> {
        if !state_dir.is_dir() {
            return Err(IdentityError::MissingStateDir(state_dir.to_owned()));
        }
        let toml_path = state_dir.join("identity.toml");
        if !toml_path.exists() {
            return Err(IdentityError::NotEnrolled(state_dir.to_owned()));
        }
        let text = read(&toml_path)?;
        let file: IdentityFile = toml::from_str(&text).map_err(|e| IdentityError::Damaged {
            path: toml_path.clone(),
            detail: e.to_string(),
        })?;
        let damaged =
            |path: &Path, detail: String| IdentityError::Damaged { path: path.to_owned(), detail };
        let agent = AgentId::new(file.agent).map_err(|e| damaged(&toml_path, e.to_string()))?;
        let key_path = state_dir.join("agent.key");
        let key_der = PrivateKeyDer::from_pem_slice(read(&key_path)?.as_bytes())
            .map_err(|e| damaged(&key_path, e.to_string()))?
            .secret_der()
            .to_vec();
        let chain_der = read_certs(&state_dir.join("agent.pem"))?;
        let ca_path = state_dir.join("hub-ca.pem");
        let hub_ca_der = read_certs(&ca_path)?
            .into_iter()
            .next()
            .ok_or_else(|| damaged(&ca_path, "no certificate".into()))?;
        let mut hubs = vec![file.hub.clone()];
        hubs.extend(file.hubs.into_iter().filter(|h| *h != file.hub));
        Ok(Identity {
            agent,
            hubs,
            hub: file.hub,
            key_der,
            chain_der,
            hub_ca_der,
            not_after: UnixMillis(file.certificate_not_after),
        })
    }

    /// Writes the identity into `state_dir`, each file with mode 0600.
    pub fn save(&self, state_dir: &Path) -> Result<(), IdentityError> {
        if !state_dir.is_dir() {
            return Err(IdentityError::MissingStateDir(state_dir.to_owned()));
        }
        let key_pem =
            der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &self.key_der)
                .expect("base64 always encodes");
        write_private(&state_dir.join("agent.key"), key_pem.as_bytes())?;
        let chain: String = self.chain_der.iter().map(|c| pem_cert(c)).collect();
        write_private(&state_dir.join("agent.pem"), chain.as_bytes())?;
        write_private(&state_dir.join("hub-ca.pem"), pem_cert(&self.hub_ca_der).as_bytes())?;
        let file = IdentityFile {
            agent: self.agent.to_string(),
            hub: self.hub.clone(),
            hubs: if self.hubs.len() > 1 { self.hubs.clone() } else { Vec::new() },
            certificate_not_after: self.not_after.0,
        };
        let text = toml::to_string(&file).expect("the identity file always serialises");
        // Written last: its presence means the other three are complete.
        write_private(&state_dir.join("identity.toml"), text.as_bytes())
    }
}

fn pem_cert(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der)
        .expect("base64 always encodes")
}

fn read(path: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, IdentityError> {
    let text = read(path)?;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| IdentityError::Damaged { path: path.to_owned(), detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(IdentityError::Damaged {
            path: path.to_owned(),
            detail: "no certificate".into(),
        });
    }
    Ok(certs)
}

/// Atomically replaces `path` with `contents`, readable by the owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = |action, source| IdentityError::Io { action, path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("write", e))?;
    file.write_all(contents).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}
