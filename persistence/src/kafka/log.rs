//! [`KafkaLog`]: `EventLog` over Kafka — an idempotent producer shared by every append (librdkafka
//! batches concurrent appends: the group commit), explicit topic creation and readiness.
//!
//! # Replacing the producer
//! After an append whose delivery timed out, or that failed with an error leaving the producer
//! unusable (fatal, fenced, out-of-order sequence, unknown producer id: see `spoiled_by`), the
//! log replaces its producer with a new one (a new producer id) before returning the error. The
//! old producer is destroyed without flushing, on the blocking pool, once the last append using
//! it finished. A timed-out record leaves a gap in the idempotent producer's sequence, so
//! librdkafka would bump the producer's epoch (KIP-360, `InitProducerId` with the existing id)
//! once the broker answers again; Tansu 0.6 cannot handle that (its sqlite storage task panics,
//! its memory storage answers `PRODUCER_FENCED` forever), while a fresh producer works. Against
//! Kafka, a fatal error requires a new producer anyway, and callers already treat a failed
//! append as ambiguous, so nothing relies on the old producer's retries. Concurrent failing
//! appends replace a producer once (a generation counter); [`KafkaLog::producer_restarts`]
//! counts the replacements.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use ports::{During, EventLog, LogConsumer, PoisonedRecord, PortError, Service};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tracing::{debug, info, warn};
use wire::log::{topics, LogEvent};

use super::client::{admin_config, kafka_error, producer_config, KafkaContext};
use super::config::{KafkaConfig, AUDIT_TOPIC};
use super::consumer::KafkaConsumer;

/// How long `append` waits before re-offering a record to a full producer queue.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Header carrying the record's append time in microseconds, strictly increasing per producer:
/// consumers interleave partitions by it (Kafka's own timestamps have millisecond ties).
pub const APPENDED_AT_HEADER: &str = "appended_at_us";

/// The Kafka event log of one process: one producer at a time, any number of consumers.
#[derive(Clone)]
pub struct KafkaLog {
    /// The current producer; the lock is held only to clone or swap it, never across an await.
    producer: Arc<RwLock<CurrentProducer>>,
    /// Serialises replacements, so that appends failing together replace a producer once.
    replacing: Arc<tokio::sync::Mutex<()>>,
    config: Arc<KafkaConfig>,
    /// The last [`APPENDED_AT_HEADER`] value handed out.
    last_stamp: Arc<AtomicI64>,
}

/// The producer appends use now, and how many producers it replaced.
struct CurrentProducer {
    producer: Arc<OwnedProducer>,
    generation: u64,
}

/// A producer that nothing else holds a clone of, destroyed on the blocking pool: librdkafka's
/// destroy purges, waits up to 500 ms for the purged deliveries and joins its threads.
struct OwnedProducer {
    /// `None` only while dropping.
    producer: Option<FutureProducer<KafkaContext>>,
}

impl OwnedProducer {
    fn create(config: &KafkaConfig) -> Result<Self, PortError> {
        let producer: FutureProducer<KafkaContext> = producer_config(config)
            .create_with_context(KafkaContext::producer())
            .map_err(|error| kafka_error("producer", error))?;
        Ok(Self {
            producer: Some(producer),
        })
    }

    fn get(&self) -> &FutureProducer<KafkaContext> {
        self.producer
            .as_ref()
            .expect("the producer is only taken when dropping")
    }
}

