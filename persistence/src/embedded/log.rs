//! [`EmbeddedLog`]: the standalone durable event log, one partition, in a directory of segment
//! files ([`super::segment`]) plus `offsets.redb` for the consumer groups' offsets.
//!
//! Appends go through one dedicated writer thread ([`super::log_writer`]) that group-commits: it
//! takes everything queued, appends it to the last segment in one write and fsyncs once, then
//! answers every waiting caller. N concurrent appends cost one write and one fdatasync, and a
//! group of one costs no more than that (a B-tree commit per group, the log's first shape, copied
//! pages and cost a fifth of a node's CPU at 2 000 sends/s). After each group the writer
//! publishes the new end offset on a watch channel, which waiting consumers
//! ([`super::log_consumer`]) listen to instead of polling, and they read the segment files
//! directly.
//!
//! Under a steady stream of small appends the groups stay small (a group finishes before the
//! next append arrives). With [`LogOptions::group_commit_delay`] the writer, when the previous
//! group ended less than that delay before the next append arrived, waits that long before
//! writing, so one fsync carries everything that arrives meanwhile (PostgreSQL's
//! `commit_delay`, Kafka's `linger.ms`). An append after a quiet spell is written at once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use ports::{During, EventLog, LogConsumer, PortError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};
use wire::log::LogEvent;

use super::log_consumer::EmbeddedLogConsumer;
use super::log_offsets::{GroupOffsets, MakeDurable};
use super::log_recent::{RecentEvents, RECENT_BYTES};
use super::log_topics::TopicEnds;
use super::log_writer::{run_writer, ActiveSegment, AppendRequest, WriterRequest};
use super::segment::{self, Segment};
use crate::error::PersistenceError;

/// Capacity of the queue in front of the writer; `append` waits when it is full.
const QUEUE_CAPACITY: usize = 8192;
/// Default size at which the writer starts a new segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 32 << 20;
/// The offsets database's file in the log's directory.
pub(crate) const OFFSETS_FILE: &str = "offsets.redb";

/// How the writer groups appends and sizes segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// How long the writer waits before writing when appends arrive faster than this (the
    /// previous group ended less than this before the next append arrived). Zero: never waits.
    pub group_commit_delay: Duration,
    /// The writer starts a new segment file once the last one is this large. Pruning deletes
    /// whole segments and rewrites at most one, so smaller segments make it cheaper.
    pub segment_bytes: u64,
    /// Bytes of zeros the writer puts ahead of the last segment's records at a time, for groups
    /// to overwrite (a group that grows the file also writes its inode). Zero: every group
    /// appends.
    pub prepared_bytes: u64,
    /// Encoded bytes of the last events kept in memory for consumers at the end of the log
    /// ([`super::log_recent`]). Zero: consumers always read the files.
    pub recent_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            group_commit_delay: Duration::ZERO,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            prepared_bytes: segment::PREPARED_BYTES,
            recent_bytes: RECENT_BYTES,
        }
    }
}

/// Told how long each of the writer's fdatasyncs took ([`EmbeddedLog::observe_fsyncs`]).
pub type FsyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// State shared by the log handle, its writer thread and its consumers.
pub(crate) struct LogShared {
    pub(crate) dir: PathBuf,
    /// The first offset of every segment file. The writer adds segments; pruning removes them.
    /// Readers open the files themselves, so the node holds one descriptor per reader, not per
    /// segment.
    pub(crate) segments: RwLock<BTreeSet<u64>>,
    pub(crate) offsets: GroupOffsets,
    /// The offset the next appended event gets; bumped after every durable group.
    pub(crate) end_offset: watch::Sender<u64>,
    /// The same, per topic: bumped after a durable group with an event of that topic (after
    /// `end_offset`), what consumers wait on.
    pub(crate) topic_ends: TopicEnds,
    /// The last durable events, for consumers at the end (added before `end_offset` moves).
    pub(crate) recent: RecentEvents,
    /// One prune at a time.
    pub(crate) prune_lock: tokio::sync::Mutex<()>,
    pub(crate) writer_alive: AtomicBool,
    /// False after a failed write, until one succeeds again.
    pub(crate) last_write_ok: AtomicBool,
    pub(crate) commits: AtomicU64,
    /// Groups the writer waited [`LogOptions::group_commit_delay`] before.
    pub(crate) delayed_commits: AtomicU64,
    pub(crate) appended_events: AtomicU64,
    pub(crate) fsync_observer: OnceLock<FsyncObserver>,
}

