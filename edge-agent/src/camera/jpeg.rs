//! Just enough JPEG to tell a whole image from garbage, without decoding it.
//!
//! A JPEG (ITU T.81, Annex B) is `FF D8` (SOI), then marker segments `FF xx <u16 BE length>
//! <length - 2 bytes>`, among them one frame header (SOFn) giving the height and width, then
//! one or more scans: an SOS segment followed by entropy-coded data, in which a literal `FF`
//! byte is always stuffed as `FF 00` (or is a restart marker `FF D0`..`FF D7`), and finally
//! `FF D9` (EOI). Any number of `FF` fill bytes may precede a marker.
//!
//! [`Scanner`] walks that structure incrementally, so a source reading a byte stream (ffmpeg's
//! stdout, a USB camera's padded buffers) can find where one image ends without searching for
//! `FF D9` blindly (those two bytes may legitimately sit inside a segment) and without
//! rescanning from the start each time more bytes arrive. [`inspect`] is the strict check
//! every [`Frame`](super::Frame) passes: one whole image, nothing before or after it.

use super::CameraError;

/// Checks that `bytes` is one whole baseline or progressive JPEG (SOI, a frame header,
/// EOI at the end) and returns its width and height.
pub fn inspect(bytes: &[u8]) -> Result<(u16, u16), CameraError> {
    if bytes.is_empty() {
        return Err(protocol("an empty image (no bytes)".into()));
    }
    match Scanner::new().advance(bytes)? {
        Scan::Complete { len, width, height } if len == bytes.len() => Ok((width, height)),
        Scan::Complete { len, .. } => Err(protocol(format!(
            "{} bytes follow the end of the image (FF D9 at byte {})",
            bytes.len() - len,
            len - 2
        ))),
        Scan::Incomplete => Err(protocol(format!(
            "the image is truncated: no end marker (FF D9) in {} bytes",
            bytes.len()
        ))),
    }
}

/// Where a [`Scanner`] got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The bytes so far are the valid start of an image; more are needed.
    Incomplete,
    /// The image ends after `len` bytes (its last two are `FF D9`).
    Complete { len: usize, width: u16, height: u16 },
}

