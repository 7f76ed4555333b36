//! Feeds arbitrary bytes to every decoder of untrusted input in `proto`: one-shot frames in
//! both directions and the streaming decoder. Any panic, overflow or runaway allocation is a
//! bug. Run with `cargo fuzz run decode` from `proto/` (see docs/specs/wire.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::frame::{self, FrameDecoder};
use proto::{AgentMessage, HubMessage};

const MAX_PAYLOAD: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let _ = frame::decode::<AgentMessage>(data, MAX_PAYLOAD);
    let _ = frame::decode::<HubMessage>(data, MAX_PAYLOAD);

    // Whatever decodes must re-encode to a frame that decodes to the same bytes.
    if let Ok(message) = frame::decode::<AgentMessage>(data, MAX_PAYLOAD) {
        let bytes = frame::encode(&message).expect("a decoded message encodes");
        let again: AgentMessage = frame::decode(&bytes, MAX_PAYLOAD).expect("re-decodes");
        assert_eq!(frame::encode(&again).expect("encodes"), bytes);
    }

    // The stream decoder, fed in uneven pieces, must agree and stay bounded.
    let mut decoder = FrameDecoder::new(MAX_PAYLOAD);
    for piece in data.chunks(7) {
        decoder.push(piece);
        loop {
            match decoder.next_message::<HubMessage>() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
