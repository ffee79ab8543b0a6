//! [`IngestPipeline`]: consumes the log, applies it to the store, acknowledges stored messages.
//!
//! One iteration: poll a batch → map it to store writes → `Store::apply` → append one
//! `MessageStored` per `MessageSent` (topic `message.delivered`) → commit the batch's positions
//! → after a batch that was not full, wait out [`IngestConfig::linger`] from its poll, so that
//! steady traffic comes in batches of that many milliseconds rather than one per log group.
//! Positions are committed only after the store write and the acknowledgments are durable (or,
//! for the embedded store behind the embedded log, after the write, which the log makes
//! durable before the position: `EmbeddedStore::apply_behind`), so a crash anywhere
//! re-consumes the batch; every store write is idempotent, and acknowledgments carry a
//! deterministic event id. A failing step is retried with capped exponential backoff,
//! never skipped, and nothing is committed meanwhile.
//!
//! # A malformed record
//! A record of the log that is not a log event (a poisoned payload) fails its poll with
//! `Corrupt`, after the records before it were returned (and processed) by earlier polls. The
//! consumer hands it over (`LogConsumer::take_poisoned`); the pipeline sets it aside
//! (`EventLog::set_aside`: Kafka's dead-letter topic), logs it, counts it
//! (`parley_ingest_dead_letters_total`) and commits its position, retrying each step until it
//! succeeds: the partition goes on, and nothing of the record is lost.
//!
//! # A consumer that makes no progress
//! A failed poll in [`IngestPipeline::run`] other than a malformed record means the consumer cannot go on by itself: its group stalled (records left and no committed
//! offset moving for `kafka.stall_timeout_ms`, e.g. a group left with an empty assignment after
//! a broker crash during a rebalance), a topic is missing, or librdkafka met an error it cannot
//! recover from. The pipeline then re-joins the group with a new consumer (after a capped
//! exponential backoff, growing while re-joins do not help) and reports the reason through
//! [`ConsumerHealth`] (`/readyz` answers not ready) until records flow again or the group has
//! nothing left to consume.
//!
//! # Shutdown
//! [`IngestPipeline::run`] stops polling once shutdown is requested. A batch in hand is finished
//! (store write, acknowledgments, commit) as long as its steps succeed; the loop stops only
//! between batches, or when a step of the batch fails after shutdown was requested (the batch
//! is then left uncommitted and is consumed again by the next run).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ports::{
    Backoff, ConsumerHealth, EventLog, LogConsumer, LogPosition, LogRecord, PortError, Store,
    StoreWrite,
};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use wire::log::LogEvent;
use wire::Timestamp;

use crate::barrier::IngestBarrier;
use crate::mapping::{ingest_topics, store_write, stored_ack};
use crate::metrics::IngestMetrics;

/// [`IngestConfig::linger`]'s default (`ingest.linger_ms`).
pub const DEFAULT_LINGER: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Consumer group name.
    pub group: String,
    /// Most records per batch.
    pub max_batch: usize,
    /// How long one poll waits for records.
    pub poll_wait: Duration,
    /// After a batch smaller than `max_batch`, the shortest time from its poll to the next:
    /// what arrives meanwhile goes in one batch (one store write, one append of stored
    /// acknowledgments, one commit) instead of one batch per group the log writer commits.
    /// The first record after a quiet spell is taken at once; `message.stored` comes up to
    /// this much later under steady traffic. Zero: poll again at once.
    pub linger: Duration,
    /// First retry delay after a failure; doubles per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often `run` refreshes the consumer lag gauge (between batches).
    pub lag_refresh: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            group: "ingest".to_owned(),
            max_batch: 512,
            poll_wait: Duration::from_millis(50),
            linger: DEFAULT_LINGER,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            lag_refresh: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IngestError {
    /// Shutdown was requested while a step was being retried; the batch was not committed and
    /// will be consumed again.
    #[error("ingest shutting down")]
    ShuttingDown,
}

pub struct IngestPipeline {
    log: Arc<dyn EventLog>,
    store: Arc<dyn Store>,
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
    health: Arc<ConsumerHealth>,
    barrier: IngestBarrier,
}

impl IngestPipeline {
    pub fn new(log: Arc<dyn EventLog>, store: Arc<dyn Store>, config: IngestConfig) -> Self {
        Self {
            log,
            store,
            config,
            metrics: Arc::new(IngestMetrics::default()),
            health: Arc::new(ConsumerHealth::default()),
            barrier: IngestBarrier::default(),
        }
    }

