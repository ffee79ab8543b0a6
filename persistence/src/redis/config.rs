//! [`RedisConfig`]: where the Redis of one role is and how long anything may take.

use std::time::Duration;

/// Default key prefix; every key and channel of the adapters starts with it.
pub const DEFAULT_KEY_PREFIX: &str = "parley:";

/// Connection and timing settings shared by the Redis adapters. Each adapter takes its own
/// config, so each role (pub/sub, cache, presence, state, rate limits) can use its own Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (credentials, if any, are redacted in `Debug`).
    pub url: String,
    /// Prepended to every key and channel, e.g. `parley:` → `parley:conv:{id}`.
    pub key_prefix: String,
    /// Upper bound for one command, pool wait included. A dead Redis fails callers with
    /// `PortError::Unavailable` after this, never hangs them.
    pub command_timeout: Duration,
    /// Upper bound for opening a connection.
    pub connect_timeout: Duration,
    /// Pooled connections (each is multiplexed, so a few go a long way).
    pub pool_size: usize,
}

impl RedisConfig {
    /// The defaults for `url`: prefix `parley:`, 1 s per command, 1 s to connect, 8 connections.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            pool_size: 8,
        }
    }

    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    pub fn with_command_timeout(mut self, command_timeout: Duration) -> Self {
        self.command_timeout = command_timeout;
        self
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}***{}", &self.url[..scheme_end + 3], &self.url[at..])
            }
            _ => self.url.clone(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_credentials() {
        let config = RedisConfig::new("redis://user:secret@127.0.0.1:6379/0");
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(
            printed.contains("redis://***@127.0.0.1:6379/0"),
            "{printed}"
        );
        assert_eq!(
            RedisConfig::new("redis://127.0.0.1/").redacted_url(),
            "redis://127.0.0.1/"
        );
    }
}
