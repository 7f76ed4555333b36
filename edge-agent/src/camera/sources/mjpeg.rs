//! MJPEG over HTTP: one `multipart/x-mixed-replace` response whose parts are JPEG frames
//! (ustreamer, mjpg-streamer, camera-streamer, crowsnest, Moonraker webcams, many IP cameras).
//!
//! ```text
//! HTTP/1.1 200 OK
//! Content-Type: multipart/x-mixed-replace;boundary=boundarydonotcross
//!
//! --boundarydonotcross
//! Content-Type: image/jpeg
//! Content-Length: 48213          (optional)
//!
//! <JPEG>
//! --boundarydonotcross
//! …
//! ```
//!
//! Servers differ, so the parser is tolerant: a part may or may not carry `Content-Length`
//! (without it the part ends at the next delimiter line), the `boundary` parameter may already
//! include the leading `--`, lines may end in CRLF or LF, and white space after a JPEG is
//! ignored. It is strict where memory is at stake: a part longer than
//! [`MAX_FRAME_BYTES`] fails with [`CameraError::FrameTooLarge`] (declared or not), and
//! header blocks and the bytes before the first delimiter are bounded too.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use proto::UnixMillis;

use super::http::{self, HttpUrl, Response, media_parameter, media_type};
use crate::camera::jpeg::{self, hex_prefix};
use crate::camera::{BoxFuture, CameraError, CameraSource, Frame, FrameStream, MAX_FRAME_BYTES};

/// The longest wait for one whole frame.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for the response head (connection, status, headers).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes accepted before a delimiter line, or in one part's headers.
const MAX_OVERHEAD_BYTES: usize = 64 * 1024;

/// An MJPEG URL.
#[derive(Clone)]
pub struct MjpegSource {
    /// May hold `user:password@`; shown only through [`crate::camera::sources::redact_url`].
    url: String,
    /// The longest wait for one whole frame.
    pub frame_timeout: Duration,
    /// The longest wait for the response head.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for MjpegSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MjpegSource")
            .field("url", &super::redact_url(&self.url))
            .field("frame_timeout", &self.frame_timeout)
            .finish_non_exhaustive()
    }
}

