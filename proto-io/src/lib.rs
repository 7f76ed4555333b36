//! Framed messages on a byte stream: the frame format of [`proto::frame`] over tokio's
//! [`AsyncRead`] and [`AsyncWrite`], shared by the agent and the hub (on QUIC streams).
//!
//! `proto` itself does no I/O (a rule `cargo xtask deps` checks); this crate is the thin
//! layer between its decoder and a stream, and nothing more.
//!
//! - [`FrameReader`] reads in chunks into a [`proto::FrameDecoder`], so every message
//!   already received can be taken at once without waiting ([`FrameReader::ready`]); the
//!   hub batches those into one commit. The payload limit is checked from each frame's
//!   header before the payload is buffered.
//! - After any [`FrameError`] the stream is out of step and the caller closes it.
//! - A stream that ends between frames reads as [`FrameError::Closed`]; one that ends
//!   inside a frame as [`FrameError::Truncated`], so a peer that vanished mid-message is not
//!   mistaken for one that said goodbye.

use proto::frame::{DecodeError, FrameDecoder, Message};
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How much a reader asks the stream for at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer ended the stream between two frames.
    #[error("the peer closed the stream")]
    Closed,
    /// The peer ended the stream inside a frame.
    #[error("the peer closed the stream inside a frame ({buffered} bytes of it received)")]
    Truncated { buffered: usize },
    /// Reading or writing the stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a frame this build reads.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// The message could not be encoded (too large for a frame).
    #[error("cannot encode a message: {0}")]
    Encode(#[from] proto::EncodeError),
}

/// Reads frames from one stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    stream: R,
    decoder: FrameDecoder,
    buffer: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader refusing any frame whose payload is over `max_payload` bytes.
    pub fn new(stream: R, max_payload: u32) -> FrameReader<R> {
        FrameReader { stream, decoder: FrameDecoder::new(max_payload), buffer: vec![0; READ_CHUNK] }
    }

    /// The next message, waiting for it.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(message);
            }
            let n = self.stream.read(&mut self.buffer).await?;
            if n == 0 {
                return Err(match self.decoder.buffered() {
                    0 => FrameError::Closed,
                    buffered => FrameError::Truncated { buffered },
                });
            }
            self.decoder.push(&self.buffer[..n]);
        }
    }

    /// A message already received in full, if any; never waits. "Received" includes what
    /// the stream holds and this reader has not read yet: a message is often larger than one
    /// read, so taking only the decoder's leftovers gave the hub one message per commit.
    pub fn ready<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            // One poll with a waker that does nothing: bytes the stream already holds come
            // back at once, and `Pending` means nothing more has arrived. Whoever waits next
            // (`next`) polls again with a real waker.
            let mut context = Context::from_waker(Waker::noop());
            let mut read = ReadBuf::new(&mut self.buffer);
            let n = match Pin::new(&mut self.stream).poll_read(&mut context, &mut read) {
                Poll::Ready(Ok(())) => read.filled().len(),
                Poll::Ready(Err(error)) => return Err(error.into()),
                Poll::Pending => 0,
            };
            // Nothing more yet, or the end of the stream, which `next` reports.
            if n == 0 {
                return Ok(None);
            }
            self.decoder.push(&self.buffer[..n]);
        }
    }
}

/// Writes `message` as one frame, labelled with the first version that has its content.
pub async fn write<W: AsyncWrite + Unpin, T: Message>(
    stream: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    let bytes = proto::frame::encode(message)?;
    stream.write_all(&bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use proto::frame::{DEFAULT_MAX_PAYLOAD, FrameHeader};
    use proto::{Ack, HubMessage, Seq};
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn ack(n: u64) -> HubMessage {
        HubMessage::Ack(Ack { through: Seq(n) })
    }

    #[tokio::test]
    async fn messages_written_are_read_back_in_order() {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for n in 1..=100 {
                write(&mut client, &ack(n)).await.unwrap();
            }
        });
        let mut reader = FrameReader::new(server, DEFAULT_MAX_PAYLOAD);
        for n in 1..=100 {
            assert_eq!(reader.next::<HubMessage>().await.unwrap(), ack(n));
        }
        writer.await.unwrap();
        assert!(matches!(reader.next::<HubMessage>().await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn messages_already_received_are_ready_without_waiting() {
        let mut bytes = Vec::new();
        for n in 1..=3 {
            proto::frame::encode_into(&ack(n), &mut bytes).unwrap();
        }
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(&bytes).await.unwrap();
        let mut reader = FrameReader::new(server, DEFAULT_MAX_PAYLOAD);
        assert_eq!(reader.next::<HubMessage>().await.unwrap(), ack(1));
        assert_eq!(reader.ready::<HubMessage>().unwrap(), Some(ack(2)));
        assert_eq!(reader.ready::<HubMessage>().unwrap(), Some(ack(3)));
        assert_eq!(reader.ready::<HubMessage>().unwrap(), None);
    }

    #[tokio::test]
    async fn messages_the_stream_holds_are_ready_too() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        write(&mut client, &ack(1)).await.unwrap();
        let mut reader = FrameReader::new(server, DEFAULT_MAX_PAYLOAD);
        assert_eq!(reader.next::<HubMessage>().await.unwrap(), ack(1));
        // Written after the reader's last read: still in the stream, not in the decoder.
        for n in 2..=4 {
            write(&mut client, &ack(n)).await.unwrap();
        }
        for n in 2..=4 {
            assert_eq!(reader.ready::<HubMessage>().unwrap(), Some(ack(n)));
        }
        assert_eq!(reader.ready::<HubMessage>().unwrap(), None, "nothing more has arrived");
        drop(client);
        assert_eq!(reader.ready::<HubMessage>().unwrap(), None, "the end is for next to say");
        assert!(matches!(reader.next::<HubMessage>().await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn a_peer_closing_mid_frame_is_a_truncation_not_a_goodbye() {
        let bytes = proto::frame::encode(&ack(7)).unwrap();
        for cut in 1..bytes.len() {
            let (mut client, server) = tokio::io::duplex(4096);
            client.write_all(&bytes[..cut]).await.unwrap();
            drop(client);
            let mut reader = FrameReader::new(server, DEFAULT_MAX_PAYLOAD);
            match reader.next::<HubMessage>().await {
                Err(FrameError::Truncated { buffered }) => assert_eq!(buffered, cut),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        let header = FrameHeader { version: proto::PROTOCOL_VERSION, payload_len: 1 << 20 };
        let (mut client, server) = tokio::io::duplex(4096);
        // Only the header: the reader must refuse without waiting for the megabyte.
        client.write_all(&header.to_bytes()).await.unwrap();
        let mut reader = FrameReader::new(server, 1024);
        let result = reader.next::<HubMessage>().await;
        assert!(
            matches!(result, Err(FrameError::Decode(DecodeError::TooLarge { len, max: 1024 })) if len == 1 << 20),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error() {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut reader = FrameReader::new(server, DEFAULT_MAX_PAYLOAD);
        let result = reader.next::<HubMessage>().await;
        assert!(
            matches!(result, Err(FrameError::Decode(DecodeError::BadMagic { .. }))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_message_too_large_for_a_frame_is_not_written() {
        let message = proto::AgentMessage::CertificateRequest(proto::CertificateRequest {
            csr_der: vec![0; proto::frame::MAX_PAYLOAD as usize + 1],
        });
        let mut sink = Vec::new();
        let result = write(&mut sink, &message).await;
        assert!(matches!(result, Err(FrameError::Encode(_))), "{result:?}");
        assert!(sink.is_empty());
    }
}