/// Finds the end of one JPEG at the start of a buffer that grows as bytes arrive.
///
/// Call [`advance`](Scanner::advance) with the whole buffer each time it has grown; the
/// scanner resumes where it stopped, so the total work is linear in the image size. After
/// [`Scan::Complete`] or an error, start a new scanner for the next image.
#[derive(Debug, Default, Clone)]
pub struct Scanner {
    /// The first byte not yet examined.
    pos: usize,
    /// Inside entropy-coded data (after an SOS segment).
    in_scan: bool,
    seen_scan: bool,
    size: Option<(u16, u16)>,
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// Continues over `bytes`, which must start with the same bytes as at the previous call.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<Scan, CameraError> {
        if self.pos == 0 {
            match bytes {
                [] | [0xFF] => return Ok(Scan::Incomplete),
                [0xFF, 0xD8, ..] => self.pos = 2,
                _ => {
                    return Err(protocol(format!(
                        "not a JPEG: it starts with {} instead of FF D8",
                        hex_prefix(bytes)
                    )));
                }
            }
        }
        loop {
            if self.in_scan {
                let Some(rest) = bytes.get(self.pos..) else { return Ok(Scan::Incomplete) };
                let Some(offset) = memchr::memchr(0xFF, rest) else {
                    self.pos = bytes.len();
                    return Ok(Scan::Incomplete);
                };
                let at = self.pos + offset;
                let Some(&next) = bytes.get(at + 1) else {
                    self.pos = at;
                    return Ok(Scan::Incomplete);
                };
                match next {
                    // A stuffed data byte or a restart marker: still in the scan.
                    0x00 | 0xD0..=0xD7 => self.pos = at + 2,
                    // A fill byte before a marker.
                    0xFF => self.pos = at + 1,
                    _ => {
                        self.pos = at;
                        self.in_scan = false;
                    }
                }
                continue;
            }
            let (Some(&first), Some(&marker)) = (bytes.get(self.pos), bytes.get(self.pos + 1))
            else {
                return Ok(Scan::Incomplete);
            };
            if first != 0xFF {
                return Err(protocol(format!(
                    "expected a marker at byte {}, found {first:02X}",
                    self.pos
                )));
            }
            match marker {
                0xFF => {
                    self.pos += 1;
                    continue;
                }
                0xD9 => return self.end(),
                0xD8 => {
                    return Err(protocol(format!("a second start marker at byte {}", self.pos)));
                }
                0x00 => {
                    return Err(protocol(format!(
                        "a stuffed byte FF 00 outside scan data at byte {}",
                        self.pos
                    )));
                }
                0x01 | 0xD0..=0xD7 => {
                    self.pos += 2;
                    continue;
                }
                _ => {}
            }
            let Some(length) = bytes.get(self.pos + 2..self.pos + 4) else {
                return Ok(Scan::Incomplete);
            };
            let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
            if length < 2 {
                return Err(protocol(format!(
                    "segment FF {marker:02X} at byte {} has an invalid length {length}",
                    self.pos
                )));
            }
            let body_start = self.pos + 4;
            let Some(body) = bytes.get(body_start..self.pos + 2 + length) else {
                return Ok(Scan::Incomplete);
            };
            if is_frame_header(marker) {
                self.frame_header(marker, body)?;
            } else if marker == 0xDA {
                if self.size.is_none() {
                    return Err(protocol("scan data before the frame header (SOF)".into()));
                }
                self.in_scan = true;
                self.seen_scan = true;
            }
            self.pos += 2 + length;
        }
    }

    fn frame_header(&mut self, marker: u8, body: &[u8]) -> Result<(), CameraError> {
        if self.size.is_some() {
            return Err(protocol(format!("a second frame header (FF {marker:02X})")));
        }
        // Precision, height, width, component count, then 3 bytes per component.
        let [_precision, h1, h0, w1, w0, components, ..] = *body else {
            return Err(protocol(format!("the frame header FF {marker:02X} is too short")));
        };
        if body.len() < 6 + 3 * usize::from(components) {
            return Err(protocol(format!("the frame header FF {marker:02X} is too short")));
        }
        let height = u16::from_be_bytes([h1, h0]);
        let width = u16::from_be_bytes([w1, w0]);
        if width == 0 || height == 0 {
            return Err(protocol(format!(
                "the frame header gives a zero width or height ({width}x{height})"
            )));
        }
        self.size = Some((width, height));
        Ok(())
    }

    fn end(&mut self) -> Result<Scan, CameraError> {
        let Some((width, height)) = self.size else {
            return Err(protocol("the image has no frame header (SOF)".into()));
        };
        if !self.seen_scan {
            return Err(protocol("the image has no scan data (SOS)".into()));
        }
        Ok(Scan::Complete { len: self.pos + 2, width, height })
    }
}

/// SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
fn is_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn protocol(detail: String) -> CameraError {
    CameraError::Protocol { detail }
}

