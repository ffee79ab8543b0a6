//! A search role queried over HTTP: each replica keeps a complete index fed from the log, and
//! nodes send it their (already authorized) queries.
//!
//! - [`endpoint`]: the routes a replica serves, `POST /v1/search` and `GET /v1/stats`, over any
//!   [`SearchReader`](ports::SearchReader).
//! - [`client`]: [`RemoteSearch`], the `SearchReader` a node uses to query a replica (or the
//!   Service in front of several).
//! - Here: the JSON bodies both sides exchange.

pub mod client;
pub mod endpoint;

use ports::{SearchCursor, SearchHit, SearchPage, SearchQuery};
use serde::{Deserialize, Serialize};
use wire::log::MessageRecord;
use wire::ConversationId;

pub use client::RemoteSearch;

/// The path of a search.
pub const SEARCH_PATH: &str = "/v1/search";
/// The path of the index statistics.
pub const STATS_PATH: &str = "/v1/stats";

/// A [`SearchQuery`] on the wire; the cursor in its opaque string form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    pub text: String,
    pub conversations: Vec<ConversationId>,
    pub limit: usize,
    pub after: Option<String>,
}

/// A [`SearchPage`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageBody {
    pub hits: Vec<HitBody>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HitBody {
    pub record: MessageRecord,
    pub score: f32,
}

/// What `GET /v1/stats` answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StatsBody {
    pub live_messages: u64,
}

impl From<SearchQuery> for QueryBody {
    fn from(query: SearchQuery) -> Self {
        Self {
            text: query.text,
            conversations: query.conversations,
            limit: query.limit,
            after: query.after.map(|cursor| cursor.encode()),
        }
    }
}

impl QueryBody {
    /// The query, or why its cursor is not one.
    pub fn into_query(self) -> Result<SearchQuery, ports::search::BadCursor> {
        let after = self
            .after
            .as_deref()
            .map(SearchCursor::decode)
            .transpose()?;
        Ok(SearchQuery {
            text: self.text,
            conversations: self.conversations,
            limit: self.limit,
            after,
        })
    }
}

impl From<SearchPage> for PageBody {
    fn from(page: SearchPage) -> Self {
        Self {
            hits: page
                .hits
                .into_iter()
                .map(|hit| HitBody {
                    record: hit.record,
                    score: hit.score,
                })
                .collect(),
            next: page.next.map(|cursor| cursor.encode()),
        }
    }
}

impl PageBody {
    /// The page, or why its cursor is not one.
    pub fn into_page(self) -> Result<SearchPage, ports::search::BadCursor> {
        let next = self.next.as_deref().map(SearchCursor::decode).transpose()?;
        let hits = self
            .hits
            .into_iter()
            .map(|hit| SearchHit {
                record: hit.record,
                score: hit.score,
            })
            .collect();
        Ok(SearchPage { hits, next })
    }
}
