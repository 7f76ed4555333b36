//! The camera sources. Each submodule implements [`CameraSource`] for one kind of upstream.
//!
//! | source       | upstream                                   | `continuous` | module       |
//! |--------------|--------------------------------------------|--------------|--------------|
//! | Bambu A1/P1  | TLS port 6000, 16-byte headers + JPEG      | yes          | [`bambu`]    |
//! | RTSP(S)      | an `ffmpeg` child decoding to JPEG         | no           | [`rtsp`]     |
//! | MJPEG URL    | HTTP `multipart/x-mixed-replace`           | yes          | [`mjpeg`]    |
//! | snapshot URL | HTTP GET answering one JPEG, polled        | no           | [`snapshot`] |
//! | USB / CSI    | V4L2 through nokhwa, on its own thread     | yes          | [`usb`]      |
//! | printer's    | whatever the printer lists (Moonraker)     | yes          | [`listed`]   |
//!
//! Common rules:
//! - `open` does the whole connection (TCP, TLS, login, HTTP request, device open, child
//!   process) and waits for the first frame, which the first `next_frame` returns. So a wrong
//!   address, access code or URL, and an upstream that sends nothing usable, are `open`
//!   errors, and a successful `open` means frames flow (the manager may reset its backoff).
//! - Every frame passes [`jpeg::inspect`](super::jpeg::inspect); no source holds more than
//!   [`MAX_FRAME_BYTES`](super::MAX_FRAME_BYTES) of one frame, whatever the upstream claims.
//! - `next_frame` waits at most the source's frame timeout, then fails with
//!   [`CameraError::Timeout`](super::CameraError::Timeout).
//! - `next_frame` may be dropped before it completes (a `select!` on shutdown) and called
//!   again: streams keep the bytes already read, so a stream never loses its place in the
//!   upstream (a snapshot source just makes the next request a full interval later).
//! - `describe`, `Debug` and every error message leave out passwords and access codes.
//!
//! HTTP (MJPEG and snapshot URLs) is plain HTTP/1.1 over TCP through hyper's `client::conn`,
//! one connection per stream or snapshot; `https` URLs are refused with a clear message.

pub mod bambu;
mod http;
pub mod listed;
pub mod mjpeg;
pub mod rtsp;
pub mod snapshot;
pub mod usb;

use std::path::PathBuf;
use std::time::Duration;

use proto::PrinterId;

use super::{BoxFuture, CameraError, CameraSource, Frame, FrameStream};
use crate::printer::bambu::link::AccessCode;
use crate::printer::bambu::tls::Trust;

/// What to connect to, validated (built from the `[[printer.camera]]` configuration).
/// `Debug` leaves out URL passwords (the access code is in the RTSPS URL).
#[derive(Clone)]
pub enum SourceConfig {
    /// The A1/P1 camera: TLS on port 6000 ([`bambu::DEFAULT_PORT`]), the 80-byte login,
    /// 16-byte frame headers. The certificate is checked like the MQTT link's.
    Bambu { host: String, port: u16, serial: PrinterId, access_code: AccessCode, trust: Trust },
    /// The X1/H2/P2S RTSPS stream (`rtsps://bblp:<code>@<host>:322/streaming/live/1`),
    /// decoded by an ffmpeg child process into JPEG frames at `fps`.
    Rtsp { url: String, ffmpeg: PathBuf, fps: u32 },
    /// A `multipart/x-mixed-replace` MJPEG URL (ustreamer, camera-streamer, crowsnest,
    /// Moonraker webcams).
    Mjpeg { url: String },
    /// A URL answering each GET with one JPEG, polled every `interval`.
    Snapshot { url: String, interval: Duration },
    /// A USB or CSI camera through nokhwa (V4L2): `/dev/videoN` or an index.
    Usb { device: String, width: u32, height: u32, fps: u32 },
    /// The camera the printer names (Moonraker's webcams), as its link publishes it.
    Listed { camera: tokio::sync::watch::Receiver<Option<SourceConfig>> },
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceConfig::Bambu { host, port, serial, access_code, trust } => f
                .debug_struct("Bambu")
                .field("host", host)
                .field("port", port)
                .field("serial", serial)
                .field("access_code", access_code)
                .field("trust", trust)
                .finish(),
            SourceConfig::Rtsp { url, ffmpeg, fps } => f
                .debug_struct("Rtsp")
                .field("url", &redact_url(url))
                .field("ffmpeg", ffmpeg)
                .field("fps", fps)
                .finish(),
            SourceConfig::Mjpeg { url } => {
                f.debug_struct("Mjpeg").field("url", &redact_url(url)).finish()
            }
            SourceConfig::Snapshot { url, interval } => f
                .debug_struct("Snapshot")
                .field("url", &redact_url(url))
                .field("interval", interval)
                .finish(),
            SourceConfig::Usb { device, width, height, fps } => f
                .debug_struct("Usb")
                .field("device", device)
                .field("width", width)
                .field("height", height)
                .field("fps", fps)
                .finish(),
            SourceConfig::Listed { camera } => {
                f.debug_struct("Listed").field("camera", &*camera.borrow()).finish()
            }
        }
    }
}

