//! Framed messages on a QUIC stream (the frame format is `proto::frame`).

use proto::frame::{DecodeError, FrameDecoder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer closed the stream")]
    Closed,
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode a message: {0}")]
    Encode(String),
}

/// Reads frames from one stream, in chunks, so that every message already received can be
/// taken without waiting (the hub batches them into one commit).
#[derive(Debug)]
pub struct FrameReader<R> {
    stream: R,
    decoder: FrameDecoder,
    buffer: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(stream: R, max_payload: u32) -> FrameReader<R> {
        FrameReader { stream, decoder: FrameDecoder::new(max_payload), buffer: vec![0; 64 * 1024] }
    }

    /// The next message, waiting for it.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(message);
            }
            let n = self.stream.read(&mut self.buffer).await?;
            if n == 0 {
                return Err(FrameError::Closed);
            }
            self.decoder.push(&self.buffer[..n]);
        }
    }

    /// A message already received in full, if any; never waits.
    pub fn ready<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        Ok(self.decoder.next_message()?)
    }
}

pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    stream: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    let bytes = proto::frame::encode(message).map_err(|e| FrameError::Encode(e.to_string()))?;
    stream.write_all(&bytes).await?;
    Ok(())
}
