//! Identifiers and scalar newtypes, validated once at the boundary (also when decoded).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is empty.
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    /// The identifier is longer than allowed.
    #[error("{kind} is {len} bytes long, more than the {max} allowed")]
    TooLong { kind: &'static str, len: usize, max: usize },
    /// The identifier holds a character outside `A-Z a-z 0-9 . _ -`.
    #[error("{kind} contains {found:?}; only letters, digits, '.', '_' and '-' are allowed")]
    BadChar { kind: &'static str, found: char },
}

/// The longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

fn check_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: value.len(), max: MAX_ID_LEN });
    }
    match value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(found) => Err(IdError::BadChar { kind, found }),
        None => Ok(()),
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value`: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_id($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

string_id!(
    /// An agent's identity, assigned by the hub at enrollment and written into the agent's
    /// client certificate.
    AgentId,
    "agent id"
);
string_id!(
    /// A printer, by the identifier its vendor gives it (a Bambu Lab serial such as
    /// `0309DA4B1800123`, a Moonraker instance name, …). Unique within a hub.
    PrinterId,
    "printer id"
);
string_id!(
    /// A camera attached to a printer (`chamber`, `usb-0`, …), unique per printer.
    CameraId,
    "camera id"
);

/// An agent's record sequence number. Strictly increasing per agent, starting at 1; the
/// hub stores each `(agent, seq)` once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Seq(pub u64);

impl Seq {
    /// The sequence number before any record; an acknowledgement of `ZERO` acknowledges
    /// nothing.
    pub const ZERO: Seq = Seq(0);

    /// The sequence number after this one, or `None` when the space is exhausted.
    pub fn next(self) -> Option<Seq> {
        self.0.checked_add(1).map(Seq)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

/// Wall-clock time as milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The current system time. Sans-IO code takes the time as an argument instead.
    pub fn now() -> UnixMillis {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        UnixMillis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    /// `self + millis`, saturating.
    pub fn plus_millis(self, millis: i64) -> UnixMillis {
        UnixMillis(self.0.saturating_add(millis))
    }
}

impl fmt::Debug for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixMillis({})", self.0)
    }
}

macro_rules! bytes_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name(pub [u8; 16]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

bytes_id!(
    /// A hub command, 128 random bits chosen by the hub. An agent executes a command id at
    /// most once.
    CommandId
);
bytes_id!(
    /// A camera snapshot, 128 bits chosen by the agent; all chunks of one snapshot share it.
    SnapshotId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_bad_input() {
        assert_eq!(PrinterId::new(""), Err(IdError::Empty { kind: "printer id" }));
        assert_eq!(AgentId::new("pi 01"), Err(IdError::BadChar { kind: "agent id", found: ' ' }));
        assert!(matches!(CameraId::new("x".repeat(65)), Err(IdError::TooLong { len: 65, .. })));
        assert_eq!(PrinterId::new("0309DA4B1800123").unwrap().as_str(), "0309DA4B1800123");
    }

    #[test]
    fn decoding_validates_ids() {
        let bytes = postcard::to_stdvec("bad/serial").unwrap();
        assert!(postcard::from_bytes::<PrinterId>(&bytes).is_err());
    }

    #[test]
    fn bytes_ids_display_as_hex() {
        let id = CommandId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
    }
}

#[cfg(test)]
mod arbitrary {
    use proptest::prelude::*;

    use super::*;

    const ID_PATTERN: &str = "[A-Za-z0-9._-]{1,64}";

    impl Arbitrary for AgentId {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with((): ()) -> Self::Strategy {
            ID_PATTERN.prop_map(|s| AgentId::new(s).expect("pattern is valid")).boxed()
        }
    }

    impl Arbitrary for PrinterId {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with((): ()) -> Self::Strategy {
            ID_PATTERN.prop_map(|s| PrinterId::new(s).expect("pattern is valid")).boxed()
        }
    }

    impl Arbitrary for CameraId {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with((): ()) -> Self::Strategy {
            ID_PATTERN.prop_map(|s| CameraId::new(s).expect("pattern is valid")).boxed()
        }
    }
}
