//! The camera of an A1 or P1 printer ("port 6000"): TLS, an 80-byte auth packet, then JPEG
//! frames, each behind a 16-byte header (doc §3.13).
//!
//! Wire format, every integer a little-endian `u32`:
//! - client → printer, once, right after the TLS handshake, 80 bytes: `0x40` (payload size),
//!   `0x3000` (type), `0` (flags), `0`, the username `bblp` NUL-padded to 32 bytes, the access
//!   code NUL-padded to 32 bytes.
//! - printer → client, per frame: `payload_size`, `0` (itrack), `1` (flags), `0`, then
//!   `payload_size` bytes of JPEG (`FF D8 … FF D9`).
//!
//! Behaviour:
//! - TLS 1.2 and 1.3 with the broker's certificate resolver: the same v1 leaf `CN=<serial>`,
//!   rotated together with the broker's.
//! - A wrong username or access code, any other header, or fewer than 80 bytes (end of stream,
//!   or nothing more for 10 s): the connection closes with a TLS close_notify and nothing
//!   else, so the client reads zero bytes — how a real printer says "wrong access code".
//! - At most `max_streams` authenticated connections (two, like a P1S) get frames; another
//!   stalls, receiving nothing, until one of those ends, first come first served.
//! - One frame per interval, rendered once for all streams and only while a stream is open
//!   ([`frame`], which also describes the JPEG comment that tells tests the frame number and
//!   printer state); a new stream gets a freshly rendered frame at once. A client that does not
//!   read holds up its own stream only (TCP back-pressure) and misses frames rather than
//!   queueing them.
//! - Bytes a client sends after the auth packet are ignored; its end of stream ends the
//!   session. `SimHandle::drop_connections` drops camera connections too (no close_notify).
//! - Faults ([`CameraFault`]) change what a stream sends; see its variants.
//!
//! Each connection is a task of its own: a misbehaving client ends its own session only.

mod font;
pub(crate) mod frame;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::time::{MissedTickBehavior, interval, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

pub(crate) use self::frame::PrinterView;
use self::frame::Scene;
use crate::broker::USERNAME;
use crate::config::{AccessCode, CameraConfig, CameraFault, CameraSize, Model, PrinterSerial};
use crate::events::SimEvent;

/// Length of the auth packet.
const AUTH_LEN: usize = 80;
/// The auth packet's first word: the size of what follows its 16-byte header.
const AUTH_PAYLOAD_SIZE: u32 = 0x40;
/// The auth packet's second word.
const AUTH_TYPE: u32 = 0x3000;
/// Length of the username and of the access code fields, NUL-padded.
const AUTH_FIELD_LEN: usize = 32;
/// Length of a frame header.
const FRAME_HEADER_LEN: usize = 16;
/// `flags` of a frame header.
const FRAME_FLAGS: u32 = 1;
/// What a [`CameraFault::HugeHeader`] header claims: 2 GiB.
const HUGE_PAYLOAD_SIZE: u32 = 0x8000_0000;
/// What a [`CameraFault::EndlessJpeg`] frame sends after `FF D8`, again and again.
const ENDLESS_FILLER: [u8; 512] = [0x5A; 512];
/// How often a [`CameraFault::EndlessJpeg`] frame sends more filler (about 20 KiB/s).
const ENDLESS_FILLER_INTERVAL: Duration = Duration::from_millis(25);
/// Time allowed for the TLS handshake, and then for the auth packet.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a TLS close_notify on the way out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors and the like), so as not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The camera server, ready to run.
pub(crate) struct CameraServer {
    pub(crate) listener: TcpListener,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) config: CameraConfig,
    pub(crate) serial: PrinterSerial,
    pub(crate) model: Model,
    pub(crate) access_code: AccessCode,
    /// The printer's state, kept current by the printer's driver.
    pub(crate) printer: watch::Receiver<PrinterView>,
    /// The fault in force, set through the handle.
    pub(crate) fault: watch::Receiver<Option<CameraFault>>,
    /// Bumped to close every connection at once.
    pub(crate) generation: watch::Receiver<u64>,
    pub(crate) events: broadcast::Sender<SimEvent>,
}

