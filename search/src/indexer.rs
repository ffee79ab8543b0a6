//! [`Indexer`]: feeds a [`SearchIndex`] from the log, never from the request path.
//!
//! One iteration: poll a batch of `message.sent`, `message.edited` and `message.deleted`
//! records (reactions are not searched) → `SearchIndex::apply` (durable and searchable when it
//! returns), then `SearchIndex::purge` / `erase_user` for the batch's retention purges and erasures → commit the batch's
//! positions for the indexer's own consumer group. A crash between the two steps re-indexes
//! the batch on restart, which changes nothing (the index keeps the superseding version of each
//! message). Failures are retried with capped exponential backoff, never skipped; nothing is
//! committed meanwhile.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ports::{
    Backoff, ConsumerHealth, EventLog, LogConsumer, LogPosition, LogRecord, PortError, SearchIndex,
};
use tokio::sync::watch;
use tracing::{info, warn};
use wire::log::{topics, LogEventBody, MessageRecord};
use wire::{ConversationId, Seq, UserId};

use crate::metrics::IndexerMetrics;

/// The topics whose events change what is searchable.
pub const INDEXED_TOPICS: [&str; 3] = [
    topics::MESSAGE_SENT,
    topics::MESSAGE_EDITED,
    topics::MESSAGE_DELETED,
];

#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// Consumer group name: the indexer's own position in the log.
    pub group: String,
    /// Most records per batch (one index commit each).
    pub max_batch: usize,
    /// How long one poll waits for records.
    pub poll_wait: Duration,
    /// Once caught up, the shortest time from one batch's poll to the next: what arrives
    /// meanwhile is indexed in one commit. Each index commit writes a segment, and segments
    /// are merged later, so committing every poll costs far more CPU per message under steady
    /// traffic (issue #14); messages become searchable up to this much later.
    pub commit_interval: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the lag gauge is refreshed (between batches).
    pub lag_refresh: Duration,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            group: "search".to_owned(),
            max_batch: 4096,
            poll_wait: Duration::from_millis(50),
            commit_interval: Duration::from_millis(1000),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            lag_refresh: Duration::from_secs(1),
        }
    }
}

pub struct Indexer {
    log: Arc<dyn EventLog>,
    index: Arc<dyn SearchIndex>,
    config: IndexerConfig,
    metrics: IndexerMetrics,
    health: Arc<ConsumerHealth>,
    caught_up: Arc<AtomicBool>,
}

/// Shutdown was requested while a step was being retried.
struct ShuttingDown;

