//! Snapshot URLs: each GET answers one JPEG (`?action=snapshot` of ustreamer and
//! mjpg-streamer, Moonraker's snapshot URL, IP cameras' `snapshot.jpg`). `open` fetches the
//! first image, so a wrong URL or password fails there; later frames are fetched every
//! `interval`, measured from the start of one request to the start of the next.

use std::time::Duration;

use bytes::BytesMut;
use proto::UnixMillis;
use tokio::time::{Interval, MissedTickBehavior};

use super::http::{self, HttpUrl, media_type};
use crate::camera::jpeg;
use crate::camera::{BoxFuture, CameraError, CameraSource, Frame, FrameStream, MAX_FRAME_BYTES};

/// The longest wait for one whole snapshot (connection, headers and body).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A snapshot URL, polled.
#[derive(Clone)]
pub struct SnapshotSource {
    /// May hold `user:password@`; shown only through [`crate::camera::sources::redact_url`].
    url: String,
    interval: Duration,
    /// The longest wait for one whole snapshot.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("url", &super::redact_url(&self.url))
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl SnapshotSource {
    pub fn new(url: String, interval: Duration) -> SnapshotSource {
        SnapshotSource { url, interval, request_timeout: DEFAULT_REQUEST_TIMEOUT }
    }
}

impl CameraSource for SnapshotSource {
    fn describe(&self) -> String {
        format!("snapshot URL {} every {:?}", super::redact_url(&self.url), self.interval)
    }

    fn continuous(&self) -> bool {
        false
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn FrameStream>, CameraError>> {
        Box::pin(async move {
            let url =
                HttpUrl::parse(&self.url).map_err(|detail| CameraError::Unavailable { detail })?;
            if self.interval.is_zero() {
                let detail = "the snapshot interval is zero".to_owned();
                return Err(CameraError::Unavailable { detail });
            }
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // The first tick is immediate: it is this first fetch.
            ticks.tick().await;
            let first = fetch(&url, self.request_timeout).await?;
            let stream = SnapshotStream {
                url,
                ticks,
                request_timeout: self.request_timeout,
                pending: Some(first),
            };
            Ok(Box::new(stream) as Box<dyn FrameStream>)
        })
    }
}

#[derive(Debug)]
struct SnapshotStream {
    url: HttpUrl,
    ticks: Interval,
    request_timeout: Duration,
    /// The frame fetched by `open`, returned by the first `next_frame`.
    pending: Option<Frame>,
}

impl FrameStream for SnapshotStream {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>> {
        Box::pin(async move {
            if let Some(frame) = self.pending.take() {
                return Ok(frame);
            }
            self.ticks.tick().await;
            fetch(&self.url, self.request_timeout).await
        })
    }
}

/// One GET, the whole body, checked.
async fn fetch(url: &HttpUrl, timeout: Duration) -> Result<Frame, CameraError> {
    crate::camera::within(timeout, fetch_inner(url, timeout)).await
}

async fn fetch_inner(url: &HttpUrl, timeout: Duration) -> Result<Frame, CameraError> {
    let mut response = http::get(url, "image/jpeg", timeout).await?;
    let media = media_type(&response.content_type);
    if media.starts_with("text/") || media.starts_with("multipart/") {
        let hint = if media.starts_with("multipart/") {
            "; this URL serves a stream: configure it as an MJPEG URL"
        } else {
            ""
        };
        return Err(CameraError::Protocol {
            detail: format!("{} answered {:?}, not a JPEG{hint}", url.shown, response.content_type),
        });
    }
    if let Some(claimed) = response.content_length
        && claimed > MAX_FRAME_BYTES as u64
    {
        return Err(CameraError::FrameTooLarge { claimed, max: MAX_FRAME_BYTES as u64 });
    }
    let mut body = BytesMut::new();
    while let Some(data) = response.chunk(url).await? {
        if body.len() + data.len() > MAX_FRAME_BYTES {
            let claimed = (body.len() + data.len()) as u64;
            return Err(CameraError::FrameTooLarge { claimed, max: MAX_FRAME_BYTES as u64 });
        }
        body.extend_from_slice(&data);
    }
    let jpeg = body.freeze();
    let (width, height) = jpeg::inspect(&jpeg).map_err(|error| match error {
        CameraError::Protocol { detail } => CameraError::Protocol {
            detail: format!("{} did not answer a JPEG ({detail})", url.shown),
        },
        other => other,
    })?;
    Ok(Frame { captured_at: UnixMillis::now(), jpeg, width, height })
}
