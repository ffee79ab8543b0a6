//! Configuration: built-in defaults (`config/parley.toml`), an optional file, then environment
//! overrides `PARLEY__SECTION__KEY`; validated with messages naming the bad key.

// The explicit path keeps one answer for both ways this file is compiled: as `crate::config`
// of the binary, and through `#[path]` in `tests/config_reference.rs`, where a plain
// `mod validate;` would be looked for beside this file.
#[path = "config/attachments.rs"]
mod attachments;
#[path = "config/export.rs"]
mod export;
#[path = "config/retention.rs"]
mod retention;
#[path = "config/validate.rs"]
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use attachments::{AttachmentSettings, EffectiveStore};
use bootstrap::load_layers;
pub use bootstrap::{LogSettings, Secret};
pub use export::{ExportFiles, ExportSettings};
use ingest::settings::{IngestSettings, KafkaSettings, MongoSettings};
pub use retention::{RetentionSettings, MAX_RETENTION_DAYS};
use search::SearchSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub mongo: MongoSettings,
    /// Read by the `ingest` binary; accepted here so both binaries share one file.
    pub ingest: IngestSettings,
    pub search: SearchSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub rate_limit: RateLimitSettings,
    pub log: LogSettings,
    pub web_chat: WebChatSettings,
    pub attachments: AttachmentSettings,
    pub retention: RetentionSettings,
    pub export: ExportSettings,
}

/// The development web chat (`clients/web-chat`), served under `/chat/` when `dir` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebChatSettings {
    pub dir: PathBuf,
}

impl WebChatSettings {
    /// The directory to serve, `None` when the web chat is off (`dir` empty).
    pub fn served_dir(&self) -> Option<&Path> {
        (!self.dir.as_os_str().is_empty()).then_some(self.dir.as_path())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub node_id: String,
    pub public_urls: Vec<String>,
    pub workers: usize,
    pub drain_window_ms: u64,
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub data_dir: PathBuf,
    pub log_group_commit_delay_us: u64,
    pub cache_mb: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Secret,
    pub pubsub_url: Secret,
    pub cache_url: Secret,
    pub presence_url: Secret,
    pub state_url: Secret,
    pub ratelimit_url: Secret,
    pub key_prefix: String,
    pub command_timeout_ms: u64,
    pub presence_ttl_ms: u64,
    pub dedup_ttl_secs: u64,
    pub cache_ttl_secs: u64,
}

/// The Redis URL of each role, after defaulting to `redis.url`.
#[derive(Debug, Clone)]
pub struct RedisRoles {
    pub pubsub: Secret,
    pub cache: Secret,
    pub presence: Secret,
    pub state: Secret,
    pub ratelimit: Secret,
}

impl RedisSettings {
    /// `None` in standalone mode (no Redis URL at all).
    pub fn roles(&self) -> Option<RedisRoles> {
        let role = |url: &Secret| {
            if url.is_empty() {
                self.url.clone()
            } else {
                url.clone()
            }
        };
        let roles = RedisRoles {
            pubsub: role(&self.pubsub_url),
            cache: role(&self.cache_url),
            presence: role(&self.presence_url),
            state: role(&self.state_url),
            ratelimit: role(&self.ratelimit_url),
        };
        let any = [
            &roles.pubsub,
            &roles.cache,
            &roles.presence,
            &roles.state,
            &roles.ratelimit,
        ]
        .iter()
        .any(|url| !url.is_empty());
        any.then_some(roles)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: Secret,
    pub api_key: Secret,
    /// `X-Admin-Key` of the admin API; empty: the admin API is off (its routes answer 404).
    pub admin_api_key: Secret,
    pub token_ttl_secs: u64,
    pub max_token_ttl_secs: u64,
    /// Start even with a public development secret on a non-loopback `server.bind` (logged
    /// at warn); for throwaway test setups only.
    pub allow_dev_secrets_on_public_bind: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub max_frame_bytes: usize,
    pub outbound_queue: usize,
    pub heartbeat_ms: u64,
    pub client_timeout_ms: u64,
    pub max_group_members: usize,
    pub recent_messages: usize,
    pub conversation_idle_ms: u64,
    pub max_inflight_requests: usize,
    pub max_batch_ops: usize,
    pub sync_page: usize,
    pub max_connections_per_user: usize,
    pub max_connections: usize,
    pub max_conversations_per_user: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub per_second: f64,
    pub burst: u32,
    pub abuse_rejections: u32,
    pub abuse_window_ms: u64,
}

/// Frames over this are never read (protocol constant).
pub const HARD_FRAME_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// Where the API key and JWT secret came from (printed at start-up; the values never are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    Environment,
    File,
    DevDefault,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            SecretSource::Environment => "environment",
            SecretSource::File => "configuration file",
            SecretSource::DevDefault => "DEVELOPMENT DEFAULT (insecure)",
        })
    }
}

