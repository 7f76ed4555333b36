//! A TLS + MQTT test client for the simulator, written against the protocol (not the sim's
//! internals): a rustls verifier that accepts the printer's v1 certificate the way a careful
//! client must, and a raw MQTT 3.1.1 client on rumqttc's v4 codec.
#![allow(clippy::unwrap_used, reason = "test support: a panic here is a test failure")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use printer_sim::{AccessCode, Model, PrinterSerial, SimConfig, SimHandle};
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Login, Packet, Publish, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature_with_raw_key};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Upper bound for anything a test waits for; generous, never reached when things work.
pub const WAIT: Duration = Duration::from_secs(10);

/// A simulator configuration with 10 ms layers and reports.
pub fn fast_config(model: Model) -> SimConfig {
    let serial: PrinterSerial = format!("SIM{}", model.code().replace('-', "")).parse().unwrap();
    let access_code: AccessCode = "12345678".parse().unwrap();
    SimConfig::new(serial, access_code, model)
        .with_intervals(Duration::from_millis(10), Duration::from_millis(10))
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trusts a printer whose leaf is signed by `ca_der` and has `CN == serial`, v1 or not; checks
/// handshake signatures with the leaf's raw public key (webpki would refuse the v1 leaf).
#[derive(Debug)]
pub struct PrinterVerifier {
    ca_der: CertificateDer<'static>,
    serial: String,
    provider: Arc<CryptoProvider>,
    /// Every leaf this verifier accepted, in order.
    pub seen_leaves: Mutex<Vec<CertificateDer<'static>>>,
}

impl PrinterVerifier {
    pub fn new(handle: &SimHandle) -> Arc<PrinterVerifier> {
        PrinterVerifier::for_printer(handle.ca_der(), handle.serial().as_str())
    }

    /// Trusts the printer `serial` whose certificate `ca_der` issued.
    pub fn for_printer(ca_der: CertificateDer<'static>, serial: &str) -> Arc<PrinterVerifier> {
        Arc::new(PrinterVerifier {
            ca_der,
            serial: serial.to_owned(),
            provider: provider(),
            seen_leaves: Mutex::new(Vec::new()),
        })
    }

    fn verify_handshake(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let (_, leaf) = X509Certificate::from_der(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = SubjectPublicKeyInfoDer::from(leaf.public_key().raw);
        verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for PrinterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad = |error| rustls::Error::InvalidCertificate(error);
        let (_, leaf) = X509Certificate::from_der(end_entity)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        let (_, ca) = X509Certificate::from_der(&self.ca_der)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        leaf.verify_signature(Some(ca.public_key()))
            .map_err(|_| bad(CertificateError::BadSignature))?;
        if !leaf.validity().is_valid() {
            return Err(bad(CertificateError::Expired));
        }
        let cn = leaf.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
        if cn != Some(self.serial.as_str()) {
            return Err(bad(CertificateError::NotValidForName));
        }
        self.seen_leaves.lock().unwrap().push(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_handshake(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_handshake(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config trusting the simulator through [`PrinterVerifier`].
pub fn client_config(
    verifier: Arc<PrinterVerifier>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// Opens a TLS connection to the simulator.
pub async fn tls_connect(
    handle: &SimHandle,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_connect_to(handle.addr(), handle.serial().as_str(), config).await
}

/// Opens a TLS connection to `addr`, naming the printer `serial` in the SNI.
pub async fn tls_connect_to(
    addr: SocketAddr,
    serial: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(serial.to_owned()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// A raw MQTT 3.1.1 client.
pub struct MqttClient {
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    next_pkid: u16,
}

impl MqttClient {
    /// Connects with TLS 1.3 or 1.2 and `bblp` / the access code; panics unless accepted.
    pub async fn connect(handle: &SimHandle) -> MqttClient {
        let password = handle.access_code().as_str().to_owned();
        match MqttClient::connect_with(handle, "bblp", &password, rustls::ALL_VERSIONS).await {
            Ok(client) => client,
            Err(code) => panic!("CONNECT refused: {code:?}"),
        }
    }

    /// Connects with the given credentials and TLS versions; the CONNACK code on refusal.
    pub async fn connect_with(
        handle: &SimHandle,
        username: &str,
        password: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<MqttClient, ConnectReturnCode> {
        let config = client_config(PrinterVerifier::new(handle), versions);
        let stream = tls_connect(handle, config).await.expect("TLS handshake");
        let mut client = MqttClient { stream, buffer: BytesMut::new(), next_pkid: 1 };
        let mut connect = Connect::new(format!("test-{}", rand_suffix()));
        connect.keep_alive = 30;
        connect.login = Some(Login::new(username, password));
        client.send(Packet::Connect(connect)).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => Ok(client),
            Some(Packet::ConnAck(ack)) => Err(ack.code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut bytes = BytesMut::new();
        packet.write(&mut bytes, 1 << 20).unwrap();
        self.send_raw(&bytes).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next packet, `None` when the server closed the connection; panics after [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, self.read_packet()).await.expect("no packet in time")
    }

    async fn read_packet(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buffer, 1 << 22) {
                Ok(packet) => return Some(packet),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(error) => panic!("bad packet from the simulator: {error}"),
            }
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Subscribes to one filter; returns the SUBACK code.
    pub async fn subscribe(&mut self, filter: &str) -> Option<SubscribeReasonCode> {
        let mut subscribe = Subscribe::new(filter, QoS::AtMostOnce);
        subscribe.pkid = self.pkid();
        self.send(Packet::Subscribe(subscribe)).await;
        loop {
            match self.recv().await? {
                Packet::SubAck(ack) => return ack.return_codes.first().copied(),
                Packet::Publish(_) => {}
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// Subscribes to the printer's report topic.
    pub async fn subscribe_reports(&mut self, handle: &SimHandle) {
        let code = self.subscribe(&handle.report_topic()).await;
        assert_eq!(code, Some(SubscribeReasonCode::Success(QoS::AtMostOnce)));
    }

    /// Publishes a request; for QoS 1, waits for the PUBACK (skipping reports).
    pub async fn request(&mut self, handle: &SimHandle, request: &Value, qos: QoS) {
        let mut publish =
            Publish::new(handle.request_topic(), qos, serde_json::to_vec(request).unwrap());
        if qos != QoS::AtMostOnce {
            publish.pkid = self.pkid();
        }
        let pkid = publish.pkid;
        self.send(Packet::Publish(publish)).await;
        if qos == QoS::AtLeastOnce {
            loop {
                match self.recv().await {
                    Some(Packet::PubAck(ack)) if ack.pkid == pkid => return,
                    Some(Packet::Publish(_)) => {}
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            }
        }
    }

    /// The next message on any subscribed topic, parsed as JSON.
    pub async fn next_message(&mut self) -> Value {
        loop {
            match self.recv().await {
                Some(Packet::Publish(publish)) => {
                    return serde_json::from_slice(&publish.payload).expect("JSON payload");
                }
                Some(_) => {}
                None => panic!("connection closed while waiting for a message"),
            }
        }
    }

    /// Waits for a message for which `matches` holds, and returns it.
    pub async fn wait_message(&mut self, mut matches: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let message = self.next_message().await;
            if matches(&message) {
                return message;
            }
        }
    }

    fn pkid(&mut self) -> u16 {
        let pkid = self.next_pkid;
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        pkid
    }
}

/// Shallow-merges a report into a running view of the printer's `print` object.
pub fn merge(state: &mut serde_json::Map<String, Value>, report: &Value) {
    if let Some(Value::Object(print)) = report.get("print")
        && print.get("command") == Some(&Value::from("push_status"))
    {
        for (key, value) in print {
            state.insert(key.clone(), value.clone());
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
