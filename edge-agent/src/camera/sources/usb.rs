//! USB and CSI cameras through nokhwa (V4L2 on Linux).
//!
//! nokhwa's capture calls block, so each open stream owns one capture thread that opens the
//! device, streams, and hands frames to the async side through a bounded channel of one: a
//! slow reader holds the thread back (V4L2 then drops frames in the driver) instead of
//! growing a queue. Dropping the stream closes the channel; the thread notices at its next
//! frame, stops streaming and closes the device.
//!
//! Formats: MJPEG is preferred and passed through (many UVC cameras pad their buffers after
//! the image, so the [`Scanner`] finds its end); otherwise YUYV, NV12, GRAY, RGB or BGR frames
//! are converted and encoded with `jpeg-encoder` (pure Rust). Among the device's formats the
//! one closest to the configured size wins, MJPEG on a tie, then the closest frame rate.
//!
//! Built only with the `usb-camera` feature (default): nokhwa's V4L2 bindings are generated
//! by bindgen at build time. Without it, opening a USB camera reports that it was left out.

use std::time::Duration;

use crate::camera::{BoxFuture, CameraError, CameraSource, FrameStream};

/// The longest wait for the device to open and start streaming.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for one frame.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A V4L2 camera.
#[derive(Debug, Clone)]
pub struct UsbSource {
    device: String,
    width: u32,
    height: u32,
    fps: u32,
    /// The longest wait for the device to open and start streaming.
    pub open_timeout: Duration,
    /// The longest wait for one frame.
    pub frame_timeout: Duration,
}

impl UsbSource {
    pub fn new(device: String, width: u32, height: u32, fps: u32) -> UsbSource {
        UsbSource {
            device,
            width,
            height,
            fps,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
        }
    }
}

impl CameraSource for UsbSource {
    fn describe(&self) -> String {
        format!("USB camera {} ({}x{} at {} fps)", self.device, self.width, self.height, self.fps)
    }

    fn continuous(&self) -> bool {
        true
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn FrameStream>, CameraError>> {
        Box::pin(async move {
            #[cfg(feature = "usb-camera")]
            {
                let stream = capture::open(self).await?;
                super::primed(Box::new(stream)).await
            }
            #[cfg(not(feature = "usb-camera"))]
            {
                Err(CameraError::Unavailable {
                    detail: format!(
                        "{}: this kitt-agent was built without USB camera support (the \
                         `usb-camera` feature)",
                        self.device
                    ),
                })
            }
        })
    }
}

/// Checks a configured device without touching it: an index or an absolute path.
pub(crate) fn check_device(device: &str) -> Result<(), String> {
    let device = device.trim();
    if device.parse::<u32>().is_ok() || device.starts_with('/') {
        return Ok(());
    }
    Err(format!("{device:?} is neither a V4L2 device path (/dev/videoN) nor an index"))
}

/// The V4L2 index of a device: `N`, `/dev/videoN`, or a link to one (`/dev/v4l/by-id/…`).
#[cfg_attr(not(feature = "usb-camera"), allow(dead_code))]
pub(crate) fn device_index(device: &str) -> Result<u32, String> {
    let device = device.trim();
    if let Ok(index) = device.parse() {
        return Ok(index);
    }
    let index_of = |path: &str| path.strip_prefix("/dev/video").and_then(|n| n.parse().ok());
    if let Some(index) = index_of(device) {
        return Ok(index);
    }
    check_device(device)?;
    let resolved = std::fs::canonicalize(device)
        .map_err(|error| format!("{device}: {error} (is the camera plugged in?)"))?;
    resolved
        .to_str()
        .and_then(index_of)
        .ok_or_else(|| format!("{device} is not a V4L2 device (/dev/videoN)"))
}

#[cfg(feature = "usb-camera")]
mod capture {
    use bytes::Bytes;
    use nokhwa::Camera;
    use nokhwa::utils::{
        ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
        Resolution,
    };
    use proto::UnixMillis;
    use tokio::sync::{mpsc, oneshot};

    use super::{UsbSource, device_index};
    use crate::camera::jpeg::{self, Scan, Scanner};
    use crate::camera::{BoxFuture, CameraError, Frame, FrameStream};

    /// JPEG quality for cameras that deliver raw frames.
    const JPEG_QUALITY: u8 = 80;
    /// Corrupt frames in a row a stream tolerates before failing (UVC cameras drop a few).
    const MAX_BAD_FRAMES_IN_A_ROW: u32 = 10;

