//! [`KafkaConsumer`]: one member of a consumer group behind `LogConsumer`.
//!
//! # Positions
//! `LogPosition` has no topic, but a consumer may read several topics. A position's `partition`
//! therefore encodes both: `topic_index * TOPIC_STRIDE + kafka_partition`, where `topic_index`
//! is the topic's place in the (de-duplicated) `topics` list the consumer was opened with and
//! `TOPIC_STRIDE` is 2^20. The encoding is stable for every consumer opened with the same topic
//! list, so positions are comparable per (topic, partition) across restarts and group members,
//! and `commit` maps them back. `offset` is the Kafka offset; committing it stores `offset + 1`
//! (Kafka's "next record to read") for that topic and partition.
//!
//! # Delivery
//! At least once: records of a partition that a rebalance moved to another member may be
//! delivered again (consumers are idempotent by `event_id`). Within a poll, records of different
//! partitions (and topics) are interleaved by their append time (the `appended_at_us` header,
//! strictly increasing per producer) while each partition keeps its offset order, so one
//! append's events of several topics come back in append order.
//!
//! # Errors
//! librdkafka reports trouble on the consumer queue as it happens, one error event per
//! occurrence, and recovers from nearly all of it by itself (librdkafka's own rule: consumer
//! errors are informational unless fatal). Every such event has already been logged by the
//! consumer's [`KafkaContext`] (at error when actionable, else at most one warning per
//! [`TRANSIENT_WARN_EVERY`]), so `poll` only sorts each error by its code:
//! - **transient** (everything not listed below: all brokers down, transport failure, connection
//!   refused, timeouts, coordinator moves, rebalances, leader changes, offset resets librdkafka
//!   applies itself …): `poll` keeps waiting for records until its `wait` is over. An outage
//!   thus costs its callers nothing but empty polls, and the errors queued during it are drained
//!   at once when the brokers come back instead of one per poll.
//! - **unknown topic or partition**: a broker that just restarted may briefly answer without a
//!   topic, so the report is only remembered. A poll at least [`UNKNOWN_TOPIC_GRACE`] later
//!   asks the brokers for metadata: a subscribed topic still missing is an `Unavailable` error
//!   (the setup step has not run, or the topic was deleted: the caller may reopen the consumer
//!   once it exists), otherwise the report is forgotten.
//! - **actionable** (`client::is_actionable`: fatal errors, failed authentication, authorization
//!   failures, an offset reset that has nowhere to go, a group id, protocol or session timeout the
//!   group coordinator rejects; also any error librdkafka flags as fatal): returned as `Err` at
//!   once; retrying the same consumer cannot fix them. An actionable error met after records were
//!   taken is returned by the next poll.
//!
//! - **malformed record** (a payload that is not a log event, or none): a `Corrupt` error,
//!   returned by the poll after the one that returned the records before it, once; the record
//!   itself is handed over by `take_poisoned` (ingest sets it aside in the dead-letter topic and
//!   commits past it). The next poll goes on after it.
//! - **stalled** ([`StallWatch`]): records are left on the group's topics and the group's
//!   committed offsets have not moved for `stall_timeout` (for example a group left with an empty
//!   assignment after a broker crash): an `Unavailable` error naming the partitions, at most
//!   once per `stall_timeout / 3`. librdkafka would never notice; the caller re-joins the group
//!   with a new consumer.
//!
//! [`TRANSIENT_WARN_EVERY`]: super::client::TRANSIENT_WARN_EVERY

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use ports::{
    AuditRecord, During, LogConsumer, LogPosition, LogRecord, PoisonedRecord, PortError, Service,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use tracing::{debug, error, warn};
use wire::log::LogEvent;

use super::client::{consumer_config, is_actionable, kafka_error, KafkaContext};
use super::config::KafkaConfig;
use super::lag::{group_standing, GroupStanding};
use super::log::APPENDED_AT_HEADER;
use super::stall::{Progress, StallWatch};

/// Partitions per topic in the `LogPosition::partition` encoding (see the module docs).
pub const TOPIC_STRIDE: u32 = 1 << 20;

/// How long an unknown topic or partition may be reported before the brokers are asked whether
/// the subscribed topics exist (see the module docs).
pub const UNKNOWN_TOPIC_GRACE: Duration = Duration::from_secs(5);

/// What the records of a consumer's topics hold: log events (`LogConsumer`) or audit
/// records (see `super::audit`), JSON either way.
pub trait Payload: DeserializeOwned + Send + 'static {
    /// What a record should be, for the error of one that is not (`"a log event"`).
    const WHAT: &'static str;
}