/// Development defaults used when no secret is configured. They are public: never use them
/// outside a developer's machine.
pub const DEV_JWT_SECRET: &str = "parley-development-jwt-secret-do-not-use-in-production";
pub const DEV_API_KEY: &str = "parley-dev-api-key";

#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub jwt_secret_source: SecretSource,
    pub api_key_source: SecretSource,
}

/// Loads the defaults, then `file` if given, then the environment.
pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
    load_with_env(file, std::env::vars())
}

pub fn load_with_env(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let env: std::collections::HashMap<String, String> = env
        .into_iter()
        .filter(|(key, _)| key.starts_with("PARLEY__"))
        .collect();
    let mut file_settings = None;
    if let Some(path) = file {
        file_settings = Some(
            config::Config::builder()
                .add_source(config::File::from(path).required(true))
                .build()?,
        );
    }
    let mut settings: Settings = load_layers(file, &env, &["server.public_urls"])?;
    // "ws://a/ws, wss://b/ws" and a trailing comma are what people write.
    settings.server.public_urls = std::mem::take(&mut settings.server.public_urls)
        .into_iter()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    let source_of = |env_key: &str, file_key: &str, value: &Secret| {
        if value.is_empty() {
            SecretSource::DevDefault
        } else if env.contains_key(env_key) {
            SecretSource::Environment
        } else if file_settings
            .as_ref()
            .is_some_and(|file| file.get_string(file_key).is_ok())
        {
            SecretSource::File
        } else {
            SecretSource::Environment
        }
    };
    let jwt_secret_source = source_of(
        "PARLEY__AUTH__JWT_SECRET",
        "auth.jwt_secret",
        &settings.auth.jwt_secret,
    );
    let api_key_source = source_of(
        "PARLEY__AUTH__API_KEY",
        "auth.api_key",
        &settings.auth.api_key,
    );
    if jwt_secret_source == SecretSource::DevDefault {
        settings.auth.jwt_secret = Secret::new(DEV_JWT_SECRET);
    }
    if api_key_source == SecretSource::DevDefault {
        settings.auth.api_key = Secret::new(DEV_API_KEY);
    }
    validate::validate(&settings)?;
    Ok(Loaded {
        settings,
        jwt_secret_source,
        api_key_source,
    })
}

impl Settings {
    pub fn bind_addr(&self) -> SocketAddr {
        self.server.bind.parse().expect("validated")
    }

    /// `server.bind` is not a loopback address: other machines may reach the node.
    pub fn binds_publicly(&self) -> bool {
        self.server
            .bind
            .parse::<SocketAddr>()
            .is_ok_and(|address| !address.ip().is_loopback())
    }