impl Drop for OwnedProducer {
    fn drop(&mut self) {
        let Some(producer) = self.producer.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // Detached: nobody waits for a producer's destruction.
                drop(runtime.spawn_blocking(move || drop(producer)));
            }
            Err(_) => drop(producer),
        }
    }
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
        let producer = OwnedProducer::create(&config)?;
        Ok(Self {
            producer: Arc::new(RwLock::new(CurrentProducer {
                producer: Arc::new(producer),
                generation: 0,
            })),
            replacing: Arc::new(tokio::sync::Mutex::new(())),
            config: Arc::new(config),
            last_stamp: Arc::new(AtomicI64::new(0)),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// How many times the producer was replaced after a timed-out or fatal append (see the
    /// module docs).
    pub fn producer_restarts(&self) -> u64 {
        self.current_producer().1
    }

    /// The producer appends use now, and its generation.
    fn current_producer(&self) -> (Arc<OwnedProducer>, u64) {
        let current = self.producer.read().unwrap_or_else(PoisonError::into_inner);
        (Arc::clone(&current.producer), current.generation)
    }

    /// Replaces the producer of `generation` with a new one, unless another append already did.
    /// The old one is dropped without flushing (see the module docs).
    async fn replace_producer(&self, generation: u64, reason: &str) {
        let _replacing = self.replacing.lock().await;
        if self.current_producer().1 != generation {
            return;
        }
        let config = Arc::clone(&self.config);
        let created = tokio::task::spawn_blocking(move || OwnedProducer::create(&config)).await;
        let producer = match created {
            Ok(Ok(producer)) => producer,
            Ok(Err(error)) => {
                warn!(error = %error, reason, "creating a new kafka producer failed; keeping the old one");
                return;
            }
            Err(join_error) => {
                warn!(error = %join_error, reason, "creating a new kafka producer failed; keeping the old one");
                return;
            }
        };
        let old = {
            let mut current = self
                .producer
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            current.generation += 1;
            std::mem::replace(&mut current.producer, Arc::new(producer))
        };
        warn!(
            restarts = generation + 1,
            reason, "kafka producer replaced: the old one is dropped without flushing"
        );
        // Destroyed on the blocking pool once the appends still holding it finished.
        drop(old);
    }

    /// Creates every topic of `wire::log::topics::ALL`, the dead-letter topic and the audit
    /// topic that does not exist yet, with `partitions` partitions, `replication` replicas and
    /// the configured `retention.ms` (`KafkaConfig::topic_retention_ms`, for the audit topic
    /// `KafkaConfig::audit_retention_ms`). Existing topics keep their partitions; their
    /// `retention.ms` is changed to the configured one where the broker allows it.
    /// The explicit setup step: Parley never relies on broker auto-create.
    pub async fn ensure_topics(&self, partitions: i32, replication: i32) -> Result<(), PortError> {
        let admin: AdminClient<KafkaContext> = admin_config(&self.config)
            .create_with_context(KafkaContext::admin())
            .map_err(|error| kafka_error("admin client", error))?;
        let plan = self.topic_plan();
        let retentions: Vec<Option<String>> = plan
            .iter()
            .map(|(_, retention_ms)| retention_ms.map(|ms| ms.to_string()))
            .collect();
        let new_topics: Vec<NewTopic<'_>> = plan
            .iter()
            .zip(&retentions)
            .map(|((name, _), retention)| {
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
                match retention {
                    Some(retention) => topic.set("retention.ms", retention),
                    None => topic,
                }
            })
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
        let retention_of = |topic: &str| {
            plan.iter()
                .find(|(name, _)| name == topic)
                .and_then(|(_, retention_ms)| *retention_ms)
        };
        // Existing topics by the retention they should have.
        let mut existing: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for result in results {
            match result {
                Ok(topic) => {
                    info!(topic = %topic, partitions, replication, retention_ms = ?retention_of(&topic), "kafka topic created")
                }
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    debug!(topic = %topic, "kafka topic exists");
                    if let Some(retention_ms) = retention_of(&topic) {
                        existing.entry(retention_ms).or_default().push(topic);
                    }
                }
                Err((topic, code)) => {
                    return Err(kafka_error(
                        &format!("create topic {topic}"),
                        KafkaError::AdminOp(code),
                    ))
                }
            }
        }
        for (retention_ms, names) in existing {
            self.alter_retention(&admin, &options, &names, retention_ms)
                .await;
        }
        Ok(())
    }

    /// Sets `retention.ms` of existing topics (`names`) to the configured one. A broker that
    /// cannot change topic configs (Tansu) is reported, not fatal: the operator sets it.
    async fn alter_retention(
        &self,
        admin: &AdminClient<KafkaContext>,
        options: &AdminOptions,
        names: &[String],
        retention_ms: i64,
    ) {
        let value = retention_ms.to_string();
        let changes: Vec<AlterConfig<'_>> = names
            .iter()
            .map(|name| {
                AlterConfig::new(ResourceSpecifier::Topic(name)).set("retention.ms", &value)
            })
            .collect();
        let outcome = bounded(
            self.config.request_timeout * 2,
            "alter topic configs",
            admin.alter_configs(&changes, options),
        )
        .await
        .and_then(|results| results.map_err(|error| kafka_error("alter topic configs", error)));
        let failed: Vec<String> = match outcome {
            Ok(results) => results
                .into_iter()
                .filter_map(|result| result.err())
                .map(|(resource, code)| format!("{resource:?}: {code}"))
                .collect(),
            Err(error) => vec![error.to_string()],
        };
        if failed.is_empty() {
            info!(
                retention_ms,
                topics = names.len(),
                "kafka topics' retention set"
            );
        } else {
            warn!(retention_ms, failures = ?failed, "the retention of existing kafka topics could not be changed: set retention.ms on them with the broker's tools");
        }
    }

    /// The broker-side names of every log topic, of the dead-letter topic and of the audit
    /// topic, each with the `retention.ms` the setup step gives it.
    fn topic_plan(&self) -> Vec<(String, Option<i64>)> {
        let log_retention_ms = self.config.topic_retention_ms;
        topics::ALL
            .iter()
            .copied()
            .chain([self.config.dead_letter_topic.as_str()])
            .map(|topic| (self.config.topic_name(topic), log_retention_ms))
            .chain([(
                self.config.topic_name(AUDIT_TOPIC),
                self.config.audit_retention_ms,
            )])
            .collect()
    }

    /// The outcome of a produce on the producer of `generation`, replacing that producer when
    /// the failure spoiled it (see the module docs).
    async fn settle(
        &self,
        generation: u64,
        outcome: Result<(), AppendFailure>,
    ) -> Result<(), PortError> {
        match outcome {
            Ok(()) => Ok(()),
            Err(AppendFailure { error, spoiled }) => {
                if let Some(reason) = spoiled {
                    self.replace_producer(generation, reason).await;
                }
                Err(error)
            }
        }
    }

    /// Produces `poisoned` to the dead-letter topic and waits for its delivery.
    async fn produce_dead_letter(&self, poisoned: &PoisonedRecord) -> Result<(), AppendFailure> {
        let (producer, _generation) = self.current_producer();
        let topic = self.config.topic_name(&self.config.dead_letter_topic);
        let key = format!("{}/{}", poisoned.topic, poisoned.partition);
        let (partition, offset) = (poisoned.partition.to_string(), poisoned.offset.to_string());
        let headers = [
            ("source_topic", poisoned.topic.as_str()),
            ("source_partition", partition.as_str()),
            ("source_offset", offset.as_str()),
            ("problem", poisoned.problem.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        });
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&poisoned.payload)
            .headers(headers);
        let delivery = producer
            .get()
            .send_result(record)
            .map_err(|(error, _)| AppendFailure::of("dead letter", error, producer.get()))?;
        match delivery.await {
            Ok(Ok(_delivered)) => Ok(()),
            Ok(Err((error, _))) => Err(AppendFailure::of("dead letter", error, producer.get())),
            Err(_canceled) => Err(AppendFailure {
                error: PortError::unavailable(
                    Service::Kafka,
                    "dead letter: producer dropped the record",
                ),
                spoiled: None,
            }),
        }
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

    /// Hands one record to the producer queue, waiting while the queue is full. The record
    /// gets its headers and an [`APPENDED_AT_HEADER`].
    async fn enqueue(
        &self,
        producer: &FutureProducer<KafkaContext>,
        outgoing: &Outgoing,
        deadline: Instant,
    ) -> Result<DeliveryFuture, KafkaError> {
        let stamp = self.next_stamp().to_string();
        loop {
            let headers = outgoing
                .headers
                .iter()
                .map(|(key, value)| (*key, value.as_str()))
                .chain([(APPENDED_AT_HEADER, stamp.as_str())])
                .fold(OwnedHeaders::new(), |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value),
                    })
                });
            let record = FutureRecord::to(&outgoing.topic)
                .key(&outgoing.key)
                .payload(&outgoing.payload)
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Produces `records` in order and returns once every one is acknowledged (see
    /// `EventLog::append`); a failure replaces the producer when it spoiled it.
    async fn produce(&self, records: &[Outgoing]) -> Result<(), PortError> {
        let started = Instant::now();
        // Deliveries time out in librdkafka after `message_timeout`; the outer bound only guards
        // against a lost delivery report.
        let limit = self.config.message_timeout + Duration::from_secs(1);
        let deadline = started + self.config.message_timeout;
        let (producer, generation) = self.current_producer();
        let attempt = async {
            let mut deliveries = Vec::with_capacity(records.len());
            // Enqueued in order: the idempotent producer keeps that order per partition.
            for outgoing in records {
                match self.enqueue(producer.get(), outgoing, deadline).await {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(error) => return Err(AppendFailure::of("produce", error, producer.get())),
                }
            }
            let mut first_failure: Option<AppendFailure> = None;
            for (outgoing, outcome) in records.iter().zip(join_all(deliveries).await) {
                let failure = match outcome {
                    Ok(Ok(_delivery)) => continue,
                    Ok(Err((error, _message))) => {
                        AppendFailure::of("delivery", error, producer.get())
                    }
                    Err(_canceled) => AppendFailure {
                        error: PortError::unavailable(
                            Service::Kafka,
                            "delivery: producer dropped the record",
                        ),
                        spoiled: None,
                    },
                };
                warn!(
                    record_id = %outgoing.id,
                    topic = %outgoing.topic,
                    error = %failure.error,
                    "kafka append failed"
                );
                match &mut first_failure {
                    None => first_failure = Some(failure),
                    Some(first) => first.spoiled = first.spoiled.or(failure.spoiled),
                }
            }
            first_failure.map_or(Ok(()), Err)
        };
        let outcome = tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_elapsed| Err(AppendFailure::report_lost("append", limit)));
        // Released before a replacement: the old producer then lives only as long as the appends
        // still in flight on it.
        drop(producer);
        debug!(
            records = records.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = outcome.is_ok(),
            "kafka append"
        );
        self.settle(generation, outcome).await
    }

    /// Appends one record that is not a log event (an audit record) to the logical `topic`,
    /// keyed `key`, with the header `record_id`: like `EventLog::append`, it returns once the
    /// brokers acknowledged it (idempotent producer, `acks=all`).
    pub async fn append_record(
        &self,
        topic: &str,
        key: &str,
        record_id: &str,
        payload: Vec<u8>,
    ) -> Result<(), PortError> {
        let outgoing = Outgoing {
            id: record_id.to_owned(),
            topic: self.config.topic_name(topic),
            key: key.to_owned(),
            payload,
            headers: vec![("record_id", record_id.to_owned())],
        };
        self.produce(std::slice::from_ref(&outgoing)).await
    }
}