    /// The formats this source can use, best first.
    const FORMATS: [FrameFormat; 6] = [
        FrameFormat::MJPEG,
        FrameFormat::YUYV,
        FrameFormat::NV12,
        FrameFormat::GRAY,
        FrameFormat::RAWRGB,
        FrameFormat::RAWBGR,
    ];

    #[derive(Debug, Clone)]
    struct Wanted {
        device: String,
        index: u32,
        width: u32,
        height: u32,
        fps: u32,
    }

    pub(super) async fn open(source: &UsbSource) -> Result<UsbStream, CameraError> {
        let index =
            device_index(&source.device).map_err(|detail| CameraError::Unavailable { detail })?;
        let node = format!("/dev/video{index}");
        if !std::path::Path::new(&node).exists() {
            let detail = format!("{node} does not exist (is the camera plugged in?)");
            return Err(CameraError::Unavailable { detail });
        }
        let wanted = Wanted {
            device: source.device.clone(),
            index,
            width: source.width,
            height: source.height,
            fps: source.fps,
        };
        let (frames_tx, frames) = mpsc::channel(1);
        let (opened_tx, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("camera-video{index}"))
            .spawn(move || run(&wanted, opened_tx, &frames_tx))
            .map_err(|error| CameraError::Unavailable {
                detail: format!("cannot start the capture thread: {error}"),
            })?;
        let format = match tokio::time::timeout(source.open_timeout, opened).await {
            Err(_) => return Err(CameraError::Timeout(source.open_timeout)),
            Ok(Err(_)) => {
                let detail = format!("{}: the capture thread stopped", source.device);
                return Err(CameraError::Unavailable { detail });
            }
            Ok(Ok(result)) => result?,
        };
        tracing::info!(device = %source.device, %format, "Opened the USB camera.");
        Ok(UsbStream { frames, frame_timeout: source.frame_timeout })
    }

    #[derive(Debug)]
    pub(super) struct UsbStream {
        frames: mpsc::Receiver<Result<Frame, CameraError>>,
        frame_timeout: std::time::Duration,
    }

    impl FrameStream for UsbStream {
        fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>> {
            Box::pin(async move {
                let timeout = self.frame_timeout;
                match tokio::time::timeout(timeout, self.frames.recv()).await {
                    Err(_) => Err(CameraError::Timeout(timeout)),
                    Ok(None) => Err(CameraError::Ended),
                    Ok(Some(frame)) => frame,
                }
            })
        }
    }

    /// The capture thread.
    fn run(
        wanted: &Wanted,
        opened: oneshot::Sender<Result<CameraFormat, CameraError>>,
        frames: &mpsc::Sender<Result<Frame, CameraError>>,
    ) {
        let mut camera = match open_camera(wanted) {
            Ok(camera) => camera,
            Err(error) => {
                let _ = opened.send(Err(error));
                return;
            }
        };
        if opened.send(Ok(camera.camera_format())).is_err() {
            return;
        }
        let mut bad_in_a_row = 0;
        while !frames.is_closed() {
            let frame = match camera.frame() {
                Ok(buffer) => {
                    to_frame(buffer.source_frame_format(), buffer.resolution(), buffer.buffer())
                }
                Err(error) => {
                    let detail = format!("{}: capture failed: {error}", wanted.device);
                    let _ = frames.blocking_send(Err(CameraError::Unavailable { detail }));
                    break;
                }
            };
            match frame {
                Ok(frame) => {
                    bad_in_a_row = 0;
                    if frames.blocking_send(Ok(frame)).is_err() {
                        break;
                    }
                }
                Err(error) if bad_in_a_row < MAX_BAD_FRAMES_IN_A_ROW => {
                    bad_in_a_row += 1;
                    tracing::debug!(device = %wanted.device, %error, "Skipped a bad USB camera frame.");
                }
                Err(error) => {
                    let _ = frames.blocking_send(Err(error));
                    break;
                }
            }
        }
        if let Err(error) = camera.stop_stream() {
            tracing::debug!(device = %wanted.device, %error, "Stopping the USB camera failed.");
        }
    }