    /// The key of the first public development default in use, if any.
    pub fn dev_secret_in_use(&self) -> Option<&'static str> {
        if self.auth.jwt_secret.expose() == DEV_JWT_SECRET {
            Some("auth.jwt_secret")
        } else if self.auth.api_key.expose() == DEV_API_KEY {
            Some("auth.api_key")
        } else {
            None
        }
    }

    pub fn limits(&self) -> actors::Limits {
        let limits = &self.limits;
        actors::Limits {
            max_frame_bytes: limits.max_frame_bytes,
            hard_frame_bytes: HARD_FRAME_BYTES,
            outbound_queue: limits.outbound_queue,
            heartbeat: Duration::from_millis(limits.heartbeat_ms),
            client_timeout: Duration::from_millis(limits.client_timeout_ms),
            max_group_members: limits.max_group_members,
            recent_messages: limits.recent_messages,
            conversation_idle: Duration::from_millis(limits.conversation_idle_ms),
            max_inflight_requests: limits.max_inflight_requests,
            abuse_rejections: self.rate_limit.abuse_rejections,
            abuse_window: Duration::from_millis(self.rate_limit.abuse_window_ms),
            max_batch_ops: limits.max_batch_ops,
            gap_wait: Duration::from_secs(2),
            sync_page: limits.sync_page,
            max_connections_per_user: limits.max_connections_per_user,
            max_connections: limits.max_connections,
            max_conversations_per_user: limits.max_conversations_per_user,
            attachment_orphan_ttl: self.attachments.orphan_ttl(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_with_dev_secrets() {
        let loaded = load_with_env(None, env(&[])).unwrap();
        assert_eq!(loaded.settings.server.bind, "127.0.0.1:8080");
        assert_eq!(loaded.api_key_source, SecretSource::DevDefault);
        assert_eq!(loaded.settings.auth.api_key.expose(), DEV_API_KEY);
        assert_eq!(loaded.settings.limits.max_frame_bytes, 65536);
    }

    #[test]
    fn export_files_expire_after_their_retention_or_never() {
        let files = |secs: &str| {
            let loaded = load_with_env(None, env(&[("PARLEY__EXPORT__RETAIN_FILES_SECS", secs)]));
            loaded.map(|loaded| loaded.settings.export.files())
        };
        let week = std::time::Duration::from_secs(604_800);
        let hour = std::time::Duration::from_secs(3600);
        let default = load_with_env(None, env(&[]))
            .unwrap()
            .settings
            .export
            .files();
        assert_eq!(
            default,
            ExportFiles::Expire {
                after: week,
                sweep_every: hour
            }
        );
        let short = std::time::Duration::from_secs(3);
        assert_eq!(
            files("3").unwrap(),
            ExportFiles::Expire {
                after: short,
                sweep_every: short
            }
        );
        assert_eq!(files("0").unwrap(), ExportFiles::KeptForever);
        let error = files("999999999999").unwrap_err().to_string();
        assert!(error.contains("export.retain_files_secs"), "{error}");
    }

    #[test]
    fn environment_overrides_and_sources() {
        let loaded = load_with_env(
            None,
            env(&[
                ("PARLEY__SERVER__BIND", "127.0.0.1:9999"),
                ("PARLEY__LIMITS__OUTBOUND_QUEUE", "16"),
                ("PARLEY__AUTH__API_KEY", "an-api-key-of-enough-length"),
                ("PARLEY__SERVER__PUBLIC_URLS", "ws://a/ws, wss://b/ws,"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.settings.server.bind, "127.0.0.1:9999");
        assert_eq!(loaded.settings.limits.outbound_queue, 16);
        assert_eq!(loaded.api_key_source, SecretSource::Environment);
        assert_eq!(loaded.jwt_secret_source, SecretSource::DevDefault);
        assert_eq!(
            loaded.settings.server.public_urls,
            vec!["ws://a/ws", "wss://b/ws"]
        );
    }

    #[test]
    fn a_web_chat_dir_without_index_html_is_refused() {
        let error = load_with_env(None, env(&[("PARLEY__WEB_CHAT__DIR", "/nonexistent-dir")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("web_chat.dir"), "{error}");
        assert!(error.contains("no index.html"), "{error}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let error = load_with_env(None, env(&[("PARLEY__LIMITS__MAX_FRAME_BYTES", "0")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("limits.max_frame_bytes"), "{error}");
        let error = load_with_env(None, env(&[("PARLEY__SERVER__BIND", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("server.bind"), "{error}");
        let delay = ("PARLEY__STORAGE__LOG_GROUP_COMMIT_DELAY_US", "100001");
        let error = load_with_env(None, env(&[delay])).unwrap_err().to_string();
        assert!(
            error.contains("storage.log_group_commit_delay_us"),
            "{error}"
        );
        let cache = ("PARLEY__STORAGE__CACHE_MB", "65537");
        let error = load_with_env(None, env(&[cache])).unwrap_err().to_string();
        assert!(error.contains("storage.cache_mb"), "{error}");
        let error = load_with_env(None, env(&[("PARLEY__AUTH__JWT_SECRET", "short")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("auth.jwt_secret"), "{error}");
        assert!(!error.contains("short"), "secret value leaked: {error}");
    }

    #[test]
    fn dev_secrets_only_on_loopback_unless_allowed() {
        let public = ("PARLEY__SERVER__BIND", "0.0.0.0:8080");
        let error = load_with_env(None, env(&[public])).unwrap_err().to_string();
        assert!(error.contains("auth.jwt_secret"), "{error}");
        assert!(
            !error.contains(DEV_JWT_SECRET),
            "secret value leaked: {error}"
        );
        let jwt_secret = (
            "PARLEY__AUTH__JWT_SECRET",
            "a-real-secret-of-at-least-32-bytes-long",
        );
        let error = load_with_env(None, env(&[public, jwt_secret]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("auth.api_key"), "{error}");
        // The default's value given explicitly is the same public secret.
        let dev_key = ("PARLEY__AUTH__API_KEY", DEV_API_KEY);
        assert!(load_with_env(None, env(&[public, jwt_secret, dev_key])).is_err());
        let api_key = ("PARLEY__AUTH__API_KEY", "a-real-api-key-long-enough");
        assert!(load_with_env(None, env(&[public, jwt_secret, api_key])).is_ok());
        assert!(load_with_env(None, env(&[("PARLEY__SERVER__BIND", "[::1]:8080")])).is_ok());
        let allowed = ("PARLEY__AUTH__ALLOW_DEV_SECRETS_ON_PUBLIC_BIND", "true");
        let loaded = load_with_env(None, env(&[public, allowed])).unwrap();
        assert!(loaded.settings.binds_publicly());
        assert_eq!(loaded.settings.dev_secret_in_use(), Some("auth.jwt_secret"));
    }

    #[test]
    fn the_admin_key_is_off_by_default_and_never_the_api_key() {
        let loaded = load_with_env(None, env(&[])).unwrap();
        assert!(loaded.settings.auth.admin_api_key.is_empty());
        let key = "an-admin-key-long-enough";
        let loaded = load_with_env(None, env(&[("PARLEY__AUTH__ADMIN_API_KEY", key)])).unwrap();
        assert_eq!(loaded.settings.auth.admin_api_key.expose(), key);
        let error = load_with_env(None, env(&[("PARLEY__AUTH__ADMIN_API_KEY", "short")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("auth.admin_api_key"), "{error}");
        let same = [
            ("PARLEY__AUTH__API_KEY", key),
            ("PARLEY__AUTH__ADMIN_API_KEY", key),
        ];
        let error = load_with_env(None, env(&same)).unwrap_err().to_string();
        assert!(error.contains("must differ"), "{error}");
    }

    #[test]
    fn redis_roles_default_to_the_main_url() {
        let loaded = load_with_env(None, env(&[])).unwrap();
        assert!(
            loaded.settings.redis.roles().is_none(),
            "standalone by default"
        );
        let loaded = load_with_env(
            None,
            env(&[
                ("PARLEY__REDIS__URL", "redis://127.0.0.1:6390/0"),
                ("PARLEY__REDIS__CACHE_URL", "redis://127.0.0.1:6391/0"),
            ]),
        )
        .unwrap();
        let roles = loaded.settings.redis.roles().unwrap();
        assert_eq!(roles.pubsub.expose(), "redis://127.0.0.1:6390/0");
        assert_eq!(roles.cache.expose(), "redis://127.0.0.1:6391/0");
        let error = load_with_env(None, env(&[("PARLEY__REDIS__STATE_URL", "http://nope")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("redis."), "{error}");
    }

    #[test]
    fn durable_mode_needs_kafka_mongo_and_redis_together() {
        let kafka = ("PARLEY__KAFKA__BROKERS", "127.0.0.1:9092");
        let mongo = ("PARLEY__MONGO__URI", "mongodb://127.0.0.1:27017/");
        let redis = ("PARLEY__REDIS__URL", "redis://127.0.0.1:6390/0");
        let loaded = load_with_env(None, env(&[kafka, mongo, redis])).unwrap();
        assert!(loaded.settings.kafka.enabled() && loaded.settings.mongo.enabled());
        for partial in [vec![kafka, redis], vec![mongo, redis]] {
            let error = load_with_env(None, env(&partial)).unwrap_err().to_string();
            assert!(error.contains("`kafka.brokers`"), "{error}");
        }
        let error = load_with_env(None, env(&[kafka, mongo]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`redis.url`"), "{error}");
        let error = load_with_env(None, env(&[kafka, redis, ("PARLEY__MONGO__URI", "x")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`mongo.uri`"), "{error}");
        // The ingest binary's section is accepted (one file for both binaries).
        let loaded = load_with_env(None, env(&[("PARLEY__INGEST__MAX_BATCH", "64")])).unwrap();
        assert_eq!(loaded.settings.ingest.max_batch, 64);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(&path, "[server]\nbindd = \"127.0.0.1:1\"\n").unwrap();
        let error = load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("bindd"), "{error}");
    }

    #[test]
    fn file_secrets_are_reported_as_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(&path, "[auth]\napi_key = \"file-api-key-long-enough\"\n").unwrap();
        let loaded = load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(loaded.api_key_source, SecretSource::File);
        assert!(!format!("{:?}", loaded.settings).contains("file-api-key-long-enough"));
    }
}
