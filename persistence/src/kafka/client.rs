//! librdkafka client settings shared by the producer, consumers and the admin client, and the
//! one mapping of Kafka failures onto [`PortError`].

use std::time::Duration;

use ports::PortError;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use super::config::KafkaConfig;

/// Settings every client shares: brokers, client id, bounded socket and metadata waits.
fn base(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set(
            "socket.timeout.ms",
            millis(config.request_timeout).to_string(),
        )
        // Reconnect quickly after a broker restart, but do not hammer a dead one.
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000")
        // Topics are created explicitly (`KafkaLog::ensure_topics`), never by a consumer.
        .set("allow.auto.create.topics", "false");
    client
}

/// The idempotent producer: `acks=all`, ordered retries, bounded delivery, small linger.
pub(crate) fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = base(config);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            millis(config.message_timeout).to_string(),
        )
        .set(
            "request.timeout.ms",
            millis(config.message_timeout.min(config.request_timeout)).to_string(),
        )
        .set("linger.ms", millis(config.linger).to_string())
        .set(
            "batch.num.messages",
            config.max_batch_records.max(1).to_string(),
        )
        // Key → partition like the Java client does, so other producers agree on partitions.
        .set("partitioner", "murmur2_random");
    client
}

/// A group member that commits explicitly and starts new groups at the beginning.
pub(crate) fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = base(config);
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set(
            "session.timeout.ms",
            millis(config.session_timeout).to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (millis(config.session_timeout) / 3).max(100).to_string(),
        );
    client
}

/// The admin client (topic creation) and metadata reads.
pub(crate) fn admin_config(config: &KafkaConfig) -> ClientConfig {
    base(config)
}

/// Whole milliseconds, at least 1 (librdkafka rejects 0 for most timeouts).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Client construction and configuration errors are `Internal` (a bug or a bad setting);
/// everything a broker or the network can cause is `Unavailable` (retryable).
pub(crate) fn kafka_error(what: &str, error: KafkaError) -> PortError {
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => {
            PortError::Internal(format!("kafka {what}: {error}"))
        }
        other => PortError::Unavailable(format!("kafka {what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn broker_trouble_is_unavailable_and_configuration_is_internal() {
        assert!(matches!(
            kafka_error(
                "produce",
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
            ),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            kafka_error("create", KafkaError::ClientCreation("bad".to_owned())),
            PortError::Internal(_)
        ));
    }

    #[test]
    fn millis_is_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(5)), 5000);
    }
}