impl MjpegSource {
    pub fn new(url: String) -> MjpegSource {
        MjpegSource {
            url,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    async fn connect(&self) -> Result<MjpegStream, CameraError> {
        let url =
            HttpUrl::parse(&self.url).map_err(|detail| CameraError::Unavailable { detail })?;
        let response =
            http::get(&url, "multipart/x-mixed-replace, */*;q=0.1", self.connect_timeout).await?;
        let content_type = response.content_type.clone();
        let media = media_type(&content_type);
        if !media.starts_with("multipart/") {
            let hint = if media == "image/jpeg" {
                "; this URL serves single images: configure it as a snapshot URL"
            } else {
                ""
            };
            return Err(CameraError::Protocol {
                detail: format!(
                    "{} answered {:?}, not an MJPEG stream (multipart/x-mixed-replace){hint}",
                    url.shown, content_type
                ),
            });
        }
        let Some(boundary) = media_parameter(&content_type, "boundary") else {
            return Err(CameraError::Protocol {
                detail: format!("{} gave no boundary in {content_type:?}", url.shown),
            });
        };
        let parts = Multipart::new(&boundary)?;
        Ok(MjpegStream { url, response, parts, frame_timeout: self.frame_timeout })
    }
}

impl CameraSource for MjpegSource {
    fn describe(&self) -> String {
        format!("MJPEG stream {}", super::redact_url(&self.url))
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

#[derive(Debug)]
struct MjpegStream {
    url: HttpUrl,
    response: Response,
    parts: Multipart,
    frame_timeout: Duration,
}

impl FrameStream for MjpegStream {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>> {
        Box::pin(async move { crate::camera::within(self.frame_timeout, self.read_frame()).await })
    }
}

impl MjpegStream {
    async fn read_frame(&mut self) -> Result<Frame, CameraError> {
        loop {
            if let Some(part) = self.parts.next_part()? {
                let (width, height) = jpeg::inspect(&part).map_err(|error| match error {
                    CameraError::Protocol { detail } => CameraError::Protocol {
                        detail: format!("a part of {} is not a JPEG ({detail})", self.url.shown),
                    },
                    other => other,
                })?;
                return Ok(Frame { captured_at: UnixMillis::now(), jpeg: part, width, height });
            }
            match self.response.chunk(&self.url).await? {
                Some(data) => self.parts.push(&data),
                None => return Err(CameraError::Ended),
            }
        }
    }
}

/// Splits a multipart body into parts, fed as it arrives (sans-IO).
struct Multipart {
    /// The boundary without leading dashes.
    boundary: Vec<u8>,
    buffer: BytesMut,
    state: State,
    /// Where the search for the boundary resumes (earlier bytes hold no delimiter start).
    searched: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a delimiter line: the preamble, or the line break after a sized part.
    Delimiter,
    /// In a part's header block.
    Headers,
    /// In a part's body, its length known or not.
    Body { length: Option<usize> },
}

impl std::fmt::Debug for Multipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multipart")
            .field("boundary", &String::from_utf8_lossy(&self.boundary))
            .field("buffered", &self.buffer.len())
            .field("state", &self.state)
            .finish()
    }
}

impl Multipart {
    fn new(boundary: &str) -> Result<Multipart, CameraError> {
        let core = boundary.trim().trim_start_matches('-');
        if core.is_empty() {
            return Err(CameraError::Protocol {
                detail: format!("unusable multipart boundary {boundary:?}"),
            });
        }
        Ok(Multipart {
            boundary: core.as_bytes().to_vec(),
            buffer: BytesMut::new(),
            state: State::Delimiter,
            searched: 0,
        })
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole part, if the buffered bytes hold one.
    fn next_part(&mut self) -> Result<Option<Bytes>, CameraError> {
        loop {
            match self.state {
                State::Delimiter => {
                    let Some((_, after)) = self.find_delimiter(0) else {
                        if self.buffer.len() > MAX_OVERHEAD_BYTES {
                            return Err(CameraError::Protocol {
                                detail: format!(
                                    "no boundary line --{} in {} bytes (they start with {})",
                                    String::from_utf8_lossy(&self.boundary),
                                    self.buffer.len(),
                                    hex_prefix(&self.buffer)
                                ),
                            });
                        }
                        return Ok(None);
                    };
                    self.consume(after);
                    self.state = State::Headers;
                }
                State::Headers => {
                    let Some((block_len, after)) = header_block_end(&self.buffer) else {
                        if self.buffer.len() > MAX_OVERHEAD_BYTES {
                            return Err(CameraError::Protocol {
                                detail: format!(
                                    "a part's headers are longer than {MAX_OVERHEAD_BYTES} bytes"
                                ),
                            });
                        }
                        return Ok(None);
                    };
                    let length = content_length(&self.buffer[..block_len])?;
                    if let Some(length) = length
                        && length > MAX_FRAME_BYTES
                    {
                        return Err(CameraError::FrameTooLarge {
                            claimed: length as u64,
                            max: MAX_FRAME_BYTES as u64,
                        });
                    }
                    self.consume(after);
                    self.state = State::Body { length };
                }
                State::Body { length: Some(length) } => {
                    if self.buffer.len() < length {
                        return Ok(None);
                    }
                    let part = self.buffer.split_to(length).freeze();
                    self.searched = 0;
                    self.state = State::Delimiter;
                    return Ok(Some(trim_end(part)));
                }
                State::Body { length: None } => {
                    let Some((line_start, after)) = self.find_delimiter(1) else {
                        let overhead = self.boundary.len() + 8;
                        if self.buffer.len() > MAX_FRAME_BYTES + overhead {
                            return Err(CameraError::FrameTooLarge {
                                claimed: self.buffer.len() as u64,
                                max: MAX_FRAME_BYTES as u64,
                            });
                        }
                        return Ok(None);
                    };
                    let part = self.buffer.split_to(line_start).freeze();
                    self.consume(after - line_start);
                    self.state = State::Headers;
                    return Ok(Some(trim_end(part)));
                }
            }
        }
    }

    fn consume(&mut self, len: usize) {
        self.buffer.advance(len);
        self.searched = 0;
    }

    /// Finds a delimiter line: optional dashes, the boundary, then only white space or the
    /// closing `--` up to the line end. Returns where the line starts and where the next
    /// line starts. `min_start` 1 requires a line break before it (inside a body).
    fn find_delimiter(&mut self, min_start: usize) -> Option<(usize, usize)> {
        let finder = memchr::memmem::Finder::new(&self.boundary);
        let mut from = self.searched.min(self.buffer.len());
        while let Some(offset) = finder.find(&self.buffer[from..]) {
            let at = from + offset;
            let line_start =
                memchr::memrchr(b'\n', &self.buffer[..at]).map_or(0, |newline| newline + 1);
            let only_dashes = self.buffer[line_start..at].iter().all(|&b| b == b'-');
            if only_dashes && line_start >= min_start {
                let rest_start = at + self.boundary.len();
                let Some(newline) = memchr::memchr(b'\n', &self.buffer[rest_start..]) else {
                    // The line is not complete yet: search again from here next time.
                    self.searched = at;
                    return None;
                };
                let rest = self.buffer[rest_start..rest_start + newline].trim_ascii();
                if rest.is_empty() || rest == b"--" {
                    return Some((line_start, rest_start + newline + 1));
                }
            }
            from = at + 1;
        }
        // A boundary may be split across pushes: keep its possible start in view.
        self.searched = self.buffer.len().saturating_sub(self.boundary.len());
        None
    }
}

/// The end of a header block: its length and where the body starts (CRLF CRLF or LF LF).
fn header_block_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    while let Some(newline) = memchr::memchr(b'\n', &buffer[line_start..]) {
        let line_end = line_start + newline;
        if buffer[line_start..line_end].trim_ascii().is_empty() {
            return Some((line_start, line_end + 1));
        }
        line_start = line_end + 1;
    }
    None
}

fn content_length(block: &[u8]) -> Result<Option<usize>, CameraError> {
    for line in block.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            return value.parse().map(Some).map_err(|_| CameraError::Protocol {
                detail: format!("a part has an invalid Content-Length {value:?}"),
            });
        }
    }
    Ok(None)
}

