//! [`AuditIngest`]: the audit topic into MongoDB's `audit` collection (durable cluster mode).
//!
//! The nodes append their audit records to the audit topic (`audit`, prefixed; see
//! `persistence::kafka::audit`). This loop, next to the [`IngestPipeline`](crate::IngestPipeline)
//! in the `ingest` binary, consumes it in a group of its own (`<ingest.group>.audit`):
//! poll → append every record to the audit log (MongoDB: an upsert by record id, so a record
//! delivered twice is stored once) → commit the positions. Positions are committed only after
//! the writes, so a crash re-consumes the batch. A failing write or commit is retried with
//! capped exponential backoff, never skipped.
//!
//! A record that is not an audit record is set aside in the dead-letter topic (like the
//! pipeline's malformed records) and committed past: the records after it go on. Any other
//! failed poll (a stalled group, a missing topic, an error librdkafka cannot recover from)
//! reports the stall through [`ConsumerHealth`] (`/readyz` answers not ready) and re-joins the
//! group with a new consumer after a backoff.

use std::sync::Arc;
use std::time::Instant;

use persistence::kafka::{KafkaConsumer, KafkaLog};
use ports::{AuditLog, AuditRecord, Backoff, ConsumerHealth, EventLog, LogPosition, PortError};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::pipeline::{shutdown_requested, IngestConfig, IngestError};

/// The audit consumer's group: the ingest group's name with this suffix.
pub const AUDIT_GROUP_SUFFIX: &str = ".audit";

/// `parley_ingest_audit_*`: what the audit consumer did.
#[derive(Debug, Clone)]
pub struct AuditIngestMetrics {
    /// Audit records written to MongoDB and committed.
    pub records: IntCounter,
    /// Malformed records of the audit topic set aside in the dead-letter topic.
    pub dead_letters: IntCounter,
    /// Failed steps (write, commit, dead letter, poll) retried.
    pub retries: IntCounter,
    /// Records of the audit topic past the group's committed positions (all partitions).
    pub lag: IntGauge,
}

impl Default for AuditIngestMetrics {
    fn default() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        Self {
            records: counter(
                "parley_ingest_audit_records_total",
                "audit records ingest wrote to MongoDB and committed",
            ),
            dead_letters: counter(
                "parley_ingest_audit_dead_letters_total",
                "malformed records of the audit topic set aside in the dead-letter topic",
            ),
            retries: counter(
                "parley_ingest_audit_retries_total",
                "audit consumer steps retried after a failure",
            ),
            lag: IntGauge::new(
                "parley_ingest_audit_lag",
                "records of the audit topic past the audit group's committed positions",
            )
            .expect("valid metric"),
        }
    }
}

impl AuditIngestMetrics {
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.records.clone()))?;
        registry.register(Box::new(self.dead_letters.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.lag.clone()))
    }
}

/// The audit topic → the audit log (see the module docs).
pub struct AuditIngest {
    log: Arc<KafkaLog>,
    audit: Arc<dyn AuditLog>,
    group: String,
    config: IngestConfig,
    metrics: AuditIngestMetrics,
    health: Arc<ConsumerHealth>,
}

type AuditConsumer = KafkaConsumer<AuditRecord>;

impl AuditIngest {
    /// Consumes `log`'s audit topic into `audit` (MongoDB), in the group
    /// `config.group` + [`AUDIT_GROUP_SUFFIX`], with `config`'s batch size, waits and backoff.
    pub fn new(log: Arc<KafkaLog>, audit: Arc<dyn AuditLog>, config: IngestConfig) -> Self {
        Self {
            log,
            audit,
            group: format!("{}{AUDIT_GROUP_SUFFIX}", config.group),
            config,
            metrics: AuditIngestMetrics::default(),
            health: Arc::new(ConsumerHealth::default()),
        }
    }

    pub fn metrics(&self) -> &AuditIngestMetrics {
        &self.metrics
    }

    /// Whether [`AuditIngest::run`] has a consumer that makes progress (for `/readyz`).
    pub fn consumer_health(&self) -> Arc<ConsumerHealth> {
        Arc::clone(&self.health)
    }

