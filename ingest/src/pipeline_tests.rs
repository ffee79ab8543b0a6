//! How [`IngestPipeline::run`] stops: the batch in hand is finished when its steps succeed, and
//! abandoned (uncommitted) only while a step is failing; and how it replaces a consumer whose
//! group stalled.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ports::contract::fixtures::sent_event;
use ports::contract::{ApplyHook, HookedStore};
use ports::{EventLog, LogConsumer, LogPosition, LogRecord, PortError, Service, Store};
use tokio::sync::{watch, Notify};
use wire::log::{topics, LogEvent, LogEventBody};
use wire::{ConversationId, UserId};

use persistence::{EmbeddedLog, EmbeddedStore};

use crate::{IngestConfig, IngestPipeline};

/// Safety net for awaiting a stop that must happen; never a timing assertion.
const STOPS_WITHIN: Duration = Duration::from_secs(20);

fn fast_config() -> IngestConfig {
    IngestConfig {
        poll_wait: Duration::from_millis(20),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..IngestConfig::default()
    }
}

enum Behaviour {
    /// Each apply announces itself on `entered`, then waits for `release`.
    Gated { entered: Notify, release: Notify },
    /// Each apply fails and announces the failure on `failed`.
    Failing { failed: Notify },
}

#[async_trait]
impl ApplyHook for Behaviour {
    async fn before_apply(&self) -> Result<(), PortError> {
        match self {
            Behaviour::Gated { entered, release } => {
                entered.notify_one();
                release.notified().await;
                Ok(())
            }
            Behaviour::Failing { failed } => {
                failed.notify_one();
                Err(PortError::unavailable(
                    Service::InProcess,
                    "store down for the test",
                ))
            }
        }
    }
}

/// The embedded store with a controllable `apply`.
type ControlledStore = HookedStore<Behaviour>;

struct Node {
    log: Arc<EmbeddedLog>,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

/// A log holding one sent message, and an empty store.
async fn node_with_one_send() -> Node {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("open log"));
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store"));
    log.append(vec![sent_event(
        &ConversationId::new("shutdown"),
        1,
        &UserId::new("sender"),
    )])
    .await
    .expect("append");
    Node {
        log,
        store,
        _dir: dir,
    }
}

/// How many records the group still has to ingest (a plain pipeline over the real store).
async fn uncommitted(node: &Node) -> u64 {
    let log: Arc<dyn EventLog> = node.log.clone();
    let store: Arc<dyn Store> = node.store.clone();
    IngestPipeline::new(log, store, fast_config())
        .catch_up()
        .await
        .expect("catch up")
}