impl Payload for LogEvent {
    const WHAT: &'static str = "a log event";
}

impl Payload for AuditRecord {
    const WHAT: &'static str = "an audit record";
}

/// A consumer-group member over some topics whose records hold `T`s, with explicit synchronous
/// commits.
pub struct KafkaConsumer<T = LogEvent> {
    /// `None` only while dropping (the close runs on the blocking pool).
    consumer: Option<Arc<StreamConsumer<KafkaContext>>>,
    /// Broker-side topic names; the index is the `topic_index` of the position encoding.
    topics: Vec<String>,
    group: String,
    config: Arc<KafkaConfig>,
    /// A record that does not decode, met after records this poll returned: the next poll
    /// reports it.
    pending_bad: Option<BadRecord>,
    /// The malformed record behind the `Corrupt` error the last poll returned (see
    /// `LogConsumer::take_poisoned`).
    poisoned: Option<PoisonedRecord>,
    /// An actionable error taken from librdkafka after records; returned by the next poll.
    pending_error: Option<PortError>,
    /// When an unknown topic or partition was reported, until a metadata check settles it.
    unknown_topic_since: Option<Instant>,
    /// Whether the group still makes progress (see the module docs).
    stall: StallWatch,
    /// A client with the group's id that never subscribes: measures the group (see [`lag`]).
    ///
    /// [`lag`]: super::lag
    observer: Arc<BaseConsumer<KafkaContext>>,
    payload: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for KafkaConsumer<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaConsumer")
            .field("group", &self.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// A taken record with its append time (µs), before the batch is ordered.
struct Taken<T> {
    position: LogPosition,
    item: T,
    timestamp: i64,
}

/// A record `decode` refused: the error for the caller and, when the record sits at a known
/// position but its payload is not a log event, the record itself (for the dead-letter topic).
struct BadRecord {
    error: PortError,
    poisoned: Option<Box<PoisonedRecord>>,
}

impl<T: Payload> KafkaConsumer<T> {
    /// Joins `group` over the logical `topics` (names of `wire::log::topics`, or the audit
    /// topic). The group join
    /// itself happens in the background while the consumer is polled.
    pub fn subscribe(
        config: Arc<KafkaConfig>,
        group: &str,
        topics: &[&str],
    ) -> Result<Self, PortError> {
        let mut names: Vec<String> = Vec::with_capacity(topics.len());
        for topic in topics {
            let name = config.topic_name(topic);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Err(PortError::internal("a consumer needs at least one topic"));
        }
        if names.len() > (u32::MAX / TOPIC_STRIDE) as usize {
            return Err(PortError::internal(format!(
                "a consumer reads at most {} topics",
                u32::MAX / TOPIC_STRIDE
            )));
        }
        let consumer: StreamConsumer<KafkaContext> = consumer_config(&config, group)
            .create_with_context(KafkaContext::consumer(group))
            .map_err(|error| kafka_error("consumer", error))?;
        let observer: BaseConsumer<KafkaContext> = consumer_config(&config, group)
            .create_with_context(KafkaContext::consumer(group))
            .map_err(|error| kafka_error("consumer", error))?;
        let subscription: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer
            .subscribe(&subscription)
            .map_err(|error| kafka_error("subscribe", error))?;
        debug!(group, topics = ?names, "kafka consumer subscribed");
        Ok(Self {
            consumer: Some(Arc::new(consumer)),
            topics: names,
            group: group.to_owned(),
            pending_bad: None,
            poisoned: None,
            pending_error: None,
            unknown_topic_since: None,
            stall: StallWatch::new(config.stall_timeout, Instant::now()),
            observer: Arc::new(observer),
            config,
            payload: PhantomData,
        })
    }

    fn consumer(&self) -> &Arc<StreamConsumer<KafkaContext>> {
        self.consumer
            .as_ref()
            .expect("the consumer is only taken when dropping")
    }

    /// Decodes one record; bad data is `Corrupt`, and a malformed payload also a
    /// [`PoisonedRecord`].
    fn decode(&self, message: &BorrowedMessage<'_>) -> Result<Taken<T>, BadRecord> {
        let corrupt = |what: String| {
            let record = format!(
                "record {}/{}@{}",
                message.topic(),
                message.partition(),
                message.offset()
            );
            PortError::corrupt(Service::Kafka, record, what)
        };
        let bad = |what: String| BadRecord {
            error: corrupt(what),
            poisoned: None,
        };
        let topic_index = self
            .topics
            .iter()
            .position(|topic| topic == message.topic())
            .ok_or_else(|| bad("from a topic this consumer did not subscribe to".into()))?;
        let partition = encode_partition(topic_index, message.partition())
            .ok_or_else(|| bad("partition out of range".into()))?;
        let offset = u64::try_from(message.offset()).map_err(|_| bad("negative offset".into()))?;
        let decoded = match message.payload() {
            None => Err("no payload".to_owned()),
            Some(payload) => serde_json::from_slice::<T>(payload)
                .map_err(|error| format!("not {}: {error}", T::WHAT)),
        };
        let item = decoded.map_err(|problem| BadRecord {
            error: corrupt(problem.clone()),
            poisoned: Some(Box::new(PoisonedRecord {
                position: LogPosition { partition, offset },
                topic: message.topic().to_owned(),
                partition: message.partition().unsigned_abs(),
                offset,
                payload: message.payload().unwrap_or_default().to_vec(),
                problem,
            })),
        })?;
        Ok(Taken {
            position: LogPosition { partition, offset },
            item,
            timestamp: appended_at(message),
        })
    }
}

impl<T: Payload> KafkaConsumer<T> {
    /// Logs a record that does not decode and keeps it for `take_poisoned`; its error is for
    /// the caller.
    fn report_bad(&mut self, bad: BadRecord) -> PortError {
        error!(group = %self.group, error = %bad.error, "a kafka record does not decode");
        self.poisoned = bad.poisoned.map(|poisoned| *poisoned);
        bad.error
    }

    /// Sorts a consumer error (see the module docs): `Some` is an error for the caller, `None`
    /// means keep waiting.
    fn handle_error(&mut self, error: KafkaError) -> Option<PortError> {
        match classify(&error) {
            ErrorClass::Transient => {
                // The context already logged it (see the module docs).
                debug!(group = %self.group, error = %error, "kafka consumer error, librdkafka retries");
                None
            }
            ErrorClass::UnknownTopic => {
                if self.unknown_topic_since.is_none() {
                    warn!(
                        group = %self.group,
                        error = %error,
                        recheck_in_s = UNKNOWN_TOPIC_GRACE.as_secs(),
                        "kafka reports an unknown topic or partition"
                    );
                    self.unknown_topic_since = Some(Instant::now());
                }
                None
            }
            ErrorClass::Actionable => Some(consume_error(&self.group, error)),
        }
    }

    /// After [`UNKNOWN_TOPIC_GRACE`], asks the brokers whether every subscribed topic exists.
    async fn check_unknown_topics(&mut self) -> Result<(), PortError> {
        let Some(since) = self.unknown_topic_since else {
            return Ok(());
        };
        if since.elapsed() < UNKNOWN_TOPIC_GRACE {
            return Ok(());
        }
        let consumer = Arc::clone(self.consumer());
        let topics = self.topics.clone();
        let timeout = self.config.request_timeout;
        let fetched = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|metadata| {
                    topics
                        .into_iter()
                        .filter(|name| {
                            !metadata.topics().iter().any(|topic| {
                                topic.name() == name
                                    && topic.error().is_none()
                                    && !topic.partitions().is_empty()
                            })
                        })
                        .collect::<Vec<String>>()
                })
        });
        match tokio::time::timeout(timeout * 2, fetched).await {
            Ok(Ok(Ok(missing))) if missing.is_empty() => {
                debug!(group = %self.group, "every subscribed kafka topic exists");
                self.unknown_topic_since = None;
                Ok(())
            }
            Ok(Ok(Ok(missing))) => {
                self.unknown_topic_since = None;
                warn!(group = %self.group, ?missing, "subscribed kafka topics do not exist");
                Err(PortError::unavailable(
                    Service::Kafka,
                    format!("consume: topics {missing:?} do not exist (run the setup step)"),
                ))
            }
            outcome => {
                // The brokers do not answer: transient; check again after another grace.
                let error = match outcome {
                    Ok(Ok(Err(error))) => error.to_string(),
                    Ok(Err(join_error)) => join_error.to_string(),
                    _ => format!("no answer within {:?}", timeout * 2),
                };
                debug!(group = %self.group, error = %error, "kafka topic check failed");
                self.unknown_topic_since = Some(Instant::now());
                Ok(())
            }
        }
    }
}