impl CameraServer {
    /// Spawns the accept loop and the frame renderer on `tracker`, in the current span; both
    /// stop on `shutdown`.
    pub(crate) fn spawn(self, shutdown: &CancellationToken, tracker: &TaskTracker) {
        let (frames, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            access_code: self.access_code,
            fault: self.fault,
            generation: self.generation,
            events: self.events,
            streams: Arc::new(Semaphore::new(self.config.max_streams)),
            frames,
            viewer_joined: Notify::new(),
        });
        let renderer = Renderer {
            serial: self.serial,
            model: self.model,
            size: self.config.size,
            interval: self.config.frame_interval,
            printer: self.printer,
            shared: shared.clone(),
        };
        tracker.spawn(renderer.run(shutdown.clone()).in_current_span());
        tracker.spawn(
            accept(self.listener, self.acceptor, shared, shutdown.clone(), tracker.clone())
                .in_current_span(),
        );
    }
}

/// What every camera session shares.
struct Shared {
    access_code: AccessCode,
    fault: watch::Receiver<Option<CameraFault>>,
    generation: watch::Receiver<u64>,
    events: broadcast::Sender<SimEvent>,
    /// One permit per stream that gets frames.
    streams: Arc<Semaphore>,
    /// The latest frame; a stream subscribes when it starts.
    frames: watch::Sender<Option<Bytes>>,
    /// A stream started: render a frame now.
    viewer_joined: Notify,
}

/// Why a session ended other than normally.
#[derive(Debug, thiserror::Error)]
enum CameraError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("a frame of {0} bytes does not fit in a header")]
    FrameTooLarge(usize),
    #[error("the camera stopped")]
    Stopped,
}

/// Why an auth packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum AuthRefused {
    #[error("auth packet shorter than 80 bytes")]
    Short,
    #[error("no auth packet in time")]
    Timeout,
    #[error("malformed auth packet: {0}")]
    Malformed(&'static str),
    #[error("wrong username or access code")]
    WrongCredentials,
}

/// Renders a frame every interval while at least one stream is open.
struct Renderer {
    serial: PrinterSerial,
    model: Model,
    size: CameraSize,
    interval: Duration,
    printer: watch::Receiver<PrinterView>,
    shared: Arc<Shared>,
}

impl Renderer {
    async fn run(self, shutdown: CancellationToken) {
        let mut ticks = interval(self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut frame_number = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
                () = self.shared.viewer_joined.notified() => ticks.reset(),
            }
            if self.shared.frames.receiver_count() == 0 {
                continue;
            }
            frame_number += 1;
            let scene = Scene {
                heading: frame::heading(self.model, &self.serial),
                printer: self.printer.borrow().clone(),
                frame_number,
                now: SystemTime::now(),
            };
            let size = self.size;
            match tokio::task::spawn_blocking(move || frame::render(&scene, size)).await {
                Ok(Ok(jpeg)) => {
                    self.shared.frames.send_replace(Some(Bytes::from(jpeg)));
                    emit(&self.shared, SimEvent::CameraFrameRendered { frame_number });
                }
                Ok(Err(error)) => warn!(%error, "Cannot encode a camera frame."),
                Err(error) => warn!(%error, "The camera frame task failed."),
            }
        }
    }
}

/// Accepts connections until `shutdown`, one task per client.
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if *shared.fault.borrow() == Some(CameraFault::Off) {
                    debug!(%peer, "Camera off; closing a new connection.");
                    drop(tcp);
                    emit(
                        &shared,
                        SimEvent::CameraDisconnected { peer, reason: "camera off".into() },
                    );
                    continue;
                }
                let session =
                    session(tcp, peer, acceptor.clone(), shared.clone(), shutdown.clone());
                tracker.spawn(session.instrument(info_span!("camera_client", %peer)));
            }
            Err(error) => {
                warn!(%error, "Camera accept failed.");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn session(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut generation = shared.generation.clone();
    generation.mark_unchanged();
    let mut fault = shared.fault.clone();
    let mut tls = match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            info!(%error, "Camera TLS handshake failed.");
            return;
        }
        Err(_) => {
            info!("Camera TLS handshake timed out.");
            return;
        }
    };
    let reason = tokio::select! {
        () = shutdown.cancelled() => "simulator shutting down".to_owned(),
        _ = generation.changed() => {
            // Drop the stream without close_notify: like a printer losing its network.
            let reason = "connections dropped".to_owned();
            emit(&shared, SimEvent::CameraDisconnected { peer, reason });
            return;
        }
        () = camera_off(&mut fault) => "camera off".to_owned(),
        end = serve(&mut tls, peer, &shared) => match end {
            Ok(reason) => reason,
            Err(error) => {
                info!(%error, "Closing a camera connection.");
                error.to_string()
            }
        },
    };
    let _ = timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
    debug!(%reason, "Camera client disconnected.");
    emit(&shared, SimEvent::CameraDisconnected { peer, reason });
}

