//! Cameras: one upstream per camera, held by the agent, shared by snapshots and live view.
//!
//! ```text
//! source (Bambu port 6000 | RTSPS via ffmpeg | MJPEG URL | snapshot URL | USB via nokhwa)
//!    └─ FrameStream::next_frame ─▶ manager (latest frame, snapshot triggers, live view)
//!                                     ├─ snapshot chunks ─▶ outbox (snapshot class)
//!                                     └─ live frames ─────▶ sync client ─▶ hub
//! ```
//!
//! Every source sits behind [`CameraSource`]: `open` connects (TLS, login, HTTP request,
//! device open, child process) and returns a [`FrameStream`] that yields whole JPEG frames.
//! A source never retries by itself; the manager reconnects with backoff, so a failing
//! camera never touches the printer link.

pub mod jpeg;
pub mod manager;
pub mod planner;
pub mod sources;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use proto::UnixMillis;

pub use sources::{SourceConfig, open_source};

/// A boxed future, so sources can live behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The largest JPEG frame any source accepts (a 4K JPEG is well under this).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// One whole JPEG image from a camera.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub captured_at: UnixMillis,
    /// Starts with `FF D8`, ends with `FF D9`, checked by [`jpeg::inspect`].
    pub jpeg: Bytes,
    pub width: u16,
    pub height: u16,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("captured_at", &self.captured_at)
            .field("bytes", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Why a camera produced no frame. Messages are for the operator: they say what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    #[error("cannot connect to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("TLS with {target} failed: {detail}")]
    Tls { target: String, detail: String },
    #[error("the camera refused the login (check the access code): {detail}")]
    AuthRejected { detail: String },
    #[error("the camera sent something that is not a frame: {detail}")]
    Protocol { detail: String },
    #[error("a frame of {claimed} bytes is larger than the {max}-byte limit")]
    FrameTooLarge { claimed: u64, max: u64 },
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    #[error("the camera closed the stream")]
    Ended,
    #[error("the camera is unavailable: {detail}")]
    Unavailable { detail: String },
}

/// Runs a source's read of one frame within `timeout`: its stall is a `Timeout` error.
pub(crate) async fn within(
    timeout: Duration,
    read: impl Future<Output = Result<Frame, CameraError>>,
) -> Result<Frame, CameraError> {
    tokio::time::timeout(timeout, read).await.unwrap_or(Err(CameraError::Timeout(timeout)))
}

/// Where frames come from. `open` is called again after every failure (with backoff).
pub trait CameraSource: Send + Sync + std::fmt::Debug + 'static {
    /// What the source is, for logs and health reports (never a secret).
    fn describe(&self) -> String;

    /// Whether the manager keeps the upstream open all the time (`true`: cheap streams such
    /// as the Bambu port-6000 feed and MJPEG) or only while someone needs frames (`false`:
    /// RTSPS, which costs a decoder, and snapshot URLs, which are polled).
    fn continuous(&self) -> bool;

    /// Connects, logs in and waits for the first frame (the first `next_frame` returns it),
    /// so a successful `open` means frames flow; every source bounds the wait.
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn FrameStream>, CameraError>>;
}

/// An open upstream.
pub trait FrameStream: Send + std::fmt::Debug {
    /// The next whole frame. An error ends the stream; the manager reopens the source.
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>>;
}
