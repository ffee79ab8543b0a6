//! Ports: the traits the actors talk to, implemented by adapters in `persistence`.
//!
//! # Layout
//! - [`error`]: `PortError`, the one error type every port returns: the kind of failure, the
//!   backing [`Service`], and the underlying error as its source.
//! - [`audit`]: [`AuditLog`], append-only records of admin calls, token issues and membership
//!   changes.
//! - [`log`]: [`EventLog`] and [`LogConsumer`], the durable ordered log (embedded log, Kafka).
//! - [`store`]: [`Store`], the message/conversation/participant store that ingest writes
//!   (embedded store, MongoDB).
//! - [`directory`]: [`Directory`], the live source of truth for conversation metadata and
//!   membership (embedded store, Redis + MongoDB).
//! - [`sequencer`]: [`Sequencer`], seq allocation and `client_msg_id` dedup.
//! - [`presence`]: [`Presence`], who is online.
//! - [`bus`]: [`Bus`], cross-node routing of events (in-process, Redis pub/sub).
//! - [`rate_limit`]: [`RateLimiter`], per-user token buckets.
//! - [`cache`]: [`MessageCache`], the newest messages per conversation, shared by the nodes.
//! - [`blob`]: [`BlobStore`], object storage for attachment bytes with presigned URLs (local
//!   files, S3-compatible storage).
//! - [`sanctions`]: [`Sanctions`], bans and token revocations of users (admin API).
//! - [`retention`]: [`RetentionPolicies`], conversations' retention periods, legal holds and
//!   how far retention purged them.
//! - [`jobs`]: [`Jobs`], the records of background admin jobs (exports, erasures): state,
//!   resume cursor, outcome.
//! - [`user_data`]: [`UserDataScan`], one user's messages across conversations, paged (exports,
//!   erasures).
//! - [`search`]: [`SearchIndex`] and its query side [`SearchReader`], full-text search over
//!   message text (Tantivy, in `search/`; a search role's HTTP client).
//! - [`Backoff`]: the capped exponential delay between retries, shared by every retry loop.
//! - [`ConsumerHealth`]: whether a log consumer loop runs and makes progress (ingest's pipeline,
//!   the nodes' stored-ack relay), for `/readyz`.
//! - `contract` (feature `contract`): one test suite per port, run against every adapter.

pub mod audit;
mod backoff;
pub mod blob;
pub mod bus;
pub mod cache;
mod consumer_health;
pub mod directory;
pub mod error;
pub mod jobs;
pub mod log;
pub mod presence;
pub mod rate_limit;
pub mod retention;
pub mod sanctions;
pub mod search;
pub mod sequencer;
pub mod store;
pub mod user_data;

#[cfg(feature = "contract")]
pub mod contract;

pub use audit::{AuditLog, AuditPage, AuditQuery, AuditRecord, MAX_AUDIT_PAGE};
pub use backoff::Backoff;
pub use blob::{
    BlobKey, BlobMeta, BlobStore, BlobWriter, InvalidBlobKey, PresignedRequest, TransferMethod,
};
pub use bus::{
    Bus, BusEnvelope, BusPayload, BusTopic, Publishing, SessionCloseReason, RESUBSCRIBED_ORIGIN,
};
pub use cache::MessageCache;
pub use consumer_health::ConsumerHealth;
pub use directory::{CreateOutcome, Directory};
pub use error::{Cause, During, PortError, Service};
pub use jobs::{InvalidJobId, Job, JobId, JobKind, JobOutcome, JobState, JobUpdate, Jobs};
pub use log::{EventLog, LogConsumer, LogPosition, LogRecord, PoisonedRecord};
pub use presence::Presence;
pub use rate_limit::{RateDecision, RateLimiter};
pub use retention::{
    ConversationRetention, LegalHold, RetentionPeriod, RetentionPolicies, RetentionScan,
};
pub use sanctions::{Ban, Sanctions, Standing, TokenStanding};
pub use search::{SearchCursor, SearchHit, SearchIndex, SearchPage, SearchQuery, SearchReader};
pub use sequencer::{
    AbandonedSend, DedupKey, Reaped, Reservation, Reservations, SendIntent, Sequencer,
    IN_FLIGHT_TTL,
};
pub use store::{MessageQuery, Store, StoreWrite, StoredConversation, Watermarks};
pub use user_data::{UserDataScan, UserMessageCursor, UserMessagePage, UserMessages};