impl Indexer {
    pub fn new(log: Arc<dyn EventLog>, index: Arc<dyn SearchIndex>, config: IndexerConfig) -> Self {
        Self {
            log,
            index,
            config,
            metrics: IndexerMetrics::default(),
            health: Arc::new(ConsumerHealth::default()),
            caught_up: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn metrics(&self) -> IndexerMetrics {
        self.metrics.clone()
    }

    /// Whether the indexer runs and makes progress (for `/readyz` details).
    pub fn health(&self) -> Arc<ConsumerHealth> {
        Arc::clone(&self.health)
    }

    /// Turns true once a poll came back with less than a full batch: the index had everything
    /// the log held at that moment (a new replica has caught up).
    pub fn caught_up(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.caught_up)
    }

    /// Runs until `shutdown` turns true (or its sender is dropped). A batch in hand is
    /// finished unless one of its steps fails after shutdown was requested.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Ok(mut consumer) = self.open_consumer(&mut shutdown).await else {
            return;
        };
        self.health.set_running(true);
        info!(group = %self.config.group, "search indexer running");
        let mut lag_refreshed: Option<Instant> = None;
        let mut poll_backoff = self.backoff();
        loop {
            if lag_refreshed.is_none_or(|at| at.elapsed() >= self.config.lag_refresh) {
                self.refresh_lag(consumer.as_mut()).await;
                lag_refreshed = Some(Instant::now());
            }
            let polled_at = tokio::time::Instant::now();
            let polled = tokio::select! {
                polled = consumer.poll(self.config.max_batch.max(1), self.config.poll_wait) => polled,
                _ = shutdown.changed() => break,
            };
            let records = match polled {
                Ok(records) => records,
                Err(error) => {
                    match self.skip_poisoned(consumer.as_mut(), &mut shutdown).await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(ShuttingDown) => break,
                    }
                    warn!(group = %self.config.group, error = %error, "search indexer poll failed");
                    self.health.set_stalled(error.to_string());
                    if self.pause(&mut poll_backoff, &mut shutdown).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            self.health.clear_stalled();
            poll_backoff.reset();
            let caught_up = records.len() < self.config.max_batch.max(1);
            if caught_up {
                self.caught_up.store(true, Ordering::Release);
            }
            if records.is_empty() {
                self.metrics.lag_seconds.set(0.0);
                continue;
            }
            if self
                .index_batch(consumer.as_mut(), records, &mut shutdown)
                .await
                .is_err()
            {
                warn!(group = %self.config.group, "search indexer stopped with a batch uncommitted");
                break;
            }
            if caught_up {
                let next_poll = polled_at + self.config.commit_interval;
                tokio::select! {
                    _ = tokio::time::sleep_until(next_poll) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
        self.health.set_running(false);
        info!(group = %self.config.group, "search indexer stopped");
    }

    async fn open_consumer(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Box<dyn LogConsumer>, ShuttingDown> {
        let mut backoff = self.backoff();
        loop {
            match self.log.consumer(&self.config.group, &INDEXED_TOPICS).await {
                Ok(consumer) => return Ok(consumer),
                Err(error) => {
                    warn!(group = %self.config.group, error = %error, "search indexer cannot open its consumer");
                    self.pause(&mut backoff, shutdown).await?;
                }
            }
        }
    }

    /// Indexes one batch, then commits its positions; retries each step until it succeeds.
    async fn index_batch(
        &self,
        consumer: &mut dyn LogConsumer,
        records: Vec<LogRecord>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ShuttingDown> {
        let positions = highest_positions(&records);
        let newest_at = records.iter().map(|record| record.event.at).max();
        let count = records.len() as u64;
        let forgets: Vec<Forget> = records.iter().filter_map(forget_of).collect();
        let versions: Vec<MessageRecord> =
            records.into_iter().filter_map(indexed_version).collect();
        let mut backoff = self.backoff();
        while let Err(error) = self.write(&versions, &forgets).await {
            warn!(error = %error, "search index write failed; retrying");
            self.metrics.retries.inc();
            self.pause(&mut backoff, shutdown).await?;
        }
        let mut backoff = self.backoff();
        while let Err(error) = consumer.commit(&positions).await {
            warn!(error = %error, "search indexer position commit failed; retrying");
            self.metrics.retries.inc();
            self.pause(&mut backoff, shutdown).await?;
        }
        self.metrics.indexed_events.inc_by(count);
        self.metrics.index_commits.inc();
        if let Some(newest_at) = newest_at {
            let age = (chrono::Utc::now() - newest_at)
                .num_microseconds()
                .unwrap_or(0);
            self.metrics.lag_seconds.set(age.max(0) as f64 / 1e6);
        }
        Ok(())
    }

    /// Indexes the batch's message versions, then applies its retention purges and erasures
    /// in log order (each covers messages sent before it).
    async fn write(&self, versions: &[MessageRecord], forgets: &[Forget]) -> Result<(), PortError> {
        self.index.apply(versions.to_vec()).await?;
        for forget in forgets {
            match forget {
                Forget::Purge {
                    conversation_id,
                    through,
                } => self.index.purge(conversation_id, *through).await?,
                Forget::Erase {
                    conversation_id,
                    user_id,
                    through,
                } => {
                    self.index
                        .erase_user(conversation_id, user_id, *through)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// A record that is not a log event carries nothing to index: commit past it (ingest sets
    /// it aside in the dead-letter topic), so it neither stops the partition nor stays as lag.
    /// `false` when the failed poll met no such record.
    async fn skip_poisoned(
        &self,
        consumer: &mut dyn LogConsumer,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, ShuttingDown> {
        let Some(poisoned) = consumer.take_poisoned() else {
            return Ok(false);
        };
        let mut backoff = self.backoff();
        while let Err(error) = consumer.commit(&[poisoned.position]).await {
            warn!(error = %error, "search indexer position commit failed; retrying");
            self.metrics.retries.inc();
            self.pause(&mut backoff, shutdown).await?;
        }
        self.metrics.malformed_records.inc();
        warn!(
            topic = %poisoned.topic,
            partition = poisoned.partition,
            offset = poisoned.offset,
            problem = %poisoned.problem,
            "search indexer skipped a malformed log record"
        );
        Ok(true)
    }

    async fn refresh_lag(&self, consumer: &mut dyn LogConsumer) {
        if let Ok(lags) = consumer.lag().await {
            let behind: u64 = lags.iter().map(|(_, _, records)| records).sum();
            self.metrics
                .lag_events
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.config.initial_backoff, self.config.max_backoff)
    }

    /// Waits the backoff's next delay, or until shutdown is requested.
    async fn pause(
        &self,
        backoff: &mut Backoff,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ShuttingDown> {
        if *shutdown.borrow() {
            return Err(ShuttingDown);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => Ok(()),
            _ = shutdown.changed() => Err(ShuttingDown),
        }
    }
}

/// The message version an event carries, if it changes what is searchable.
fn indexed_version(record: LogRecord) -> Option<MessageRecord> {
    match record.event.body {
        LogEventBody::MessageSent { record }
        | LogEventBody::MessageEdited { record }
        | LogEventBody::MessageDeleted { record }
        | LogEventBody::MessageAborted { record } => Some(record),
        _ => None,
    }
}

/// What an event makes the index forget beyond message versions.
enum Forget {
    /// Retention purged the conversation up to `through`.
    Purge {
        conversation_id: ConversationId,
        through: Seq,
    },
    /// The user was erased from the conversation up to `through`.
    Erase {
        conversation_id: ConversationId,
        user_id: UserId,
        through: Seq,
    },
}

/// The retention purge or erasure an event carries, if any.
fn forget_of(record: &LogRecord) -> Option<Forget> {
    match &record.event.body {
        LogEventBody::MessagesPurged {
            conversation_id,
            through_seq,
        } => Some(Forget::Purge {
            conversation_id: conversation_id.clone(),
            through: *through_seq,
        }),
        LogEventBody::UserErased {
            conversation_id,
            user_id,
            through_seq,
        } => Some(Forget::Erase {
            conversation_id: conversation_id.clone(),
            user_id: user_id.clone(),
            through: *through_seq,
        }),
        _ => None,
    }
}

/// The highest position of each partition in `records`.
fn highest_positions(records: &[LogRecord]) -> Vec<LogPosition> {
    let mut highest: BTreeMap<u32, LogPosition> = BTreeMap::new();
    for record in records {
        let position = record.position;
        highest
            .entry(position.partition)
            .and_modify(|kept| *kept = (*kept).max(position))
            .or_insert(position);
    }
    highest.into_values().collect()
}
