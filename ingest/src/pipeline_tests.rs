//! How [`IngestPipeline::run`] stops: the batch in hand is finished when its steps succeed, and
//! abandoned (uncommitted) only while a step is failing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ports::contract::fixtures::sent_event;
use ports::contract::{ApplyHook, HookedStore};
use ports::{EventLog, PortError, Service, Store};
use tokio::sync::{watch, Notify};
use wire::log::{topics, LogEventBody};
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
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log.redb")).expect("open log"));
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
    let consuming = pipeline.consuming();
    let (shutdown, shutdown_signal) = watch::channel(false);
    let running = tokio::spawn(pipeline.run(shutdown_signal));

    entered.notified().await;
    assert!(consuming.load(Ordering::Acquire), "the loop runs");
    shutdown.send_replace(true);
    release.notify_one();
    tokio::time::timeout(STOPS_WITHIN, running)
        .await
        .expect("ingest stops after the batch")
        .expect("ingest task");

    assert!(!consuming.load(Ordering::Acquire), "the loop stopped");
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
