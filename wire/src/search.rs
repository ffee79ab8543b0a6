//! `search.messages` (protocol v1.1): arguments, result and limits.

use serde::{Deserialize, Serialize};

use crate::{ConversationId, Message};

/// Largest `limit` accepted by `search.messages`.
pub const SEARCH_MAX_LIMIT: u32 = 50;
/// `limit` of `search.messages` when the client gives none.
pub const SEARCH_DEFAULT_LIMIT: u32 = 20;
/// Longest `query`, in bytes of UTF-8.
pub const SEARCH_MAX_QUERY_BYTES: usize = 256;
/// The name of the feature in `welcome.data.features`.
pub const SEARCH_FEATURE: &str = "search";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[cfg_attr(feature = "typescript", ts(optional_fields))]
pub struct SearchArgs {
    pub query: String,
    /// Only this conversation (the caller must be a member).
    #[serde(default)]
    pub conversation_id: Option<ConversationId>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SearchHit {
    pub message: Message,
    /// Relevance (BM25); higher is better. Comparable within one search only.
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
