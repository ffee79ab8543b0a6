//! What a crash (no clean close) leaves of the embedded log: every acknowledged append, and the
//! consumer groups' offsets as of the last durable commit of them — at most a second old — so a
//! group whose commit came after it reads those records again (at least once).
//!
//! The crash is real: the test runs this test binary again as a child process that appends,
//! commits and then aborts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use persistence::EmbeddedLog;
use ports::contract::fixtures::sent_event;
use ports::EventLog;
use wire::log::topics;
use wire::{ConversationId, UserId};

/// Set in the child's environment: where its log goes.
const CHILD_LOG: &str = "PARLEY_LOG_CRASH_CHILD";
const CHILD_TEST: &str = "child_appends_commits_and_aborts";

/// The child: does nothing unless the parent started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_appends_commits_and_aborts() {
    let Some(path) = std::env::var_os(CHILD_LOG) else {
        return;
    };
    let log = EmbeddedLog::open(Path::new(&path)).expect("open");
    let conversation_id = ConversationId::new("crash");
    let sender = UserId::new("sender");
    let events = (1..=4).map(|seq| sent_event(&conversation_id, seq, &sender));
    log.append(events.collect()).await.expect("append");

    commit_after_reading(&log, "early", 1).await;
    // Commits are made durable at most once a second: the next one, a second later, is durable
    // and carries the earlier one with it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    commit_after_reading(&log, "durable", 3).await;
    commit_after_reading(&log, "late", 2).await;
    std::process::abort();
}

/// Reads `count` records as `group` and commits the last.
async fn commit_after_reading(log: &EmbeddedLog, group: &str, count: usize) {
    let mut consumer = log
        .consumer(group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = consumer.poll(count, Duration::ZERO).await.expect("poll");
    consumer
        .commit(&[records[count - 1].position])
        .await
        .expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_and_offsets_up_to_the_last_durable_commit_survive_a_crash() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture"])
        .env(CHILD_LOG, &path)
        .status()
        .expect("child runs");
    assert!(!status.success(), "the child aborts: {status}");

    let log = EmbeddedLog::open(&path).expect("reopen after the crash");
    assert_eq!(
        log.stats().end_offset,
        4,
        "every acknowledged append is there"
    );
    assert_eq!(
        first_offset_read(&log, "early").await,
        Some(1),
        "resumes after its commit, made durable by the durable commit that followed"
    );
    assert_eq!(first_offset_read(&log, "durable").await, Some(3));
    assert_eq!(
        first_offset_read(&log, "late").await,
        Some(0),
        "its commit after the last durable one was lost: it reads again from the start"
    );
}

/// The offset a new consumer of `group` reads first.
async fn first_offset_read(log: &EmbeddedLog, group: &str) -> Option<u64> {
    let mut consumer = log
        .consumer(group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = consumer.poll(10, Duration::ZERO).await.expect("poll");
    records.first().map(|record| record.position.offset)
}