/// How `poll` treats a consumer error (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorClass {
    /// librdkafka recovers by itself: `poll` keeps waiting.
    Transient,
    /// A subscribed topic or partition is missing: an error only if it stays missing.
    UnknownTopic,
    /// Retrying the same consumer cannot help: returned to the caller.
    Actionable,
}

fn classify(error: &KafkaError) -> ErrorClass {
    let code = match error {
        KafkaError::MessageConsumption(code) => code,
        KafkaError::PartitionEOF(_) => return ErrorClass::Transient,
        // `MessageConsumptionFatal`, and anything `recv` is not documented to return.
        _ => return ErrorClass::Actionable,
    };
    match code {
        RDKafkaErrorCode::UnknownTopicOrPartition
        | RDKafkaErrorCode::UnknownTopic
        | RDKafkaErrorCode::UnknownPartition => ErrorClass::UnknownTopic,
        code if is_actionable(*code) => ErrorClass::Actionable,
        _ => ErrorClass::Transient,
    }
}

/// The record's [`APPENDED_AT_HEADER`] in microseconds, else its Kafka timestamp.
fn appended_at(message: &BorrowedMessage<'_>) -> i64 {
    let from_header = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == APPENDED_AT_HEADER)
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.parse::<i64>().ok())
    });
    from_header.unwrap_or_else(|| {
        message
            .timestamp()
            .to_millis()
            .map_or(i64::MAX, |millis| millis.saturating_mul(1000))
    })
}

