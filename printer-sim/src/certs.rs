//! Certificates shaped like the ones Bambu printers present.
//!
//! A printer presents a two-certificate chain: a leaf with subject `CN=<serial>`, issued by
//! `CN=BBL CA, O=BBL Technologies Co., Ltd, C=CN`, **X.509 version 1** (no extensions), valid
//! for 10 years. rustls/webpki refuse v1 certificates, which is exactly what a client of a
//! real printer must cope with, so the simulator reproduces it.
//!
//! Differences from the real thing: keys are ECDSA P-256 with SHA-256 signatures (ring cannot
//! generate RSA keys; real printers use RSA-2048), and the CA is a v3 self-signed certificate
//! (basicConstraints CA, keyUsage keyCertSign/cRLSign) generated per simulator unless the
//! caller passes one in. Validity starts one day in the past.
//!
//! The TBSCertificate is encoded with `der`/`x509-cert` types. x509-cert 0.3 keeps the fields
//! of its own `TbsCertificate` private (only its builder fills them, and the builder wants a
//! RustCrypto signer), so this module declares the same ASN.1 structure itself; the result is
//! decoded back with `x509_cert::Certificate` in the tests.

use std::time::{Duration, SystemTime};

use der::asn1::{Any, BitString, ObjectIdentifier, OctetString};
use der::pem::LineEnding;
use der::{Decode, Encode, Sequence};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_cert::Version;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, Extensions};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

/// Organisation of the Bambu printer CA.
pub const BBL_ORGANIZATION: &str = "BBL Technologies Co., Ltd";
/// Common name of the Bambu printer CA.
pub const BBL_CA_COMMON_NAME: &str = "BBL CA";

/// How long certificates stay valid (10 years, like a printer's).
const VALIDITY: Duration = Duration::from_secs(3652 * 24 * 3600);
/// How far in the past validity starts, to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// A printer CA: a self-signed certificate and its private key.
pub struct PrinterCa {
    cert_der: CertificateDer<'static>,
    key_pkcs8: PrivatePkcs8KeyDer<'static>,
    subject: Name,
}

impl PrinterCa {
    /// Generates a CA named `CN=<common_name>, O=BBL Technologies Co., Ltd, C=CN`.
    pub fn generate(common_name: &str) -> Result<PrinterCa, CertError> {
        let key = KeyPairDoc::generate()?;
        let subject = name(&format!(
            "CN={},O={},C=CN",
            escape_rdn(common_name),
            escape_rdn(BBL_ORGANIZATION)
        ))?;
        let extensions = vec![
            Extension {
                extn_id: ID_CE_BASIC_CONSTRAINTS,
                critical: true,
                extn_value: OctetString::new(
                    BasicConstraints { ca: true, path_len_constraint: None }.to_der()?,
                )?,
            },
            Extension {
                extn_id: ID_CE_KEY_USAGE,
                critical: true,
                extn_value: OctetString::new(
                    KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign).to_der()?,
                )?,
            },
        ];
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: random_serial()?,
            signature: signature_algorithm(),
            issuer: subject.clone(),
            validity: validity()?,
            subject: subject.clone(),
            subject_public_key_info: key.spki()?,
            extensions: Some(extensions),
        };
        let cert_der = sign(tbs, &key)?;
        Ok(PrinterCa { cert_der, key_pkcs8: key.pkcs8, subject })
    }

    /// Generates a CA named like Bambu's: `CN=BBL CA`.
    pub fn bbl() -> Result<PrinterCa, CertError> {
        PrinterCa::generate(BBL_CA_COMMON_NAME)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The CA certificate, PEM (what a user passes to a client as its trusted CA).
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// The CA's private key, PKCS#8 DER (to restore the same CA later).
    pub fn key_der(&self) -> PrivatePkcs8KeyDer<'static> {
        self.key_pkcs8.clone_key()
    }

    /// Issues a version-1 leaf certificate `CN=<serial>` with a new key pair.
    pub fn issue_leaf(&self, serial: &str) -> Result<LeafCert, CertError> {
        let ca_key = KeyPairDoc::from_pkcs8(self.key_pkcs8.clone_key())?;
        let leaf_key = KeyPairDoc::generate()?;
        let tbs = TbsCertificate {
            version: Version::V1,
            serial_number: random_serial()?,
            signature: signature_algorithm(),
            issuer: self.subject.clone(),
            validity: validity()?,
            subject: name(&format!("CN={}", escape_rdn(serial)))?,
            subject_public_key_info: leaf_key.spki()?,
            extensions: None,
        };
        let leaf_der = sign(tbs, &ca_key)?;
        Ok(LeafCert { chain_der: vec![leaf_der, self.cert_der()], key_der: leaf_key.pkcs8 })
    }
}

