//! Framing: how one message becomes bytes on a stream, and back.
//!
//! ```text
//! offset  size  field
//! 0       2     magic, ASCII "KT"
//! 2       2     protocol version, u16 little-endian
//! 4       4     payload length in bytes, u32 little-endian
//! 8       len   payload: one postcard-encoded AgentMessage or HubMessage
//! ```
//!
//! A frame's version is the first protocol version that has everything in its payload
//! ([`Message::since`]), not simply the newest this build speaks: a hub's `Welcome` or an
//! agent's `Hello` is then readable by a peer of any version, which can answer with the
//! version the session will use. A sender never sends a frame newer than its session's
//! version (the evolution rules in the crate's documentation).
//!
//! The reader chooses the largest payload it accepts and rejects a longer frame from its
//! header alone, before buffering it. A payload must be consumed exactly by the message it
//! encodes: trailing bytes are an error, not padding.

use serde::{Serialize, de::DeserializeOwned};

use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"KT";

/// The length of a frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// The default limit on a frame's payload: large enough for a 720p live-view JPEG.
pub const DEFAULT_MAX_PAYLOAD: u32 = 4 * 1024 * 1024;

/// The largest payload this crate ever encodes; no reader needs to accept more.
pub const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame does not start with `KT`: the peer does not speak this protocol.
    #[error("not a kitt frame (magic {found:02x?}, expected \"KT\")")]
    BadMagic { found: [u8; 2] },
    /// The frame's version is outside the range this build decodes.
    #[error("unsupported protocol version {version} (this build speaks {min} to {max})")]
    UnsupportedVersion { version: u16, min: u16, max: u16 },
    /// The frame announces a payload longer than the reader accepts.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u32, max: u32 },
    /// The bytes end before the frame does.
    #[error("truncated frame: {needed} more bytes needed")]
    Truncated { needed: usize },
    /// The payload is not a valid message: unknown variant, bad UTF-8, invalid id, …
    #[error("malformed payload: {0}")]
    Malformed(#[from] postcard::Error),
    /// The message ended before the payload did.
    #[error("{count} unexpected bytes after the message inside the frame")]
    TrailingBytes { count: usize },
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the largest frame payload ({MAX_PAYLOAD} bytes)")]
    TooLarge { len: usize },
    #[error("cannot encode message: {0}")]
    Postcard(#[from] postcard::Error),
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub payload_len: u32,
}

impl FrameHeader {
    /// Parses and checks a header: magic, supported version, and `payload_len <= max_payload`.
    pub fn parse(bytes: [u8; HEADER_LEN], max_payload: u32) -> Result<FrameHeader, DecodeError> {
        let [m0, m1, v0, v1, l0, l1, l2, l3] = bytes;
        if [m0, m1] != MAGIC {
            return Err(DecodeError::BadMagic { found: [m0, m1] });
        }
        let version = u16::from_le_bytes([v0, v1]);
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                version,
                min: MIN_PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            });
        }
        let payload_len = u32::from_le_bytes([l0, l1, l2, l3]);
        if payload_len > max_payload {
            return Err(DecodeError::TooLarge { len: payload_len, max: max_payload });
        }
        Ok(FrameHeader { version, payload_len })
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let [v0, v1] = self.version.to_le_bytes();
        let [l0, l1, l2, l3] = self.payload_len.to_le_bytes();
        [MAGIC[0], MAGIC[1], v0, v1, l0, l1, l2, l3]
    }
}

/// A top-level message, which knows the first protocol version that can carry it.
pub trait Message: Serialize {
    /// The version its frame is labelled with (never above [`PROTOCOL_VERSION`]).
    fn since(&self) -> u16;
}

impl Message for crate::AgentMessage {
    fn since(&self) -> u16 {
        crate::AgentMessage::since(self)
    }
}

impl Message for crate::HubMessage {
    fn since(&self) -> u16 {
        crate::HubMessage::since(self)
    }
}

/// Encodes `message` as one frame labelled with its [`Message::since`] version.
pub fn encode<T: Message>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(message, &mut out)?;
    Ok(out)
}

/// Appends `message` as one frame to `out`. On error `out` is left as it was.
pub fn encode_into<T: Message>(message: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let payload = postcard::to_stdvec(message)?;
    let payload_len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len <= MAX_PAYLOAD)
        .ok_or(EncodeError::TooLarge { len: payload.len() })?;
    let header = FrameHeader { version: message.since().min(PROTOCOL_VERSION), payload_len };
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes exactly one frame that fills `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_payload: u32) -> Result<T, DecodeError> {
    match decode_prefix(bytes, max_payload)? {
        Some((message, used)) if used == bytes.len() => Ok(message),
        Some((_, used)) => Err(DecodeError::TrailingBytes { count: bytes.len() - used }),
        None => Err(DecodeError::Truncated { needed: needed(bytes, max_payload)? }),
    }
}

/// Decodes the frame at the start of `bytes`: `Ok(None)` when more bytes are needed,
/// otherwise the message and the number of bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(
    bytes: &[u8],
    max_payload: u32,
) -> Result<Option<(T, usize)>, DecodeError> {
    let Some(header) = header_of(bytes, max_payload)? else {
        return Ok(None);
    };
    let end = HEADER_LEN + header.payload_len as usize;
    let Some(payload) = bytes.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    let (message, rest) = postcard::take_from_bytes::<T>(payload)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    Ok(Some((message, end)))
}

fn header_of(bytes: &[u8], max_payload: u32) -> Result<Option<FrameHeader>, DecodeError> {
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        // Reject a foreign peer as early as its first two bytes.
        if let Some(&[m0, m1]) = bytes.first_chunk::<2>()
            && [m0, m1] != MAGIC
        {
            return Err(DecodeError::BadMagic { found: [m0, m1] });
        }
        return Ok(None);
    };
    FrameHeader::parse(*header, max_payload).map(Some)
}

fn needed(bytes: &[u8], max_payload: u32) -> Result<usize, DecodeError> {
    Ok(match header_of(bytes, max_payload)? {
        Some(header) => HEADER_LEN + header.payload_len as usize - bytes.len(),
        None => HEADER_LEN - bytes.len(),
    })
}

/// Splits a byte stream into messages. Memory is bounded by one frame: the header is
/// checked against the limit before the payload is buffered.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    max_payload: u32,
}

impl FrameDecoder {
    pub fn new(max_payload: u32) -> FrameDecoder {
        FrameDecoder { buffer: Vec::new(), max_payload }
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// How many more bytes the next frame needs, judged from what is buffered. Callers that
    /// read a stream use it to read no further than one frame.
    pub fn wanted(&self) -> Result<usize, DecodeError> {
        needed(&self.buffer, self.max_payload).map(|n| n.max(1))
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. After an error
    /// the stream is out of sync and should be closed.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, DecodeError> {
        match decode_prefix::<T>(&self.buffer, self.max_payload)? {
            Some((message, used)) => {
                self.buffer.drain(..used);
                Ok(Some(message))
            }
            None => Ok(None),
        }
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}