    /// Runs until `shutdown` turns true; a batch in hand is finished unless one of its steps
    /// fails after that (it is then consumed again by the next run).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Ok(mut consumer) = self.open_consumer(&mut shutdown).await else {
            return;
        };
        self.health.set_running(true);
        info!(group = %self.group, "audit ingest running");
        let mut lag_refreshed: Option<Instant> = None;
        let mut rejoin = Backoff::new(self.config.initial_backoff, self.config.max_backoff);
        loop {
            if lag_refreshed.is_none_or(|at| at.elapsed() >= self.config.lag_refresh) {
                tokio::select! {
                    () = self.refresh_lag(&mut consumer) => {}
                    () = shutdown_requested(&mut shutdown) => break,
                }
                lag_refreshed = Some(Instant::now());
            }
            let polled = tokio::select! {
                polled = consumer.poll_decoded(self.config.max_batch.max(1), self.config.poll_wait) => polled,
                () = shutdown_requested(&mut shutdown) => break,
            };
            let handled = match polled {
                Ok(records) if records.is_empty() => Ok(()),
                Ok(records) => {
                    self.health.clear_stalled();
                    rejoin.reset();
                    self.store(&mut consumer, records, &mut shutdown).await
                }
                Err(error) => {
                    self.recover(&mut consumer, error, &mut rejoin, &mut shutdown)
                        .await
                }
            };
            if handled.is_err() {
                break;
            }
        }
        self.health.set_running(false);
        info!(group = %self.group, "audit ingest stopped");
    }

    async fn open_consumer(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<AuditConsumer, IngestError> {
        self.until_done("open the audit consumer", shutdown, || async {
            self.log.audit_consumer(&self.group)
        })
        .await
    }

    /// Writes `records`, then commits their positions.
    async fn store(
        &self,
        consumer: &mut AuditConsumer,
        records: Vec<(LogPosition, AuditRecord)>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        let positions: Vec<LogPosition> = records.iter().map(|(position, _)| *position).collect();
        for (_, record) in &records {
            self.until_done("write an audit record", shutdown, || {
                self.audit.append(record.clone())
            })
            .await?;
        }
        self.commit(consumer, &positions, shutdown).await?;
        self.metrics.records.inc_by(records.len() as u64);
        debug!(
            records = records.len(),
            "audit records stored and committed"
        );
        Ok(())
    }

    async fn commit(
        &self,
        consumer: &mut AuditConsumer,
        positions: &[LogPosition],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        let mut backoff = self.backoff();
        while let Err(error) = consumer.commit_offsets(positions).await {
            self.pause("commit audit positions", &error, &mut backoff, shutdown)
                .await?;
        }
        Ok(())
    }

    /// After a failed poll: a malformed record is set aside and committed past; anything else
    /// reports the stall and re-joins the group after `rejoin`'s backoff.
    async fn recover(
        &self,
        consumer: &mut AuditConsumer,
        error: PortError,
        rejoin: &mut Backoff,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        if let Some(poisoned) = consumer.take_malformed() {
            self.until_done("set aside a malformed audit record", shutdown, || {
                self.log.set_aside(&poisoned)
            })
            .await?;
            self.commit(consumer, &[poisoned.position], shutdown)
                .await?;
            self.metrics.dead_letters.inc();
            error!(
                topic = %poisoned.topic,
                partition = poisoned.partition,
                offset = poisoned.offset,
                problem = %poisoned.problem,
                "malformed audit record set aside in the dead-letter topic"
            );
            return Ok(());
        }
        if matches!(error, PortError::Corrupt { .. }) {
            // Not a payload (e.g. a negative offset): the next poll goes on after it.
            return self
                .pause("poll audit records", &error, rejoin, shutdown)
                .await;
        }
        self.health.set_stalled(error.to_string());
        self.pause("poll audit records, re-joining", &error, rejoin, shutdown)
            .await?;
        *consumer = self.open_consumer(shutdown).await?;
        info!(group = %self.group, "audit ingest re-joined its consumer group");
        Ok(())
    }

    /// Refreshes the lag gauge; nothing left to consume ends a reported stall.
    async fn refresh_lag(&self, consumer: &mut AuditConsumer) {
        match consumer.partition_lag().await {
            Ok(lags) => {
                let total: u64 = lags.iter().map(|(_, _, records)| records).sum();
                self.metrics
                    .lag
                    .set(i64::try_from(total).unwrap_or(i64::MAX));
                if total == 0 {
                    self.health.clear_stalled();
                }
            }
            Err(error) => debug!(error = %error, "audit consumer lag unknown"),
        }
    }

    /// Calls `attempt` until it succeeds, pausing after each failure.
    async fn until_done<T, Attempt, Fut>(
        &self,
        step: &'static str,
        shutdown: &mut watch::Receiver<bool>,
        mut attempt: Attempt,
    ) -> Result<T, IngestError>
    where
        Attempt: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PortError>>,
    {
        let mut backoff = self.backoff();
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => self.pause(step, &error, &mut backoff, shutdown).await?,
            }
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.config.initial_backoff, self.config.max_backoff)
    }

    /// Counts and logs a failed `step`, then sleeps `backoff`'s next delay; fails only when
    /// shutdown is requested meanwhile.
    async fn pause(
        &self,
        step: &'static str,
        error: &PortError,
        backoff: &mut Backoff,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        self.metrics.retries.inc();
        let delay = backoff.next_delay();
        warn!(
            step,
            error = %error,
            backoff_ms = delay.as_millis() as u64,
            "audit ingest step failed, retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = shutdown_requested(shutdown) => Err(IngestError::ShuttingDown),
        }
    }
}
