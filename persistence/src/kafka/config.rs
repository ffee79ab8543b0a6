//! [`KafkaConfig`]: where the brokers are, how topics are named and how long anything may take.

use std::time::Duration;

/// The default logical name of the dead-letter topic.
pub const DEFAULT_DEAD_LETTER_TOPIC: &str = "dead.letter";

/// The logical name of the audit topic: audit records (`ports::AuditRecord` JSON), appended by
/// the nodes and written to MongoDB's `audit` collection by ingest (see `super::audit`).
pub const AUDIT_TOPIC: &str = "audit";

/// Settings of the Kafka event log. Nothing here is secret (no TLS/SASL support yet).
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Reported to the brokers (logs, quotas); the node id is a good choice.
    pub client_id: String,
    /// Prepended to every topic name, e.g. `parley.` → `parley.message.sent` (default empty).
    pub topic_prefix: String,
    /// Where malformed records are set aside (logical name: the prefix applies), see
    /// `KafkaLog::set_aside`.
    pub dead_letter_topic: String,
    /// Upper bound for one record's delivery, retries included (`message.timeout.ms`). An append
    /// against a dead broker fails with `Unavailable` after this, never hangs.
    pub message_timeout: Duration,
    /// How long the producer waits to batch records (`linger.ms`): the group commit window.
    pub linger: Duration,
    /// Most records in one produce batch (`batch.num.messages`). Set 1 for Tansu 0.6, which
    /// returns nothing when a consumer fetches from an offset inside a multi-record batch (a
    /// group resuming mid-batch would stall); real Kafka wants the default.
    pub max_batch_records: usize,
    /// Upper bound for metadata and admin requests (readiness, topic creation).
    pub request_timeout: Duration,
    /// Upper bound for a synchronous offset commit.
    pub commit_timeout: Duration,
    /// A consumer that stops heart-beating for this long leaves its group
    /// (`session.timeout.ms`; brokers usually accept 6 s..=300 s).
    pub session_timeout: Duration,
    /// A consumer whose group has records left and has not moved its committed offsets for
    /// this long reports itself stalled, so its owner re-joins (see `consumer`'s module docs).
    pub stall_timeout: Duration,
    /// Most bytes a consumer asks one partition for per fetch (`max.partition.fetch.bytes`;
    /// librdkafka raises it for a single larger record). Smaller keeps each fetch short on a
    /// broker that spends time per record, as Tansu 0.6 does with a backlog.
    pub max_partition_fetch_bytes: usize,
    /// `retention.ms` the setup step gives the topics (how long the brokers keep records; `-1`:
    /// forever); `None`: the broker's default.
    pub topic_retention_ms: Option<i64>,
    /// `retention.ms` the setup step gives the audit topic ([`AUDIT_TOPIC`]): audit records
    /// hold no message text and outlive chat content; `None`: the broker's default.
    pub audit_retention_ms: Option<i64>,
}

impl KafkaConfig {
    /// The defaults for `brokers`: client id `parley`, no prefix, dead letters in `dead.letter`, 5 s per delivery, 2 ms linger,
    /// up to 10 000 records per batch, 2 s per metadata/admin request, 5 s per commit, 10 s session timeout, 60 s stall timeout, 1 MiB per partition fetch.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "parley".to_owned(),
            topic_prefix: String::new(),
            dead_letter_topic: DEFAULT_DEAD_LETTER_TOPIC.to_owned(),
            message_timeout: Duration::from_secs(5),
            linger: Duration::from_millis(2),
            max_batch_records: 10_000,
            request_timeout: Duration::from_secs(2),
            commit_timeout: Duration::from_secs(5),
            session_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            max_partition_fetch_bytes: 1_048_576,
            topic_retention_ms: None,
            audit_retention_ms: None,
        }
    }

    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    pub fn with_topic_prefix(mut self, topic_prefix: impl Into<String>) -> Self {
        self.topic_prefix = topic_prefix.into();
        self
    }

    pub fn with_dead_letter_topic(mut self, dead_letter_topic: impl Into<String>) -> Self {
        self.dead_letter_topic = dead_letter_topic.into();
        self
    }

    pub fn with_message_timeout(mut self, message_timeout: Duration) -> Self {
        self.message_timeout = message_timeout;
        self
    }

    pub fn with_max_batch_records(mut self, max_batch_records: usize) -> Self {
        self.max_batch_records = max_batch_records.max(1);
        self
    }

    pub fn with_session_timeout(mut self, session_timeout: Duration) -> Self {
        self.session_timeout = session_timeout;
        self
    }

    pub fn with_stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// The broker-side name of the logical topic `topic` (one of `wire::log::topics`).
    pub fn topic_name(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_carry_the_prefix() {
        let config = KafkaConfig::new("127.0.0.1:9092");
        assert_eq!(config.topic_name("message.sent"), "message.sent");
        let config = config.with_topic_prefix("staging.");
        assert_eq!(config.topic_name("message.sent"), "staging.message.sent");
    }
}
