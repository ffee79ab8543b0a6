//! The indexer over a real embedded log and a real Tantivy index: it indexes what is appended
//! (and applies erasures), commits its own position, and a restarted indexer resumes after it
//! without duplicates.

use std::sync::Arc;
use std::time::Duration;

use persistence::EmbeddedLog;
use ports::contract::fixtures::{at, log_event, message_record};
use ports::{EventLog, SearchQuery, SearchReader};
use search::{Indexer, IndexerConfig, IndexerMetrics, TantivyIndex};
use tokio::sync::watch;
use wire::log::LogEventBody;
use wire::{ConversationId, UserId};

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: IndexerMetrics,
}

fn start(log: &Arc<EmbeddedLog>, index: &Arc<TantivyIndex>) -> Running {
    start_with(log, index, IndexerConfig::default())
}

fn start_with(log: &Arc<EmbeddedLog>, index: &Arc<TantivyIndex>, config: IndexerConfig) -> Running {
    let indexer = Indexer::new(log.clone(), index.clone(), config);
    let metrics = indexer.metrics();
    let (stop, stopped) = watch::channel(false);
    Running {
        stop,
        task: tokio::spawn(indexer.run(stopped)),
        metrics,
    }
}

async fn hits(index: &TantivyIndex, text: &str, conversation: &ConversationId) -> usize {
    let query = SearchQuery {
        text: text.to_owned(),
        conversations: vec![conversation.clone()],
        limit: 50,
        after: None,
    };
    index.search(query).await.expect("search").hits.len()
}

async fn wait_for_hits(
    index: &TantivyIndex,
    text: &str,
    conversation: &ConversationId,
    want: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while hits(index, text, conversation).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{want} hits for {text:?} within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text_event(
    conversation: &ConversationId,
    seq: u64,
    version: u64,
    text: &str,
) -> wire::log::LogEvent {
    let mut record = message_record(
        conversation,
        seq,
        &UserId::new("alice"),
        version,
        at(seq as i64),
    );
    record.message.text = text.to_owned();
    let body = if version == 1 {
        LogEventBody::MessageSent { record }
    } else {
        LogEventBody::MessageEdited { record }
    };
    log_event(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexer_follows_the_log_and_resumes_after_its_committed_position() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let log = Arc::new(EmbeddedLog::open(&directory.path().join("log")).expect("log"));
    let index =
        Arc::new(TantivyIndex::open(&directory.path().join("search"), 32_000_000).expect("index"));
    let conversation = ConversationId::new("c-indexer");
    let sends: Vec<_> = (1..=5)
        .map(|seq| text_event(&conversation, seq, 1, "rollout plan"))
        .collect();
    log.append(sends).await.expect("append");

    let first = start(&log, &index);
    wait_for_hits(&index, "rollout", &conversation, 5).await;
    first.stop.send(true).expect("stop");
    first.task.await.expect("indexer stops");
    assert_eq!(first.metrics.indexed_events.get(), 5);

    log.append(vec![text_event(&conversation, 1, 2, "rollback plan")])
        .await
        .expect("append edit");
    let second = start(&log, &index);
    wait_for_hits(&index, "rollback", &conversation, 1).await;
    assert_eq!(
        hits(&index, "rollout", &conversation).await,
        4,
        "the edit replaced the text"
    );
    assert_eq!(
        hits(&index, "plan", &conversation).await,
        5,
        "no duplicates"
    );
    assert_eq!(
        second.metrics.indexed_events.get(),
        1,
        "resumed after the committed position"
    );
    second.stop.send(true).expect("stop");
    second.task.await.expect("indexer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexer_applies_an_erasure_to_its_conversation_up_to_its_seq() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let log = Arc::new(EmbeddedLog::open(&directory.path().join("log")).expect("log"));
    let index =
        Arc::new(TantivyIndex::open(&directory.path().join("search"), 32_000_000).expect("index"));
    let conversation = ConversationId::new("c-erased");
    let elsewhere = ConversationId::new("c-kept");
    let mut events: Vec<_> = (1..=3)
        .map(|seq| text_event(&conversation, seq, 1, "quarterly numbers"))
        .collect();
    events.push(text_event(&elsewhere, 1, 1, "quarterly numbers"));
    events.push(log_event(LogEventBody::UserErased {
        conversation_id: conversation.clone(),
        user_id: UserId::new("alice"),
        through_seq: wire::Seq(2),
    }));
    log.append(events).await.expect("append");

    let running = start(&log, &index);
    wait_for_hits(&index, "quarterly", &elsewhere, 1).await;
    wait_for_hits(&index, "quarterly", &conversation, 1).await;
    running.stop.send(true).expect("stop");
    running.task.await.expect("indexer stops");
}

/// Issue #14: under steady traffic the indexer commits once per `commit_interval`, not once per
/// poll (every commit writes a segment that is merged later: a commit per poll cost the
/// standalone node about a fifth of its CPU per message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_appends_the_indexer_commits_once_per_interval() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let log = Arc::new(EmbeddedLog::open(&directory.path().join("log")).expect("log"));
    let index =
        Arc::new(TantivyIndex::open(&directory.path().join("search"), 32_000_000).expect("index"));
    let conversation = ConversationId::new("c-steady");
    let interval = Duration::from_millis(300);
    let running = start_with(
        &log,
        &index,
        IndexerConfig {
            commit_interval: interval,
            ..IndexerConfig::default()
        },
    );
    let started = tokio::time::Instant::now();
    let sends = 40;
    for seq in 1..=sends {
        log.append(vec![text_event(&conversation, seq, 1, "steady traffic")])
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_hits(&index, "steady", &conversation, sends as usize).await;
    // The hits are searchable once the index commits; the counters move after the positions
    // are committed too, a moment later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while running.metrics.indexed_events.get() < sends {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {sends} events counted as indexed within 2 s",
            running.metrics.indexed_events.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let commits = running.metrics.index_commits.get();
    let most = (elapsed.as_millis() / interval.as_millis()) as u64 + 2;
    assert!(
        commits <= most,
        "{commits} commits in {elapsed:?} ({sends} appends, one per 20 ms): at most {most}"
    );
    assert_eq!(running.metrics.indexed_events.get(), sends);
    running.stop.send(true).expect("stop");
    running.task.await.expect("indexer stops");
}