/// Without trailing white space (line breaks some servers leave after the JPEG).
fn trim_end(mut part: Bytes) -> Bytes {
    let kept = part.trim_ascii_end().len();
    part.truncate(kept);
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(boundary: &str, body: &[u8], piece: usize) -> Result<Vec<Bytes>, CameraError> {
        let mut parser = Multipart::new(boundary)?;
        let mut parts = Vec::new();
        for chunk in body.chunks(piece) {
            parser.push(chunk);
            while let Some(part) = parser.next_part()? {
                parts.push(part);
            }
        }
        Ok(parts)
    }

    #[test]
    fn parts_with_and_without_lengths_in_any_piece_size() {
        let body = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nAB\r\nC\r\n\
                     --frame\r\nContent-Type: image/jpeg\r\n\r\nDEF\r\n\
                     --frame\nContent-Type: image/jpeg\n\nG\n--frame--\r\n";
        for piece in [1, 2, 3, 7, 64, body.len()] {
            let parts = parts_of("frame", body, piece).unwrap();
            assert_eq!(parts, [&b"AB\r\nC"[..], b"DEF", b"G"], "piece size {piece}");
        }
    }

    #[test]
    fn a_boundary_given_with_dashes_and_a_preamble_are_tolerated() {
        let body =
            b"preamble\r\n--myboundary\r\n\r\nX\r\n--myboundary\r\n\r\nY\r\n--myboundary\r\n";
        assert_eq!(parts_of("--myboundary", body, 5).unwrap(), [&b"X"[..], b"Y"]);
        let body = b"----myboundary\r\n\r\nX\r\n----myboundary\r\n";
        assert_eq!(parts_of("--myboundary", body, 5).unwrap(), [&b"X"[..]]);
    }

    #[test]
    fn the_boundary_inside_a_line_does_not_split_a_part() {
        let body = b"--b\r\n\r\nxx--b yy\r\n--b\r\n";
        assert_eq!(parts_of("b", body, 1).unwrap(), [&b"xx--b yy"[..]]);
    }

    #[test]
    fn oversized_and_endless_parts_are_refused() {
        let declared = format!("--b\r\nContent-Length: {}\r\n\r\n", MAX_FRAME_BYTES + 1);
        assert_eq!(
            parts_of("b", declared.as_bytes(), 1000),
            Err(CameraError::FrameTooLarge {
                claimed: MAX_FRAME_BYTES as u64 + 1,
                max: MAX_FRAME_BYTES as u64
            })
        );
        let mut parser = Multipart::new("b").unwrap();
        parser.push(b"--b\r\n\r\n");
        let chunk = vec![0u8; 64 * 1024];
        let result = loop {
            parser.push(&chunk);
            match parser.next_part() {
                Ok(None) => assert!(parser.buffer.len() <= MAX_FRAME_BYTES + 2 * chunk.len()),
                other => break other,
            }
        };
        assert!(matches!(result, Err(CameraError::FrameTooLarge { .. })), "{result:?}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(
            pieces in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![b'-', b'b', b'\r', b'\n', b':', b'0', b'x']),
                    0..64,
                ),
                0..64,
            ),
        ) {
            let mut parser = Multipart::new("--b").unwrap();
            for piece in pieces {
                parser.push(&piece);
                while let Ok(Some(_)) = parser.next_part() {}
            }
        }
    }

    #[test]
    fn garbage_without_a_boundary_is_refused() {
        let garbage = vec![b'x'; MAX_OVERHEAD_BYTES + 1];
        let result = parts_of("b", &garbage, 4096);
        assert!(matches!(result, Err(CameraError::Protocol { .. })), "{result:?}");
        let result = parts_of("b", b"--b\r\nContent-Length: lots\r\n\r\n", 4096);
        assert!(matches!(result, Err(CameraError::Protocol { .. })), "{result:?}");
    }
}
