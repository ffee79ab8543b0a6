//! The sections of the shared configuration file both `parley-server` and `ingest` read:
//! `[kafka]` and `[mongo]` (durable cluster mode; each builds its adapter's configuration) and
//! `[ingest]` (the pipeline). The file and its loader are `bootstrap`'s.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bootstrap::Secret;
use persistence::kafka::{KafkaConfig, AUDIT_TOPIC};
use persistence::mongo::MongoConfig;
use serde::{Deserialize, Serialize};

/// A setting that failed validation: the key (`section.name`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub problem: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "`{}` {}", self.key, self.problem)
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        key,
        problem: problem.into(),
    }
}

fn at_least(key: &'static str, value: u64, minimum: u64) -> Result<(), Invalid> {
    if value < minimum {
        return Err(invalid(key, format!("must be at least {minimum}")));
    }
    Ok(())
}

/// `[kafka]`: the event log in durable cluster mode.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic_prefix: String,
    pub dead_letter_topic: String,
    pub client_id: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub message_timeout_ms: u64,
    pub linger_ms: u64,
    pub max_batch_records: usize,
    pub request_timeout_ms: u64,
    pub commit_timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub stall_timeout_ms: u64,
    pub max_partition_fetch_bytes: usize,
    pub log_retention_ms: i64,
    pub audit_retention_ms: i64,
}

impl KafkaSettings {
    /// Whether a broker list is configured.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.enabled() {
            for broker in self.brokers.split(',') {
                let broker = broker.trim();
                let port = broker.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
                if !matches!(port, Some(Ok(_))) {
                    return Err(invalid(
                        "kafka.brokers",
                        format!("entry {broker:?} must be host:port"),
                    ));
                }
            }
        }
        if self.dead_letter_topic.trim().is_empty()
            || wire::log::topics::ALL.contains(&self.dead_letter_topic.as_str())
            || self.dead_letter_topic == AUDIT_TOPIC
        {
            return Err(invalid(
                "kafka.dead_letter_topic",
                "must be a topic name of its own (not empty, not a log topic, not `audit`)",
            ));
        }
        if self.partitions < 1 {
            return Err(invalid("kafka.partitions", "must be at least 1"));
        }
        if self.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor", "must be at least 1"));
        }
        for (key, retention_ms) in [
            ("kafka.log_retention_ms", self.log_retention_ms),
            ("kafka.audit_retention_ms", self.audit_retention_ms),
        ] {
            if retention_ms != -1 && retention_ms < 60_000 {
                return Err(invalid(
                    key,
                    "must be -1 (forever) or at least 60000 (a minute)",
                ));
            }
        }
        at_least("kafka.message_timeout_ms", self.message_timeout_ms, 100)?;
        at_least("kafka.max_batch_records", self.max_batch_records as u64, 1)?;
        at_least("kafka.request_timeout_ms", self.request_timeout_ms, 100)?;
        at_least("kafka.commit_timeout_ms", self.commit_timeout_ms, 100)?;
        at_least("kafka.session_timeout_ms", self.session_timeout_ms, 1000)?;
        at_least("kafka.stall_timeout_ms", self.stall_timeout_ms, 1000)?;
        at_least(
            "kafka.max_partition_fetch_bytes",
            self.max_partition_fetch_bytes as u64,
            1024,
        )?;
        Ok(())
    }

    /// The adapter configuration; `default_client_id` is used when `client_id` is empty.
    pub fn kafka_config(&self, default_client_id: &str) -> KafkaConfig {
        let client_id = if self.client_id.is_empty() {
            default_client_id
        } else {
            &self.client_id
        };
        let mut config = KafkaConfig::new(self.brokers.trim())
            .with_client_id(client_id)
            .with_topic_prefix(self.topic_prefix.clone())
            .with_dead_letter_topic(self.dead_letter_topic.trim())
            .with_message_timeout(Duration::from_millis(self.message_timeout_ms))
            .with_max_batch_records(self.max_batch_records)
            .with_session_timeout(Duration::from_millis(self.session_timeout_ms))
            .with_stall_timeout(Duration::from_millis(self.stall_timeout_ms));
        config.linger = Duration::from_millis(self.linger_ms);
        config.request_timeout = Duration::from_millis(self.request_timeout_ms);
        config.commit_timeout = Duration::from_millis(self.commit_timeout_ms);
        config.max_partition_fetch_bytes = self.max_partition_fetch_bytes;
        config.topic_retention_ms = Some(self.log_retention_ms);
        config.audit_retention_ms = Some(self.audit_retention_ms);
        config
    }
}

