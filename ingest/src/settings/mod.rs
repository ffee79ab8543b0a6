//! The configuration of ingest.
//!
//! - `sections`: [`KafkaSettings`], [`MongoSettings`] and [`IngestSettings`], the sections both
//!   binaries read (`parley-server` embeds them in its own settings), and [`Invalid`].
//! - Here: [`ServiceSettings`], what the `ingest` binary reads from the shared configuration
//!   file — the sections `[kafka]`, `[mongo]`, `[ingest]`, `[search]` (the search role) and
//!   `[log]` (the others belong to
//!   `parley-server` and are ignored here) — and the adapter and pipeline configurations built
//!   from them.

mod sections;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bootstrap::{load_layers, LogSettings};
use persistence::kafka::KafkaConfig;
use persistence::mongo::MongoConfig;
use search::{IndexerConfig, SearchSettings};
use serde::Deserialize;
use thiserror::Error;

use crate::pipeline::IngestConfig;

pub use sections::{IngestSettings, Invalid, KafkaSettings, MongoSettings};

/// First delay between retries while a dependency is unavailable (doubling up to
/// `ingest.max_backoff_ms`).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Keys `load_layers` splits at commas: none of ingest's settings is a list.
const LIST_KEYS: &[&str] = &[];

/// The sections of the shared file the `ingest` binary uses. Unknown top-level sections are
/// allowed (they are `parley-server`'s); unknown keys inside these sections are not.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceSettings {
    pub kafka: KafkaSettings,
    pub mongo: MongoSettings,
    pub ingest: IngestSettings,
    /// The search role's keys (`ingest search`).
    pub search: SearchSettings,
    pub log: LogSettings,
}

/// Why the settings could not be used: unreadable, or a value is invalid or missing.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(Invalid),
}

impl ServiceSettings {
    /// Loads defaults, then `file`, then the `PARLEY__*` entries of `env`, and validates.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let settings: Self = load_layers(file, env, LIST_KEYS)?;
        settings.validate().map_err(SettingsError::Invalid)?;
        Ok(settings)
    }

    /// Every section's own checks, plus what ingest cannot run without: a broker list and a
    /// MongoDB URI.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !self.kafka.enabled() {
            return Err(Invalid {
                key: "kafka.brokers",
                problem: "must be set for ingest (e.g. PARLEY__KAFKA__BROKERS=127.0.0.1:9092)"
                    .to_owned(),
            });
        }
        if !self.mongo.enabled() {
            return Err(Invalid {
                key: "mongo.uri",
                problem:
                    "must be set for ingest (e.g. PARLEY__MONGO__URI=mongodb://127.0.0.1:27017/)"
                        .to_owned(),
            });
        }
        self.kafka.validate()?;
        self.mongo.validate()?;
        self.ingest.validate()?;
        validate_search_role(&self.search)?;
        if self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return Err(Invalid {
                key: "log.level",
                problem: format!("{:?} is not a tracing filter", self.log.level),
            });
        }
        Ok(())
    }

    /// The Kafka client configuration; the client id defaults to `ingest-<hostname>`.
    pub fn kafka_config(&self, hostname: Option<&str>) -> KafkaConfig {
        let host = hostname
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .unwrap_or("local");
        self.kafka.kafka_config(&format!("ingest-{host}"))
    }

    pub fn mongo_config(&self) -> MongoConfig {
        self.mongo.mongo_config()
    }

    pub fn pipeline_config(&self) -> IngestConfig {
        let max_backoff = Duration::from_millis(self.ingest.max_backoff_ms);
        IngestConfig {
            group: self.ingest.group.clone(),
            max_batch: self.ingest.max_batch,
            poll_wait: Duration::from_millis(self.ingest.poll_wait_ms),
            linger: Duration::from_millis(self.ingest.linger_ms),
            initial_backoff: INITIAL_BACKOFF.min(max_backoff),
            max_backoff,
            ..IngestConfig::default()
        }
    }

    /// The search role's indexer: its consumer `group` (kept beside the index), the batch
    /// size of `[search]` and ingest's backoff.
    pub fn indexer_config(&self, group: String) -> IndexerConfig {
        let max_backoff = self.max_backoff();
        IndexerConfig {
            group,
            max_batch: self.search.max_batch,
            commit_interval: self.search.commit_interval(),
            initial_backoff: INITIAL_BACKOFF.min(max_backoff),
            max_backoff,
            ..IndexerConfig::default()
        }
    }

    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.ingest.max_backoff_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.ingest.shutdown_timeout_ms)
    }
}

