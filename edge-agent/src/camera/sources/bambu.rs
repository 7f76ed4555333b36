//! The A1/P1 camera: JPEG frames over TLS on port 6000.
//!
//! Wire format (OpenBambuAPI `video.md`; `docs/printer-protocols.md` §3.13), all integers
//! little-endian u32:
//!
//! ```text
//! client → printer, once after the TLS handshake (80 bytes):
//!   0x40 | 0x3000 | 0 | 0 | "bblp" NUL-padded to 32 | access code NUL-padded to 32
//! printer → client, per frame:
//!   payload_size | itrack (0) | flags (1) | 0 | payload_size bytes of JPEG (FF D8 … FF D9)
//! ```
//!
//! The printer presents the same kind of X.509 v1 certificate as on its MQTT port, checked by
//! [`PrinterCertVerifier`] with the configured [`Trust`]. A wrong access code shows as the
//! printer closing the connection right after the login, before any frame: that becomes
//! [`CameraError::AuthRejected`]. The header's size is checked against
//! [`MAX_FRAME_BYTES`] before anything is allocated for the payload.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use proto::{PrinterId, UnixMillis};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::camera::jpeg::{self, hex_prefix};
use crate::camera::{BoxFuture, CameraError, CameraSource, Frame, FrameStream, MAX_FRAME_BYTES};
use crate::printer::bambu::link::AccessCode;
use crate::printer::bambu::tls::{PrinterCertVerifier, Trust};

/// The camera port of A1 and P1 printers.
pub const DEFAULT_PORT: u16 = 6000;
/// The longest wait for one whole frame; the printer sends one every 1–2 s.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for TCP and the TLS handshake, each.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const HEADER_LEN: usize = 16;
const USERNAME: &str = "bblp";

/// A Bambu port-6000 camera.
#[derive(Debug, Clone)]
pub struct BambuSource {
    host: String,
    port: u16,
    serial: PrinterId,
    access_code: AccessCode,
    trust: Trust,
    /// The longest wait for one whole frame (header and payload).
    pub frame_timeout: Duration,
    /// The longest wait for the TCP connection and for the TLS handshake.
    pub connect_timeout: Duration,
}

impl BambuSource {
    pub fn new(
        host: String,
        port: u16,
        serial: PrinterId,
        access_code: AccessCode,
        trust: Trust,
    ) -> BambuSource {
        BambuSource {
            host,
            port,
            serial,
            access_code,
            trust,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    async fn connect(&self) -> Result<BambuStream, CameraError> {
        let target = format!("{}:{}", self.host, self.port);
        let connect_error =
            |detail: String| CameraError::Connect { target: target.clone(), detail };
        let tls_error = |detail: String| CameraError::Tls { target: target.clone(), detail };
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| connect_error(format!("no answer within {:?}", self.connect_timeout)))?
        .map_err(|error| connect_error(error.to_string()))?;
        let _ = tcp.set_nodelay(true);

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PrinterCertVerifier::new(
            self.serial.as_str(),
            self.trust.clone(),
            provider.signature_verification_algorithms,
        ));
        let certificate_problem = verifier.problem_slot();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| tls_error(format!("TLS set-up failed: {error}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // Like the MQTT link: the host (an IP address sends no SNI); the verifier checks the
        // certificate against the serial, not against this name.
        let server_name = ServerName::try_from(self.host.clone())
            .or_else(|_| ServerName::try_from(self.serial.as_str().to_owned()))
            .map_err(|error| tls_error(format!("unusable host name: {error}")))?;
        let handshake = TlsConnector::from(Arc::new(config)).connect(server_name, tcp);
        let mut tls = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Err(_) => {
                return Err(tls_error(format!(
                    "no TLS handshake within {:?}",
                    self.connect_timeout
                )));
            }
            Ok(Err(error)) => {
                let problem = certificate_problem.lock().unwrap_or_else(|e| e.into_inner()).take();
                return Err(tls_error(
                    problem.map_or_else(|| error.to_string(), |p| p.to_string()),
                ));
            }
            Ok(Ok(tls)) => tls,
        };
        let login = login_packet(&self.access_code);
        let sent = async {
            tls.write_all(&login).await?;
            tls.flush().await
        };
        tokio::time::timeout(self.connect_timeout, sent)
            .await
            .map_err(|_| connect_error("the login was not accepted in time".into()))?
            .map_err(|error| connect_error(format!("sending the login failed: {error}")))?;
        Ok(BambuStream {
            target,
            tls,
            buffer: BytesMut::with_capacity(64 * 1024),
            frame_timeout: self.frame_timeout,
            frames: 0,
        })
    }
}

impl CameraSource for BambuSource {
    fn describe(&self) -> String {
        format!("Bambu camera {}:{} ({})", self.host, self.port, self.serial.as_str())
    }

