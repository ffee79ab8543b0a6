//! What a crash (no clean close of the database) leaves of the embedded log's consumer groups:
//! a committed offset is durable once a later append is, and one committed after the last
//! durable append may be lost, so its group reads those records again (at least once).
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
    let events = (1..=3).map(|seq| sent_event(&conversation_id, seq, &sender));
    log.append(events.collect()).await.expect("append");

    let mut early = log
        .consumer("early", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = early.poll(1, Duration::ZERO).await.expect("poll");
    early.commit(&[records[0].position]).await.expect("commit");
    // A durable append after the commit carries the commit to disk with it.
    log.append(vec![sent_event(&conversation_id, 4, &sender)])
        .await
        .expect("append");

    let mut late = log
        .consumer("late", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = late.poll(3, Duration::ZERO).await.expect("poll");
    late.commit(&[records[2].position]).await.expect("commit");
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_offset_survives_a_crash_once_a_later_append_is_durable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log.redb");
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
        "resumes after its commit, made durable by the append that followed"
    );
    assert_eq!(
        first_offset_read(&log, "late").await,
        Some(0),
        "its commit after the last durable append was lost: it reads again from the start"
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