impl LogShared {
    /// Opens the segment holding `offset` for reading — the last one starting at or before it —
    /// moving `offset` up to the oldest offset left when it was pruned. Under the segments'
    /// lock, which pruning holds while it deletes or renames files, so the file is there.
    pub(crate) fn open_segment_for(&self, offset: &mut u64) -> Result<Segment, PersistenceError> {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let base = segments
            .range(..=*offset)
            .next_back()
            .or_else(|| segments.iter().next())
            .copied()
            .ok_or_else(|| PersistenceError::Corrupted("embedded log: no segment".to_owned()))?;
        *offset = (*offset).max(base);
        Segment::open(&self.dir, base)
    }

    pub(crate) fn add_segment(&self, base: u64) {
        let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
        segments.insert(base);
    }

    /// Runs `change` (deleting or renaming segment files) under the segments' lock, so no reader
    /// opens a file in the middle of it.
    pub(crate) fn change_segments<T>(
        &self,
        change: impl FnOnce(&mut BTreeSet<u64>) -> Result<T, PersistenceError>,
    ) -> Result<T, PersistenceError> {
        let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
        change(&mut segments)
    }

    /// The first offsets of the segments, ascending.
    pub(crate) fn segment_bases(&self) -> Vec<u64> {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments.iter().copied().collect()
    }
}

/// Counters of an [`EmbeddedLog`], for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Durable groups the writer wrote (one write and one fsync each).
    pub commits: u64,
    /// Those of them the writer waited [`LogOptions::group_commit_delay`] before.
    pub delayed_commits: u64,
    /// Events made durable.
    pub appended_events: u64,
    /// Offset the next event will get.
    pub end_offset: u64,
}

