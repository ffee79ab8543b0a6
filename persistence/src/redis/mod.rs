//! Redis adapters for cluster mode: several nodes share one Redis (or one per role).
//!
//! - [`config`]: [`RedisConfig`] (URL, key prefix, command timeout).
//! - [`client`]: [`RedisClient`], the pool with a deadline on every command, Lua scripts by SHA,
//!   and the mapping of failures onto `PortError` (connection trouble → `Unavailable`).
//!
//! - [`sequencer`]: [`RedisSequencer`], seq allocation and cross-node dedup (Lua).
//!
//! Every key and channel starts with the configured prefix (default `parley:`).

pub mod client;
pub mod config;
pub mod sequencer;

pub use client::RedisClient;
pub use config::RedisConfig;
pub use sequencer::RedisSequencer;
