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
    sync_config_since(hub_ca_der, chain, key, timeouts, None)
}

/// [`sync_config`], knowing that the hub's clock has read `hub_seen` (the latest
/// `Welcome.hub_time` this agent saw): a certificate is never judged as of an earlier time,
/// however far behind this machine's clock is (see [`verify_behind_in_time`]).
pub fn sync_config_since(
    hub_ca_der: &[u8],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    timeouts: Timeouts,
    hub_seen: Option<UnixTime>,
) -> Result<quinn::ClientConfig, String> {
    let provider = provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(hub_ca_der.to_vec())).map_err(|e| e.to_string())?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(BehindInTime { inner: verifier, hub_seen }))
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
        verify_behind_in_time(&*verifier, end_entity, &[], server_name, ocsp_response, now, None)
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

/// Verifies with `inner`, but accepts a certificate whose validity has not begun by this
/// machine's clock, as if the clock read the certificate's start: a Raspberry Pi has no
/// real-time clock, and one that booted during an outage can be hours or days behind the
/// hub that issued the certificate moments ago (see [`crate::clock`]). Refusing would leave
/// it unable to reach the one peer that tells it the time. Everything else is still checked
/// (the pinned CA, the signatures, the name, the end of validity).
///
/// `hub_seen`, the latest time the hub's clock was seen to read, is a floor: a certificate
/// is judged as of `max(now, hub_seen)`, and the start of its validity stands in for a
/// clock behind only if it is later than that floor. So a machine that woke up in 1970
/// still refuses a hub certificate that had expired when it last heard from the hub.
fn verify_behind_in_time(
    inner: &dyn ServerCertVerifier,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
    hub_seen: Option<UnixTime>,
) -> Result<ServerCertVerified, rustls::Error> {
    use rustls::{CertificateError, Error};
    let floor = hub_seen.map_or(0, |t| t.as_secs());
    let at = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs().max(floor)));
    match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, at) {
        Err(Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => {
            // The latest start in the chain: from then on, all of it is valid.
            let start = std::iter::once(end_entity)
                .chain(intermediates)
                .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
                .map(|(_, cert)| cert.validity().not_before.timestamp())
                .max()
                .and_then(|start| u64::try_from(start).ok())
                .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
            let verified = inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                UnixTime::since_unix_epoch(Duration::from_secs(start)),
            )?;
            let behind_s = start.saturating_sub(now.as_secs());
            tracing::warn!(
                behind_s,
                "This machine's clock is behind the start of the hub's \
                certificate; accepted it on the pinned hub CA. Set up NTP: the times in this \
                agent's records are off too."
            );
            Ok(verified)
        }
        other => other,
    }
}

/// The sync verifier: the pinned hub CA, tolerant of a clock behind the certificate's start.
#[derive(Debug)]
struct BehindInTime {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    hub_seen: Option<UnixTime>,
}

impl ServerCertVerifier for BehindInTime {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_behind_in_time(
            &*self.inner,
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
            self.hub_seen,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd,
    };

    use super::*;

    /// A hub CA, and a server certificate for the hub's name valid in 2030 only.
    fn hub_2030() -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "kitt hub CA test");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.not_before = date_time_ymd(2020, 1, 1);
        ca.not_after = date_time_ymd(2040, 1, 1);
        let ca_der = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::new(ca, ca_key);
        let mut server =
            CertificateParams::new(vec![proto::net::HUB_SERVER_NAME.to_owned()]).unwrap();
        server.not_before = date_time_ymd(2030, 1, 1);
        server.not_after = date_time_ymd(2031, 1, 1);
        let server_der = server.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap();
        (ca_der, server_der.der().clone())
    }

    fn verifier(ca: &CertificateDer<'static>) -> Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap()
    }

    fn at(year: i32, month: u8, day: u8) -> UnixTime {
        let date = date_time_ymd(year, month, day);
        UnixTime::since_unix_epoch(Duration::from_secs(date.unix_timestamp() as u64))
    }

    #[test]
    fn a_clock_behind_the_hubs_certificate_still_reaches_the_hub_and_nothing_else_is_waived() {
        let (ca, server) = hub_2030();
        let name = ServerName::try_from(proto::net::HUB_SERVER_NAME).unwrap();
        let hub = BehindInTime { inner: verifier(&ca), hub_seen: None };
        // A day behind the certificate's start: plain WebPKI refuses, the agent accepts.
        let behind = at(2029, 12, 31);
        let plain = verifier(&ca).verify_server_cert(&server, &[], &name, &[], behind);
        assert!(
            matches!(
                plain,
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidYet
                        | rustls::CertificateError::NotValidYetContext { .. }
                ))
            ),
            "{plain:?}"
        );
        assert!(hub.verify_server_cert(&server, &[], &name, &[], behind).is_ok());
        assert!(hub.verify_server_cert(&server, &[], &name, &[], at(2030, 6, 1)).is_ok());
        // Expired stays refused, as do another name and another CA.
        assert!(hub.verify_server_cert(&server, &[], &name, &[], at(2031, 6, 1)).is_err());
        let other = ServerName::try_from("other.example").unwrap();
        assert!(hub.verify_server_cert(&server, &[], &other, &[], behind).is_err());
        let (other_ca, _) = hub_2030();
        let stranger = BehindInTime { inner: verifier(&other_ca), hub_seen: None };
        assert!(stranger.verify_server_cert(&server, &[], &name, &[], behind).is_err());
    }

    #[test]
    fn a_machine_that_woke_up_in_1970_still_refuses_a_certificate_expired_when_it_last_saw_the_hub()
    {
        let (ca, server) = hub_2030();
        let name = ServerName::try_from(proto::net::HUB_SERVER_NAME).unwrap();
        let epoch = at(1970, 1, 2);
        // Last heard from the hub in mid-2031, after the certificate's end: refused.
        let late = BehindInTime { inner: verifier(&ca), hub_seen: Some(at(2031, 6, 1)) };
        assert!(late.verify_server_cert(&server, &[], &name, &[], epoch).is_err());
        // Last heard in mid-2030, inside its validity: accepted, clock at the epoch or not.
        let inside = BehindInTime { inner: verifier(&ca), hub_seen: Some(at(2030, 6, 1)) };
        assert!(inside.verify_server_cert(&server, &[], &name, &[], epoch).is_ok());
        // Last heard in 2029, before a certificate the hub made since: its start stands in.
        let before = BehindInTime { inner: verifier(&ca), hub_seen: Some(at(2029, 6, 1)) };
        assert!(before.verify_server_cert(&server, &[], &name, &[], epoch).is_ok());
    }
}