/// The first bytes of `bytes` in hex, for error messages (`FF D8 FF E0`).
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing".into();
    }
    let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02X}")).collect();
    let more = if bytes.len() > 8 { " …" } else { "" };
    format!("{}{more}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(width: u16, height: u16, progressive: bool) -> Vec<u8> {
        let pixels: Vec<u8> = (0..usize::from(width) * usize::from(height) * 3)
            .map(|i| u8::try_from(i % 251).expect("below 256"))
            .collect();
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 80);
        encoder.set_progressive(progressive);
        encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encodes");
        out
    }

    fn detail(result: Result<(u16, u16), CameraError>) -> String {
        match result {
            Err(CameraError::Protocol { detail }) => detail,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn baseline_and_progressive_images_give_their_size() {
        assert_eq!(inspect(&encode(64, 48, false)), Ok((64, 48)));
        assert_eq!(inspect(&encode(33, 17, true)), Ok((33, 17)));
    }

    #[test]
    fn truncated_images_are_refused() {
        let image = encode(64, 48, false);
        for cut in [0, 1, 2, 3, 20, image.len() / 2, image.len() - 1] {
            let result = inspect(&image[..cut]);
            assert!(
                matches!(result, Err(CameraError::Protocol { .. })),
                "cut at {cut}: {result:?}"
            );
        }
        expect_test::expect!["the image is truncated: no end marker (FF D9) in 2 bytes"]
            .assert_eq(&detail(inspect(&image[..2])));
    }

    #[test]
    fn garbage_is_refused_with_what_it_starts_with() {
        expect_test::expect![
            "not a JPEG: it starts with 3C 68 74 6D 6C 3E 6E 6F … instead of FF D8"
        ]
        .assert_eq(&detail(inspect(b"<html>nope</html>")));
        expect_test::expect!["an empty image (no bytes)"].assert_eq(&detail(inspect(b"")));
        expect_test::expect!["expected a marker at byte 2, found 00"]
            .assert_eq(&detail(inspect(&[0xFF, 0xD8, 0x00, 0x01, 0xFF, 0xD9])));
        expect_test::expect!["the image has no frame header (SOF)"]
            .assert_eq(&detail(inspect(&[0xFF, 0xD8, 0xFF, 0xD9])));
    }

    #[test]
    fn bytes_after_the_end_are_refused() {
        let mut image = encode(8, 8, false);
        image.extend_from_slice(&[0, 0, 0]);
        let end = image.len() - 5;
        assert_eq!(
            detail(inspect(&image)),
            format!("3 bytes follow the end of the image (FF D9 at byte {end})")
        );
    }

    #[test]
    fn zero_dimensions_are_refused() {
        let mut image = encode(16, 16, false);
        let sof = image.windows(2).position(|pair| pair == [0xFF, 0xC0]).expect("has SOF0");
        // FF C0, length (2), precision (1), then height and width.
        image[sof + 5..sof + 7].copy_from_slice(&[0, 0]);
        expect_test::expect!["the frame header gives a zero width or height (16x0)"]
            .assert_eq(&detail(inspect(&image)));
    }

    #[test]
    fn an_end_marker_inside_a_segment_does_not_end_the_image() {
        let image = encode(16, 16, false);
        // An APP1 segment whose payload contains FF D9, right after SOI.
        let mut tricky = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0xFF, 0xD9];
        tricky.extend_from_slice(&image[2..]);
        assert_eq!(inspect(&tricky), Ok((16, 16)));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = inspect(&bytes);
            let mut scanner = Scanner::new();
            for end in (0..=bytes.len()).step_by(7) {
                if !matches!(scanner.advance(&bytes[..end]), Ok(Scan::Incomplete)) {
                    break;
                }
            }
        }

        #[test]
        fn damaged_images_never_panic(
            damage in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8),
            cut in 0usize..4096,
        ) {
            let mut image = encode(24, 16, false);
            for (at, value) in damage {
                let len = image.len();
                image[at % len] = value;
            }
            let _ = inspect(&image[..cut.min(image.len())]);
            let _ = inspect(&image);
        }
    }

    #[test]
    fn the_scanner_resumes_byte_by_byte_and_finds_the_end_in_a_stream() {
        let first = encode(24, 16, false);
        let mut stream = first.clone();
        stream.extend_from_slice(&encode(8, 8, true));
        let mut scanner = Scanner::new();
        let mut found = None;
        for end in 0..=stream.len() {
            match scanner.advance(&stream[..end]).expect("valid so far") {
                Scan::Incomplete => {}
                complete => {
                    found = Some(complete);
                    break;
                }
            }
        }
        assert_eq!(found, Some(Scan::Complete { len: first.len(), width: 24, height: 16 }));
    }
}
