//! The hub's own certificate authority.
//!
//! Agents authenticate with client certificates this CA issues at enrollment and renews over
//! the authenticated connection; they trust only this CA for the hub's server certificate.
//!
//! On disk, under `<data_dir>/ca/`: `ca.pem` (the CA certificate, shared with agents) and
//! `ca.key` (PKCS#8, mode 0600, never leaves the hub). Both are created on first use. The
//! hub's QUIC server certificate is issued fresh from the CA at every start and never
//! written to disk.
//!
//! An agent certificate names the agent in its subject's common name and in a DNS-name SAN
//! (`<agent-id>.agent.kitt`); the hub reads the agent's identity from the CN after the TLS
//! layer has verified the chain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::{AgentId, UnixMillis};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// How long an agent certificate is valid. Agents renew at two thirds of it.
pub use proto::net::AGENT_CERT_LIFETIME;
/// How long the CA itself is valid.
const CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Tolerated clock skew: certificates start this long before "now".
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing the CA files failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA files exist but cannot be used.
    #[error("the hub CA in {} is unusable: {detail}", dir.display())]
    Unusable { dir: PathBuf, detail: String },
    /// A certificate signing request was malformed or badly signed.
    #[error("bad certificate signing request: {0}")]
    BadCsr(String),
    /// Building a certificate failed.
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
}

/// The CA, loaded and ready to issue.
pub struct HubCa {
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for HubCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCa").field("fingerprint", &self.fingerprint_hex()).finish()
    }
}

/// A certificate with its private key, for the hub's own TLS endpoint.
#[derive(Debug)]
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub chain_der: Vec<Vec<u8>>,
    pub not_after: UnixMillis,
    pub serial_hex: String,
}

impl HubCa {
    /// Loads the CA from `<data_dir>/ca`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<HubCa, CaError> {
        let dir = data_dir.join("ca");
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if cert_path.exists() || key_path.exists() {
            return HubCa::load(&dir, &cert_path, &key_path);
        }
        create_private_dir(&dir)?;
        let ca = HubCa::generate()?;
        write_private(&key_path, ca.issuer.key().serialize_pem().as_bytes())?;
        let pem = pem_certificate(&ca.cert_der);
        std::fs::write(&cert_path, pem).map_err(|source| CaError::Io {
            action: "write",
            path: cert_path.clone(),
            source,
        })?;
        tracing::info!(path = %dir.display(), fingerprint = %ca.fingerprint_hex(), "Created the hub CA.");
        Ok(ca)
    }

    fn load(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<HubCa, CaError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CaError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })
        };
        HubCa::from_pem(&read(cert_path)?, &read(key_path)?, dir)
    }

    /// The CA as PEM: (certificate, key). The key is a secret.
    pub fn to_pem(&self) -> (String, String) {
        (pem_certificate(&self.cert_der), self.issuer.key().serialize_pem())
    }

    /// The CA from PEM (the cluster's, kept in the database); `origin` names where it came
    /// from in errors.
    pub fn from_pem(cert_pem: &str, key_pem: &str, origin: &Path) -> Result<HubCa, CaError> {
        let unusable = |detail: String| CaError::Unusable { dir: origin.to_owned(), detail };
        let key = KeyPair::from_pem(key_pem).map_err(|e| unusable(format!("ca.key: {e}")))?;
        let cert_der = {
            use rustls_pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(cert_pem.as_bytes())
                .map_err(|e| unusable(format!("ca.pem: {e}")))?
        };
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| unusable(format!("ca.pem: {e}")))?;
        Ok(HubCa { cert_der, issuer })
    }

    /// A new CA in memory (tests, and the first start).
    pub fn generate() -> Result<HubCa, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "kitt");
        name.push(DnType::CommonName, format!("kitt hub CA {}", random_hex(4)));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_LIFETIME;
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        Ok(HubCa { cert_der, issuer: Issuer::new(params, key) })
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate's DER: what an enrollment token pins.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.cert_der.as_ref()).into()
    }

    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint())
    }

    /// A fresh server certificate for the hub's QUIC endpoint, valid for `names` (DNS names
    /// or IP addresses).
    pub fn server_identity(&self, names: &[String]) -> Result<ServerIdentity, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, "kitt hub");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::from_secs(365 * 24 * 3600);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerIdentity {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }

    /// Signs an agent's CSR. The CSR proves possession of the key; everything else in the
    /// certificate (name, lifetime, usage) is the hub's choice, not the requester's.
    pub fn issue_agent(
        &self,
        agent: &AgentId,
        csr_der: &[u8],
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
            csr_der.to_vec(),
        ))
        .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, agent.as_str());
        let san = format!("{}.agent.kitt", agent.as_str());
        params.subject_alt_names = vec![SanType::DnsName(
            san.try_into().map_err(|e: rcgen::Error| CaError::BadCsr(e.to_string()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        let not_after = UnixMillis((params.not_after.unix_timestamp_nanos() / 1_000_000) as i64);
        Ok(IssuedCert {
            chain_der: vec![cert.der().to_vec(), self.cert_der.to_vec()],
            not_after,
            serial_hex,
        })
    }
}

/// PEM text for one certificate.
pub fn pem_certificate(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der)
        .expect("base64 of a byte string always encodes")
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    hex::encode(bytes)
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CaError::Io { action: "create", path: dir.to_owned(), source })
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CaError::Io { action: "write", path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_once_and_reloaded_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let first = HubCa::load_or_create(dir.path()).unwrap();
        let again = HubCa::load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca/ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_garbage_csr_is_refused_with_a_clear_error() {
        let ca = HubCa::generate().unwrap();
        let agent = AgentId::new("pi-01").unwrap();
        let error = ca.issue_agent(&agent, b"not a csr", AGENT_CERT_LIFETIME).unwrap_err();
        assert!(error.to_string().starts_with("bad certificate signing request"), "{error}");
    }

    #[test]
    fn an_agent_certificate_names_the_agent_whatever_the_csr_asked_for() {
        let ca = HubCa::generate().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "admin");
        let csr = params.serialize_request(&key).unwrap();
        let agent = AgentId::new("pi-01").unwrap();
        let issued = ca.issue_agent(&agent, csr.der(), AGENT_CERT_LIFETIME).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.chain_der[0]).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, "pi-01");
        assert_eq!(issued.chain_der[1], ca.cert_der().to_vec());
    }

    #[test]
    fn pem_output_round_trips() {
        let ca = HubCa::generate().unwrap();
        let pem = pem_certificate(ca.cert_der());
        use rustls_pki_types::pem::PemObject;
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back, *ca.cert_der());
    }
}