/// Returns once the [`CameraFault::Off`] fault is in force; never if the handle is gone.
async fn camera_off(fault: &mut watch::Receiver<Option<CameraFault>>) {
    let off = fault.wait_for(|fault| *fault == Some(CameraFault::Off)).await.is_ok();
    if !off {
        std::future::pending::<()>().await;
    }
}

/// Authenticates a client, waits for a stream slot, then streams; returns why it ended.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<String, CameraError> {
    let mut packet = [0; AUTH_LEN];
    let refused = match timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut packet)).await {
        Err(_) => Some(AuthRefused::Timeout),
        Ok(Err(error)) if error.kind() == ErrorKind::UnexpectedEof => Some(AuthRefused::Short),
        Ok(Err(error)) => return Err(error.into()),
        Ok(Ok(_)) => check_auth(&packet, &shared.access_code).err(),
    };
    if let Some(refused) = refused {
        info!(%refused, "Refusing a camera client.");
        emit(shared, SimEvent::CameraAuthRefused { peer, reason: refused.to_string() });
        return Ok(refused.to_string());
    }
    let Some(_permit) = stream_slot(stream, peer, shared).await? else {
        return Ok("client closed the connection while waiting".into());
    };
    info!("Camera stream started.");
    emit(shared, SimEvent::CameraStreamStarted { peer });
    let mut frames = shared.frames.subscribe();
    shared.viewer_joined.notify_one();
    let mut scratch = [0; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut scratch) => {
                if let Some(reason) = client_closed(read)? {
                    return Ok(reason);
                }
            }
            changed = frames.changed() => {
                changed.map_err(|_| CameraError::Stopped)?;
                let Some(frame) = frames.borrow_and_update().clone() else { continue };
                let fault = *shared.fault.borrow();
                if let Some(reason) = send_frame(stream, &frame, fault).await? {
                    return Ok(reason);
                }
            }
        }
    }
}

/// A permit to stream, at once or once another stream ends; `None` if the client left first.
async fn stream_slot<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Option<OwnedSemaphorePermit>, CameraError> {
    if let Ok(permit) = shared.streams.clone().try_acquire_owned() {
        return Ok(Some(permit));
    }
    info!("Camera stream limit reached; the client waits.");
    emit(shared, SimEvent::CameraStreamWaiting { peer });
    let acquire = shared.streams.clone().acquire_owned();
    tokio::pin!(acquire);
    let mut scratch = [0; 1024];
    loop {
        tokio::select! {
            permit = &mut acquire => return permit.map(Some).map_err(|_| CameraError::Stopped),
            read = stream.read(&mut scratch) => {
                if client_closed(read)?.is_some() {
                    return Ok(None);
                }
            }
        }
    }
}

/// Sends one frame as `fault` has it; `Some(reason)` when the stream has ended.
async fn send_frame<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    frame: &[u8],
    fault: Option<CameraFault>,
) -> Result<Option<String>, CameraError> {
    let size = u32::try_from(frame.len()).map_err(|_| CameraError::FrameTooLarge(frame.len()))?;
    match fault {
        // `Off` closes the session before it gets here.
        None | Some(CameraFault::Off) => write_frame(stream, size, frame).await?,
        Some(CameraFault::Garbage) => write_frame(stream, size, &garbage(frame.len())).await?,
        Some(CameraFault::HugeHeader) => write_frame(stream, HUGE_PAYLOAD_SIZE, frame).await?,
        Some(CameraFault::EndlessJpeg) => return endless_jpeg(stream, size).await.map(Some),
    }
    Ok(None)
}

async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    payload_size: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    stream.write_all(&frame_header(payload_size)).await?;
    stream.write_all(payload).await?;
    stream.flush().await
}

/// A header claiming `claimed` bytes, `FF D8`, then filler until the client leaves.
async fn endless_jpeg<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    claimed: u32,
) -> Result<String, CameraError> {
    stream.write_all(&frame_header(claimed)).await?;
    stream.write_all(&[0xFF, 0xD8]).await?;
    stream.flush().await?;
    let mut filler = interval(ENDLESS_FILLER_INTERVAL);
    filler.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut scratch = [0; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut scratch) => {
                if let Some(reason) = client_closed(read)? {
                    return Ok(reason);
                }
            }
            _ = filler.tick() => {
                stream.write_all(&ENDLESS_FILLER).await?;
                stream.flush().await?;
            }
        }
    }
}