    fn continuous(&self) -> bool {
        true
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn FrameStream>, CameraError>> {
        Box::pin(async move {
            let stream = self.connect().await?;
            super::primed(Box::new(stream)).await
        })
    }
}

/// The 80-byte login: header (size 0x40, type 0x3000, two zero words), user, access code.
fn login_packet(access_code: &AccessCode) -> [u8; 80] {
    let mut packet = [0u8; 80];
    packet[0..4].copy_from_slice(&0x40u32.to_le_bytes());
    packet[4..8].copy_from_slice(&0x3000u32.to_le_bytes());
    packet[16..16 + USERNAME.len()].copy_from_slice(USERNAME.as_bytes());
    // AccessCode guarantees at most 32 ASCII characters.
    let code = access_code.expose().as_bytes();
    let code = &code[..code.len().min(32)];
    packet[48..48 + code.len()].copy_from_slice(code);
    packet
}

struct BambuStream {
    target: String,
    tls: TlsStream<TcpStream>,
    /// Bytes read but not yet returned as a frame (so `next_frame` is cancel-safe).
    buffer: BytesMut,
    frame_timeout: Duration,
    frames: u64,
}

impl std::fmt::Debug for BambuStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BambuStream")
            .field("target", &self.target)
            .field("buffered", &self.buffer.len())
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl FrameStream for BambuStream {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>> {
        Box::pin(async move { crate::camera::within(self.frame_timeout, self.read_frame()).await })
    }
}

impl BambuStream {
    async fn read_frame(&mut self) -> Result<Frame, CameraError> {
        loop {
            if let Some(payload_len) = self.payload_len()? {
                if self.buffer.len() >= HEADER_LEN + payload_len {
                    self.buffer.advance(HEADER_LEN);
                    let jpeg = self.buffer.split_to(payload_len).freeze();
                    self.frames += 1;
                    let (width, height) = jpeg::inspect(&jpeg).map_err(|error| match error {
                        CameraError::Protocol { detail } => CameraError::Protocol {
                            detail: format!("frame {} is not a JPEG ({detail})", self.frames),
                        },
                        other => other,
                    })?;
                    return Ok(Frame { captured_at: UnixMillis::now(), jpeg, width, height });
                }
                self.buffer.reserve(HEADER_LEN + payload_len - self.buffer.len());
            }
            let read = match self.tls.read_buf(&mut self.buffer).await {
                Ok(read) => read,
                // Printers close the socket without a TLS close_notify.
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(error) => {
                    return Err(CameraError::Connect {
                        target: self.target.clone(),
                        detail: format!("reading failed: {error}"),
                    });
                }
            };
            if read == 0 {
                return Err(self.ended());
            }
        }
    }

    /// The payload size of the buffered header, checked, once the whole header is there.
    fn payload_len(&self) -> Result<Option<usize>, CameraError> {
        let Some(header) = self.buffer.get(..HEADER_LEN) else { return Ok(None) };
        let claimed = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let payload_len = usize::try_from(claimed).unwrap_or(usize::MAX);
        if payload_len > MAX_FRAME_BYTES {
            return Err(CameraError::FrameTooLarge {
                claimed: u64::from(claimed),
                max: MAX_FRAME_BYTES as u64,
            });
        }
        if payload_len == 0 {
            return Err(CameraError::Protocol {
                detail: format!("a frame header announcing no payload ({})", hex_prefix(header)),
            });
        }
        Ok(Some(payload_len))
    }

    fn ended(&self) -> CameraError {
        if !self.buffer.is_empty() {
            return CameraError::Protocol {
                detail: format!(
                    "the stream ended inside a frame ({} bytes of it received)",
                    self.buffer.len()
                ),
            };
        }
        if self.frames == 0 {
            return CameraError::AuthRejected {
                detail: "the printer closed the camera connection right after the login".into(),
            };
        }
        CameraError::Ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_packet_matches_the_documented_layout() {
        let packet = login_packet(&AccessCode::new("12345678").unwrap());
        let expected_head = [0x40, 0, 0, 0, 0x00, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(packet[..16], expected_head);
        assert_eq!(&packet[16..20], b"bblp");
        assert!(packet[20..48].iter().all(|&b| b == 0));
        assert_eq!(&packet[48..56], b"12345678");
        assert!(packet[56..].iter().all(|&b| b == 0));
    }
}
