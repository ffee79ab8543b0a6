//! The embedded adapters keep what they acknowledged across a reopen, and the log shares
//! commits between concurrent appends (and, with a group commit delay, between a steady stream
//! of them).

use std::sync::Arc;
use std::time::Duration;

use persistence::{EmbeddedLog, EmbeddedStore, LogOptions};
use ports::contract::fixtures::{at, conversation_record, message_record, sent_event};
use ports::{EventLog, MessageQuery, Store, StoreWrite};
use wire::log::topics;
use wire::{ConversationId, ConversationKind, UserId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_and_group_offsets_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    let conversation_id = ConversationId::new("durable-log");
    let sender = UserId::new("sender");
    let events: Vec<_> = (1..=3)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    {
        let log = EmbeddedLog::open(&path).expect("open");
        log.append(events.clone()).await.expect("append");
        let mut consumer = log
            .consumer("group", &[topics::MESSAGE_SENT])
            .await
            .expect("consumer");
        let records = consumer.poll(1, Duration::ZERO).await.expect("poll");
        consumer
            .commit(&[records[0].position])
            .await
            .expect("commit");
        // Dropped here without any shutdown call.
    }

    let log = EmbeddedLog::open(&path).expect("reopen");
    assert_eq!(log.stats().end_offset, 3);
    let mut fresh = log
        .consumer("another-group", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = fresh.poll(10, Duration::ZERO).await.expect("poll");
    let found: Vec<_> = records.into_iter().map(|record| record.event).collect();
    assert_eq!(found, events);

    let mut resumed = log
        .consumer("group", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = resumed.poll(10, Duration::ZERO).await.expect("poll");
    assert_eq!(records.len(), 2, "resumes after the committed record");
    assert_eq!(records[0].position.offset, 1);

    log.append(vec![sent_event(&conversation_id, 4, &sender)])
        .await
        .expect("append after reopen");
    let records = resumed.poll(10, Duration::ZERO).await.expect("poll");
    assert_eq!(records[0].position.offset, 3, "offsets continue densely");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_writes_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("store.redb");
    let conversation_id = ConversationId::new("durable-store");
    let member = UserId::new("member");
    let record = conversation_record(
        &conversation_id,
        ConversationKind::Group,
        &[&member],
        1,
        at(0),
    );
    let message = message_record(&conversation_id, 1, &member, 1, at(1));
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store
            .apply(vec![
                StoreWrite::Conversation(record.clone()),
                StoreWrite::Message(message.clone()),
            ])
            .await
            .expect("apply");
    }

    let store = EmbeddedStore::open(&path).expect("reopen");
    let stored = store
        .conversation(&conversation_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.record, record);
    assert_eq!(stored.last_seq.0, 1);
    let query = MessageQuery {
        after_seq: None,
        before_seq: None,
        limit: 10,
    };
    assert_eq!(
        store.messages(&conversation_id, query).await.expect("read"),
        vec![message]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("open"));
    let sender = UserId::new("sender");
    let appends = 200_u64;
    let tasks: Vec<_> = (0..appends)
        .map(|index| {
            let log = Arc::clone(&log);
            let event = sent_event(
                &ConversationId::new(format!("group-commit-{index}")),
                1,
                &sender,
            );
            tokio::spawn(async move { log.append(vec![event]).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("append");
    }
    let stats = log.stats();
    assert_eq!(stats.appended_events, appends);
    assert_eq!(stats.end_offset, appends);
    assert!(
        stats.commits < appends,
        "{} commits for {appends} appends",
        stats.commits
    );
}

/// The writer tells an observer the time of every group's fdatasync (the node's
/// `parley_log_fsync_duration_seconds`): one observation per commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_reports_its_fsync_time() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("open"));
    let observed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&observed);
    log.observe_fsyncs(Arc::new(move |took| {
        sink.lock().expect("observations").push(took)
    }));
    append_steadily(&log, 5, Duration::from_millis(5)).await;
    let commits = log.stats().commits;
    let observed = observed.lock().expect("observations").clone();
    assert!(commits >= 1);
    assert_eq!(observed.len() as u64, commits, "{observed:?}");
    assert!(observed.iter().all(|took| !took.is_zero()), "{observed:?}");
}

/// Appends one event of its own conversation every `gap`, `appends` times, each without waiting
/// for the previous one's answer (a steady stream, as many senders make), then waits for all.
async fn append_steadily(log: &Arc<EmbeddedLog>, appends: u64, gap: Duration) {
    let sender = UserId::new("sender");
    let mut tasks = Vec::new();
    for index in 0..appends {
        let log = Arc::clone(log);
        let event = sent_event(&ConversationId::new(format!("steady-{index}")), 1, &sender);
        tasks.push(tokio::spawn(async move { log.append(vec![event]).await }));
        tokio::time::sleep(gap).await;
    }
    for task in tasks {
        task.await.expect("task").expect("append");
    }
}

/// Issue #14: with a group commit delay, a steady stream of appends (one every 2 ms, each
/// commit much shorter than the 20 ms delay) shares commits; an append after a quiet spell
/// does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_delay_gathers_a_steady_stream_and_skips_a_quiet_one() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = LogOptions {
        group_commit_delay: Duration::from_millis(20),
        ..LogOptions::default()
    };
    let log = Arc::new(EmbeddedLog::open_with(&dir.path().join("log"), options).expect("open"));
    let appends = 60;
    append_steadily(&log, appends, Duration::from_millis(2)).await;
    let steady = log.stats();
    assert_eq!(steady.appended_events, appends);
    // About one commit per 20 ms of a 120 ms stream; without the delay, about one per append.
    assert!(
        steady.commits <= appends / 3,
        "{} commits for {appends} appends 2 ms apart",
        steady.commits
    );
    assert!(steady.delayed_commits >= 1, "{steady:?}");

    tokio::time::sleep(Duration::from_millis(60)).await;
    append_steadily(&log, 1, Duration::ZERO).await;
    let quiet = log.stats();
    assert_eq!(quiet.commits, steady.commits + 1);
    assert_eq!(
        quiet.delayed_commits, steady.delayed_commits,
        "an append after 60 quiet ms commits at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_the_log_drops_only_old_events_every_group_read_and_keeps_the_newest() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    let conversation_id = ConversationId::new("pruned-log");
    let sender = UserId::new("sender");
    let log = EmbeddedLog::open(&path).expect("open");
    let events: Vec<_> = (1..=4)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    log.append(events.clone()).await.expect("append");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        log.prune_before(later).await.expect("prune"),
        0,
        "no group read anything"
    );

    let mut ahead = log
        .consumer("ahead", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = ahead.poll(10, Duration::ZERO).await.expect("poll");
    ahead.commit(&[records[3].position]).await.expect("commit");
    let mut behind = log
        .consumer("behind", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = behind.poll(10, Duration::ZERO).await.expect("poll");
    behind.commit(&[records[1].position]).await.expect("commit");
    let earlier = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        log.prune_before(earlier).await.expect("prune"),
        0,
        "nothing that old"
    );
    assert_eq!(
        log.prune_before(later).await.expect("prune"),
        2,
        "only what the group behind read"
    );
    behind.commit(&[records[3].position]).await.expect("commit");
    assert_eq!(
        log.prune_before(later).await.expect("prune"),
        1,
        "the newest event stays"
    );
    drop((ahead, behind, log));

    let log = EmbeddedLog::open(&path).expect("reopen");
    assert_eq!(log.stats().end_offset, 4, "offsets keep growing");
    let mut fresh = log
        .consumer("fresh", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = fresh.poll(10, Duration::ZERO).await.expect("poll");
    let found: Vec<_> = records.into_iter().map(|record| record.event).collect();
    assert_eq!(
        found,
        events[3..],
        "a new group starts at the oldest event left"
    );
}
