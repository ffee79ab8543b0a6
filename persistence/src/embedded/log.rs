//! [`EmbeddedLog`]: the standalone durable event log, one redb file, one partition.
//!
//! Appends go through one dedicated writer thread that group-commits: it takes everything queued
//! (up to [`MAX_BATCH_REQUESTS`] requests), writes it in one write transaction, commits once with
//! redb's durable (fsync'd) commit and then answers every waiting caller. N concurrent appends cost
//! about one fsync. After each commit the writer publishes the new end offset on a watch channel,
//! which waiting consumers ([`super::log_consumer`]) listen to instead of polling.
//!
//! Under a steady stream of small appends the groups stay small (a commit finishes before the
//! next append arrives), and each costs a whole B-tree commit and fsync. With
//! [`LogOptions::group_commit_delay`] the writer, when the previous group ended less than that
//! delay before the next append arrived, waits that long before committing, so one commit
//! carries everything that arrives meanwhile (PostgreSQL's `commit_delay`, Kafka's `linger.ms`).
//! An append after a quiet spell commits at once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ports::{During, EventLog, LogConsumer, PortError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info};
use wire::log::LogEvent;

use super::log_consumer::EmbeddedLogConsumer;
use crate::error::{run_blocking, PersistenceError};

/// Offset → serde_json bytes of the [`LogEvent`].
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Consumer group → next offset to read.
pub(crate) const GROUP_OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("group_offsets");

/// Most append requests the writer folds into one transaction.
pub const MAX_BATCH_REQUESTS: usize = 1024;
/// Capacity of the queue in front of the writer; `append` waits when it is full.
const QUEUE_CAPACITY: usize = 8192;

/// How the writer groups appends into commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// How long the writer waits before committing when appends arrive faster than this (the
    /// previous group ended less than this before the next append arrived). Zero: never waits.
    pub group_commit_delay: Duration,
}

struct AppendRequest {
    /// Already-encoded events, in order.
    events: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<(), PortError>>,
}

/// State shared by the log handle, its writer thread and its consumers.
pub(crate) struct LogShared {
    pub(crate) database: Database,
    /// The offset the next appended event gets; bumped after every durable commit.
    pub(crate) end_offset: watch::Sender<u64>,
    writer_alive: AtomicBool,
    /// False after a failed commit, until one succeeds again.
    last_commit_ok: AtomicBool,
    commits: AtomicU64,
    /// Commits the writer waited [`LogOptions::group_commit_delay`] before.
    delayed_commits: AtomicU64,
    appended_events: AtomicU64,
}

/// Counters of an [`EmbeddedLog`], for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Durable write transactions committed by the writer.
    pub commits: u64,
    /// Those of them the writer waited [`LogOptions::group_commit_delay`] before.
    pub delayed_commits: u64,
    /// Events made durable.
    pub appended_events: u64,
    /// Offset the next event will get.
    pub end_offset: u64,
}