/// `[mongo]`: the store in durable cluster mode.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    pub uri: Secret,
    pub database: String,
    pub server_selection_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub operation_timeout_ms: u64,
    pub journal: bool,
}

impl MongoSettings {
    /// Whether a MongoDB URI is configured.
    pub fn enabled(&self) -> bool {
        !self.uri.expose().trim().is_empty()
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.enabled() {
            let uri = self.uri.expose().trim();
            if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                return Err(invalid("mongo.uri", "must be a mongodb:// URI"));
            }
        }
        if self.database.is_empty()
            || self
                .database
                .contains(['/', '\\', '.', ' ', '"', '$', '\0'])
        {
            return Err(invalid(
                "mongo.database",
                "must be a non-empty name without / \\ . space \" $",
            ));
        }
        at_least(
            "mongo.server_selection_timeout_ms",
            self.server_selection_timeout_ms,
            100,
        )?;
        at_least("mongo.connect_timeout_ms", self.connect_timeout_ms, 100)?;
        at_least("mongo.operation_timeout_ms", self.operation_timeout_ms, 100)?;
        Ok(())
    }

    pub fn mongo_config(&self) -> MongoConfig {
        let mut config = MongoConfig::new(self.uri.expose().trim(), self.database.clone());
        config.server_selection_timeout = Duration::from_millis(self.server_selection_timeout_ms);
        config.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        config.operation_timeout = Duration::from_millis(self.operation_timeout_ms);
        config.journal = self.journal;
        config
    }
}

/// `[ingest]`: the `ingest` binary (log → MongoDB → stored acknowledgments).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub bind: String,
    pub group: String,
    pub max_batch: usize,
    pub poll_wait_ms: u64,
    pub linger_ms: u64,
    pub max_backoff_ms: u64,
    pub shutdown_timeout_ms: u64,
}

impl IngestSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        self.bind.parse::<SocketAddr>().map_err(|error| {
            invalid(
                "ingest.bind",
                format!("is not an address like 127.0.0.1:9091: {error}"),
            )
        })?;
        if self.group.trim().is_empty() {
            return Err(invalid("ingest.group", "must not be empty"));
        }
        at_least("ingest.max_batch", self.max_batch as u64, 1)?;
        at_least("ingest.poll_wait_ms", self.poll_wait_ms, 1)?;
        at_least("ingest.max_backoff_ms", self.max_backoff_ms, 10)?;
        at_least("ingest.shutdown_timeout_ms", self.shutdown_timeout_ms, 100)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootstrap::load_layers;

    #[derive(Debug, Deserialize)]
    struct Shared {
        kafka: KafkaSettings,
        mongo: MongoSettings,
        ingest: IngestSettings,
    }

    fn load(env: &[(&str, &str)]) -> Shared {
        let env = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        load_layers(None, &env, &[]).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_durable_mode_is_off() {
        let shared = load(&[]);
        shared.kafka.validate().unwrap();
        shared.mongo.validate().unwrap();
        shared.ingest.validate().unwrap();
        assert!(!shared.kafka.enabled());
        assert!(!shared.mongo.enabled());
    }

    #[test]
    fn environment_overrides_and_validation_names_the_key() {
        let shared = load(&[
            ("PARLEY__KAFKA__BROKERS", "127.0.0.1:9092,127.0.0.1:9093"),
            ("PARLEY__KAFKA__MAX_BATCH_RECORDS", "1"),
            ("PARLEY__MONGO__URI", "mongodb://user:pw@127.0.0.1:27017/"),
        ]);
        shared.kafka.validate().unwrap();
        assert_eq!(shared.kafka.kafka_config("node-a").max_batch_records, 1);
        assert_eq!(shared.kafka.kafka_config("node-a").client_id, "node-a");
        assert!(!format!("{:?}", shared.mongo).contains("pw"));

        let shared = load(&[("PARLEY__KAFKA__BROKERS", "localhost")]);
        assert_eq!(shared.kafka.validate().unwrap_err().key, "kafka.brokers");
        let shared = load(&[("PARLEY__MONGO__URI", "http://x")]);
        assert_eq!(shared.mongo.validate().unwrap_err().key, "mongo.uri");
        let shared = load(&[("PARLEY__INGEST__BIND", "nowhere")]);
        assert_eq!(shared.ingest.validate().unwrap_err().key, "ingest.bind");
    }
}