impl SourceConfig {
    /// What it is and where, for people: `mjpeg http://…` (passwords left out).
    pub fn summary(&self) -> String {
        match self {
            SourceConfig::Bambu { host, port, .. } => format!("bambu {host}:{port}"),
            SourceConfig::Rtsp { url, .. } => format!("rtsp {}", redact_url(url)),
            SourceConfig::Mjpeg { url } => format!("mjpeg {}", redact_url(url)),
            SourceConfig::Snapshot { url, .. } => format!("snapshot {}", redact_url(url)),
            SourceConfig::Usb { device, .. } => format!("usb {device}"),
            SourceConfig::Listed { .. } => "the printer's webcam".into(),
        }
    }

    /// Checks what can be checked without connecting (URL syntax and scheme, numbers), so a
    /// configuration loader can report it with the other problems.
    pub fn check(&self) -> Result<(), String> {
        match self {
            SourceConfig::Bambu { host, .. } if host.trim().is_empty() => {
                Err("the camera host is empty".into())
            }
            SourceConfig::Bambu { .. } => Ok(()),
            SourceConfig::Rtsp { url, fps, .. } => {
                rtsp::check_url(url)?;
                if *fps == 0 || *fps > rtsp::MAX_FPS {
                    return Err(format!("fps must be between 1 and {}", rtsp::MAX_FPS));
                }
                Ok(())
            }
            SourceConfig::Mjpeg { url } => http::HttpUrl::parse(url).map(drop),
            SourceConfig::Snapshot { url, interval } => {
                http::HttpUrl::parse(url)?;
                if interval.is_zero() {
                    return Err("the snapshot interval must be longer than zero".into());
                }
                Ok(())
            }
            SourceConfig::Usb { device, width, height, fps } => {
                usb::check_device(device)?;
                if *width == 0 || *height == 0 || *fps == 0 {
                    return Err("width, height and fps must be larger than zero".into());
                }
                Ok(())
            }
            SourceConfig::Listed { .. } => Ok(()),
        }
    }
}

/// Builds the source a configuration describes, with default timeouts. Nothing connects
/// until [`CameraSource::open`]; a configuration [`SourceConfig::check`] refuses makes every
/// `open` fail with a clear error instead.
pub fn open_source(config: &SourceConfig) -> Box<dyn CameraSource> {
    match config.clone() {
        SourceConfig::Bambu { host, port, serial, access_code, trust } => {
            Box::new(bambu::BambuSource::new(host, port, serial, access_code, trust))
        }
        SourceConfig::Rtsp { url, ffmpeg, fps } => {
            Box::new(rtsp::RtspSource::new(url, ffmpeg, fps))
        }
        SourceConfig::Mjpeg { url } => Box::new(mjpeg::MjpegSource::new(url)),
        SourceConfig::Snapshot { url, interval } => {
            Box::new(snapshot::SnapshotSource::new(url, interval))
        }
        SourceConfig::Usb { device, width, height, fps } => {
            Box::new(usb::UsbSource::new(device, width, height, fps))
        }
        SourceConfig::Listed { camera } => Box::new(listed::ListedSource::new(camera)),
    }
}