/// The standalone event log. Dropping it stops the writer after it has answered every queued
/// append and closes the database file (once every consumer is dropped too).
pub struct EmbeddedLog {
    pub(super) shared: Arc<LogShared>,
    requests: Option<mpsc::Sender<AppendRequest>>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log at `path`, e.g. `<data_dir>/log.redb`, and starts its writer,
    /// which commits as soon as it has something. Blocking: call it at start-up, or from
    /// `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self, PersistenceError> {
        Self::open_with(path, LogOptions::default())
    }

    /// [`Self::open`] with the writer's grouping set by `options`.
    pub fn open_with(path: &Path, options: LogOptions) -> Result<Self, PersistenceError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let database = Database::create(path)?;
        let write = database.begin_write()?;
        {
            write.open_table(EVENTS)?;
            write.open_table(GROUP_OFFSETS)?;
        }
        write.commit()?;
        let end_offset = {
            let read = database.begin_read()?;
            let events = read.open_table(EVENTS)?;
            let last = events.last()?;
            last.map_or(0, |(offset, _)| offset.value() + 1)
        };
        info!(
            path = %path.display(),
            end_offset,
            group_commit_delay_us = options.group_commit_delay.as_micros() as u64,
            "embedded log opened"
        );

        let shared = Arc::new(LogShared {
            database,
            end_offset: watch::Sender::new(end_offset),
            writer_alive: AtomicBool::new(true),
            last_commit_ok: AtomicBool::new(true),
            commits: AtomicU64::new(0),
            delayed_commits: AtomicU64::new(0),
            appended_events: AtomicU64::new(0),
        });
        let (requests, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("parley-log-writer".to_owned())
            .spawn(move || run_writer(writer_shared, receiver, options))?;
        Ok(Self {
            shared,
            requests: Some(requests),
            writer: Some(writer),
        })
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            delayed_commits: self.shared.delayed_commits.load(Ordering::Relaxed),
            appended_events: self.shared.appended_events.load(Ordering::Relaxed),
            end_offset: *self.shared.end_offset.borrow(),
        }
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
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, events: Vec<LogEvent>) -> Result<(), PortError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(events.len());
        for event in &events {
            let bytes = serde_json::to_vec(event)
                .map_err(|error| PortError::internal(During::new("encoding log event", error)))?;
            encoded.push(bytes);
        }
        let requests = self
            .requests
            .as_ref()
            .ok_or_else(|| PortError::from(PersistenceError::WriterStopped))?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            events: encoded,
            reply,
        };
        if requests.send(request).await.is_err() {
            return Err(PersistenceError::WriterStopped.into());
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(PersistenceError::WriterStopped.into()),
        }
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn LogConsumer>, PortError> {
        let shared = Arc::clone(&self.shared);
        let group_name = group.to_owned();
        let start = run_blocking(move || {
            let read = shared.database.begin_read()?;
            let groups = read.open_table(GROUP_OFFSETS)?;
            let start = groups.get(group_name.as_str())?.map(|next| next.value());
            Ok(start.unwrap_or(0))
        })
        .await?;
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
            && self.shared.last_commit_ok.load(Ordering::Acquire)
    }

    /// A failed append is one write transaction that did not commit: none of it is durable.
    fn failed_appends_may_be_durable(&self) -> bool {
        false
    }
}

/// Marks the writer dead when its thread ends, however it ends.
struct AliveGuard<'a>(&'a AtomicBool);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn run_writer(
    shared: Arc<LogShared>,
    mut receiver: mpsc::Receiver<AppendRequest>,
    options: LogOptions,
) {
    let _alive = AliveGuard(&shared.writer_alive);
    let mut batch: Vec<AppendRequest> = Vec::with_capacity(MAX_BATCH_REQUESTS);
    let mut previous_group_ended: Option<Instant> = None;
    while let Some(first) = receiver.blocking_recv() {
        if appends_come_faster_than(options.group_commit_delay, previous_group_ended) {
            // Appends arriving meanwhile queue up and join this group.
            std::thread::sleep(options.group_commit_delay);
            shared.delayed_commits.fetch_add(1, Ordering::Relaxed);
        }
        batch.push(first);
        while batch.len() < MAX_BATCH_REQUESTS {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let start = *shared.end_offset.borrow();
        match write_batch(&shared.database, start, &batch) {
            Ok(end) => {
                shared.last_commit_ok.store(true, Ordering::Release);
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared
                    .appended_events
                    .fetch_add(end - start, Ordering::Relaxed);
                shared.end_offset.send_replace(end);
                for request in batch.drain(..) {
                    // A caller that gave up waiting is fine: its events are durable anyway.
                    let _ = request.reply.send(Ok(()));
                }
            }
            Err(write_error) => {
                shared.last_commit_ok.store(false, Ordering::Release);
                error!(error = %write_error, requests = batch.len(), "log append failed");
                let port_error = PortError::from(write_error);
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(port_error.clone()));
                }
            }
        }
        previous_group_ended = Some(Instant::now());
    }
    debug!("log writer stopped");
}

/// Whether an append that arrives now follows the previous group by less than `delay`: then
/// waiting `delay` is likely to gather more appends into the group.
fn appends_come_faster_than(delay: Duration, previous_group_ended: Option<Instant>) -> bool {
    !delay.is_zero() && previous_group_ended.is_some_and(|ended| ended.elapsed() < delay)
}

/// Writes every event of `batch` from offset `start` on in one durable transaction; returns the
/// new end offset.
fn write_batch(
    database: &Database,
    start: u64,
    batch: &[AppendRequest],
) -> Result<u64, PersistenceError> {
    let write = database.begin_write()?;
    let mut offset = start;
    {
        let mut events = write.open_table(EVENTS)?;
        for request in batch {
            for event in &request.events {
                events.insert(offset, event.as_slice())?;
                offset += 1;
            }
        }
    }
    // Durability::Immediate is redb's default: commit returns after fsync.
    write.commit()?;
    Ok(offset)
}
