//! The ingest pipeline over the embedded log and store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ingest::{IngestConfig, IngestPipeline};
use persistence::{EmbeddedLog, EmbeddedStore};
use ports::contract::fixtures::{at, conversation_record, log_event, message_record, sent_event};
use ports::contract::{ApplyHook, HookedStore};
use ports::{EventLog, MessageQuery, PortError, Service, Store, Watermarks};
use tokio::time::Instant;
use wire::log::{topics, LogEventBody};
use wire::{ClientMsgId, ConversationId, ConversationKind, Seq, UserId};

struct Node {
    log: Arc<EmbeddedLog>,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

fn node() -> Node {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = EmbeddedLog::open(&dir.path().join("log")).expect("open log");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store");
    Node {
        log: Arc::new(log),
        store: Arc::new(store),
        _dir: dir,
    }
}

fn fast_config() -> IngestConfig {
    IngestConfig {
        poll_wait: Duration::from_millis(20),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..IngestConfig::default()
    }
}

/// The `MessageStored` acknowledgments on the log, in order.
async fn stored_acks(log: &EmbeddedLog, expected: usize) -> Vec<Seq> {
    let mut consumer = log
        .consumer("test-server", &[topics::MESSAGE_DELIVERED])
        .await
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seqs = Vec::new();
    while seqs.len() < expected {
        assert!(Instant::now() < deadline, "acks missing: {seqs:?}");
        for record in consumer
            .poll(64, Duration::from_millis(100))
            .await
            .expect("poll")
        {
            match record.event.body {
                LogEventBody::MessageStored { seq, .. } => seqs.push(seq),
                other => panic!("unexpected event on message.delivered: {other:?}"),
            }
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_applies_the_whole_log_and_acknowledges_sends() {
    let node = node();
    let conversation_id = ConversationId::new("ingest-catch-up");
    let member = UserId::new("member");
    let mut edited = message_record(&conversation_id, 2, &member, 2, at(2));
    edited.message.text = "edited".to_owned();
    let mut events = vec![log_event(LogEventBody::ConversationUpdated {
        record: conversation_record(
            &conversation_id,
            ConversationKind::Group,
            &[&member],
            1,
            at(0),
        ),
    })];
    events.extend((1..=3).map(|seq| sent_event(&conversation_id, seq, &member)));
    events.push(log_event(LogEventBody::MessageEdited {
        record: edited.clone(),
    }));
    events.push(log_event(LogEventBody::ReceiptUpdated {
        conversation_id: conversation_id.clone(),
        user_id: member.clone(),
        delivered_seq: Seq(3),
        read_seq: Seq(2),
    }));
    node.log.append(events).await.expect("append");

    let log: Arc<dyn EventLog> = node.log.clone();
    let store: Arc<dyn Store> = node.store.clone();
    let pipeline = IngestPipeline::new(log, store, fast_config());
    assert_eq!(pipeline.catch_up().await, Ok(6));

    let stored = node
        .store
        .conversation(&conversation_id)
        .await
        .expect("read")
        .expect("conversation stored");
    assert_eq!(stored.last_seq, Seq(3));
    let messages = node
        .store
        .messages(
            &conversation_id,
            MessageQuery {
                after_seq: None,
                before_seq: None,
                limit: 10,
            },
        )
        .await
        .expect("read");
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1], edited, "the edit is applied after the send");
    assert_eq!(
        node.store
            .watermarks(&conversation_id, &member)
            .await
            .expect("read"),
        Watermarks {
            delivered_seq: Seq(3),
            read_seq: Seq(2)
        }
    );
    assert_eq!(
        stored_acks(&node.log, 3).await,
        vec![Seq(1), Seq(2), Seq(3)]
    );
    let metrics = pipeline.metrics().snapshot();
    assert_eq!(metrics.events_applied, 6);
    assert_eq!(metrics.acks_emitted, 3);
    assert_eq!(
        pipeline.catch_up().await,
        Ok(0),
        "everything was committed, acks are not consumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_acknowledges_new_sends_until_shutdown() {
    let node = node();
    let log: Arc<dyn EventLog> = node.log.clone();
    let store: Arc<dyn Store> = node.store.clone();
    let (shutdown, shutdown_signal) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(IngestPipeline::new(log, store, fast_config()).run(shutdown_signal));

    let conversation_id = ConversationId::new("ingest-run");
    let sender = UserId::new("sender");
    node.log
        .append(vec![sent_event(&conversation_id, 1, &sender)])
        .await
        .expect("append");
    assert_eq!(stored_acks(&node.log, 1).await, vec![Seq(1)]);

    shutdown.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("ingest stops on shutdown")
        .expect("ingest task");
}

/// Makes the first `failures` applies of a [`HookedStore`] fail as unavailable.
struct Flaky {
    failures: AtomicU32,
}

#[async_trait]
impl ApplyHook for Flaky {
    async fn before_apply(&self) -> Result<(), PortError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(PortError::unavailable(Service::InProcess, "flaky store"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_is_retried_not_skipped() {
    let node = node();
    let conversation_id = ConversationId::new("ingest-retry");
    let sender = UserId::new("sender");
    node.log
        .append(
            (1..=2)
                .map(|seq| sent_event(&conversation_id, seq, &sender))
                .collect(),
        )
        .await
        .expect("append");
    let flaky = Arc::new(HookedStore {
        inner: node.store.clone(),
        hook: Flaky {
            failures: AtomicU32::new(3),
        },
    });
    let log: Arc<dyn EventLog> = node.log.clone();
    let store: Arc<dyn Store> = flaky.clone();
    let pipeline = IngestPipeline::new(log, store, fast_config());
    assert_eq!(pipeline.catch_up().await, Ok(2));
    assert_eq!(flaky.hook.failures.load(Ordering::SeqCst), 0);
    assert_eq!(pipeline.metrics().snapshot().retries, 3);
    let stored = node
        .store
        .conversation(&conversation_id)
        .await
        .expect("read");
    assert!(stored.is_none(), "no conversation record was logged");
    let message = node
        .store
        .message_by_client_id(&conversation_id, &sender, &ClientMsgId::new("client-2"))
        .await
        .expect("read");
    assert!(message.is_some(), "the retried batch reached the store");
    assert_eq!(stored_acks(&node.log, 2).await, vec![Seq(1), Seq(2)]);
}
