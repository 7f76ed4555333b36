//! Codec tests: golden bytes pin the encoding, property tests round-trip random values and
//! throw random bytes at the decoder.

mod golden;

use proptest::prelude::*;

use crate::frame::{self, DEFAULT_MAX_PAYLOAD, DecodeError, FrameDecoder, HEADER_LEN};
use crate::{AgentMessage, HubMessage};

fn roundtrip_bytes<T>(message: &T) -> Vec<u8>
where
    T: frame::Message + serde::de::DeserializeOwned,
{
    let bytes = frame::encode(message).unwrap();
    let decoded: T = frame::decode(&bytes, DEFAULT_MAX_PAYLOAD).unwrap();
    frame::encode(&decoded).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // Floats make `PartialEq` unreliable (NaN), so round-trips compare the re-encoded bytes.
    #[test]
    fn agent_messages_roundtrip(message: AgentMessage) {
        let bytes = frame::encode(&message).unwrap();
        prop_assert_eq!(roundtrip_bytes(&message), bytes);
    }

    #[test]
    fn hub_messages_roundtrip(message: HubMessage) {
        let bytes = frame::encode(&message).unwrap();
        prop_assert_eq!(roundtrip_bytes(&message), bytes);
    }

    #[test]
    fn streams_split_anywhere_decode_the_same(
        messages in proptest::collection::vec(any::<HubMessage>(), 1..6),
        cut_every in 1usize..64,
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            frame::encode_into(message, &mut stream).unwrap();
        }
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
        let mut decoded = Vec::new();
        for piece in stream.chunks(cut_every) {
            decoder.push(piece);
            while let Some(message) = decoder.next_message::<HubMessage>().unwrap() {
                decoded.push(frame::encode(&message).unwrap());
            }
        }
        let expected: Vec<_> = messages.iter().map(|m| frame::encode(m).unwrap()).collect();
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frame::decode::<AgentMessage>(&bytes, DEFAULT_MAX_PAYLOAD);
        let _ = frame::decode::<HubMessage>(&bytes, DEFAULT_MAX_PAYLOAD);
    }

    // Random payloads behind a valid header reach the postcard decoder itself.
    #[test]
    fn random_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = frame::FrameHeader {
            version: crate::PROTOCOL_VERSION,
            payload_len: payload.len() as u32,
        }
        .to_bytes()
        .to_vec();
        bytes.extend_from_slice(&payload);
        let _ = frame::decode::<AgentMessage>(&bytes, DEFAULT_MAX_PAYLOAD);
        let _ = frame::decode::<HubMessage>(&bytes, DEFAULT_MAX_PAYLOAD);
    }

    #[test]
    fn every_truncation_is_reported(message: AgentMessage, cut in any::<prop::sample::Index>()) {
        let bytes = frame::encode(&message).unwrap();
        let cut = cut.index(bytes.len());
        let result = frame::decode::<AgentMessage>(&bytes[..cut], DEFAULT_MAX_PAYLOAD);
        prop_assert!(matches!(result, Err(DecodeError::Truncated { .. })), "{result:?}");
    }
}

#[test]
fn foreign_bytes_are_rejected_by_magic() {
    let result = frame::decode::<AgentMessage>(b"GET / HTTP/1.1\r\n", DEFAULT_MAX_PAYLOAD);
    assert!(matches!(result, Err(DecodeError::BadMagic { found: [b'G', b'E'] })), "{result:?}");
    // Two bytes are enough to tell.
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    decoder.push(b"\x16\x03");
    assert!(matches!(decoder.next_message::<AgentMessage>(), Err(DecodeError::BadMagic { .. })));
}

#[test]
fn oversized_frames_are_rejected_from_the_header() {
    let header = frame::FrameHeader { version: 1, payload_len: 2 * 1024 * 1024 * 1024 };
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    decoder.push(&header.to_bytes());
    let error = decoder.next_message::<AgentMessage>().unwrap_err();
    assert!(matches!(error, DecodeError::TooLarge { len: 2147483648, max: DEFAULT_MAX_PAYLOAD }));
    assert_eq!(
        error.to_string(),
        "frame payload of 2147483648 bytes exceeds the limit of 4194304 bytes"
    );
}

#[test]
fn unknown_versions_are_rejected() {
    for version in [0, crate::PROTOCOL_VERSION + 1, u16::MAX] {
        let header = frame::FrameHeader { version, payload_len: 0 };
        let result = frame::decode::<HubMessage>(&header.to_bytes(), DEFAULT_MAX_PAYLOAD);
        assert!(matches!(result, Err(DecodeError::UnsupportedVersion { .. })), "{result:?}");
    }
}

#[test]
fn trailing_bytes_inside_a_frame_are_rejected() {
    let mut bytes = frame::encode(&HubMessage::Ack(crate::Ack { through: crate::Seq(7) })).unwrap();
    bytes.push(0);
    let len = (bytes.len() - HEADER_LEN) as u32;
    bytes[4..8].copy_from_slice(&len.to_le_bytes());
    let result = frame::decode::<HubMessage>(&bytes, DEFAULT_MAX_PAYLOAD);
    assert!(matches!(result, Err(DecodeError::TrailingBytes { count: 1 })), "{result:?}");
}

#[test]
fn unknown_variants_are_typed_errors() {
    // Variant index 200 of the top-level enum: what a newer peer could send.
    let payload = [200u8, 1];
    let header = frame::FrameHeader { version: 1, payload_len: payload.len() as u32 };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    let result = frame::decode::<AgentMessage>(&bytes, DEFAULT_MAX_PAYLOAD);
    assert!(matches!(result, Err(DecodeError::Malformed(_))), "{result:?}");
}

#[test]
fn encoding_refuses_messages_over_the_hard_limit() {
    let message = AgentMessage::CertificateRequest(crate::CertificateRequest {
        csr_der: vec![0; frame::MAX_PAYLOAD as usize + 1],
    });
    let mut out = vec![1, 2, 3];
    assert!(matches!(
        frame::encode_into(&message, &mut out),
        Err(frame::EncodeError::TooLarge { .. })
    ));
    assert_eq!(out, [1, 2, 3], "a failed encode leaves the buffer alone");
}

/// Vectors of at most three elements: the wire types nest vectors four deep, and proptest's
/// default of up to 100 elements a level makes cases of millions of values.
pub(crate) fn small_vec<T: Arbitrary>() -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(any::<T>(), 0..4)
}