async fn stored_acks(log: &EmbeddedLog) -> usize {
    let mut consumer = log
        .consumer("test-acks", &[topics::MESSAGE_DELIVERED])
        .await
        .expect("consumer");
    let records = consumer
        .poll(16, Duration::from_millis(100))
        .await
        .expect("poll");
    records
        .iter()
        .filter(|record| matches!(record.event.body, LogEventBody::MessageStored { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_batch_finishes_and_commits_it() {
    let node = node_with_one_send().await;
    let controlled = Arc::new(ControlledStore {
        inner: node.store.clone(),
        hook: Behaviour::Gated {
            entered: Notify::new(),
            release: Notify::new(),
        },
    });
    let Behaviour::Gated { entered, release } = &controlled.hook else {
        unreachable!("built gated")
    };
    let log: Arc<dyn EventLog> = node.log.clone();
    let store: Arc<dyn Store> = controlled.clone();
    let pipeline = IngestPipeline::new(log, store, fast_config());
    let consumer = pipeline.consumer_health();
    let (shutdown, shutdown_signal) = watch::channel(false);
    let running = tokio::spawn(pipeline.run(shutdown_signal));

    entered.notified().await;
    assert_eq!(consumer.problem(), None, "the loop runs");
    shutdown.send_replace(true);
    release.notify_one();
    tokio::time::timeout(STOPS_WITHIN, running)
        .await
        .expect("ingest stops after the batch")
        .expect("ingest task");

    assert_eq!(
        consumer.problem().as_deref(),
        Some("consumer not running"),
        "the loop stopped"
    );
    assert_eq!(
        stored_acks(&node.log).await,
        1,
        "the batch's ack was appended"
    );
    assert_eq!(uncommitted(&node).await, 0, "the batch was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_a_step_fails_leaves_the_batch_uncommitted() {
    let node = node_with_one_send().await;
    let controlled = Arc::new(ControlledStore {
        inner: node.store.clone(),
        hook: Behaviour::Failing {
            failed: Notify::new(),
        },
    });
    let Behaviour::Failing { failed } = &controlled.hook else {
        unreachable!("built failing")
    };
    let log: Arc<dyn EventLog> = node.log.clone();
    let store: Arc<dyn Store> = controlled.clone();
    let pipeline = IngestPipeline::new(log, store, fast_config());
    let metrics = pipeline.metrics();
    let (shutdown, shutdown_signal) = watch::channel(false);
    let running = tokio::spawn(pipeline.run(shutdown_signal));

    failed.notified().await;
    shutdown.send_replace(true);
    tokio::time::timeout(STOPS_WITHIN, running)
        .await
        .expect("ingest stops while the store fails")
        .expect("ingest task");

    assert_eq!(metrics.snapshot().batches, 0);
    assert!(metrics.snapshot().retries >= 1);
    assert_eq!(stored_acks(&node.log).await, 0);
    assert_eq!(uncommitted(&node).await, 1, "the batch is consumed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_measured() {
    let node = node_with_one_send().await;
    let log: Arc<dyn EventLog> = node.log.clone();
    let store: Arc<dyn Store> = node.store.clone();
    let pipeline = IngestPipeline::new(log, store, fast_config());
    assert_eq!(pipeline.catch_up().await, Ok(1));
    let metrics = pipeline.metrics();
    assert_eq!(metrics.batch_size.get_sample_count(), 1);
    assert_eq!(metrics.batch_size.get_sample_sum(), 1.0);
    assert_eq!(metrics.write_seconds.get_sample_count(), 1);
    assert_eq!(metrics.ack_append_seconds.get_sample_count(), 1);
}

/// A log whose first consumer finds its group stalled (as a Kafka consumer reports a group left
/// with an empty assignment); the consumers opened after it are the embedded log's. The second
/// opening announces itself on `rejoining` and waits for `release`.
struct StallingLog {
    inner: Arc<EmbeddedLog>,
    opened: AtomicU32,
    rejoining: Notify,
    release: Notify,
}

struct StalledConsumer;

const STALLED: &str = "consume: consumer group stalled: 1 records behind on message.sent/0 \
                       with no commit for 60s (no partitions assigned to this member)";

#[async_trait]
impl LogConsumer for StalledConsumer {
    async fn poll(&mut self, _max: usize, _wait: Duration) -> Result<Vec<LogRecord>, PortError> {
        Err(PortError::unavailable(Service::Kafka, STALLED))
    }

    async fn commit(&mut self, _positions: &[LogPosition]) -> Result<(), PortError> {
        Ok(())
    }
}

#[async_trait]
impl EventLog for StallingLog {
    async fn append(&self, events: Vec<LogEvent>) -> Result<(), PortError> {
        self.inner.append(events).await
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn LogConsumer>, PortError> {
        match self.opened.fetch_add(1, Ordering::SeqCst) {
            0 => Ok(Box::new(StalledConsumer)),
            1 => {
                self.rejoining.notify_one();
                self.release.notified().await;
                self.inner.consumer(group, topics).await
            }
            _ => self.inner.consumer(group, topics).await,
        }
    }

    async fn is_ready(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_is_reported_and_replaced_by_a_new_member() {
    let node = node_with_one_send().await;
    let stalling = Arc::new(StallingLog {
        inner: node.log.clone(),
        opened: AtomicU32::new(0),
        rejoining: Notify::new(),
        release: Notify::new(),
    });
    let log: Arc<dyn EventLog> = stalling.clone();
    let store: Arc<dyn Store> = node.store.clone();
    let pipeline = IngestPipeline::new(log, store, fast_config());
    let consumer = pipeline.consumer_health();
    let (shutdown, shutdown_signal) = watch::channel(false);
    let running = tokio::spawn(pipeline.run(shutdown_signal));

    tokio::time::timeout(STOPS_WITHIN, stalling.rejoining.notified())
        .await
        .expect("the pipeline re-joins with a new consumer");
    let problem = consumer.problem().expect("a stalled consumer is not ready");
    assert!(problem.contains(STALLED), "{problem}");

    stalling.release.notify_one();
    // The new member consumes the record the stalled one never got.
    let deadline = tokio::time::Instant::now() + STOPS_WITHIN;
    while stored_acks(&node.log).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never consumed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = tokio::time::Instant::now() + STOPS_WITHIN;
    while consumer.problem().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the stall is over");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.send_replace(true);
    tokio::time::timeout(STOPS_WITHIN, running)
        .await
        .expect("ingest stops")
        .expect("ingest task");
    assert_eq!(stalling.opened.load(Ordering::SeqCst), 2);
    assert_eq!(uncommitted(&node).await, 0, "the new member committed");
}

/// Waits (up to [`STOPS_WITHIN`]) until the pipeline has consumed `count` records.
async fn consumed(metrics: &crate::IngestMetrics, count: u64) {
    tokio::time::timeout(STOPS_WITHIN, async {
        while metrics.snapshot().events_consumed < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the records are consumed");
}

/// A pipeline over `node` that lingers `linger`, running until [`Lingering::stop`].
struct Lingering {
    metrics: Arc<crate::IngestMetrics>,
    barrier: crate::IngestBarrier,
    shutdown: watch::Sender<bool>,
    running: tokio::task::JoinHandle<()>,
}

impl Lingering {
    fn start(node: &Node, linger: Duration) -> Self {
        let log: Arc<dyn EventLog> = node.log.clone();
        let store: Arc<dyn Store> = node.store.clone();
        let config = IngestConfig {
            linger,
            ..fast_config()
        };
        let pipeline = IngestPipeline::new(log, store, config);
        let (metrics, barrier) = (pipeline.metrics(), pipeline.barrier());
        let (shutdown, shutdown_signal) = watch::channel(false);
        let running = tokio::spawn(pipeline.run(shutdown_signal));
        Self {
            metrics,
            barrier,
            shutdown,
            running,
        }
    }

    async fn stop(self) {
        self.shutdown.send_replace(true);
        tokio::time::timeout(STOPS_WITHIN, self.running)
            .await
            .expect("ingest stops while it lingers")
            .expect("ingest task");
    }
}

/// Appends send `seq` of the conversation `node_with_one_send` started, as a group of its own
/// (which wakes a waiting consumer).
async fn append_send(node: &Node, seq: u64) {
    let event = sent_event(
        &ConversationId::new("shutdown"),
        seq,
        &UserId::new("sender"),
    );
    node.log.append(vec![event]).await.expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arriving_while_it_lingers_go_in_one_batch() {
    let node = node_with_one_send().await;
    let ingest = Lingering::start(&node, Duration::from_secs(3));

    consumed(&ingest.metrics, 1).await;
    for seq in 2..=5 {
        append_send(&node, seq).await;
    }
    consumed(&ingest.metrics, 5).await;

    assert_eq!(
        ingest.metrics.snapshot().batches,
        2,
        "the first record at once, the four appended while it lingered together"
    );
    assert_eq!(stored_acks(&node.log).await, 5);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_returns_once_what_the_log_held_is_written_even_while_it_lingers() {
    let node = node_with_one_send().await;
    let ingest = Lingering::start(&node, Duration::from_secs(600));

    consumed(&ingest.metrics, 1).await;
    append_send(&node, 2).await;
    // Lingering for ten minutes: only the barrier makes ingest poll again now.
    tokio::time::timeout(STOPS_WITHIN, ingest.barrier.wait())
        .await
        .expect("the barrier cuts the linger short");
    assert_eq!(ingest.metrics.snapshot().events_consumed, 2);
    let stored = node
        .store
        .message(
            &ConversationId::new("shutdown"),
            &wire::MessageId::new("shutdown-m2"),
        )
        .await
        .expect("read");
    assert!(stored.is_some(), "the second send is in the store");

    tokio::time::timeout(STOPS_WITHIN, ingest.barrier.wait())
        .await
        .expect("a barrier with nothing new to write returns too");
    ingest.stop().await;
}
