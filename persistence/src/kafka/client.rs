//! librdkafka client settings shared by the producer, consumers and the admin client, the one
//! mapping of Kafka failures onto [`PortError`], and [`KafkaContext`], how every client reports
//! librdkafka's logs and errors.
//!
//! # Logs and errors
//! librdkafka reports trouble in two ways, both through the client's context:
//! - **log lines** keep librdkafka's level (error, warn, info, debug; target `librdkafka`), except
//!   a broker-connection failure (facility `FAIL`) at error level: librdkafka reports the same
//!   failure as an error right after, so the line goes to debug and the error is classified.
//! - **errors** (all brokers down, connection refused, a subscribed topic not available …, on a
//!   consumer also every consumer error `poll` sees) are sorted by `is_actionable`: fatal,
//!   authentication and authorization errors and settings the brokers reject are logged at error
//!   every time; everything else librdkafka recovers from by itself, so each client logs at most
//!   one warning per [`TRANSIENT_WARN_EVERY`] (with the count of the ones held back, which go to
//!   debug). A broker outage thus costs one warning line per client every five seconds.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ports::{During, PortError, Service};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use tracing::{debug, error, info, warn, Level};

use super::config::KafkaConfig;

/// At most one warning per client in this interval for errors librdkafka recovers from by
/// itself (see the module docs).
pub const TRANSIENT_WARN_EVERY: Duration = Duration::from_secs(5);

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
            "max.partition.fetch.bytes",
            config.max_partition_fetch_bytes.to_string(),
        )
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

/// Client construction and configuration errors are `Rejected` (a bad setting retrying does not
/// fix); everything a broker or the network can cause is `Unavailable` (retryable).
pub(crate) fn kafka_error(what: &str, error: KafkaError) -> PortError {
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => {
            PortError::rejected(Service::Kafka, During::new(what, error))
        }
        other => PortError::unavailable(Service::Kafka, During::new(what, other)),
    }
}

/// Errors retrying cannot fix: fatal errors, failed authentication, missing permissions, and
/// settings the brokers reject. Everything else (transport failures, all brokers down, unknown
/// topics, timeouts, coordinator and leader moves …) librdkafka recovers from by itself.
pub(crate) fn is_actionable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::DelegationTokenAuthorizationFailed
            | RDKafkaErrorCode::AutoOffsetReset
            | RDKafkaErrorCode::InvalidGroupId
            | RDKafkaErrorCode::InconsistentGroupProtocol
            | RDKafkaErrorCode::InvalidSessionTimeout
    )
}

/// Lets one warning through per [`TRANSIENT_WARN_EVERY`] and counts the ones it holds back.
/// The caller passes the time, so tests need no clock.
#[derive(Debug, Default)]
struct WarningLimiter {
    last_warned: Option<Instant>,
    /// Warnings held back since the last one let through.
    suppressed: u64,
}

impl WarningLimiter {
    /// `Some(count of the warnings held back since the last one)` when a warning may be logged at
    /// `now`; `None` when the last one is less than [`TRANSIENT_WARN_EVERY`] old (counted).
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let recently = self
            .last_warned
            .is_some_and(|at| now.saturating_duration_since(at) < TRANSIENT_WARN_EVERY);
        if recently {
            self.suppressed += 1;
            return None;
        }
        self.last_warned = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// How [`KafkaContext`] reported an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    /// Actionable: at error.
    Error,
    /// Transient, the first one in [`TRANSIENT_WARN_EVERY`]: at warn, with the count held back.
    Warning { suppressed: u64 },
    /// Transient, held back: at debug.
    Suppressed,
}

/// The context of every Parley Kafka client (producer, consumers, admin): reports librdkafka's
/// logs and errors as the module docs describe, naming the client in every line.
#[derive(Debug)]
pub struct KafkaContext {
    /// `producer`, `consumer` or `admin`.
    client: &'static str,
    /// A consumer's group.
    group: Option<String>,
    transient_warnings: Mutex<WarningLimiter>,
}

impl KafkaContext {
    pub(crate) fn producer() -> Self {
        Self::new("producer", None)
    }

    pub(crate) fn admin() -> Self {
        Self::new("admin", None)
    }

    pub(crate) fn consumer(group: &str) -> Self {
        Self::new("consumer", Some(group.to_owned()))
    }

    fn new(client: &'static str, group: Option<String>) -> Self {
        Self {
            client,
            group,
            transient_warnings: Mutex::new(WarningLimiter::default()),
        }
    }

    /// Logs a librdkafka error reported at `now` (see the module docs).
    fn report(&self, error: &KafkaError, reason: &str, now: Instant) -> Reported {
        let (client, group) = (self.client, self.group.as_deref());
        let actionable = match error {
            KafkaError::MessageConsumptionFatal(_) => true,
            // Not a librdkafka error code: unexpected here, so not hidden.
            other => other.rdkafka_error_code().is_none_or(is_actionable),
        };
        if actionable {
            error!(client, group, error = %error, reason, "kafka client error");
            return Reported::Error;
        }
        let admitted = self
            .transient_warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now);
        match admitted {
            Some(suppressed) => {
                warn!(
                    client,
                    group,
                    error = %error,
                    reason,
                    suppressed,
                    "kafka client error, librdkafka retries"
                );
                Reported::Warning { suppressed }
            }
            None => {
                debug!(client, group, error = %error, reason, "kafka client error, librdkafka retries");
                Reported::Suppressed
            }
        }
    }
}

