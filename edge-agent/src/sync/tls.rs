//! TLS for the hub link: the agent trusts only the hub's own CA.
//!
//! For sync, the hub CA saved at enrollment is the one trust anchor, and the agent presents
//! its client certificate. For enrollment the agent has no CA yet: the token carries the
//! first half of the CA certificate's SHA-256, and [`TokenPinnedVerifier`] accepts the hub
//! only if the chain it presents contains that CA and the server certificate verifies
//! against it. Anything else is a wrong hub, refused before the token is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::net::{ALPN_ENROLL, ALPN_SYNC};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Keep-alive and idle timeout of the hub connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub keep_alive: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { keep_alive: Duration::from_secs(15), idle: Duration::from_secs(60) }
    }
}

fn quic_config(
    crypto: rustls::ClientConfig,
    timeouts: Timeouts,
) -> Result<quinn::ClientConfig, String> {
    let quic = QuicClientConfig::try_from(crypto).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(timeouts.keep_alive))
        .max_idle_timeout(Some(timeouts.idle.try_into().map_err(|e| format!("{e}"))?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The client configuration for sync: trust the hub CA, present the agent's certificate.
pub fn sync_config(
    hub_ca_der: &[u8],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    timeouts: Timeouts,
) -> Result<quinn::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(hub_ca_der.to_vec())).map_err(|e| e.to_string())?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    crypto.alpn_protocols = vec![ALPN_SYNC.to_vec()];
    quic_config(crypto, timeouts)
}

/// The client configuration for enrollment, pinned to the CA fingerprint in the token.
/// The verifier's refusal, if any, lands in `refusal` for a clear message.
pub fn enroll_config(
    ca_fingerprint_prefix: [u8; 16],
    refusal: Arc<Mutex<Option<String>>>,
) -> Result<quinn::ClientConfig, String> {
    let provider = provider();
    let verifier = Arc::new(TokenPinnedVerifier {
        ca_fingerprint_prefix,
        refusal,
        provider: provider.clone(),
    });
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    quic_config(crypto, Timeouts::default())
}

/// Accepts a server whose chain includes the CA named by the token, and whose certificate
/// that CA signed for [`HUB_SERVER_NAME`](proto::net::HUB_SERVER_NAME).
#[derive(Debug)]
pub struct TokenPinnedVerifier {
    ca_fingerprint_prefix: [u8; 16],
    refusal: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl TokenPinnedVerifier {
    fn refuse(&self, detail: String) -> rustls::Error {
        if let Ok(mut refusal) = self.refusal.lock() {
            *refusal = Some(detail.clone());
        }
        rustls::Error::General(detail)
    }
}

impl ServerCertVerifier for TokenPinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| Sha256::digest(cert.as_ref())[..16] == self.ca_fingerprint_prefix);
        let Some(ca) = ca else {
            return Err(self.refuse(
                "this is not the hub the token was made for (its CA does not match the token); check --hub".into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| self.refuse(format!("the hub CA is unusable: {e}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| self.refuse(format!("the hub CA is unusable: {e}")))?;
        verifier
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
            .map_err(|e| self.refuse(format!("the hub's certificate does not verify: {e}")))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