impl Clone for PrinterCa {
    fn clone(&self) -> Self {
        PrinterCa {
            cert_der: self.cert_der.clone(),
            key_pkcs8: self.key_pkcs8.clone_key(),
            subject: self.subject.clone(),
        }
    }
}

impl std::fmt::Debug for PrinterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrinterCa").field("subject", &self.subject.to_string()).finish()
    }
}

/// A printer's certificate chain (leaf, then CA) and the leaf's private key.
pub struct LeafCert {
    /// The chain the printer presents: the v1 leaf first, then the CA.
    pub chain_der: Vec<CertificateDer<'static>>,
    /// The leaf's private key, PKCS#8 DER.
    pub key_der: PrivatePkcs8KeyDer<'static>,
}

impl LeafCert {
    /// The leaf certificate alone, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        // The chain is built with the leaf first and is never empty.
        &self.chain_der[0]
    }

    /// The leaf certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", self.cert_der())
    }

    /// Leaf then CA, PEM: a server certificate file for mosquitto or OpenSSL.
    pub fn chain_pem(&self) -> String {
        self.chain_der.iter().map(|cert| pem("CERTIFICATE", cert)).collect()
    }

    /// The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`), which OpenSSL loads.
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", self.key_der.secret_pkcs8_der())
    }

    /// The private key in the form rustls takes.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

impl Clone for LeafCert {
    fn clone(&self) -> Self {
        LeafCert { chain_der: self.chain_der.clone(), key_der: self.key_der.clone_key() }
    }
}

impl std::fmt::Debug for LeafCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCert").field("chain_len", &self.chain_der.len()).finish()
    }
}

/// Generating or encoding a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// ring could not generate, load or use a key.
    #[error("key operation failed")]
    Crypto,
    /// A certificate structure could not be encoded.
    #[error("certificate encoding failed")]
    Der(#[from] der::Error),
}

impl From<ring::error::Unspecified> for CertError {
    fn from(_: ring::error::Unspecified) -> Self {
        CertError::Crypto
    }
}

impl From<ring::error::KeyRejected> for CertError {
    fn from(_: ring::error::KeyRejected) -> Self {
        CertError::Crypto
    }
}

/// RFC 5280 `TBSCertificate`; `version` DEFAULT v1 is omitted from the encoding when V1.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TbsCertificate {
    #[asn1(context_specific = "0", default = "Default::default")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Extensions>,
}

/// RFC 5280 `Certificate`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct Certificate {
    tbs_certificate: TbsCertificate,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// An ECDSA P-256 key pair kept as its PKCS#8 document.
struct KeyPairDoc {
    pkcs8: PrivatePkcs8KeyDer<'static>,
    key_pair: EcdsaKeyPair,
}

impl KeyPairDoc {
    fn generate() -> Result<KeyPairDoc, CertError> {
        let rng = SystemRandom::new();
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)?;
        KeyPairDoc::from_pkcs8(PrivatePkcs8KeyDer::from(document.as_ref().to_vec()))
    }

    fn from_pkcs8(pkcs8: PrivatePkcs8KeyDer<'static>) -> Result<KeyPairDoc, CertError> {
        let rng = SystemRandom::new();
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        )?;
        Ok(KeyPairDoc { pkcs8, key_pair })
    }

    fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, CertError> {
        Ok(SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ID_EC_PUBLIC_KEY,
                parameters: Some(Any::encode_from(&SECP256R1)?),
            },
            subject_public_key: BitString::from_bytes(self.key_pair.public_key().as_ref())?,
        })
    }
}

