//! Chooses the adapters behind the ports: in-process ones for a standalone node, Redis ones for
//! routing, presence, sequencing, conversation state, cache and rate limits when any Redis URL
//! is configured. The log and the store are chosen by the caller (`app::Storage`): embedded
//! files, or Kafka and MongoDB in durable cluster mode.

use std::sync::Arc;
use std::time::Duration;

use actors::Ports;
use persistence::redis::{
    RedisBus, RedisClient, RedisConfig, RedisDirectory, RedisMessageCache, RedisPresence,
    RedisRateLimiter, RedisRetention, RedisSanctions, RedisSequencer,
};
use persistence::{
    EmbeddedStore, InProcessBus, MemoryPresence, MemoryRateLimiter, MemorySequencer, NoMessageCache,
};
use ports::{EventLog, Sanctions, Store};

use crate::config::{RedisRoles, Secret, Settings};

/// Incoming bus envelopes buffered before publishers wait.
const BUS_INCOMING_CAPACITY: usize = 65_536;

pub struct Adapters {
    pub ports: Ports,
    /// Redis clients whose reachability decides readiness (empty in standalone).
    pub redis_clients: Vec<(&'static str, RedisClient)>,
    /// Presence in Redis, swept for users of dead nodes (cluster mode).
    pub redis_presence: Option<Arc<RedisPresence>>,
    /// The Redis bus, whose subscription state decides readiness (cluster mode).
    pub redis_bus: Option<Arc<RedisBus>>,
    /// Bans and token revocations (admin API): the embedded store standalone, Redis (state
    /// role) in a cluster.
    pub sanctions: Arc<dyn Sanctions>,
}

/// `embedded` is the embedded store, which doubles as the directory of a standalone node; it is
/// `None` in durable cluster mode, where Redis holds the directory.
pub fn build(
    settings: &Settings,
    log: Arc<dyn EventLog>,
    store_port: Arc<dyn Store>,
    embedded: Option<Arc<EmbeddedStore>>,
) -> anyhow::Result<Adapters> {
    let rate = &settings.rate_limit;
    let Some(roles) = settings.redis.roles() else {
        let Some(directory) = embedded else {
            anyhow::bail!("a node without Redis needs the embedded store (config validation should have said so)");
        };
        tracing::info!("standalone mode: in-process routing, presence, sequencing and cache");
        return Ok(Adapters {
            ports: Ports {
                log,
                store: store_port.clone(),
                directory: directory.clone(),
                sequencer: Arc::new(MemorySequencer::new(store_port)),
                presence: Arc::new(MemoryPresence::new()),
                bus: Arc::new(InProcessBus::new(BUS_INCOMING_CAPACITY)),
                rate_limiter: Arc::new(MemoryRateLimiter::new(rate.per_second, rate.burst)),
                cache: Arc::new(NoMessageCache),
                blobs: None,
                search: None,
                // Set by the app.
                audit: None,
                retention: Some(directory.clone()),
            },
            redis_clients: Vec::new(),
            redis_presence: None,
            redis_bus: None,
            sanctions: directory,
        });
    };
    let clients = RedisClients::new(settings, &roles)?;
    tracing::info!(
        pubsub = %clients.pubsub.config().redacted_url(),
        state = %clients.state.config().redacted_url(),
        "cluster mode: Redis routing, presence, sequencing, state, cache and rate limits"
    );
    let redis = &settings.redis;
    let presence = Arc::new(RedisPresence::with_ttl(
        clients.presence.clone(),
        Duration::from_millis(redis.presence_ttl_ms),
    ));
    let bus = Arc::new(
        RedisBus::new(clients.pubsub.clone(), BUS_INCOMING_CAPACITY)
            .map_err(|error| anyhow::anyhow!("redis.pubsub_url: {error}"))?,
    );
    let sanctions = Arc::new(RedisSanctions::new(clients.state.clone()));
    let ports = Ports {
        log,
        store: store_port.clone(),
        directory: Arc::new(RedisDirectory::new(clients.state.clone())),
        sequencer: Arc::new(RedisSequencer::with_ack_ttl(
            clients.state.clone(),
            store_port,
            Duration::from_secs(redis.dedup_ttl_secs),
        )),
        presence: presence.clone(),
        bus: bus.clone(),
        rate_limiter: Arc::new(RedisRateLimiter::new(
            clients.ratelimit.clone(),
            rate.per_second,
            rate.burst,
        )),
        cache: Arc::new(
            RedisMessageCache::with_capacity(
                clients.cache.clone(),
                settings.limits.recent_messages,
            )
            .with_ttl(Duration::from_secs(redis.cache_ttl_secs)),
        ),
        // Set by the app once the attachment store is open.
        blobs: None,
        search: None,
        // Set by the app.
        audit: None,
        retention: Some(Arc::new(RedisRetention::new(clients.state.clone()))),
    };
    Ok(Adapters {
        ports,
        redis_clients: vec![
            ("redis pubsub", clients.pubsub),
            ("redis cache", clients.cache),
            ("redis presence", clients.presence),
            ("redis state", clients.state),
            ("redis ratelimit", clients.ratelimit),
        ],
        redis_presence: Some(presence),
        redis_bus: Some(bus),
        sanctions,
    })
}

struct RedisClients {
    pubsub: RedisClient,
    cache: RedisClient,
    presence: RedisClient,
    state: RedisClient,
    ratelimit: RedisClient,
}

impl RedisClients {
    /// One client per distinct URL: roles on the same Redis share its connection, so commands
    /// of different roles issued at once (a batch's cache put, activity and acks; other
    /// conversations' commands) can travel in one write and come back in one reply
    /// (docs/benchmarks.md, "The store and the offsets once a second").
    fn new(settings: &Settings, roles: &RedisRoles) -> anyhow::Result<Self> {
        let redis = &settings.redis;
        let mut made: Vec<(String, RedisClient)> = Vec::new();
        let mut client = |key: &str, url: &Secret| -> anyhow::Result<RedisClient> {
            if let Some((_, client)) = made.iter().find(|(made_for, _)| made_for == url.expose()) {
                return Ok(client.clone());
            }
            let config = RedisConfig::new(url.expose())
                .with_key_prefix(redis.key_prefix.clone())
                .with_command_timeout(Duration::from_millis(redis.command_timeout_ms));
            let client =
                RedisClient::new(config).map_err(|error| anyhow::anyhow!("{key}: {error}"))?;
            made.push((url.expose().to_owned(), client.clone()));
            Ok(client)
        };
        Ok(Self {
            pubsub: client("redis.pubsub_url", &roles.pubsub)?,
            cache: client("redis.cache_url", &roles.cache)?,
            presence: client("redis.presence_url", &roles.presence)?,
            state: client("redis.state_url", &roles.state)?,
            ratelimit: client("redis.ratelimit_url", &roles.ratelimit)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(pairs: &[(&str, &str)]) -> RedisClients {
        let env: Vec<(String, String)> = pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let loaded = crate::config::load_with_env(None, env).expect("settings");
        let roles = loaded.settings.redis.roles().expect("a Redis URL");
        RedisClients::new(&loaded.settings, &roles).expect("clients")
    }

    #[test]
    fn roles_on_one_redis_share_its_connection() {
        let clients = clients(&[("PARLEY__REDIS__URL", "redis://127.0.0.1:1/0")]);
        for role in [
            &clients.cache,
            &clients.presence,
            &clients.state,
            &clients.ratelimit,
        ] {
            assert!(clients.pubsub.shares_connection_with(role));
        }
    }

    #[test]
    fn a_role_on_another_redis_has_its_own_connection() {
        let clients = clients(&[
            ("PARLEY__REDIS__URL", "redis://127.0.0.1:1/0"),
            ("PARLEY__REDIS__CACHE_URL", "redis://127.0.0.1:2/0"),
        ]);
        assert!(!clients.cache.shares_connection_with(&clients.state));
        assert!(clients.state.shares_connection_with(&clients.ratelimit));
    }
}