/// `topic_index * TOPIC_STRIDE + partition`, or `None` when either is out of range.
pub fn encode_partition(topic_index: usize, partition: i32) -> Option<u32> {
    let partition = u32::try_from(partition).ok()?;
    if partition >= TOPIC_STRIDE {
        return None;
    }
    let topic_index = u32::try_from(topic_index).ok()?;
    topic_index
        .checked_mul(TOPIC_STRIDE)?
        .checked_add(partition)
}

/// The inverse of [`encode_partition`]: `(topic_index, kafka_partition)`.
pub fn decode_partition(partition: u32) -> (usize, i32) {
    let topic_index = (partition / TOPIC_STRIDE) as usize;
    let kafka_partition = (partition % TOPIC_STRIDE) as i32;
    (topic_index, kafka_partition)
}

/// Interleaves the records of several partitions by timestamp (ties: the one taken first) while
/// every partition keeps the order it arrived in (its offset order).
fn interleave<T>(taken: Vec<Taken<T>>) -> Vec<(LogPosition, T)> {
    let mut lanes: Vec<VecDeque<(usize, Taken<T>)>> = Vec::new();
    let mut lane_of: BTreeMap<u32, usize> = BTreeMap::new();
    let total = taken.len();
    for (arrival, item) in taken.into_iter().enumerate() {
        let lane = *lane_of.entry(item.position.partition).or_insert_with(|| {
            lanes.push(VecDeque::new());
            lanes.len() - 1
        });
        lanes[lane].push_back((arrival, item));
    }
    let mut ordered = Vec::with_capacity(total);
    while let Some(lane) = lanes
        .iter()
        .enumerate()
        .filter_map(|(index, lane)| {
            lane.front()
                .map(|(arrival, item)| ((item.timestamp, *arrival), index))
        })
        .min()
        .map(|(_, index)| index)
    {
        if let Some((_, item)) = lanes[lane].pop_front() {
            ordered.push((item.position, item.item));
        }
    }
    ordered
}

