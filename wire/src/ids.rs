//! Newtype identifiers. On the wire every id is a JSON string and `seq` a JSON integer.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_id!(
    /// A user, as named by the app backend in the token's `sub`.
    UserId
);

/// Longest user id, client message id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

impl UserId {
    /// Why this is no acceptable user id (1 to [`MAX_ID_BYTES`] bytes without control
    /// characters: ids reach the logs), or `None` when it is one.
    pub fn problem(&self) -> Option<String> {
        if self.0.is_empty() || self.0.len() > MAX_ID_BYTES {
            return Some(format!("user ids must be 1 to {MAX_ID_BYTES} bytes"));
        }
        if self.0.chars().any(char::is_control) {
            return Some("user ids must not contain control characters".to_owned());
        }
        None
    }
}
string_id!(
    /// A conversation (direct or group).
    ConversationId
);
string_id!(
    /// A message, unique across the whole system.
    MessageId
);
string_id!(
    /// An uploaded file (`POST /api/v1/attachments`), unique across the whole system.
    AttachmentId
);
string_id!(
    /// The client's idempotency key for a send, unique per (conversation, sender).
    ClientMsgId
);
string_id!(
    /// A server node of the cluster.
    NodeId
);
string_id!(
    /// One WebSocket session.
    SessionId
);

/// Position of a message in its conversation: dense, strictly increasing, starting at 1.
/// `Seq(0)` means "nothing yet". Seqs are at most [`Seq::MAX`]: a larger number is refused
/// where it is decoded (so a client's `after_seq` cannot overflow the server's arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS), ts(type = "number"))]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);
    /// The largest seq: 2^53 - 1, the largest integer every JSON implementation reads exactly.
    pub const MAX: Seq = Seq((1 << 53) - 1);

    /// The following seq. Every seq is at most [`Seq::MAX`], so this cannot overflow; it panics
    /// rather than wrap if a seq was ever built past it.
    pub fn next(self) -> Seq {
        Seq(self
            .0
            .checked_add(1)
            .expect("seqs are at most Seq::MAX, so the next one fits"))
    }
}

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        if value > Seq::MAX.0 {
            return Err(serde::de::Error::custom(format!(
                "seq {value} is out of range (at most {})",
                Seq::MAX.0
            )));
        }
        Ok(Seq(value))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_past_the_maximum_are_refused_when_decoded() {
        assert_eq!(
            serde_json::from_str::<Seq>("9007199254740991").unwrap(),
            Seq::MAX
        );
        for out_of_range in ["9007199254740992", "18446744073709551615"] {
            let error = serde_json::from_str::<Seq>(out_of_range).unwrap_err();
            assert!(error.to_string().contains("out of range"), "{error}");
        }
        assert!(serde_json::from_str::<Seq>("-1").is_err());
    }

    #[test]
    fn the_seq_after_the_maximum_does_not_wrap() {
        assert_eq!(Seq::MAX.next(), Seq(1 << 53));
        let wrapped = std::panic::catch_unwind(|| Seq(u64::MAX).next());
        assert!(wrapped.is_err(), "Seq::next must not wrap to 0");
    }
}