    pub fn metrics(&self) -> Arc<IngestMetrics> {
        Arc::clone(&self.metrics)
    }

    /// A handle to wait until [`IngestPipeline::run`] has written everything the log held
    /// when asked ([`IngestBarrier`]); a wait cuts the linger short.
    pub fn barrier(&self) -> IngestBarrier {
        self.barrier.clone()
    }

    /// Whether [`IngestPipeline::run`] has a consumer that makes progress (readiness checks
    /// read it; see the module docs).
    pub fn consumer_health(&self) -> Arc<ConsumerHealth> {
        Arc::clone(&self.health)
    }

    /// Processes batches until a poll comes back empty: afterwards the store reflects every
    /// record that was in the log when the call started. Run it before a node turns ready.
    /// Returns the number of records processed. Retries failures forever (the node stays
    /// not-ready meanwhile).
    pub async fn catch_up(&self) -> Result<u64, IngestError> {
        let mut consumer = self.open_consumer(None).await?;
        let mut processed = 0_u64;
        loop {
            let records = self.poll(&mut consumer, None).await?;
            if records.is_empty() {
                info!(records = processed, "ingest caught up");
                return Ok(processed);
            }
            processed += records.len() as u64;
            self.process(&mut consumer, records, None).await?;
        }
    }

    /// Runs until `shutdown` turns true (or its sender is dropped); see the module docs for
    /// what happens to the batch in hand.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut consumer = match self.open_consumer(Some(&mut shutdown)).await {
            Ok(consumer) => consumer,
            Err(IngestError::ShuttingDown) => return,
        };
        let _running = Running::start(&self.health);
        info!(group = %self.config.group, "ingest running");
        let mut lag_refreshed: Option<Instant> = None;
        let mut rejoin = self.step_retry();
        let mut requests = self.barrier.requests();
        let mut answered = 0;
        loop {
            if lag_refreshed.is_none_or(|at| at.elapsed() >= self.config.lag_refresh) {
                tokio::select! {
                    () = self.refresh_lag(&mut consumer) => {}
                    () = shutdown_requested(&mut shutdown) => break,
                }
                lag_refreshed = Some(Instant::now());
            }
            // Barrier requests made before this poll are answered once it reaches the log's
            // end; while one waits, the poll does not wait for records.
            let asked = *requests.borrow_and_update();
            let wait = if asked > answered {
                Duration::ZERO
            } else {
                self.config.poll_wait
            };
            // Polling is abandoned on shutdown, or for a barrier request (only the embedded
            // log's consumer, which can be dropped mid-poll, has readers waiting): nothing of
            // it is in hand yet.
            let polled_at = tokio::time::Instant::now();
            let polled = tokio::select! {
                polled = consumer.poll(self.config.max_batch.max(1), wait) => polled,
                _ = requests.changed() => continue,
                () = shutdown_requested(&mut shutdown) => break,
            };
            let records = match polled {
                Ok(records) => records,
                Err(error) => match self
                    .recover(&mut consumer, &error, &mut rejoin, &mut shutdown)
                    .await
                {
                    Ok(()) => continue,
                    Err(IngestError::ShuttingDown) => break,
                },
            };
            if records.is_empty() {
                self.barrier.serve(asked);
                answered = asked;
                continue;
            }
            self.health.clear_stalled();
            rejoin.backoff.reset();
            let batch_len = records.len();
            // The batch in hand is finished even when shutdown is requested meanwhile, unless
            // one of its steps fails after that.
            if let Err(IngestError::ShuttingDown) = self
                .process(&mut consumer, records, Some(&mut shutdown))
                .await
            {
                warn!(group = %self.config.group, "ingest stopped with a batch uncommitted");
                break;
            }
            if batch_len < self.config.max_batch.max(1) {
                // The poll reached the log's end.
                self.barrier.serve(asked);
                answered = asked;
                tokio::select! {
                    () = tokio::time::sleep_until(polled_at + self.config.linger) => {}
                    _ = requests.changed() => {}
                    () = shutdown_requested(&mut shutdown) => break,
                }
            }
        }
        info!(group = %self.config.group, "ingest stopped");
    }

    /// Refreshes the lag gauge; nothing left to consume ends a reported stall.
    async fn refresh_lag(&self, consumer: &mut Box<dyn LogConsumer>) {
        if let Some(assigned) = consumer.assigned_partitions() {
            self.metrics
                .assigned_partitions
                .set(i64::try_from(assigned).unwrap_or(i64::MAX));
        }
        match consumer.lag().await {
            Ok(lags) => {
                self.metrics.set_lag(&lags);
                if lags.iter().all(|(_, _, records)| *records == 0) {
                    self.health.clear_stalled();
                }
            }
            Err(error) => debug!(error = %error, "consumer lag unknown"),
        }
    }

    /// After a failed poll (see the module docs): a malformed record is set aside; another
    /// corrupt record is skipped by polling the same consumer again; anything else reports the stall and re-joins the group with a new
    /// consumer after `rejoin`'s backoff.
    async fn recover(
        &self,
        consumer: &mut Box<dyn LogConsumer>,
        error: &PortError,
        rejoin: &mut StepRetry<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        if matches!(error, PortError::Corrupt { .. }) {
            if self
                .set_aside_poisoned(consumer, Some(&mut *shutdown))
                .await?
            {
                return Ok(());
            }
            return rejoin.wait("poll", error, Some(shutdown)).await;
        }
        self.health.set_stalled(error.to_string());
        rejoin
            .wait("poll, re-joining", error, Some(shutdown))
            .await?;
        // The old member leaves the group when it is replaced, before the new one is polled.
        *consumer = self.open_consumer(Some(shutdown)).await?;
        info!(group = %self.config.group, "ingest re-joined its consumer group");
        Ok(())
    }

    async fn open_consumer(
        &self,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<Box<dyn LogConsumer>, IngestError> {
        let topics = ingest_topics();
        let mut retry = self.step_retry();
        loop {
            match self.log.consumer(&self.config.group, &topics).await {
                Ok(consumer) => return Ok(consumer),
                Err(error) => {
                    retry
                        .wait("open consumer", &error, shutdown.as_deref_mut())
                        .await?
                }
            }
        }
    }

    async fn poll(
        &self,
        consumer: &mut Box<dyn LogConsumer>,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<Vec<LogRecord>, IngestError> {
        let max = self.config.max_batch.max(1);
        let mut retry = self.step_retry();
        loop {
            match consumer.poll(max, self.config.poll_wait).await {
                Ok(records) => return Ok(records),
                Err(error) => {
                    if !self
                        .set_aside_poisoned(consumer, shutdown.as_deref_mut())
                        .await?
                    {
                        retry.wait("poll", &error, shutdown.as_deref_mut()).await?;
                    }
                }
            }
        }
    }

    /// After a poll failed: when the consumer hands over a malformed record, sets it aside,
    /// commits past it and returns `true` (see the module docs); else `false`.
    async fn set_aside_poisoned(
        &self,
        consumer: &mut Box<dyn LogConsumer>,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<bool, IngestError> {
        let Some(poisoned) = consumer.take_poisoned() else {
            return Ok(false);
        };
        let mut retry = self.step_retry();
        while let Err(error) = self.log.set_aside(&poisoned).await {
            retry
                .wait(
                    "set aside a malformed record",
                    &error,
                    shutdown.as_deref_mut(),
                )
                .await?;
        }
        self.commit(consumer, &[poisoned.position], shutdown)
            .await?;
        IngestMetrics::add(&self.metrics.dead_letters, 1);
        error!(
            topic = %poisoned.topic,
            partition = poisoned.partition,
            offset = poisoned.offset,
            payload_bytes = poisoned.payload.len(),
            problem = %poisoned.problem,
            "malformed log record set aside in the dead-letter topic"
        );
        Ok(true)
    }

    /// Commits `positions`, retrying until it succeeds.
    async fn commit(
        &self,
        consumer: &mut Box<dyn LogConsumer>,
        positions: &[LogPosition],
        mut shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<(), IngestError> {
        let mut retry = self.step_retry();
        while let Err(error) = consumer.commit(positions).await {
            retry
                .wait("commit", &error, shutdown.as_deref_mut())
                .await?;
        }
        Ok(())
    }

    async fn process(
        &self,
        consumer: &mut Box<dyn LogConsumer>,
        records: Vec<LogRecord>,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<(), IngestError> {
        let writes: Vec<StoreWrite> = records
            .iter()
            .filter_map(|record| store_write(&record.event))
            .collect();
        // Each acknowledgment with the time its message was accepted.
        let (acks, accepted_at): (Vec<LogEvent>, Vec<Timestamp>) = records
            .iter()
            .filter_map(|record| stored_ack(&record.event).map(|ack| (ack, record.event.at)))
            .unzip();
        let positions = highest_positions(&records);

        if !writes.is_empty() {
            let mut retry = self.step_retry();
            loop {
                let started = Instant::now();
                let applied = self.store.apply(writes.clone()).await;
                self.metrics
                    .write_seconds
                    .observe(started.elapsed().as_secs_f64());
                let Err(error) = applied else { break };
                retry
                    .wait("store apply", &error, shutdown.as_deref_mut())
                    .await?;
            }
        }
        if !acks.is_empty() {
            let mut retry = self.step_retry();
            loop {
                let started = Instant::now();
                let appended = self.log.append(acks.clone()).await;
                self.metrics
                    .ack_append_seconds
                    .observe(started.elapsed().as_secs_f64());
                let Err(error) = appended else { break };
                retry
                    .wait("append stored acks", &error, shutdown.as_deref_mut())
                    .await?;
            }
            self.observe_stored_latency(&accepted_at);
        }
        self.commit(consumer, &positions, shutdown).await?;

        IngestMetrics::add(&self.metrics.batches, 1);
        self.metrics.batch_size.observe(records.len() as f64);
        IngestMetrics::add(&self.metrics.events_consumed, records.len() as u64);
        IngestMetrics::add(&self.metrics.events_applied, writes.len() as u64);
        IngestMetrics::add(&self.metrics.acks_emitted, acks.len() as u64);
        debug!(
            records = records.len(),
            writes = writes.len(),
            acks = acks.len(),
            "ingest batch committed"
        );
        Ok(())
    }

    /// `parley_ingest_message_stored_latency_seconds`, once per acknowledged message (a clock
    /// behind the node's counts as zero).
    fn observe_stored_latency(&self, accepted_at: &[Timestamp]) {
        let now = chrono::Utc::now();
        for accepted in accepted_at {
            let latency = (now - *accepted).to_std().unwrap_or_default();
            self.metrics
                .message_stored_latency_seconds
                .observe(latency.as_secs_f64());
        }
    }

    fn step_retry(&self) -> StepRetry<'_> {
        StepRetry {
            backoff: Backoff::new(self.config.initial_backoff, self.config.max_backoff),
            metrics: &self.metrics,
        }
    }
}

/// Marks the consumer running while alive (also when `run`'s future is dropped mid-way).
struct Running<'a>(&'a ConsumerHealth);

impl<'a> Running<'a> {
    fn start(health: &'a ConsumerHealth) -> Self {
        health.set_running(true);
        Self(health)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.set_running(false);
    }
}

/// The pauses between attempts of one step: capped exponential [`Backoff`], each failure
/// counted and logged.
struct StepRetry<'a> {
    backoff: Backoff,
    metrics: &'a IngestMetrics,
}

impl StepRetry<'_> {
    /// Records a failed attempt and sleeps before the next one; fails only when shutdown is
    /// requested meanwhile.
    async fn wait(
        &mut self,
        operation: &'static str,
        error: &PortError,
        shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<(), IngestError> {
        IngestMetrics::add(&self.metrics.retries, 1);
        let delay = self.backoff.next_delay();
        warn!(
            operation,
            error = %error,
            backoff_ms = delay.as_millis() as u64,
            "ingest step failed, retrying"
        );
        match shutdown {
            Some(shutdown) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => Ok(()),
                    () = shutdown_requested(shutdown) => Err(IngestError::ShuttingDown),
                }
            }
            None => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

/// The highest position of each partition among `records`.
fn highest_positions(records: &[LogRecord]) -> Vec<LogPosition> {
    let mut highest: BTreeMap<u32, u64> = BTreeMap::new();
    for record in records {
        let offset = highest.entry(record.position.partition).or_default();
        *offset = (*offset).max(record.position.offset);
    }
    highest
        .into_iter()
        .map(|(partition, offset)| LogPosition { partition, offset })
        .collect()
}

/// Resolves once shutdown is requested, or once nobody can request it any more.
pub(crate) async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_can_be_spawned() {
        // Only type-checked: the server spawns `run` on a multi-threaded runtime.
        fn check(pipeline: IngestPipeline, shutdown: watch::Receiver<bool>) {
            assert_send(&pipeline.run(shutdown));
        }
        let _ = check;
    }
}