#[async_trait]
impl LogConsumer for KafkaConsumer<LogEvent> {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogRecord>, PortError> {
        let decoded = self.poll_decoded(max, wait).await?;
        Ok(decoded
            .into_iter()
            .map(|(position, event)| LogRecord { position, event })
            .collect())
    }

    async fn commit(&mut self, positions: &[LogPosition]) -> Result<(), PortError> {
        self.commit_offsets(positions).await
    }

    fn take_poisoned(&mut self) -> Option<PoisonedRecord> {
        self.take_malformed()
    }

    fn assigned_partitions(&self) -> Option<usize> {
        self.assigned_count()
    }

    async fn lag(&mut self) -> Result<Vec<(String, u32, u64)>, PortError> {
        self.partition_lag().await
    }
}

/// What `LogConsumer` offers, for consumers of any [`Payload`] (see the trait for each).
impl<T: Payload> KafkaConsumer<T> {
    /// `LogConsumer::poll`: up to `max` records, `(position, payload)`.
    pub async fn poll_decoded(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(LogPosition, T)>, PortError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.poisoned = None;
        if let Some(bad) = self.pending_bad.take() {
            return Err(self.report_bad(bad));
        }
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        let deadline = tokio::time::Instant::now() + wait;
        self.check_unknown_topics().await?;
        self.check_progress().await?;
        let consumer = Arc::clone(self.consumer());
        // Transient errors are logged and the wait goes on (see the module docs).
        let first = loop {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_elapsed) => return Ok(Vec::new()),
                Ok(Ok(message)) => break self.decode(&message),
                Ok(Err(error)) => {
                    if let Some(error) = self.handle_error(error) {
                        return Err(error);
                    }
                }
            }
        };
        let mut taken = match first {
            Ok(item) => vec![item],
            Err(bad) => return Err(self.report_bad(bad)),
        };
        // Take whatever librdkafka already holds, without waiting, up to a bad record: the
        // records before it come first, it is reported by the next poll.
        while taken.len() < max {
            match consumer.recv().now_or_never() {
                None => break,
                Some(Ok(message)) => match self.decode(&message) {
                    Ok(item) => taken.push(item),
                    Err(bad) => {
                        self.pending_bad = Some(bad);
                        break;
                    }
                },
                Some(Err(error)) => {
                    if let Some(error) = self.handle_error(error) {
                        // The records taken so far come first.
                        self.pending_error = Some(error);
                        break;
                    }
                }
            }
        }
        Ok(interleave(taken))
    }

    /// `LogConsumer::commit`.
    pub async fn commit_offsets(&mut self, positions: &[LogPosition]) -> Result<(), PortError> {
        let mut highest: BTreeMap<(usize, i32), u64> = BTreeMap::new();
        for position in positions {
            let (topic_index, partition) = decode_partition(position.partition);
            if topic_index >= self.topics.len() {
                return Err(PortError::internal(format!(
                    "position {position:?} names topic #{topic_index}; this consumer reads {}",
                    self.topics.len()
                )));
            }
            let offset = highest.entry((topic_index, partition)).or_default();
            *offset = (*offset).max(position.offset);
        }
        if highest.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic_index, partition), offset) in &highest {
            let next = i64::try_from(offset.saturating_add(1))
                .map_err(|_| PortError::internal(format!("offset {offset} out of range")))?;
            list.add_partition_offset(&self.topics[*topic_index], *partition, Offset::Offset(next))
                .map_err(|error| kafka_error("commit", error))?;
        }
        let consumer = Arc::clone(self.consumer());
        let limit = self.config.commit_timeout;
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync));
        match tokio::time::timeout(limit, committed).await {
            Err(_elapsed) => Err(PortError::unavailable(
                Service::Kafka,
                format!("commit: no answer within {limit:?}"),
            )),
            Ok(Err(join_error)) => Err(PortError::internal(During::new("commit", join_error))),
            Ok(Ok(Err(error))) => {
                warn!(group = %self.group, error = %error, "kafka commit failed");
                Err(kafka_error("commit", error))
            }
            Ok(Ok(Ok(()))) => {
                debug!(group = %self.group, partitions = highest.len(), "kafka offsets committed");
                Ok(())
            }
        }
    }

    /// `LogConsumer::take_poisoned`.
    pub fn take_malformed(&mut self) -> Option<PoisonedRecord> {
        self.poisoned.take()
    }

    /// `LogConsumer::assigned_partitions`.
    pub fn assigned_count(&self) -> Option<usize> {
        self.consumer()
            .assignment()
            .ok()
            .map(|assignment| assignment.count())
    }

    /// `LogConsumer::lag`: over every partition of the consumer's topics, assigned to this
    /// member or not.
    pub async fn partition_lag(&mut self) -> Result<Vec<(String, u32, u64)>, PortError> {
        let standing = self.group_standing().await?;
        Ok(standing
            .partitions
            .into_iter()
            .filter_map(|partition| {
                let number = u32::try_from(partition.partition).ok()?;
                Some((partition.topic, number, partition.lag))
            })
            .collect())
    }
}

