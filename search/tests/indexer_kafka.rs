//! The indexer over a real Kafka log (a private Tansu) meets records that are not log events
//! (a broken producer): it indexes every good record, commits past the bad ones (counted in
//! `parley_search_malformed_records_total`), and its lag returns to 0, also when a bad record
//! is the last of its partition.

#[allow(dead_code)]
#[path = "../../persistence/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tansu::{produce_raw, TansuBroker};
use persistence::kafka::{KafkaConfig, KafkaLog};
use ports::contract::fixtures::{sent_event, unique};
use ports::{EventLog, SearchQuery, SearchReader};
use search::{Indexer, IndexerConfig, TantivyIndex};
use wire::log::{topics, LogEventBody};
use wire::{ConversationId, UserId};

const PATIENCE: Duration = Duration::from_secs(40);

/// A sent message of `conversation` at `seq` saying `text`.
fn saying(conversation: &ConversationId, seq: u64, text: &str) -> wire::log::LogEvent {
    let mut event = sent_event(conversation, seq, &UserId::new("sender"));
    if let LogEventBody::MessageSent { record } = &mut event.body {
        record.message.text = text.to_owned();
    }
    event
}

async fn hits(index: &TantivyIndex, text: &str, conversation: &ConversationId) -> usize {
    let query = SearchQuery {
        text: text.to_owned(),
        conversations: vec![conversation.clone()],
        limit: 10,
        after: None,
    };
    index.search(query).await.map_or(0, |page| page.hits.len())
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_committed_past_and_the_lag_returns_to_zero() {
    let broker = TansuBroker::start();
    let brokers = broker.brokers();
    let config = KafkaConfig::new(brokers.clone())
        .with_client_id(unique("search-test"))
        .with_max_batch_records(1)
        .with_session_timeout(Duration::from_secs(6));
    let log = Arc::new(KafkaLog::new(config).expect("kafka log"));
    eventually("topics created", async || {
        log.ensure_topics(1, 1).await.is_ok()
    })
    .await;
    let conversation = ConversationId::new(unique("c"));
    let key = conversation.as_str().to_owned();
    log.append(vec![saying(&conversation, 1, "before the poison")])
        .await
        .expect("append");
    produce_raw(&brokers, topics::MESSAGE_SENT, &key, b"{not a log event").await;
    log.append(vec![saying(&conversation, 2, "after the poison")])
        .await
        .expect("append");
    produce_raw(&brokers, topics::MESSAGE_SENT, &key, b"[]").await;

    let directory = tempfile::tempdir().expect("index directory");
    let index = Arc::new(TantivyIndex::open(directory.path(), 32_000_000).expect("index"));
    let config = IndexerConfig {
        group: unique("search-poison"),
        ..IndexerConfig::default()
    };
    let indexer = Indexer::new(log.clone(), index.clone(), config);
    let metrics = indexer.metrics();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(indexer.run(stopped));

    eventually("both good records indexed", async || {
        hits(&index, "poison", &conversation).await == 2
    })
    .await;
    eventually("both bad records skipped", async || {
        metrics.malformed_records.get() == 2
    })
    .await;
    eventually("no lag left", async || metrics.lag_events.get() == 0).await;
    stop.send_replace(true);
    task.await.expect("indexer stops");
}
