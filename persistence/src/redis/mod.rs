//! Redis adapters for cluster mode: several nodes share one Redis (or one per role).
//!
//! - [`config`]: [`RedisConfig`] (URL, key prefix, command timeout).
//! - [`client`]: [`RedisClient`], the pool with a deadline on every command, Lua scripts by SHA,
//!   and the mapping of failures onto `PortError` (connection trouble → `Unavailable`).
//!
//! - [`sequencer`]: [`RedisSequencer`], seq allocation and cross-node dedup (Lua).
//! - [`rate_limit`]: [`RedisRateLimiter`], token buckets in Lua on the Redis clock.
//! - [`cache`]: [`RedisMessageCache`], the newest messages per conversation.
//! - [`presence`]: [`RedisPresence`], sessions per user with a TTL refreshed by their node.
//! - [`directory`]: [`RedisDirectory`], conversation records, membership and activity.
//! - [`bus`]: [`RedisBus`], pub/sub routing with one subscriber connection per node.
//! - [`sanctions`]: [`RedisSanctions`], bans and token revocations of users.
//! - [`retention`]: [`RedisRetention`], conversations' retention periods, holds and purges.
//! - [`lease`]: [`RedisLease`], periodic work on one node of the cluster at a time.
//!
//! Every key and channel starts with the configured prefix (default `parley:`).

pub mod bus;
pub mod cache;
pub mod client;
pub mod config;
pub mod directory;
pub mod lease;
pub mod presence;
pub mod rate_limit;
pub mod retention;
pub mod sanctions;
pub mod sequencer;

pub use bus::{RedisBus, RedisBusCounters};
pub use cache::RedisMessageCache;
pub use client::RedisClient;
pub use config::RedisConfig;
pub use directory::RedisDirectory;
pub use lease::{LeaseRenewal, RedisLease};
pub use presence::RedisPresence;
pub use rate_limit::RedisRateLimiter;
pub use retention::RedisRetention;
pub use sanctions::RedisSanctions;
pub use sequencer::RedisSequencer;