impl<T: Payload> KafkaConsumer<T> {
    /// The group's standing on every partition of the topics (see [`group_standing`]).
    async fn group_standing(&self) -> Result<GroupStanding, PortError> {
        let observer = Arc::clone(&self.observer);
        let assigned = self.assigned_count().unwrap_or(0);
        let topics = self.topics.clone();
        let timeout = self.config.request_timeout;
        let measured = tokio::task::spawn_blocking(move || {
            group_standing(&observer, assigned, &topics, timeout)
        });
        // At most four requests (see `group_standing`), plus slack.
        let limit = timeout * 5;
        match tokio::time::timeout(limit, measured).await {
            Err(_elapsed) => Err(PortError::unavailable(
                Service::Kafka,
                format!("lag: no answer within {limit:?}"),
            )),
            Ok(Err(join_error)) => Err(PortError::internal(During::new("lag", join_error))),
            Ok(Ok(result)) => result.map_err(|error| kafka_error("lag", error)),
        }
    }

    /// When a check is due, measures the group and fails when it is stalled (see the module
    /// docs); a measurement that fails is no verdict.
    async fn check_progress(&mut self) -> Result<(), PortError> {
        if !self.stall.is_due(Instant::now()) {
            return Ok(());
        }
        let standing = match self.group_standing().await {
            Ok(standing) => standing,
            Err(error) => {
                debug!(group = %self.group, error = %error, "kafka group progress unknown");
                self.stall.unmeasured(Instant::now());
                return Ok(());
            }
        };
        match self.stall.observe(Instant::now(), &standing) {
            Progress::Healthy => Ok(()),
            Progress::Stalled { reason } => {
                warn!(
                    group = %self.group,
                    assigned_partitions = standing.assigned_partitions,
                    lag = standing.total_lag(),
                    reason = %reason,
                    "kafka consumer group stalled"
                );
                Err(PortError::unavailable(
                    Service::Kafka,
                    format!("consume: {reason}"),
                ))
            }
        }
    }
}