    fn open_camera(wanted: &Wanted) -> Result<Camera, CameraError> {
        let failed = |what: &str, error: nokhwa::NokhwaError| {
            let error = error.to_string();
            let hint = if error.contains("Permission denied") {
                "; add the agent's user to the `video` group"
            } else {
                ""
            };
            CameraError::Unavailable { detail: format!("{}: {what}: {error}{hint}", wanted.device) }
        };
        let any = RequestedFormat::with_formats(RequestedFormatType::None, &FORMATS);
        let mut camera =
            Camera::with_backend(CameraIndex::Index(wanted.index), any, ApiBackend::Video4Linux)
                .map_err(|error| failed("cannot open the device", error))?;
        let formats = camera
            .compatible_camera_formats()
            .map_err(|error| failed("cannot list its formats", error))?;
        let Some(chosen) = choose_format(&formats, wanted.width, wanted.height, wanted.fps) else {
            return Err(CameraError::Unavailable {
                detail: format!(
                    "{} offers none of the formats MJPEG, YUYV, NV12, GRAY, RGB, BGR",
                    wanted.device
                ),
            });
        };
        let exact = [chosen.format()];
        camera
            .set_camera_requset(RequestedFormat::with_formats(
                RequestedFormatType::Exact(chosen),
                &exact,
            ))
            .map_err(|error| failed("cannot set the format", error))?;
        camera.open_stream().map_err(|error| failed("cannot start streaming", error))?;
        Ok(camera)
    }

    /// The closest size first, MJPEG on a tie (then the order of [`FORMATS`]), then the
    /// closest frame rate.
    fn choose_format(
        formats: &[CameraFormat],
        width: u32,
        height: u32,
        fps: u32,
    ) -> Option<CameraFormat> {
        let rank = |format: FrameFormat| FORMATS.iter().position(|f| *f == format);
        formats
            .iter()
            .filter_map(|format| {
                let rank = rank(format.format())?;
                let dx = i64::from(format.width()) - i64::from(width);
                let dy = i64::from(format.height()) - i64::from(height);
                let fps_distance = (i64::from(format.frame_rate()) - i64::from(fps)).abs();
                Some(((dx * dx + dy * dy, rank, fps_distance), *format))
            })
            .min_by_key(|(key, _)| *key)
            .map(|(_, format)| format)
    }

    /// One buffer from the camera as a checked JPEG frame.
    fn to_frame(
        format: FrameFormat,
        resolution: Resolution,
        data: &[u8],
    ) -> Result<Frame, CameraError> {
        let jpeg = match format {
            FrameFormat::MJPEG => match Scanner::new().advance(data)? {
                Scan::Complete { len, .. } => Bytes::copy_from_slice(&data[..len]),
                Scan::Incomplete => {
                    return Err(CameraError::Protocol {
                        detail: format!("a truncated MJPEG frame ({} bytes)", data.len()),
                    });
                }
            },
            raw => Bytes::from(encode_raw(raw, resolution.width(), resolution.height(), data)?),
        };
        let (width, height) = jpeg::inspect(&jpeg)?;
        Ok(Frame { captured_at: UnixMillis::now(), jpeg, width, height })
    }