/// The `[search]` keys the search role uses.
fn validate_search_role(search: &SearchSettings) -> Result<(), Invalid> {
    if search.writer_memory_mb < 15 {
        return Err(Invalid {
            key: "search.writer_memory_mb",
            problem: "must be at least 15".to_owned(),
        });
    }
    if search.max_batch == 0 {
        return Err(Invalid {
            key: "search.max_batch",
            problem: "must be at least 1".to_owned(),
        });
    }
    if search.bind.parse::<std::net::SocketAddr>().is_err() {
        return Err(Invalid {
            key: "search.bind",
            problem: format!("{:?} is not an address:port", search.bind),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootstrap::LogFormat;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    const REQUIRED: [(&str, &str); 2] = [
        ("PARLEY__KAFKA__BROKERS", "127.0.0.1:9092"),
        ("PARLEY__MONGO__URI", "mongodb://127.0.0.1:27017/"),
    ];

    #[test]
    fn brokers_and_mongo_uri_are_required_and_named() {
        let error = ServiceSettings::load(None, &env(&[])).unwrap_err();
        assert!(
            matches!(&error, SettingsError::Invalid(invalid) if invalid.key == "kafka.brokers")
        );
        assert!(error.to_string().contains("`kafka.brokers`"));
        let error = ServiceSettings::load(None, &env(&REQUIRED[..1])).unwrap_err();
        assert!(matches!(&error, SettingsError::Invalid(invalid) if invalid.key == "mongo.uri"));
    }

    #[test]
    fn environment_overrides_reach_the_pipeline_and_the_adapters() {
        let mut pairs = REQUIRED.to_vec();
        pairs.extend([
            ("PARLEY__INGEST__GROUP", "ingest-test"),
            ("PARLEY__INGEST__MAX_BATCH", "7"),
            ("PARLEY__INGEST__POLL_WAIT_MS", "20"),
            ("PARLEY__INGEST__MAX_BACKOFF_MS", "300"),
            ("PARLEY__KAFKA__MAX_BATCH_RECORDS", "1"),
            ("PARLEY__KAFKA__DEAD_LETTER_TOPIC", "poison"),
            ("PARLEY__KAFKA__STALL_TIMEOUT_MS", "15000"),
            ("PARLEY__KAFKA__MAX_PARTITION_FETCH_BYTES", "65536"),
            ("PARLEY__MONGO__DATABASE", "chat"),
            ("PARLEY__LOG__FORMAT", "json"),
        ]);
        let settings = ServiceSettings::load(None, &env(&pairs)).expect("valid");
        let pipeline = settings.pipeline_config();
        assert_eq!(pipeline.group, "ingest-test");
        assert_eq!(pipeline.max_batch, 7);
        assert_eq!(pipeline.poll_wait, Duration::from_millis(20));
        assert_eq!(pipeline.max_backoff, Duration::from_millis(300));
        let kafka = settings.kafka_config(None);
        assert_eq!(kafka.max_batch_records, 1);
        assert_eq!(kafka.dead_letter_topic, "poison");
        assert_eq!(kafka.stall_timeout, Duration::from_secs(15));
        assert_eq!(kafka.max_partition_fetch_bytes, 65536);
        assert_eq!(settings.mongo_config().database, "chat");
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn client_id_defaults_to_ingest_and_the_host() {
        let settings = ServiceSettings::load(None, &env(&REQUIRED)).expect("valid");
        assert_eq!(
            settings.kafka_config(Some("box-7")).client_id,
            "ingest-box-7"
        );
        assert_eq!(settings.kafka_config(None).client_id, "ingest-local");
        assert_eq!(settings.kafka_config(Some(" ")).client_id, "ingest-local");
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("PARLEY__KAFKA__CLIENT_ID", "mine"));
        let settings = ServiceSettings::load(None, &env(&pairs)).expect("valid");
        assert_eq!(settings.kafka_config(Some("box-7")).client_id, "mine");
    }

    #[test]
    fn other_sections_of_the_shared_file_are_ignored_but_typos_inside_ours_are_not() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("parley.toml");
        std::fs::write(
            &path,
            "[server]\nbind = \"0.0.0.0:8080\"\n[auth]\napi_key = \"k\"\n[ingest]\ngroup = \"from-file\"\n",
        )
        .expect("write");
        let settings = ServiceSettings::load(Some(&path), &env(&REQUIRED)).expect("valid");
        assert_eq!(settings.ingest.group, "from-file");

        std::fs::write(&path, "[ingest]\ngrup = \"typo\"\n").expect("write");
        let error = ServiceSettings::load(Some(&path), &env(&REQUIRED)).unwrap_err();
        assert!(matches!(error, SettingsError::Load(_)), "{error}");
        assert!(error.to_string().contains("grup"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("PARLEY__KAFKA__BROKERS", "127.0.0.1:9092,127.0.0.1:9093"));
        let settings = ServiceSettings::load(None, &env(&pairs)).expect("a broker list");
        assert_eq!(settings.kafka.brokers, "127.0.0.1:9092,127.0.0.1:9093");
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("PARLEY__INGEST__BIND", "nowhere"));
        let error = ServiceSettings::load(None, &env(&pairs)).unwrap_err();
        assert!(error.to_string().contains("`ingest.bind`"), "{error}");
        for topic in ["", "message.sent", "audit"] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push(("PARLEY__KAFKA__DEAD_LETTER_TOPIC", topic));
            let error = ServiceSettings::load(None, &env(&pairs)).unwrap_err();
            assert!(
                error.to_string().contains("`kafka.dead_letter_topic`"),
                "{error}"
            );
        }
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("PARLEY__KAFKA__AUDIT_RETENTION_MS", "1000"));
        let error = ServiceSettings::load(None, &env(&pairs)).unwrap_err();
        assert!(
            error.to_string().contains("`kafka.audit_retention_ms`"),
            "{error}"
        );
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("PARLEY__SEARCH__BIND", "nowhere"));
        let error = ServiceSettings::load(None, &env(&pairs)).unwrap_err();
        assert!(error.to_string().contains("`search.bind`"), "{error}");
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("PARLEY__LOG__LEVEL", "info,[[["));
        let error = ServiceSettings::load(None, &env(&pairs)).unwrap_err();
        assert!(error.to_string().contains("`log.level`"), "{error}");
    }
}
