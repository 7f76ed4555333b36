//! Verifying a Bambu printer's TLS certificate.
//!
//! Bambu printers present X.509 **version 1** certificates (`CN=<serial>`, issued by
//! "BBL CA"), which webpki refuses outright. This verifier parses the certificate itself
//! (x509-parser accepts v1) and trusts it in one of two ways:
//!
//! - [`Trust::Ca`]: the chain must lead to one of the configured CA certificates (checking
//!   each signature and validity period), and the leaf's CN must equal the serial;
//! - [`Trust::FirstUse`]: the leaf's public key is pinned on first contact (a file per
//!   serial) and any later change is refused and reported, since it means another device
//!   answers at the printer's address.
//!
//! Handshake signatures are checked against the leaf's public key with the crypto
//! provider's algorithms, so the TLS session is as authenticated as the certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// How a printer's certificate is trusted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// DER certificates of the CAs that may sign printer certificates.
    Ca(Vec<Vec<u8>>),
    /// Pin the leaf key on first contact, in this file.
    FirstUse { pin_file: PathBuf },
}

impl Trust {
    /// Trusts the CA certificates in the PEM file at `path` (the agent's `ca = ...` setting,
    /// `kitt-agent watch --ca`).
    pub fn ca_file(path: &Path) -> Result<Trust, CaFileError> {
        use rustls_pki_types::pem::PemObject;
        let read = |source| CaFileError::Read { path: path.to_owned(), source };
        let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
            .map_err(read)?
            .map(|cert| cert.map(|cert| cert.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        if certs.is_empty() {
            return Err(CaFileError::Empty { path: path.to_owned() });
        }
        Ok(Trust::Ca(certs))
    }
}

/// Why a file of CA certificates cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be read, or is not PEM.
    #[error("cannot read the CA file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("{} holds no certificate", path.display())]
    Empty { path: PathBuf },
}

/// Why a printer's certificate was refused. Kept where the driver can read it, since rustls
/// only passes a string on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    #[error("the printer sent no certificate")]
    Missing,
    #[error("cannot parse the printer's certificate: {0}")]
    Unparsable(String),
    #[error("the certificate names {found:?}, not the printer's serial {expected:?}")]
    WrongSerial { expected: String, found: String },
    #[error("the certificate is not signed by a configured CA ({0})")]
    Untrusted(String),
    #[error("the certificate is outside its validity period")]
    Expired,
    #[error(
        "the printer's certificate CHANGED since it was first seen (pinned key {pinned}, now \
         {found}); another device may be answering at this address. If the printer was replaced \
         or reset, delete {pin_file} to trust the new key"
    )]
    PinMismatch { pinned: String, found: String, pin_file: String },
    #[error("cannot read or write the pin file {path}: {error}")]
    PinFile { path: String, error: String },
}

#[derive(Debug)]
pub struct PrinterCertVerifier {
    serial: String,
    trust: Trust,
    algorithms: WebPkiSupportedAlgorithms,
    problem: Arc<Mutex<Option<CertificateProblem>>>,
}

impl PrinterCertVerifier {
    pub fn new(
        serial: &str,
        trust: Trust,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> PrinterCertVerifier {
        PrinterCertVerifier {
            serial: serial.to_owned(),
            trust,
            algorithms,
            problem: Arc::default(),
        }
    }

    /// Where the last refusal's reason is kept.
    pub fn problem_slot(&self) -> Arc<Mutex<Option<CertificateProblem>>> {
        self.problem.clone()
    }

    fn check(
        &self,
        end_entity: &[u8],
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), CertificateProblem> {
        let (_, leaf) = X509Certificate::from_der(end_entity)
            .map_err(|e| CertificateProblem::Unparsable(e.to_string()))?;
        match &self.trust {
            Trust::Ca(roots) => {
                let cn = leaf
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .unwrap_or("");
                if cn != self.serial {
                    return Err(CertificateProblem::WrongSerial {
                        expected: self.serial.clone(),
                        found: cn.to_owned(),
                    });
                }
                verify_chain(&leaf, intermediates, roots, now)
            }
            Trust::FirstUse { pin_file } => {
                let found = hex_fingerprint(leaf.public_key().raw);
                check_pin(pin_file, &found)
            }
        }
    }

    fn spki(
        &self,
        cert: &CertificateDer<'_>,
    ) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
        let (_, leaf) = X509Certificate::from_der(cert.as_ref())
            .map_err(|e| rustls::Error::General(format!("cannot parse certificate: {e}")))?;
        Ok(SubjectPublicKeyInfoDer::from(leaf.public_key().raw.to_vec()))
    }
}

fn verify_chain(
    leaf: &X509Certificate<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[Vec<u8>],
    now: UnixTime,
) -> Result<(), CertificateProblem> {
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let mut current = leaf.clone();
    // Leaf, at most two intermediates, then a root.
    for _ in 0..4 {
        let validity = current.validity();
        if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
            return Err(CertificateProblem::Expired);
        }
        for root_der in roots {
            let Ok((_, root)) = X509Certificate::from_der(root_der) else { continue };
            if root.subject() == current.issuer()
                && current.verify_signature(Some(root.public_key())).is_ok()
            {
                return Ok(());
            }
        }
        let next = intermediates.iter().find_map(|der| {
            let (_, candidate) = X509Certificate::from_der(der.as_ref()).ok()?;
            (candidate.subject() == current.issuer()
                && current.verify_signature(Some(candidate.public_key())).is_ok())
            .then_some(candidate)
        });
        match next {
            Some(next) => current = next,
            None => break,
        }
    }
    Err(CertificateProblem::Untrusted(format!("issuer {}", current.issuer())))
}

fn hex_fingerprint(spki: &[u8]) -> String {
    Sha256::digest(spki).iter().map(|b| format!("{b:02x}")).collect()
}

fn check_pin(pin_file: &std::path::Path, found: &str) -> Result<(), CertificateProblem> {
    let shown = pin_file.display().to_string();
    let pin_error = |error: std::io::Error| CertificateProblem::PinFile {
        path: shown.clone(),
        error: error.to_string(),
    };
    match std::fs::read_to_string(pin_file) {
        Ok(pinned) if pinned.trim() == found => Ok(()),
        Ok(pinned) => Err(CertificateProblem::PinMismatch {
            pinned: pinned.trim().to_owned(),
            found: found.to_owned(),
            pin_file: shown,
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = pin_file.parent() {
                std::fs::create_dir_all(dir).map_err(pin_error)?;
            }
            // Write then rename, so a crash never leaves a half-written pin.
            let temporary = pin_file.with_extension("tmp");
            std::fs::write(&temporary, format!("{found}\n")).map_err(pin_error)?;
            std::fs::rename(&temporary, pin_file).map_err(pin_error)?;
            tracing::info!(pin_file = %shown, fingerprint = found, "Pinned the printer's certificate key on first use.");
            Ok(())
        }
        Err(error) => Err(pin_error(error)),
    }
}

impl ServerCertVerifier for PrinterCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity.as_ref(), intermediates, now) {
            Ok(()) => {
                *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(ServerCertVerified::assertion())
            }
            Err(problem) => {
                let message = problem.to_string();
                *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(problem);
                Err(rustls::Error::General(message))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = self.spki(cert)?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|e| rustls::Error::General(format!("unusable public key: {e}")))?;
        let candidates = self.algorithms.mapping.iter().find(|(scheme, _)| *scheme == dss.scheme);
        let Some((_, candidates)) = candidates else {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        };
        for algorithm in candidates.iter() {
            if key.verify_signature(*algorithm, message, dss.signature()).is_ok() {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = self.spki(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
