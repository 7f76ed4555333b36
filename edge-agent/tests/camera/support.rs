//! What the camera tests share: test images, decoding, patience, servers' lifetimes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::camera::{CameraError, Frame, FrameStream};
use printer_sim::LeafCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// The failure guard around anything that waits on a server or a child process.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A JPEG of `width` x `height`, its content depending on `seed`.
pub fn test_jpeg(width: u16, height: u16, seed: u8) -> Vec<u8> {
    let pixels: Vec<u8> = (0..usize::from(width) * usize::from(height))
        .flat_map(|i| {
            let shade = u8::try_from(i % 200).unwrap();
            [shade, seed, shade.wrapping_add(seed)]
        })
        .collect();
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 85)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    jpeg
}

/// Decodes `frame` with a real decoder and checks it against the size the source reported.
pub fn decode(frame: &Frame) -> (u16, u16) {
    let mut decoder = jpeg_decoder::Decoder::new(&frame.jpeg[..]);
    let pixels =
        decoder.decode().unwrap_or_else(|error| panic!("{frame:?} does not decode: {error}"));
    let info = decoder.info().unwrap();
    assert_eq!((info.width, info.height), (frame.width, frame.height), "{frame:?}");
    assert!(!pixels.is_empty());
    (info.width, info.height)
}

/// `future`, or a panic naming `what` after [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

/// The next frame, under [`PATIENCE`].
pub async fn next_frame(stream: &mut Box<dyn FrameStream>) -> Result<Frame, CameraError> {
    within("next_frame", stream.next_frame()).await
}

/// The error of `result`, which must have failed.
pub fn error_of<T: std::fmt::Debug>(result: Result<T, CameraError>) -> CameraError {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error,
    }
}

/// A TLS acceptor presenting `leaf` (an X.509 v1 chain, which rustls's own loading refuses,
/// hence the resolver).
pub fn tls_acceptor(leaf: &LeafCert) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = provider.key_provider.load_private_key(leaf.private_key()).unwrap();
    let resolver = Arc::new(Fixed(Arc::new(CertifiedKey::new(leaf.chain_der.clone(), key))));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    TlsAcceptor::from(Arc::new(config))
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A port nothing listens on, reserved (bound, never listening) while the socket lives, so
/// no other test's server can take it: connecting is refused.
pub fn closed_port() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}