/// One record to produce: broker-side topic, key, payload and headers; `id` names it in logs.
struct Outgoing {
    id: String,
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Outgoing {
    /// The record of a log event: on its topic, keyed by its conversation, with the headers
    /// `event_id` and `v`.
    fn of_event(config: &KafkaConfig, event: &LogEvent) -> Result<Self, PortError> {
        let payload = serde_json::to_vec(event).map_err(|error| {
            PortError::internal(During::new(
                format!("encoding log event {}", event.event_id),
                error,
            ))
        })?;
        Ok(Self {
            id: event.event_id.clone(),
            topic: config.topic_name(event.body.topic()),
            key: event.body.conversation_id().as_str().to_owned(),
            payload,
            headers: vec![
                ("event_id", event.event_id.clone()),
                ("v", event.v.to_string()),
            ],
        })
    }
}

/// Why an append failed, and whether that leaves its producer unusable.
struct AppendFailure {
    error: PortError,
    /// Why the producer must be replaced (see the module docs), if it must.
    spoiled: Option<&'static str>,
}

impl AppendFailure {
    /// No delivery report came within `limit`: the producer is replaced.
    fn report_lost(what: &str, limit: Duration) -> Self {
        Self {
            error: PortError::unavailable(
                Service::Kafka,
                format!("{what}: no delivery report within {limit:?}"),
            ),
            spoiled: Some("a delivery report was lost"),
        }
    }

