//! [`KafkaLog`]: `EventLog` over Kafka — an idempotent producer shared by every append (librdkafka
//! batches concurrent appends: the group commit), explicit topic creation and readiness.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use ports::{EventLog, LogConsumer, PortError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tracing::{debug, info, warn};
use wire::log::{topics, LogEvent};

use super::client::{admin_config, kafka_error, producer_config};
use super::config::KafkaConfig;
use super::consumer::KafkaConsumer;

/// How long `append` waits before re-offering a record to a full producer queue.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Header carrying the record's append time in microseconds, strictly increasing per producer:
/// consumers interleave partitions by it (Kafka's own timestamps have millisecond ties).
pub const APPENDED_AT_HEADER: &str = "appended_at_us";

/// The Kafka event log of one process: one producer, any number of consumers.
#[derive(Clone)]
pub struct KafkaLog {
    producer: FutureProducer,
    config: Arc<KafkaConfig>,
    /// The last [`APPENDED_AT_HEADER`] value handed out.
    last_stamp: Arc<AtomicI64>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaLog")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Builds the producer; connects lazily, so this succeeds while the brokers are down.
    pub fn new(config: KafkaConfig) -> Result<Self, PortError> {
        let producer: FutureProducer = producer_config(&config)
            .create()
            .map_err(|error| kafka_error("producer", error))?;
        Ok(Self {
            producer,
            config: Arc::new(config),
            last_stamp: Arc::new(AtomicI64::new(0)),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Creates every topic of `wire::log::topics::ALL` that does not exist yet, with
    /// `partitions` partitions and `replication` replicas (existing topics are left as they are).
    /// The explicit setup step: Parley never relies on broker auto-create.
    pub async fn ensure_topics(&self, partitions: i32, replication: i32) -> Result<(), PortError> {
        let admin: AdminClient<DefaultClientContext> = admin_config(&self.config)
            .create()
            .map_err(|error| kafka_error("admin client", error))?;
        let names: Vec<String> = topics::ALL
            .iter()
            .map(|topic| self.config.topic_name(topic))
            .collect();
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(self.config.request_timeout))
            .operation_timeout(Some(self.config.request_timeout));
        let results = bounded(
            self.config.request_timeout * 2,
            "create topics",
            admin.create_topics(&new_topics, &options),
        )
        .await?
        .map_err(|error| kafka_error("create topics", error))?;
        for result in results {
            match result {
                Ok(topic) => info!(topic = %topic, partitions, replication, "kafka topic created"),
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    debug!(topic = %topic, "kafka topic exists")
                }
                Err((topic, code)) => {
                    return Err(kafka_error(
                        &format!("create topic {topic}"),
                        KafkaError::AdminOp(code),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Wall-clock microseconds, but always above the previous stamp of this log.
    fn next_stamp(&self) -> i64 {
        let now = chrono::Utc::now().timestamp_micros();
        let previous = self
            .last_stamp
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        now.max(previous + 1)
    }

    /// Hands one record to the producer queue, waiting while the queue is full.
    async fn enqueue(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        event: &LogEvent,
        deadline: Instant,
    ) -> Result<DeliveryFuture, PortError> {
        let stamp = self.next_stamp().to_string();
        loop {
            let version = event.v.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_id",
                    value: Some(event.event_id.as_str()),
                })
                .insert(Header {
                    key: "v",
                    value: Some(version.as_str()),
                })
                .insert(Header {
                    key: APPENDED_AT_HEADER,
                    value: Some(stamp.as_str()),
                });
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((error, _)) => return Err(kafka_error("produce", error)),
            }
        }
    }
}

/// `future` within `limit`, or `Unavailable`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T, PortError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| PortError::Unavailable(format!("kafka {what}: no answer within {limit:?}")))
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, events: Vec<LogEvent>) -> Result<(), PortError> {
        if events.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // Deliveries time out in librdkafka after `message_timeout`; the outer bound only guards
        // against a lost delivery report.
        let limit = self.config.message_timeout + Duration::from_secs(1);
        let deadline = started + self.config.message_timeout;
        let attempt = async {
            let mut deliveries = Vec::with_capacity(events.len());
            // Enqueued in order: the idempotent producer keeps that order per partition.
            for event in &events {
                let payload = serde_json::to_vec(event).map_err(|error| {
                    PortError::Internal(format!("encoding log event {}: {error}", event.event_id))
                })?;
                let topic = self.config.topic_name(event.body.topic());
                let key = event.body.conversation_id().as_str();
                deliveries.push(self.enqueue(&topic, key, &payload, event, deadline).await?);
            }
            let mut first_error = None;
            for (event, outcome) in events.iter().zip(join_all(deliveries).await) {
                let failure = match outcome {
                    Ok(Ok(_delivery)) => continue,
                    Ok(Err((error, _message))) => kafka_error("delivery", error),
                    Err(_canceled) => {
                        PortError::Unavailable("kafka delivery: producer dropped the record".into())
                    }
                };
                warn!(
                    event_id = %event.event_id,
                    topic = event.body.topic(),
                    error = %failure,
                    "kafka append failed"
                );
                first_error.get_or_insert(failure);
            }
            match first_error {
                Some(error) => Err(error),
                None => Ok(()),
            }
        };
        let result = bounded(limit, "append", attempt).await?;
        debug!(
            events = events.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "kafka append"
        );
        result
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn LogConsumer>, PortError> {
        let consumer = KafkaConsumer::subscribe(Arc::clone(&self.config), group, topics)?;
        Ok(Box::new(consumer))
    }

    /// Ready when a broker answers and every Parley topic exists (created by the setup step;
    /// appends to a missing topic would fail).
    async fn is_ready(&self) -> bool {
        let producer = self.producer.clone();
        let timeout = self.config.request_timeout;
        let expected: Vec<String> = topics::ALL
            .iter()
            .map(|topic| self.config.topic_name(topic))
            .collect();
        let fetched = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|metadata| {
                    let missing: Vec<String> = expected
                        .into_iter()
                        .filter(|name| {
                            !metadata.topics().iter().any(|topic| {
                                topic.name() == name
                                    && topic.error().is_none()
                                    && !topic.partitions().is_empty()
                            })
                        })
                        .collect();
                    (metadata.brokers().len(), missing)
                })
        })
        .await;
        match fetched {
            Ok(Ok((brokers, missing))) => {
                if !missing.is_empty() {
                    warn!(
                        ?missing,
                        "kafka topics missing: run the setup step (`ingest setup`)"
                    );
                }
                brokers > 0 && missing.is_empty()
            }
            Ok(Err(error)) => {
                debug!(error = %error, "kafka not ready");
                false
            }
            Err(error) => {
                warn!(error = %error, "kafka readiness check failed");
                false
            }
        }
    }
}