/// The tracing level of a librdkafka log line (see the module docs).
fn log_level(level: RDKafkaLogLevel, facility: &str) -> Level {
    match level {
        // Reported again through `ClientContext::error`, which classifies it.
        RDKafkaLogLevel::Error if facility == "FAIL" => Level::DEBUG,
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => Level::ERROR,
        RDKafkaLogLevel::Warning => Level::WARN,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Level::INFO,
        RDKafkaLogLevel::Debug => Level::DEBUG,
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, log_message: &str) {
        let (client, group) = (self.client, self.group.as_deref());
        match log_level(level, facility) {
            Level::ERROR => {
                error!(target: "librdkafka", client, group, facility, "{log_message}")
            }
            Level::WARN => warn!(target: "librdkafka", client, group, facility, "{log_message}"),
            Level::INFO => info!(target: "librdkafka", client, group, facility, "{log_message}"),
            _ => debug!(target: "librdkafka", client, group, facility, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&error, reason, Instant::now());
    }
}

/// librdkafka's default rebalancing; only the reporting differs from `DefaultConsumerContext`.
impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_trouble_is_unavailable_and_configuration_is_internal() {
        assert!(matches!(
            kafka_error(
                "produce",
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
            ),
            PortError::Unavailable { .. }
        ));
        assert!(matches!(
            kafka_error("create", KafkaError::ClientCreation("bad".to_owned())),
            PortError::Rejected { .. }
        ));
    }

    #[test]
    fn broker_trouble_warns_and_fatal_or_permission_errors_are_errors() {
        let context = KafkaContext::producer();
        let start = Instant::now();
        for code in [
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::Authentication,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
        ] {
            // Every one, however many come at once.
            for _ in 0..3 {
                assert_eq!(
                    context.report(&KafkaError::Global(code), "reason", start),
                    Reported::Error,
                    "{code:?}"
                );
            }
        }
        assert_eq!(
            context.report(
                &KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::AllBrokersDown),
                "reason",
                start
            ),
            Reported::Error
        );
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::Resolve,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::CoordinatorNotAvailable,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            assert!(!is_actionable(code), "{code:?}");
            let fresh = KafkaContext::consumer("g");
            assert_eq!(
                fresh.report(&KafkaError::Global(code), "reason", start),
                Reported::Warning { suppressed: 0 },
                "{code:?}"
            );
        }
    }

    #[test]
    fn transient_errors_warn_once_per_interval_per_client_with_the_count_held_back() {
        let producer = KafkaContext::producer();
        let admin = KafkaContext::admin();
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        let refused = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        let start = Instant::now();
        assert_eq!(
            producer.report(&down, "1/1 brokers are down", start),
            Reported::Warning { suppressed: 0 }
        );
        for offset_ms in [1, 10, 4_999] {
            assert_eq!(
                producer.report(
                    &refused,
                    "refused",
                    start + Duration::from_millis(offset_ms)
                ),
                Reported::Suppressed
            );
        }
        // Another client has its own allowance.
        assert_eq!(
            admin.report(
                &down,
                "1/1 brokers are down",
                start + Duration::from_millis(2)
            ),
            Reported::Warning { suppressed: 0 }
        );
        // Actionable errors are neither held back nor counted.
        assert_eq!(
            producer.report(
                &KafkaError::Global(RDKafkaErrorCode::Fatal),
                "fatal",
                start + Duration::from_millis(20)
            ),
            Reported::Error
        );
        assert_eq!(
            producer.report(&down, "again", start + TRANSIENT_WARN_EVERY),
            Reported::Warning { suppressed: 3 }
        );
        assert_eq!(
            producer.report(&down, "again", start + TRANSIENT_WARN_EVERY * 2),
            Reported::Warning { suppressed: 0 }
        );
    }

    #[test]
    fn the_limiter_counts_what_it_holds_back() {
        let mut limiter = WarningLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.admit(start), Some(0));
        assert_eq!(limiter.admit(start + TRANSIENT_WARN_EVERY / 2), None);
        assert_eq!(limiter.admit(start + TRANSIENT_WARN_EVERY / 2), None);
        assert_eq!(limiter.admit(start + TRANSIENT_WARN_EVERY), Some(2));
        // A clock going backwards holds back instead of panicking.
        assert_eq!(limiter.admit(start), None);
    }

    #[test]
    fn log_levels_are_kept_except_connection_failures_reported_as_errors_too() {
        assert_eq!(log_level(RDKafkaLogLevel::Critical, "FAIL"), Level::ERROR);
        assert_eq!(log_level(RDKafkaLogLevel::Error, "FAIL"), Level::DEBUG);
        assert_eq!(log_level(RDKafkaLogLevel::Error, "CONFWARN"), Level::ERROR);
        assert_eq!(log_level(RDKafkaLogLevel::Warning, "FAIL"), Level::WARN);
        assert_eq!(log_level(RDKafkaLogLevel::Notice, "CGRPOP"), Level::INFO);
        assert_eq!(log_level(RDKafkaLogLevel::Info, "x"), Level::INFO);
        assert_eq!(log_level(RDKafkaLogLevel::Debug, "x"), Level::DEBUG);
    }

    #[test]
    fn millis_is_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(5)), 5000);
    }
}
