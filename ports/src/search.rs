//! The search index: message text, searchable by the members of a conversation. Fed from the
//! log by an indexer (never from the request path); queried by `search.messages`.

use async_trait::async_trait;
use thiserror::Error;
use wire::log::MessageRecord;
use wire::{ConversationId, Message, Seq, UserId};

use crate::PortError;

/// One search: the words, the conversations it may look in (the caller's, checked by the
/// caller of the port), how many hits, and where the previous page ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub text: String,
    /// Only messages of these conversations are found; an empty set finds nothing.
    pub conversations: Vec<ConversationId>,
    pub limit: usize,
    pub after: Option<SearchCursor>,
}

/// One found message: its indexed version and its relevance (BM25).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub record: MessageRecord,
    pub score: f32,
}

/// A page of hits, best first (BM25 score, then the newer message, then the message id), and
/// the cursor of the next page when there may be one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    pub next: Option<SearchCursor>,
}

/// Where a page ended: the sort key of its last hit. The next page holds the hits that sort
/// after it, so paging an unchanged index returns every hit exactly once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchCursor {
    pub score: f32,
    /// The message's `created_at` in microseconds since the epoch.
    pub created_at_us: i64,
    /// A stable hash of the message id ([`message_tiebreak`]).
    pub tiebreak: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a search cursor")]
pub struct BadCursor;

impl SearchCursor {
    /// The cursor of `message` found with `score`.
    pub fn of(message: &Message, score: f32) -> Self {
        Self {
            score,
            created_at_us: message.created_at.timestamp_micros(),
            tiebreak: message_tiebreak(message.message_id.as_str()),
        }
    }

    /// The opaque string clients get: three hexadecimal fields.
    pub fn encode(&self) -> String {
        format!(
            "{:08x}.{:016x}.{:016x}",
            self.score.to_bits(),
            self.created_at_us as u64,
            self.tiebreak
        )
    }

    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        let mut fields = text.split('.');
        let (Some(score), Some(created_at_us), Some(tiebreak), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(BadCursor);
        };
        let score = f32::from_bits(u32::from_str_radix(score, 16).map_err(|_| BadCursor)?);
        if !score.is_finite() {
            return Err(BadCursor);
        }
        Ok(Self {
            score,
            created_at_us: u64::from_str_radix(created_at_us, 16).map_err(|_| BadCursor)? as i64,
            tiebreak: u64::from_str_radix(tiebreak, 16).map_err(|_| BadCursor)?,
        })
    }

    /// Whether a hit with key `self` ranks before (is better than) one with key `other`.
    pub fn ranks_before(&self, other: &SearchCursor) -> bool {
        (self.score, self.created_at_us, self.tiebreak)
            .partial_cmp(&(other.score, other.created_at_us, other.tiebreak))
            .is_some_and(|ordering| ordering.is_gt())
    }
}

/// FNV-1a of the message id: the last tie-breaker of the ranking, the same in every process.
pub fn message_tiebreak(message_id: &str) -> u64 {
    message_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The query side of a search index: what `search.messages` needs. Implemented by the index
/// itself (standalone, or a node keeping its own replica) and by the client of a search role
/// queried over HTTP.
#[async_trait]
pub trait SearchReader: Send + Sync + 'static {
    /// The hits of `query` (see [`SearchQuery`] and [`SearchPage`]); never deleted messages.
    async fn search(&self, query: SearchQuery) -> Result<SearchPage, PortError>;

    /// Messages currently findable (not deleted), for metrics and readiness details.
    async fn live_messages(&self) -> Result<u64, PortError>;
}

/// A whole search index: the query side plus the writes of the indexer that feeds it.
#[async_trait]
pub trait SearchIndex: SearchReader {
    /// Indexes these versions of messages (sent, edited, deleted, aborted) and returns once
    /// they are durable and searchable. A version replaces the indexed one of the same message
    /// only when it supersedes it ([`MessageRecord::supersedes`]): a deleted message stays
    /// deleted (never found again), an edit is found by its new text, and applying the same
    /// records again, or older ones, changes nothing.
    async fn apply(&self, records: Vec<MessageRecord>) -> Result<(), PortError>;

    /// Forgets every message of `conversation_id` with a seq up to `through` (retention purged
    /// them): they are never found again. Running it twice is harmless.
    async fn purge(&self, conversation_id: &ConversationId, through: Seq) -> Result<(), PortError>;

    /// Forgets the text of every message `user_id` sent in `conversation_id` with a seq up to
    /// `through` (erasure: they become deleted in the index); returns how many. Running it
    /// twice is harmless.
    async fn erase_user(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
        through: Seq,
    ) -> Result<u64, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = SearchCursor {
            score: 1.25,
            created_at_us: -5,
            tiebreak: 42,
        };
        assert_eq!(SearchCursor::decode(&cursor.encode()), Ok(cursor));
        for garbage in ["", "x", "1.2", "1.2.3.4", "zz.0.0", "7fc00000.0.0"] {
            assert_eq!(SearchCursor::decode(garbage), Err(BadCursor), "{garbage}");
        }
    }
}
