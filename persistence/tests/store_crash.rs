//! What a crash leaves of a store that applies the log without an fsync per batch
//! (`EmbeddedStore::apply_behind`): whatever a consumer group's durable offset says it has read
//! is in the store, so nothing it applied is skipped after a restart; what it applied after its
//! last durable offset may be gone, and is read again from the log.
//!
//! The crash is real: the test runs this test binary again as a child process that appends,
//! applies, commits and then aborts (like `log_crash.rs`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use persistence::{EmbeddedLog, EmbeddedStore};
use ports::contract::fixtures::sent_event;
use ports::{EventLog, LogConsumer, MessageQuery, Store, StoreWrite};
use wire::log::{topics, LogEventBody};
use wire::{ConversationId, UserId};

/// Set in the child's environment: the directory of its log and store.
const CHILD_DIR: &str = "PARLEY_STORE_CRASH_CHILD";
const CHILD_TEST: &str = "child_applies_commits_and_aborts";
const GROUP: &str = "ingest";

fn conversation() -> ConversationId {
    ConversationId::new("crash")
}

fn open(dir: &Path) -> (EmbeddedLog, EmbeddedStore) {
    let log = EmbeddedLog::open(&dir.join("log")).expect("open log");
    let store = EmbeddedStore::open(&dir.join("store.redb")).expect("open store");
    store.apply_behind(&log);
    (log, store)
}

/// The child: does nothing unless the parent started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_applies_commits_and_aborts() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let (log, store) = open(Path::new(&dir));
    let sender = UserId::new("sender");
    let events = (1..=6).map(|seq| sent_event(&conversation(), seq, &sender));
    log.append(events.collect()).await.expect("append");
    let mut consumer = log
        .consumer(GROUP, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");

    // Within the log's first second: an offset commit that is not durable.
    ingest(&mut consumer, &store, 2).await;
    // A second later the next commit is the durable one: the store's writes so far first.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ingest(&mut consumer, &store, 2).await;
    // Applied and committed, neither durable.
    ingest(&mut consumer, &store, 2).await;
    std::process::abort();
}

/// Reads `count` records, applies their messages to the store and commits the last.
async fn ingest(consumer: &mut Box<dyn LogConsumer>, store: &EmbeddedStore, count: usize) {
    let records = consumer.poll(count, Duration::ZERO).await.expect("poll");
    assert_eq!(records.len(), count);
    let writes = records
        .iter()
        .filter_map(|record| match &record.event.body {
            LogEventBody::MessageSent { record } => Some(StoreWrite::Message(record.clone())),
            _ => None,
        })
        .collect();
    store.apply(writes).await.expect("apply");
    consumer
        .commit(&[records[count - 1].position])
        .await
        .expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_offset_never_passes_what_the_store_holds_after_a_crash() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .status()
        .expect("child runs");
    assert!(!status.success(), "the child aborts: {status}");

    let (log, store) = open(dir.path());
    let mut consumer = log
        .consumer(GROUP, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let next = consumer.poll(10, Duration::ZERO).await.expect("poll");
    assert_eq!(
        next.first().map(|record| record.position.offset),
        Some(4),
        "the group resumes after its durable commit (the later one was lost)"
    );
    let stored: Vec<u64> = store
        .messages(
            &conversation(),
            MessageQuery {
                after_seq: None,
                before_seq: None,
                limit: 100,
            },
        )
        .await
        .expect("messages")
        .iter()
        .map(|record| record.message.seq.0)
        .collect();
    assert_eq!(
        stored,
        vec![1, 2, 3, 4],
        "every message before the durable offset is stored; those after it went with the \
         crash and are read again from the log"
    );
}