    fn of(what: &str, error: KafkaError, producer: &FutureProducer<KafkaContext>) -> Self {
        let spoiled = spoiled_by(&error).or_else(|| {
            producer
                .client()
                .fatal_error()
                .map(|_| "the producer raised a fatal error")
        });
        Self {
            error: kafka_error(what, error),
            spoiled,
        }
    }
}

/// Why a failed enqueue or delivery leaves the idempotent producer unusable, or `None` when it
/// does not: a timed-out record (librdkafka will bump the epoch) or an error of the producer
/// id, its epoch or its sequence (fatal for an idempotent producer, or recovered by an epoch
/// bump). Ordinary broker trouble (unknown topic, not enough replicas, …) keeps the producer.
fn spoiled_by(error: &KafkaError) -> Option<&'static str> {
    match error {
        KafkaError::MessageProduction(code) => match code {
            RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::TimedOutQueue
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut => Some("a record timed out"),
            RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::GaplessGuarantee
            | RDKafkaErrorCode::Inconsistent => {
                Some("the broker rejected the producer's id, epoch or sequence")
            }
            _ => None,
        },
        KafkaError::Transaction(_) => Some("a transactional producer error"),
        _ => None,
    }
}

/// `future` within `limit`, or `Unavailable`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T, PortError> {
    tokio::time::timeout(limit, future).await.map_err(|_| {
        PortError::unavailable(
            Service::Kafka,
            format!("{what}: no answer within {limit:?}"),
        )
    })
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, events: Vec<LogEvent>) -> Result<(), PortError> {
        if events.is_empty() {
            return Ok(());
        }
        let records = events
            .iter()
            .map(|event| Outgoing::of_event(&self.config, event))
            .collect::<Result<Vec<_>, _>>()?;
        self.produce(&records).await
    }

    /// Produces the record, as read, to the dead-letter topic (`kafka.dead_letter_topic`, with
    /// the prefix), keyed `<topic>/<partition>`, with the headers `source_topic`,
    /// `source_partition`, `source_offset` and `problem`.
    async fn set_aside(&self, poisoned: &PoisonedRecord) -> Result<(), PortError> {
        let (_producer, generation) = self.current_producer();
        let limit = self.config.message_timeout + Duration::from_secs(1);
        let outcome = tokio::time::timeout(limit, self.produce_dead_letter(poisoned))
            .await
            .unwrap_or_else(|_elapsed| Err(AppendFailure::report_lost("dead letter", limit)));
        self.settle(generation, outcome).await
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn LogConsumer>, PortError> {
        let consumer = KafkaConsumer::subscribe(Arc::clone(&self.config), group, topics)?;
        Ok(Box::new(consumer))
    }

    /// Ready when a broker answers and every Parley topic (the audit topic too) exists (created by the setup step;
    /// appends to a missing topic would fail).
    async fn is_ready(&self) -> bool {
        let (producer, _generation) = self.current_producer();
        let timeout = self.config.request_timeout;
        let expected: Vec<String> = topics::ALL
            .iter()
            .chain([&AUDIT_TOPIC])
            .map(|topic| self.config.topic_name(topic))
            .collect();
        let fetched = tokio::task::spawn_blocking(move || {
            producer
                .get()
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

    /// Flushes the current producer: every queued record is delivered or has failed (its
    /// append then reports the failure) within `timeout`.
    async fn flush(&self, timeout: Duration) -> Result<(), PortError> {
        let (producer, _generation) = self.current_producer();
        let flushed =
            tokio::task::spawn_blocking(move || producer.get().flush(Timeout::After(timeout)))
                .await
                .map_err(|error| {
                    PortError::unavailable(Service::Kafka, During::new("flush", error))
                })?;
        flushed.map_err(|error| kafka_error("flush", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::log::LogEventBody;
    use wire::{ConversationId, MessageId, Seq, UserId};

    #[test]
    fn timeouts_and_producer_id_errors_spoil_the_producer_but_broker_trouble_does_not() {
        let production = KafkaError::MessageProduction;
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::UnknownProducerId,
        ] {
            assert!(spoiled_by(&production(code)).is_some(), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::MessageSizeTooLarge,
        ] {
            assert!(spoiled_by(&production(code)).is_none(), "{code:?}");
        }
        assert!(spoiled_by(&KafkaError::Canceled).is_none());
    }

    fn event(index: usize) -> LogEvent {
        LogEvent::new(
            format!("replace-{index}"),
            chrono::Utc::now(),
            LogEventBody::MessageStored {
                conversation_id: ConversationId::new(format!("c{index}")),
                message_id: MessageId::new(format!("m{index}")),
                seq: Seq(1),
                sender_id: UserId::new("u"),
            },
        )
    }

    /// No broker listens, so every record times out; appends failing together replace the
    /// producer once, and the next failure replaces the new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timed_out_appends_replace_the_producer_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let nobody = listener.local_addr().expect("address");
        drop(listener);
        let mut config =
            KafkaConfig::new(nobody.to_string()).with_message_timeout(Duration::from_millis(300));
        config.request_timeout = Duration::from_millis(300);
        let log = KafkaLog::new(config).expect("the log needs no broker");
        assert_eq!(log.producer_restarts(), 0);

        let appends = (0..3).map(|index| log.append(vec![event(index)]));
        for result in join_all(appends).await {
            assert!(
                matches!(result, Err(PortError::Unavailable { .. })),
                "{result:?}"
            );
        }
        assert_eq!(
            log.producer_restarts(),
            1,
            "one replacement for one producer"
        );

        let result = log.append(vec![event(3)]).await;
        assert!(
            matches!(result, Err(PortError::Unavailable { .. })),
            "{result:?}"
        );
        assert_eq!(
            log.producer_restarts(),
            2,
            "the new producer was used and replaced"
        );
        assert!(!log.is_ready().await, "readiness asks the current producer");
    }
}