fn consume_error(group: &str, error: KafkaError) -> PortError {
    warn!(group, error = %error, "kafka consume error");
    kafka_error("consume", error)
}

impl<T> Drop for KafkaConsumer<T> {
    /// Leaves the group before returning (a few milliseconds: the coordinator's answer), so a
    /// successor in the same group joins a group this member has already left instead of
    /// waiting for its session to time out. On a multi-thread runtime the wait runs in
    /// `block_in_place`, so other tasks move to other workers meanwhile.
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if multi_thread {
            tokio::task::block_in_place(move || drop(consumer));
        } else {
            drop(consumer);
        }
        debug!(group = %self.group, "kafka consumer left its group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::log::LogEventBody;
    use wire::{ConversationId, MessageId, Seq, UserId};

    #[test]
    fn positions_round_trip_topic_and_partition() {
        assert_eq!(encode_partition(0, 0), Some(0));
        assert_eq!(encode_partition(0, 7), Some(7));
        let encoded = encode_partition(3, 5).expect("in range");
        assert_eq!(encoded, 3 * TOPIC_STRIDE + 5);
        assert_eq!(decode_partition(encoded), (3, 5));
        assert_eq!(encode_partition(0, -1), None);
        assert_eq!(encode_partition(0, TOPIC_STRIDE as i32), None);
        assert_eq!(encode_partition(5000, 0), None);
    }

    #[test]
    fn transport_trouble_is_transient_and_only_fatal_or_permission_errors_are_returned() {
        let consumption = KafkaError::MessageConsumption;
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::Resolve,
            RDKafkaErrorCode::OperationTimedOut,
            RDKafkaErrorCode::CoordinatorNotAvailable,
            RDKafkaErrorCode::NotCoordinator,
            RDKafkaErrorCode::NetworkException,
            RDKafkaErrorCode::OffsetOutOfRange,
        ] {
            assert_eq!(
                classify(&consumption(code)),
                ErrorClass::Transient,
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::UnknownPartition,
        ] {
            assert_eq!(
                classify(&consumption(code)),
                ErrorClass::UnknownTopic,
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::AutoOffsetReset,
        ] {
            assert_eq!(
                classify(&consumption(code)),
                ErrorClass::Actionable,
                "{code:?}"
            );
        }
        assert_eq!(
            classify(&KafkaError::MessageConsumptionFatal(
                RDKafkaErrorCode::AllBrokersDown
            )),
            ErrorClass::Actionable
        );
        assert_eq!(
            classify(&KafkaError::PartitionEOF(0)),
            ErrorClass::Transient
        );
    }

    fn taken(partition: u32, offset: u64, timestamp: i64) -> Taken<LogEvent> {
        let event = LogEvent::new(
            format!("{partition}-{offset}"),
            chrono::DateTime::from_timestamp_millis(timestamp).expect("a time"),
            LogEventBody::MessageStored {
                conversation_id: ConversationId::new("c"),
                message_id: MessageId::new("m"),
                seq: Seq(1),
                sender_id: UserId::new("u"),
            },
        );
        Taken {
            position: LogPosition { partition, offset },
            item: event,
            timestamp,
        }
    }

    #[test]
    fn interleaving_orders_by_time_but_keeps_each_partition_in_order() {
        let batch = vec![
            taken(1, 10, 30),
            taken(0, 5, 20),
            taken(1, 11, 10), // an older clock on partition 1 must not jump ahead of offset 10
            taken(0, 6, 40),
            taken(2, 1, 20),
        ];
        let order: Vec<(u32, u64)> = interleave(batch)
            .into_iter()
            .map(|(position, _event)| (position.partition, position.offset))
            .collect();
        assert_eq!(order, vec![(0, 5), (2, 1), (1, 10), (1, 11), (0, 6)]);
    }
}