/// The standalone event log. Dropping it stops the writer after it has answered every queued
/// append and makes the consumers' last offsets durable.
pub struct EmbeddedLog {
    pub(super) shared: Arc<LogShared>,
    pub(super) requests: Option<mpsc::Sender<WriterRequest>>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in the directory `dir`, e.g. `<data_dir>/log`, and starts its
    /// writer, which writes as soon as it has something. Blocking: call it at start-up, or from
    /// `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<Self, PersistenceError> {
        Self::open_with(dir, LogOptions::default())
    }

    /// [`Self::open`] with the writer's grouping and segment size set by `options`.
    pub fn open_with(dir: &Path, options: LogOptions) -> Result<Self, PersistenceError> {
        std::fs::create_dir_all(dir)?;
        // First: redb's lock on this file keeps a second process off the directory.
        let offsets = GroupOffsets::open(&dir.join(OFFSETS_FILE))?;
        let mut bases = segment::list_segments(dir)?;
        if bases.is_empty() {
            segment::create_segment(dir, 0)?;
            bases.push(0);
        }
        let last = *bases.last().unwrap_or(&0);
        let (file, bytes, end_offset) = segment::recover_tail(dir, last)?;
        let segments: BTreeSet<u64> = bases.into_iter().collect();
        info!(
            dir = %dir.display(),
            segments = segments.len(),
            end_offset,
            group_commit_delay_us = options.group_commit_delay.as_micros() as u64,
            "embedded log opened"
        );
        let shared = Arc::new(LogShared {
            dir: dir.to_owned(),
            segments: RwLock::new(segments),
            offsets,
            end_offset: watch::Sender::new(end_offset),
            topic_ends: TopicEnds::new(end_offset),
            recent: RecentEvents::new(options.recent_bytes, end_offset),
            prune_lock: tokio::sync::Mutex::new(()),
            writer_alive: AtomicBool::new(true),
            last_write_ok: AtomicBool::new(true),
            commits: AtomicU64::new(0),
            delayed_commits: AtomicU64::new(0),
            appended_events: AtomicU64::new(0),
            fsync_observer: OnceLock::new(),
        });
        let active = ActiveSegment::new(last, file, bytes);
        let (requests, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("parley-log-writer".to_owned())
            .spawn(move || run_writer(writer_shared, receiver, active, options))?;
        Ok(Self {
            shared,
            requests: Some(requests),
            writer: Some(writer),
        })
    }

    /// Registers what consumers write from the log without an fsync of their own (the embedded
    /// store's `apply`): `make_durable` runs before every durable commit of the consumer
    /// groups' offsets (at most once a second, and at close), so after a crash no group's
    /// offset is past what it wrote; if it fails the offsets are not committed.
    pub fn make_durable_first(&self, make_durable: MakeDurable) {
        self.shared.offsets.make_durable_first(make_durable);
    }

    /// Has the writer tell `observer` how long each group's fdatasync took (the disk's
    /// latency as the log sees it; the node exports it as a histogram). The first observer
    /// set stays.
    pub fn observe_fsyncs(&self, observer: FsyncObserver) {
        let _ = self.shared.fsync_observer.set(observer);
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            delayed_commits: self.shared.delayed_commits.load(Ordering::Relaxed),
            appended_events: self.shared.appended_events.load(Ordering::Relaxed),
            end_offset: *self.shared.end_offset.borrow(),
        }
    }

    /// Asks the writer to start a new segment if the last one starts before `offset` and holds
    /// anything, so that it becomes immutable (pruning rewrites it).
    pub(super) async fn roll_segment_before(&self, offset: u64) -> Result<(), PortError> {
        self.ask_writer(|reply| WriterRequest::Roll {
            before: offset,
            reply,
        })
        .await
    }

    /// Queues the request `make` builds around its reply channel and waits for the writer's
    /// answer; a stopped writer is [`PersistenceError::WriterStopped`].
    async fn ask_writer(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), PortError>>) -> WriterRequest,
    ) -> Result<(), PortError> {
        let requests = self
            .requests
            .as_ref()
            .ok_or_else(|| PortError::from(PersistenceError::WriterStopped))?;
        let (reply, answer) = oneshot::channel();
        if requests.send(make(reply)).await.is_err() {
            return Err(PersistenceError::WriterStopped.into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(PersistenceError::WriterStopped.into()))
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit.
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                error!("log writer thread panicked");
            }
        }
        if let Err(flush_error) = self.shared.offsets.write_durably() {
            warn!(error = %flush_error, "could not make the log's consumer offsets durable");
        }
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, events: Vec<LogEvent>) -> Result<(), PortError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(events.len());
        let mut topics = Vec::new();
        for event in &events {
            let bytes = serde_json::to_vec(event)
                .map_err(|error| PortError::internal(During::new("encoding log event", error)))?;
            encoded.push(bytes);
            let topic = event.body.topic();
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        self.ask_writer(|reply| {
            WriterRequest::Append(AppendRequest {
                encoded,
                events,
                topics,
                reply,
            })
        })
        .await
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn LogConsumer>, PortError> {
        let start = self.shared.offsets.get(group).unwrap_or(0);
        debug!(group, start, "log consumer opened");
        Ok(Box::new(EmbeddedLogConsumer::new(
            Arc::clone(&self.shared),
            group.to_owned(),
            topics.iter().map(|topic| (*topic).to_owned()).collect(),
            start,
        )))
    }

    async fn is_ready(&self) -> bool {
        self.requests.is_some()
            && self.shared.writer_alive.load(Ordering::Acquire)
            && self.shared.last_write_ok.load(Ordering::Acquire)
    }

    /// A failed append is cut off the segment before it is answered: none of it is durable.
    fn failed_appends_may_be_durable(&self) -> bool {
        false
    }
}
