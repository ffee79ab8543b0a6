//! Validation at start-up, one function per section, each error naming the bad key. The
//! sections are checked in this order, so the first bad key reported stays the same.

use std::fmt;
use std::net::SocketAddr;

use super::{
    invalid, AuthSettings, ConfigError, LimitSettings, LogSettings, RateLimitSettings,
    RedisSettings, ServerSettings, Settings, StorageSettings, WebChatSettings, HARD_FRAME_BYTES,
};

pub(super) fn validate(settings: &Settings) -> Result<(), ConfigError> {
    validate_server(&settings.server)?;
    validate_redis(&settings.redis)?;
    validate_durable_sections(settings)?;
    validate_storage(&settings.storage)?;
    validate_search(&settings.search)?;
    validate_auth(&settings.auth)?;
    validate_dev_secrets_bind(settings)?;
    validate_limits(&settings.limits)?;
    validate_rate_limit(&settings.rate_limit)?;
    validate_log(&settings.log)?;
    validate_web_chat(&settings.web_chat)?;
    super::attachments::validate_attachments(settings)?;
    super::retention::validate_retention(settings)?;
    super::export::validate_export(settings)
}

fn validate_web_chat(web_chat: &WebChatSettings) -> Result<(), ConfigError> {
    match web_chat.served_dir() {
        Some(dir) if !dir.join("index.html").is_file() => Err(invalid(
            "web_chat.dir",
            format!(
                "{} holds no index.html: build the web chat first (clients/web-chat, see its README)",
                dir.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// `key` "must be at least `minimum`".
fn at_least<T: PartialOrd + fmt::Display>(
    key: &'static str,
    value: T,
    minimum: T,
) -> Result<(), ConfigError> {
    if value < minimum {
        return Err(invalid(key, format!("must be at least {minimum}")));
    }
    Ok(())
}

fn validate_search(search: &search::SearchSettings) -> Result<(), ConfigError> {
    at_least("search.writer_memory_mb", search.writer_memory_mb, 15)?;
    at_least("search.max_batch", search.max_batch, 1)
}

fn validate_server(server: &ServerSettings) -> Result<(), ConfigError> {
    server.bind.parse::<SocketAddr>().map_err(|error| {
        invalid(
            "server.bind",
            format!("is not an address like 127.0.0.1:8080: {error}"),
        )
    })?;
    for url in &server.public_urls {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(invalid(
                "server.public_urls",
                format!("entry {url:?} must start with ws:// or wss://"),
            ));
        }
    }
    if server.drain_window_ms >= server.shutdown_timeout_ms {
        return Err(invalid(
            "server.drain_window_ms",
            "must be less than server.shutdown_timeout_ms",
        ));
    }
    Ok(())
}

fn validate_redis(redis: &RedisSettings) -> Result<(), ConfigError> {
    if let Some(roles) = redis.roles() {
        for (key, url) in [
            ("redis.pubsub_url", &roles.pubsub),
            ("redis.cache_url", &roles.cache),
            ("redis.presence_url", &roles.presence),
            ("redis.state_url", &roles.state),
            ("redis.ratelimit_url", &roles.ratelimit),
        ] {
            let url = url.expose();
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                return Err(invalid(
                    key,
                    "must be a redis:// URL (set it, or set redis.url for every role)",
                ));
            }
        }
    }
    at_least("redis.command_timeout_ms", redis.command_timeout_ms, 1)?;
    at_least("redis.presence_ttl_ms", redis.presence_ttl_ms, 100)?;
    if redis.dedup_ttl_secs == 0 || redis.cache_ttl_secs == 0 {
        return Err(invalid(
            "redis.dedup_ttl_secs",
            "and redis.cache_ttl_secs must be at least 1",
        ));
    }
    Ok(())
}

/// The `kafka`, `mongo` and `ingest` sections (checked by their own crate), and the durable
/// cluster mode they make together: Kafka and MongoDB both or neither, and Redis with them.
fn validate_durable_sections(settings: &Settings) -> Result<(), ConfigError> {
    for checked in [
        settings.kafka.validate(),
        settings.mongo.validate(),
        settings.ingest.validate(),
    ] {
        checked.map_err(|error| invalid(error.key, error.problem))?;
    }
    if settings.kafka.enabled() != settings.mongo.enabled() {
        return Err(invalid(
            "kafka.brokers",
            "and mongo.uri must be set together (durable cluster mode) or both left empty",
        ));
    }
    if settings.kafka.enabled() && settings.redis.roles().is_none() {
        return Err(invalid(
            "redis.url",
            "must be set in durable cluster mode (kafka.brokers and mongo.uri are set)",
        ));
    }
    Ok(())
}

fn validate_storage(storage: &StorageSettings) -> Result<(), ConfigError> {
    if storage.data_dir.as_os_str().is_empty() {
        return Err(invalid("storage.data_dir", "must not be empty"));
    }
    if storage.cache_mb > 65_536 {
        return Err(invalid(
            "storage.cache_mb",
            "must be at most 65536 (64 GiB)",
        ));
    }
    // Every ack under load waits this long: past 100 ms it is a mistake, not a trade-off.
    if storage.log_group_commit_delay_us > 100_000 {
        return Err(invalid(
            "storage.log_group_commit_delay_us",
            "must be at most 100000 (100 ms)",
        ));
    }
    Ok(())
}

fn validate_auth(auth: &AuthSettings) -> Result<(), ConfigError> {
    if auth.jwt_secret.expose().len() < 32 {
        return Err(invalid("auth.jwt_secret", "must be at least 32 bytes"));
    }
    if auth.api_key.expose().len() < 16 {
        return Err(invalid("auth.api_key", "must be at least 16 bytes"));
    }
    let admin_key = auth.admin_api_key.expose();
    if !admin_key.is_empty() && admin_key.len() < 16 {
        return Err(invalid(
            "auth.admin_api_key",
            "must be empty (admin API off) or at least 16 bytes",
        ));
    }
    if admin_key == auth.api_key.expose() {
        return Err(invalid(
            "auth.admin_api_key",
            "must differ from auth.api_key",
        ));
    }
    if auth.token_ttl_secs == 0 || auth.token_ttl_secs > auth.max_token_ttl_secs {
        return Err(invalid(
            "auth.token_ttl_secs",
            format!(
                "must be between 1 and auth.max_token_ttl_secs ({})",
                auth.max_token_ttl_secs
            ),
        ));
    }
    Ok(())
}

/// The public development secrets only on a loopback address, unless explicitly allowed
/// (`auth.allow_dev_secrets_on_public_bind`, which the start-up log then warns about).
fn validate_dev_secrets_bind(settings: &Settings) -> Result<(), ConfigError> {
    if settings.auth.allow_dev_secrets_on_public_bind || !settings.binds_publicly() {
        return Ok(());
    }
    let Some(dev_key) = settings.dev_secret_in_use() else {
        return Ok(());
    };
    Err(invalid(
        dev_key,
        format!(
            "is the public development default (empty or not set), and server.bind {} is not a \
             loopback address: set a secret of your own (PARLEY__{}), or \
             auth.allow_dev_secrets_on_public_bind = true for a throwaway test setup",
            settings.server.bind,
            dev_key.replace('.', "__").to_uppercase()
        ),
    ))
}

fn validate_limits(limits: &LimitSettings) -> Result<(), ConfigError> {
    if !(1..=HARD_FRAME_BYTES).contains(&limits.max_frame_bytes) {
        return Err(invalid(
            "limits.max_frame_bytes",
            format!(
                "must be between 1 and {HARD_FRAME_BYTES}, got {}",
                limits.max_frame_bytes
            ),
        ));
    }
    at_least("limits.outbound_queue", limits.outbound_queue, 1)?;
    at_least("limits.heartbeat_ms", limits.heartbeat_ms, 100)?;
    if limits.client_timeout_ms <= limits.heartbeat_ms {
        return Err(invalid(
            "limits.client_timeout_ms",
            "must be greater than limits.heartbeat_ms",
        ));
    }
    at_least("limits.max_group_members", limits.max_group_members, 2)?;
    at_least("limits.recent_messages", limits.recent_messages, 1)?;
    at_least(
        "limits.conversation_idle_ms",
        limits.conversation_idle_ms,
        100,
    )?;
    at_least(
        "limits.max_inflight_requests",
        limits.max_inflight_requests,
        1,
    )?;
    at_least("limits.max_batch_ops", limits.max_batch_ops, 1)?;
    if !(1..=1000).contains(&limits.sync_page) {
        return Err(invalid("limits.sync_page", "must be between 1 and 1000"));
    }
    at_least(
        "limits.max_connections_per_user",
        limits.max_connections_per_user,
        1,
    )?;
    at_least("limits.max_connections", limits.max_connections, 1)?;
    at_least(
        "limits.max_conversations_per_user",
        limits.max_conversations_per_user,
        1,
    )?;
    Ok(())
}

fn validate_rate_limit(rate: &RateLimitSettings) -> Result<(), ConfigError> {
    if !(rate.per_second.is_finite() && rate.per_second > 0.0) {
        return Err(invalid(
            "rate_limit.per_second",
            "must be a positive number",
        ));
    }
    at_least("rate_limit.burst", rate.burst, 1)?;
    at_least("rate_limit.abuse_rejections", rate.abuse_rejections, 1)?;
    at_least("rate_limit.abuse_window_ms", rate.abuse_window_ms, 1)
}

fn validate_log(log: &LogSettings) -> Result<(), ConfigError> {
    tracing_subscriber::EnvFilter::try_new(&log.level)
        .map_err(|error| invalid("log.level", format!("is not a valid filter: {error}")))?;
    Ok(())
}