    /// Converts a raw frame to JPEG.
    fn encode_raw(
        format: FrameFormat,
        width: u32,
        height: u32,
        data: &[u8],
    ) -> Result<Vec<u8>, CameraError> {
        let protocol = |detail: String| CameraError::Protocol { detail };
        let (Ok(width16), Ok(height16)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(protocol(format!("a {width}x{height} frame is too large for JPEG")));
        };
        let pixels = usize::from(width16) * usize::from(height16);
        let (bytes_per_frame, color) = match format {
            FrameFormat::YUYV => (pixels * 2, jpeg_encoder::ColorType::Rgb),
            FrameFormat::NV12 => (pixels * 3 / 2, jpeg_encoder::ColorType::Rgb),
            FrameFormat::GRAY => (pixels, jpeg_encoder::ColorType::Luma),
            FrameFormat::RAWRGB => (pixels * 3, jpeg_encoder::ColorType::Rgb),
            FrameFormat::RAWBGR => (pixels * 3, jpeg_encoder::ColorType::Bgr),
            FrameFormat::MJPEG => return Err(protocol("MJPEG is not a raw format".into())),
        };
        let Some(data) = data.get(..bytes_per_frame) else {
            return Err(protocol(format!(
                "a {format} frame of {} bytes, {width}x{height} needs {bytes_per_frame}",
                data.len()
            )));
        };
        let converted;
        let pixels = match format {
            FrameFormat::YUYV => {
                converted = nokhwa::utils::yuyv422_to_rgb(data, false)
                    .map_err(|error| protocol(error.to_string()))?;
                &converted[..]
            }
            FrameFormat::NV12 => {
                converted = nokhwa::utils::nv12_to_rgb(Resolution::new(width, height), data, false)
                    .map_err(|error| protocol(error.to_string()))?;
                &converted[..]
            }
            _ => data,
        };
        let mut jpeg = Vec::with_capacity(bytes_per_frame / 4);
        jpeg_encoder::Encoder::new(&mut jpeg, JPEG_QUALITY)
            .encode(pixels, width16, height16, color)
            .map_err(|error| protocol(format!("cannot encode a {format} frame: {error}")))?;
        Ok(jpeg)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn decode(jpeg: &[u8]) -> (jpeg_decoder::ImageInfo, Vec<u8>) {
            let mut decoder = jpeg_decoder::Decoder::new(jpeg);
            let pixels = decoder.decode().unwrap();
            (decoder.info().unwrap(), pixels)
        }

        #[test]
        fn raw_frames_are_encoded_and_decode_to_their_colour() {
            // 4x2 mid-grey YUYV (Y=128, U=V=128), a green RGB and a grey frame.
            let yuyv = [128u8; 4 * 2 * 2];
            let frame = to_frame(FrameFormat::YUYV, Resolution::new(4, 2), &yuyv).unwrap();
            assert_eq!((frame.width, frame.height), (4, 2));
            let (info, pixels) = decode(&frame.jpeg);
            assert_eq!((info.width, info.height), (4, 2));
            assert!(pixels.iter().all(|&p| p.abs_diff(128) <= 3), "{pixels:?}");

            let green: Vec<u8> = (0..8).flat_map(|_| [0u8, 255, 0]).collect();
            let frame = to_frame(FrameFormat::RAWRGB, Resolution::new(4, 2), &green).unwrap();
            let (_, pixels) = decode(&frame.jpeg);
            assert!(pixels.chunks(3).all(|p| p[0] < 40 && p[1] > 215 && p[2] < 40), "{pixels:?}");

            let frame = to_frame(FrameFormat::GRAY, Resolution::new(4, 2), &[7u8; 8]).unwrap();
            assert_eq!((frame.width, frame.height), (4, 2));
        }

        #[test]
        fn short_and_padded_buffers() {
            let short = to_frame(FrameFormat::YUYV, Resolution::new(4, 2), &[0u8; 10]);
            assert!(matches!(short, Err(CameraError::Protocol { .. })), "{short:?}");

            let mut padded = Vec::new();
            jpeg_encoder::Encoder::new(&mut padded, 80)
                .encode(&[9u8; 16 * 8], 16, 8, jpeg_encoder::ColorType::Luma)
                .unwrap();
            let image_len = padded.len();
            padded.extend_from_slice(&[0u8; 100]);
            let frame = to_frame(FrameFormat::MJPEG, Resolution::new(16, 8), &padded).unwrap();
            assert_eq!(frame.jpeg.len(), image_len);
            assert_eq!((frame.width, frame.height), (16, 8));
        }

        #[test]
        fn the_closest_size_wins_then_mjpeg_then_the_frame_rate() {
            let format = |w, h, f, fps| CameraFormat::new(Resolution::new(w, h), f, fps);
            let offered = [
                format(1920, 1080, FrameFormat::MJPEG, 30),
                format(640, 480, FrameFormat::YUYV, 30),
                format(640, 480, FrameFormat::MJPEG, 30),
                format(640, 480, FrameFormat::MJPEG, 5),
                format(320, 240, FrameFormat::MJPEG, 5),
            ];
            assert_eq!(choose_format(&offered, 640, 480, 5), Some(offered[3]));
            assert_eq!(choose_format(&offered, 1600, 900, 5), Some(offered[0]));
            assert_eq!(choose_format(&offered[1..2], 1920, 1080, 5), Some(offered[1]));
            assert_eq!(choose_format(&[], 640, 480, 5), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_indexes_paths_or_links() {
        assert_eq!(device_index("0"), Ok(0));
        assert_eq!(device_index(" /dev/video12 "), Ok(12));
        assert!(device_index("webcam").is_err());
        let missing = device_index("/dev/v4l/by-id/usb-nothing-video-index0").unwrap_err();
        assert!(missing.contains("is the camera plugged in?"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-camera");
        std::fs::write(&file, b"").unwrap();
        let error = device_index(file.to_str().unwrap()).unwrap_err();
        assert!(error.contains("is not a V4L2 device"), "{error}");
    }
}