/// `Some(reason)` if a read shows the client has gone; bytes it sent are ignored.
fn client_closed(read: std::io::Result<usize>) -> Result<Option<String>, CameraError> {
    match read {
        Ok(0) => Ok(Some("client closed the connection".into())),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => {
            Ok(Some("client closed the connection without close_notify".into()))
        }
        Err(error) => Err(error.into()),
    }
}

/// Checks the header, username and access code of an auth packet.
fn check_auth(packet: &[u8; AUTH_LEN], access_code: &AccessCode) -> Result<(), AuthRefused> {
    let (header, fields) = packet.split_at(FRAME_HEADER_LEN);
    let mut words =
        header.chunks_exact(4).map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
    if words.next() != Some(AUTH_PAYLOAD_SIZE) {
        return Err(AuthRefused::Malformed("payload size is not 0x40"));
    }
    if words.next() != Some(AUTH_TYPE) {
        return Err(AuthRefused::Malformed("type is not 0x3000"));
    }
    if words.any(|word| word != 0) {
        return Err(AuthRefused::Malformed("flags are not zero"));
    }
    let (username, code) = fields.split_at(AUTH_FIELD_LEN);
    if username != nul_padded(USERNAME) || code != nul_padded(access_code.as_str()) {
        return Err(AuthRefused::WrongCredentials);
    }
    Ok(())
}

/// `text` NUL-padded to an auth field (both texts it is used for are far shorter).
fn nul_padded(text: &str) -> [u8; AUTH_FIELD_LEN] {
    let mut field = [0; AUTH_FIELD_LEN];
    field.iter_mut().zip(text.bytes()).for_each(|(slot, byte)| *slot = byte);
    field
}

fn frame_header(payload_size: u32) -> [u8; FRAME_HEADER_LEN] {
    let mut header = [0; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&payload_size.to_le_bytes());
    header[8..12].copy_from_slice(&FRAME_FLAGS.to_le_bytes());
    header
}

/// `len` random bytes that do not start like a JPEG.
fn garbage(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: a fixed pattern is garbage enough.
        bytes.iter_mut().zip((0..=250).cycle()).for_each(|(byte, value)| *byte = value);
    }
    if let Some(first) = bytes.first_mut() {
        *first = 0;
    }
    bytes
}

fn emit(shared: &Shared, event: SimEvent) {
    // No receivers is fine: nobody is watching.
    let _ = shared.events.send(event);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(size: u32, kind: u32, username: &str, code: &str) -> [u8; AUTH_LEN] {
        let mut packet = [0; AUTH_LEN];
        packet[..4].copy_from_slice(&size.to_le_bytes());
        packet[4..8].copy_from_slice(&kind.to_le_bytes());
        packet[16..16 + username.len()].copy_from_slice(username.as_bytes());
        packet[48..48 + code.len()].copy_from_slice(code.as_bytes());
        packet
    }

    #[test]
    fn auth_packets_are_checked_field_by_field() {
        let code: AccessCode = "12345678".parse().unwrap();
        assert_eq!(check_auth(&packet(0x40, 0x3000, "bblp", "12345678"), &code), Ok(()));
        assert_eq!(
            check_auth(&packet(0x40, 0x3000, "bblp", "87654321"), &code),
            Err(AuthRefused::WrongCredentials)
        );
        assert_eq!(
            check_auth(&packet(0x40, 0x3000, "bblp", "123456789"), &code),
            Err(AuthRefused::WrongCredentials),
            "a longer code with the right prefix is wrong"
        );
        assert_eq!(
            check_auth(&packet(0x40, 0x3000, "admin", "12345678"), &code),
            Err(AuthRefused::WrongCredentials)
        );
        assert!(matches!(
            check_auth(&packet(0x40, 0x3001, "bblp", "12345678"), &code),
            Err(AuthRefused::Malformed(_))
        ));
        assert!(matches!(
            check_auth(&packet(0x50, 0x3000, "bblp", "12345678"), &code),
            Err(AuthRefused::Malformed(_))
        ));
        let mut flagged = packet(0x40, 0x3000, "bblp", "12345678");
        flagged[8] = 1;
        assert!(matches!(check_auth(&flagged, &code), Err(AuthRefused::Malformed(_))));
    }

    #[test]
    fn a_frame_header_is_size_itrack_flags_zero() {
        assert_eq!(frame_header(0x0102_0304), [4, 3, 2, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn garbage_never_starts_like_a_jpeg() {
        for _ in 0..100 {
            assert_ne!(garbage(2), [0xFF, 0xD8]);
        }
        assert!(garbage(0).is_empty());
    }
}
