//! The embedded log's segment files: rolling, reading across segments, pruning whole and cut
//! segments, cutting off a torn tail, and moving a `log.redb` of the log's first shape.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use persistence::embedded::migrate_redb_log;
use persistence::{EmbeddedLog, LogOptions};
use ports::contract::fixtures::sent_event;
use ports::EventLog;
use wire::log::{topics, LogEvent};
use wire::{ConversationId, UserId};

/// Small enough that a few events fill a segment.
fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: 1024,
        ..LogOptions::default()
    }
}

fn events(count: u64) -> Vec<LogEvent> {
    let conversation_id = ConversationId::new("segments");
    let sender = UserId::new("sender");
    (1..=count)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect()
}

/// The first offsets of the segment files in `dir`, ascending.
fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|entry| {
            let name = entry.expect("entry").file_name();
            name.to_str()?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// How many files this process has open (nextest runs each test in its own process).
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The offsets a new consumer of `group` reads, to the end.
async fn offsets_read(log: &EmbeddedLog, group: &str) -> Vec<u64> {
    let mut consumer = log
        .consumer(group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let mut offsets = Vec::new();
    loop {
        let records = consumer.poll(7, Duration::ZERO).await.expect("poll");
        if records.is_empty() {
            return offsets;
        }
        offsets.extend(records.iter().map(|record| record.position.offset));
    }
}

/// Where the records of a segment file's bytes end: at the first header of zeros (the space
/// the writer wrote ahead) or at the file's end.
fn records_end(bytes: &[u8]) -> u64 {
    let mut position = 0usize;
    while bytes.len() - position >= 16 {
        let length = u32::from_le_bytes(bytes[position..position + 4].try_into().expect("4"));
        if length == 0 {
            break;
        }
        position += 16 + length as usize;
    }
    position as u64
}

async fn append_one_by_one(log: &EmbeddedLog, events: Vec<LogEvent>) {
    for event in events {
        log.append(vec![event]).await.expect("append");
    }
}

async fn commit_through(log: &EmbeddedLog, group: &str, last: u64) {
    let mut consumer = log
        .consumer(group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    loop {
        let records = consumer.poll(100, Duration::ZERO).await.expect("poll");
        let Some(record) = records.iter().find(|record| record.position.offset == last) else {
            assert!(!records.is_empty(), "offset {last} never came");
            continue;
        };
        consumer.commit(&[record.position]).await.expect("commit");
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_and_consumers_read_across_them_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    let all: Vec<u64> = (0..40).collect();
    {
        let log = EmbeddedLog::open_with(&path, small_segments()).expect("open");
        append_one_by_one(&log, events(40)).await;
        assert_eq!(offsets_read(&log, "first").await, all);
        commit_through(&log, "resuming", 29).await;
    }
    let segments = segment_bases(&path).len();
    assert!(segments > 10, "{:?}", segment_bases(&path));

    let descriptors_before = open_descriptors();
    let log = EmbeddedLog::open_with(&path, small_segments()).expect("reopen");
    let held = open_descriptors().saturating_sub(descriptors_before);
    assert!(
        held < 5,
        "the log holds {held} descriptors for {segments} segments: one per segment?"
    );
    assert_eq!(log.stats().end_offset, 40);
    assert_eq!(offsets_read(&log, "after-reopen").await, all);
    assert_eq!(
        offsets_read(&log, "resuming").await,
        (30..40).collect::<Vec<_>>(),
        "a group resumes in the middle of a segment"
    );
}

/// A consumer behind the events the log keeps in memory reads the files up to them, then takes
/// them from memory: every event once, in order, as appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_the_events_kept_in_memory_reads_the_files_then_memory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let one_event = serde_json::to_vec(&events(1)[0]).expect("encode").len();
    let options = LogOptions {
        recent_bytes: 10 * one_event,
        ..small_segments()
    };
    let log = EmbeddedLog::open_with(&dir.path().join("log"), options).expect("open");
    let appended = events(40);
    append_one_by_one(&log, appended.clone()).await;
    let mut consumer = log
        .consumer("late", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let mut read = Vec::new();
    while read.len() < 40 {
        let records = consumer.poll(7, Duration::ZERO).await.expect("poll");
        assert!(!records.is_empty(), "stopped after {}", read.len());
        read.extend(records);
    }
    let offsets: Vec<u64> = read.iter().map(|record| record.position.offset).collect();
    assert_eq!(offsets, (0..40).collect::<Vec<u64>>());
    let events_read: Vec<LogEvent> = read.into_iter().map(|record| record.event).collect();
    assert!(
        events_read == appended,
        "the events read differ from those appended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_deletes_the_segments_before_the_cut_and_rewrites_the_one_it_falls_in() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    let log = EmbeddedLog::open_with(&path, small_segments()).expect("open");
    append_one_by_one(&log, events(40)).await;
    commit_through(&log, "reader", 24).await;
    let bases = segment_bases(&path);
    assert!(
        !bases.contains(&25),
        "the cut falls inside a segment: {bases:?}"
    );

    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(log.prune_before(later).await.expect("prune"), 25);
    let bases = segment_bases(&path);
    assert_eq!(bases.first(), Some(&25), "{bases:?}");
    let kept: Vec<u64> = (25..40).collect();
    assert_eq!(offsets_read(&log, "fresh").await, kept);
    let logged: Vec<u8> = bases
        .iter()
        .flat_map(|base| std::fs::read(path.join(format!("{base:020}.log"))).expect("read"))
        .collect();
    let holds = |event: &LogEvent| {
        let body = serde_json::to_vec(&event.body).expect("encode");
        logged.windows(body.len()).any(|window| window == body)
    };
    let all_events = events(40);
    assert!(
        !holds(&all_events[0]),
        "a pruned event's bytes are gone from the files"
    );
    assert!(holds(&all_events[25]), "a kept event's bytes are there");
    drop(log);

    let log = EmbeddedLog::open_with(&path, small_segments()).expect("reopen");
    assert_eq!(log.stats().end_offset, 40);
    assert_eq!(offsets_read(&log, "after-reopen").await, kept);
    log.append(events(1)).await.expect("append after the prune");
    assert_eq!(log.stats().end_offset, 41, "offsets keep growing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_inside_a_pruned_segment_goes_on_at_the_oldest_event_left() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    let log = EmbeddedLog::open_with(&path, small_segments()).expect("open");
    append_one_by_one(&log, events(40)).await;
    // A consumer of a group that never committed: pruning does not wait for it.
    let mut slow = log
        .consumer("slow", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let first = slow.poll(2, Duration::ZERO).await.expect("poll");
    assert_eq!(first[0].position.offset, 0);
    commit_through(&log, "reader", 30).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(log.prune_before(later).await.expect("prune"), 31);

    let mut offsets = Vec::new();
    loop {
        let records = slow
            .poll(7, Duration::ZERO)
            .await
            .expect("poll after the prune");
        if records.is_empty() {
            break;
        }
        offsets.extend(records.iter().map(|record| record.position.offset));
    }
    // It finishes the segment it was in (its open handle still reads it), then skips to 31.
    let resumed_at = offsets
        .iter()
        .position(|offset| *offset == 31)
        .expect("reads on from the oldest event left");
    assert!(offsets[..resumed_at].iter().all(|offset| *offset < 31));
    assert_eq!(offsets[resumed_at..], (31..40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_larger_than_a_read_are_read_whole_between_small_ones() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = EmbeddedLog::open(&dir.path().join("log")).expect("open");
    let mut appended = events(3);
    if let wire::log::LogEventBody::MessageSent { record } = &mut appended[1].body {
        record.message.text = "long ".repeat(40_000);
    }
    let mut consumer = log
        .consumer("reader", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    log.append(appended.clone()).await.expect("append");
    let mut found = Vec::new();
    while found.len() < 3 {
        let records = consumer.poll(10, Duration::ZERO).await.expect("poll");
        assert!(!records.is_empty(), "stopped after {}", found.len());
        found.extend(records.into_iter().map(|record| record.event));
    }
    assert_eq!(found, appended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_segment_is_written_ahead_and_a_sealed_one_ends_with_its_records() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    let log = EmbeddedLog::open(&path).expect("open");
    append_one_by_one(&log, events(10)).await;
    let segment = path.join(format!("{:020}.log", 0));
    let bytes = std::fs::read(&segment).expect("read");
    let records = records_end(&bytes);
    assert!(
        bytes.len() as u64 >= records + (512 << 10),
        "{} bytes of zeros ahead of {records} bytes of records",
        bytes.len() as u64 - records
    );

    // A group that read everything resumes at the records' end, not the file's.
    commit_through(&log, "caught-up", 9).await;
    append_one_by_one(&log, events(5)).await;
    assert_eq!(
        offsets_read(&log, "caught-up").await,
        (10..15).collect::<Vec<_>>()
    );
    drop(log);

    let log = EmbeddedLog::open(&path).expect("reopen");
    assert_eq!(log.stats().end_offset, 15);
    let reopened = std::fs::read(&segment).expect("read");
    assert_eq!(
        reopened.len() as u64,
        records_end(&reopened),
        "the reopen cut the zeros off"
    );
    append_one_by_one(&log, events(1)).await;
    assert_eq!(offsets_read(&log, "all").await, (0..16).collect::<Vec<_>>());
    drop(log);

    let log = EmbeddedLog::open_with(&path, small_segments()).expect("reopen small");
    append_one_by_one(&log, events(20)).await;
    let bases = segment_bases(&path);
    assert!(bases.len() > 3, "{bases:?}");
    for base in &bases[..bases.len() - 1] {
        let sealed = std::fs::read(path.join(format!("{base:020}.log"))).expect("read");
        assert_eq!(
            sealed.len() as u64,
            records_end(&sealed),
            "segment {base} was sealed with zeros left in it"
        );
    }
    assert_eq!(
        offsets_read(&log, "across").await,
        (0..36).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_left_by_a_crash_is_cut_off_on_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("log");
    {
        let log = EmbeddedLog::open(&path).expect("open");
        log.append(events(3)).await.expect("append");
    }
    let last = *segment_bases(&path).last().expect("a segment");
    let segment = path.join(format!("{last:020}.log"));
    let end_of_records = records_end(&std::fs::read(&segment).expect("read"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    // A header that promises more than follows: a group the crash interrupted, over the zeros
    // written ahead.
    file.write_all_at(
        &[200, 0, 0, 0, 1, 2, 3, 4, 3, 0, 0, 0, 0, 0, 0, 0, b'{'],
        end_of_records,
    )
    .expect("write");
    drop(file);

    let log = EmbeddedLog::open(&path).expect("reopen");
    assert_eq!(log.stats().end_offset, 3, "the torn record is not there");
    log.append(events(1)).await.expect("append");
    assert_eq!(offsets_read(&log, "reader").await, [0, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_redb_of_the_first_shape_moves_to_segments_with_its_group_offsets() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let legacy = dir.path().join("log.redb");
    let moved = events(5);
    write_legacy_log(&legacy, 5, &moved, &[("ingest", 7)]);

    let path = dir.path().join("log");
    let migrated = migrate_redb_log(&legacy, &path)
        .expect("migrate")
        .expect("something moved");
    assert_eq!((migrated.events, migrated.groups), (5, 1));
    assert!(!legacy.exists(), "the old file is gone");
    assert_eq!(migrate_redb_log(&legacy, &path).expect("again"), None);
    // A log.redb left beside the directory made from it (a crash after the rename) goes.
    write_legacy_log(&legacy, 0, &events(1), &[]);
    assert_eq!(
        migrate_redb_log(&legacy, &path).expect("the marked directory"),
        None
    );
    assert!(!legacy.exists());
    let other = dir.path().join("other-log");
    std::fs::create_dir(&other).expect("a log directory of this version");
    write_legacy_log(&legacy, 0, &events(1), &[]);
    assert!(
        migrate_redb_log(&legacy, &other).is_err(),
        "both, the directory not made from the file: refused"
    );
    assert!(legacy.exists(), "nothing deleted");
    std::fs::remove_file(&legacy).expect("remove");

    let log = EmbeddedLog::open(&path).expect("open");
    assert_eq!(log.stats().end_offset, 10);
    assert_eq!(offsets_read(&log, "ingest").await, [7, 8, 9]);
    let mut consumer = log
        .consumer("new", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = consumer.poll(10, Duration::ZERO).await.expect("poll");
    let found: Vec<_> = records.into_iter().map(|record| record.event).collect();
    assert_eq!(found, moved);
}

/// A `log.redb` as the log's first shape wrote it: events from offset `first` on.
fn write_legacy_log(path: &Path, first: u64, events: &[LogEvent], groups: &[(&str, u64)]) {
    let events_table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let groups_table: redb::TableDefinition<&str, u64> =
        redb::TableDefinition::new("group_offsets");
    let database = redb::Database::create(path).expect("create");
    let write = database.begin_write().expect("write");
    {
        let mut table = write.open_table(events_table).expect("events");
        for (offset, event) in (first..).zip(events) {
            let bytes = serde_json::to_vec(event).expect("encode");
            table.insert(offset, bytes.as_slice()).expect("insert");
        }
        let mut table = write.open_table(groups_table).expect("groups");
        for (group, next) in groups {
            table.insert(*group, *next).expect("insert");
        }
    }
    write.commit().expect("commit");
}