/// Reads the first frame of a freshly opened stream and keeps it for the first `next_frame`.
pub(crate) async fn primed(
    mut stream: Box<dyn FrameStream>,
) -> Result<Box<dyn FrameStream>, CameraError> {
    let first = stream.next_frame().await?;
    Ok(Box::new(Primed { first: Some(first), stream }))
}

#[derive(Debug)]
struct Primed {
    first: Option<Frame>,
    stream: Box<dyn FrameStream>,
}

impl FrameStream for Primed {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>> {
        match self.first.take() {
            Some(first) => Box::pin(std::future::ready(Ok(first))),
            None => self.stream.next_frame(),
        }
    }
}

/// `url` with any `user:password@` replaced by `***@`, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    match userinfo_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// The byte range of the userinfo in `scheme://userinfo@host/…`, if there is one.
pub(crate) fn userinfo_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')?;
    Some((start, start + at))
}

/// Decodes `%XX` escapes (userinfo in URLs); anything malformed is kept as it is.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[i], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("rtsps://bblp:1234abcd@10.0.0.5:322/streaming/live/1"),
            "rtsps://***@10.0.0.5:322/streaming/live/1"
        );
        assert_eq!(redact_url("http://pi:8080/?action=stream"), "http://pi:8080/?action=stream");
        assert_eq!(redact_url("http://pi/a@b"), "http://pi/a@b");
        assert_eq!(redact_url("http://a:b@c@pi/"), "http://***@pi/");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn debug_output_leaves_passwords_out() {
        let rtsp = SourceConfig::Rtsp {
            url: "rtsps://bblp:1234abcd@10.0.0.5:322/streaming/live/1".into(),
            ffmpeg: "ffmpeg".into(),
            fps: 1,
        };
        let snapshot = SourceConfig::Snapshot {
            url: "http://me:pa55@pi/snap".into(),
            interval: Duration::from_secs(1),
        };
        let shown = format!("{rtsp:?} {snapshot:?}");
        assert!(!shown.contains("1234abcd") && !shown.contains("pa55"), "{shown}");
        assert!(shown.contains("rtsps://***@10.0.0.5:322/streaming/live/1"), "{shown}");
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn check_refuses_what_cannot_work() {
        let bad = [
            SourceConfig::Mjpeg { url: "https://pi/stream".into() },
            SourceConfig::Mjpeg { url: "ftp://pi/stream".into() },
            SourceConfig::Snapshot { url: "http://pi/snap".into(), interval: Duration::ZERO },
            SourceConfig::Rtsp { url: "http://x/".into(), ffmpeg: "ffmpeg".into(), fps: 1 },
            SourceConfig::Rtsp { url: "rtsp://x/".into(), ffmpeg: "ffmpeg".into(), fps: 0 },
            SourceConfig::Usb { device: "webcam".into(), width: 640, height: 480, fps: 5 },
            SourceConfig::Usb { device: "/dev/video0".into(), width: 0, height: 480, fps: 5 },
        ];
        for config in bad {
            assert!(config.check().is_err(), "{config:?}");
        }
        let good = [
            SourceConfig::Mjpeg { url: "http://pi:8080/?action=stream".into() },
            SourceConfig::Snapshot {
                url: "http://u:p@pi/snap".into(),
                interval: Duration::from_secs(5),
            },
            SourceConfig::Rtsp {
                url: "rtsps://bblp:code@10.0.0.5:322/streaming/live/1".into(),
                ffmpeg: "ffmpeg".into(),
                fps: 2,
            },
            SourceConfig::Usb { device: "/dev/video0".into(), width: 640, height: 480, fps: 5 },
            SourceConfig::Usb { device: "1".into(), width: 640, height: 480, fps: 5 },
        ];
        for config in good {
            assert_eq!(config.check(), Ok(()), "{config:?}");
        }
    }
}
