//! Since wire version 7: print files from the hub to an agent (the design is
//! `docs/specs/file-delivery.md`).
//!
//! The hub offers a file on the control stream ([`FileOffer`]); the agent answers with the
//! offset it already holds ([`FileWant`]), and the hub sends the bytes from there on a
//! unidirectional QUIC stream of their own, opened with [`FileStreamHeader`] and given a
//! lower priority than the control stream, so a transfer never delays records or acks.
//! The agent checks the whole file's SHA-256 before anything uses it and says so
//! ([`FileStored`]) or why not ([`FileRefused`]). Offers, wants and answers are not durable:
//! after a reconnect the hub offers again and the agent answers from what it holds, so a
//! lost message costs a round trip, never a byte twice beyond one checkpoint.

use serde::{Deserialize, Serialize};

/// The hub offers a file it wants on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FileOffer {
    /// Names this transfer within the connection's messages (the hub uses the job's id).
    pub transfer: u64,
    pub sha256: [u8; 32],
    pub size: u64,
    /// The file's name, for the agent's log.
    pub name: String,
}

/// The agent wants the bytes of `transfer` from `from` on (what it holds, checkpointed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FileWant {
    pub transfer: u64,
    pub from: u64,
}

/// The agent holds the whole file, its SHA-256 checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FileStored {
    pub transfer: u64,
    pub sha256: [u8; 32],
}

/// The agent cannot take the file, and why (in an operator's words).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FileRefused {
    pub transfer: u64,
    pub reason: String,
}

/// The first bytes of a file's stream: `"KTF1" | transfer u64 BE | from u64 BE`, then the
/// file's bytes from `from` to its end, then the stream's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStreamHeader {
    pub transfer: u64,
    pub from: u64,
}

impl FileStreamHeader {
    pub const MAGIC: [u8; 4] = *b"KTF1";
    pub const LEN: usize = 20;

    pub fn encode(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..4].copy_from_slice(&Self::MAGIC);
        out[4..12].copy_from_slice(&self.transfer.to_be_bytes());
        out[12..].copy_from_slice(&self.from.to_be_bytes());
        out
    }

    /// `None` when the bytes are not a file stream's header.
    pub fn decode(bytes: &[u8; Self::LEN]) -> Option<FileStreamHeader> {
        if bytes[..4] != Self::MAGIC {
            return None;
        }
        let number = |range: std::ops::Range<usize>| {
            let mut eight = [0; 8];
            eight.copy_from_slice(&bytes[range]);
            u64::from_be_bytes(eight)
        };
        Some(FileStreamHeader { transfer: number(4..12), from: number(12..20) })
    }
}

/// Lower-case hex of a SHA-256, as files are named on both sides.
pub fn sha256_hex(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 named by 64 hex digits; `None` otherwise.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_header_round_trips_and_refuses_other_bytes() {
        let header = FileStreamHeader { transfer: 42, from: 8 << 20 };
        assert_eq!(FileStreamHeader::decode(&header.encode()), Some(header));
        let mut other = header.encode();
        other[0] = b'X';
        assert_eq!(FileStreamHeader::decode(&other), None);
    }

    #[test]
    fn sha256_hex_round_trips() {
        let sha = [0xab; 32];
        assert_eq!(parse_sha256(&sha256_hex(&sha)), Some(sha));
        assert_eq!(parse_sha256("zz"), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
    }
}