fn sign(tbs: TbsCertificate, key: &KeyPairDoc) -> Result<CertificateDer<'static>, CertError> {
    let signature = key.key_pair.sign(&SystemRandom::new(), &tbs.to_der()?)?;
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signature_algorithm(),
        signature: BitString::from_bytes(signature.as_ref())?,
    };
    let der = certificate.to_der()?;
    // Decode once with the real x509-cert type: what we emit must be a valid certificate.
    x509_cert::Certificate::from_der(&der)?;
    Ok(CertificateDer::from(der))
}

fn signature_algorithm() -> AlgorithmIdentifierOwned {
    // RFC 5758: the parameters of ecdsa-with-SHA256 MUST be absent.
    AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None }
}

fn validity() -> Result<Validity, CertError> {
    let now = SystemTime::now();
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    let not_after = now + VALIDITY;
    Ok(Validity::new(Time::try_from(not_before)?, Time::try_from(not_after)?))
}

/// A random positive 16-byte serial number.
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes)?;
    // Positive, and no leading zero byte to strip.
    bytes[0] = (bytes[0] & 0x7F) | 0x40;
    Ok(SerialNumber::new(&bytes)?)
}

fn name(rfc4514: &str) -> Result<Name, CertError> {
    Ok(rfc4514.parse()?)
}

/// Escapes the characters RFC 4514 reserves in an attribute value.
fn escape_rdn(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn pem(label: &str, der: &[u8]) -> String {
    // Encoding into a String cannot fail for a valid label; fall back to empty otherwise.
    der::pem::encode_string(label, LineEnding::LF, der).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

    #[test]
    fn leaf_is_version_1_with_the_serial_as_cn_and_verifies_against_the_ca() {
        let ca = PrinterCa::bbl().unwrap();
        let leaf = ca.issue_leaf("01P00A123456789").unwrap();

        let (rest, parsed) = X509Certificate::from_der(leaf.cert_der()).unwrap();
        assert!(rest.is_empty());
        assert_eq!(parsed.version(), X509Version::V1);
        assert!(parsed.extensions().is_empty());
        let cn = parsed.subject().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, "01P00A123456789");
        let issuer_cn = parsed.issuer().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(issuer_cn, "BBL CA");
        let issuer_o = parsed.issuer().iter_organization().next().unwrap().as_str().unwrap();
        assert_eq!(issuer_o, "BBL Technologies Co., Ltd");

        let ca_der = ca.cert_der();
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        assert_eq!(ca_cert.version(), X509Version::V3);
        parsed.verify_signature(Some(ca_cert.public_key())).unwrap();
        ca_cert.verify_signature(None).unwrap();

        let now = x509_parser::time::ASN1Time::now();
        assert!(parsed.validity().is_valid_at(now));
        let years = (parsed.validity().not_after.timestamp()
            - parsed.validity().not_before.timestamp())
            / (365 * 24 * 3600);
        assert_eq!(years, 10);
    }

    #[test]
    fn leaf_decodes_with_x509_cert_as_v1() {
        let leaf = PrinterCa::bbl().unwrap().issue_leaf("SERIAL1").unwrap();
        let decoded = x509_cert::Certificate::from_der(leaf.cert_der()).unwrap();
        assert_eq!(decoded.tbs_certificate().version(), Version::V1);
        assert!(decoded.tbs_certificate().extensions().is_none());
    }

    #[test]
    fn each_leaf_has_a_new_key() {
        let ca = PrinterCa::bbl().unwrap();
        let first = ca.issue_leaf("S1").unwrap();
        let second = ca.issue_leaf("S1").unwrap();
        let spki = |der: &CertificateDer<'_>| {
            let (_, cert) = X509Certificate::from_der(der).unwrap();
            cert.public_key().raw.to_vec()
        };
        assert_ne!(spki(first.cert_der()), spki(second.cert_der()));
    }

    #[test]
    fn pem_outputs_have_the_labels_openssl_expects() {
        let ca = PrinterCa::bbl().unwrap();
        let leaf = ca.issue_leaf("S1").unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(leaf.key_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(leaf.chain_pem().matches("BEGIN CERTIFICATE").count(), 2);
    }
}
