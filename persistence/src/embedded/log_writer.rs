//! The embedded log's writer thread: the only code that appends to a segment or starts one.
//!
//! Each group is one `write` of every queued event's framed record to the last segment, over the
//! zeros written ahead of it (`LogOptions::prepared_bytes` at a time, so most groups do not grow
//! the file), then one fdatasync, then the new end offset is published and every caller
//! answered. A group that fails is cut off the file again (`set_len` to where it started) before
//! the callers hear of it, so a failed append leaves nothing behind; if even that fails the
//! writer stops and the log reports not ready (a restart's recovery cuts off whatever a crash
//! left).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ports::PortError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info};
use wire::log::LogEvent;

use super::log::{LogOptions, LogShared};
use super::segment;
use crate::error::PersistenceError;

/// Most append requests the writer folds into one group.
pub(crate) const MAX_BATCH_REQUESTS: usize = 1024;

pub(crate) struct AppendRequest {
    /// The events, in order, and the same encoded.
    pub(crate) events: Vec<LogEvent>,
    pub(crate) encoded: Vec<Vec<u8>>,
    /// Their topics, each once.
    pub(crate) topics: Vec<&'static str>,
    pub(crate) reply: oneshot::Sender<Result<(), PortError>>,
}

pub(crate) enum WriterRequest {
    Append(AppendRequest),
    /// Start a new segment if the last one starts before `before` and is not empty.
    Roll {
        before: u64,
        reply: oneshot::Sender<Result<(), PortError>>,
    },
}

/// The segment the writer appends to.
pub(crate) struct ActiveSegment {
    base: u64,
    file: File,
    /// The bytes its records take: where the next group starts.
    bytes: u64,
    /// The file's length: its records, then zeros written ahead.
    prepared: u64,
}

impl ActiveSegment {
    /// The segment `file` starting at offset `base`, whose `bytes` long records fill it.
    pub(crate) fn new(base: u64, file: File, bytes: u64) -> Self {
        Self {
            base,
            file,
            bytes,
            prepared: bytes,
        }
    }
}

/// Marks the writer dead when its thread ends, however it ends.
struct AliveGuard(Arc<LogShared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.writer_alive.store(false, Ordering::Release);
    }
}

struct Writer {
    shared: Arc<LogShared>,
    active: ActiveSegment,
    options: LogOptions,
    buffer: Vec<u8>,
}

pub(crate) fn run_writer(
    shared: Arc<LogShared>,
    mut receiver: mpsc::Receiver<WriterRequest>,
    active: ActiveSegment,
    options: LogOptions,
) {
    let _alive = AliveGuard(Arc::clone(&shared));
    let mut writer = Writer {
        shared,
        active,
        options,
        buffer: Vec::new(),
    };
    let mut batch: Vec<AppendRequest> = Vec::with_capacity(MAX_BATCH_REQUESTS);
    let mut rolls = Vec::new();
    let mut previous_group_ended: Option<Instant> = None;
    while let Some(first) = receiver.blocking_recv() {
        if matches!(first, WriterRequest::Append(_))
            && appends_come_faster_than(options.group_commit_delay, previous_group_ended)
        {
            // Appends arriving meanwhile queue up and join this group.
            std::thread::sleep(options.group_commit_delay);
            writer
                .shared
                .delayed_commits
                .fetch_add(1, Ordering::Relaxed);
        }
        sort_request(first, &mut batch, &mut rolls);
        while batch.len() < MAX_BATCH_REQUESTS {
            match receiver.try_recv() {
                Ok(request) => sort_request(request, &mut batch, &mut rolls),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            if !writer.write_group(&mut batch) {
                return;
            }
            previous_group_ended = Some(Instant::now());
        }
        for (before, reply) in rolls.drain(..) {
            let _ = reply.send(writer.roll_if_before(before).map_err(PortError::from));
        }
    }
    debug!("log writer stopped");
}

fn sort_request(
    request: WriterRequest,
    batch: &mut Vec<AppendRequest>,
    rolls: &mut Vec<(u64, oneshot::Sender<Result<(), PortError>>)>,
) {
    match request {
        WriterRequest::Append(append) => batch.push(append),
        WriterRequest::Roll { before, reply } => rolls.push((before, reply)),
    }
}

/// Whether an append that arrives now follows the previous group by less than `delay`: then
/// waiting `delay` is likely to gather more appends into the group.
fn appends_come_faster_than(delay: Duration, previous_group_ended: Option<Instant>) -> bool {
    !delay.is_zero() && previous_group_ended.is_some_and(|ended| ended.elapsed() < delay)
}

impl Writer {
    /// Writes and answers `batch`; false when the writer cannot go on.
    fn write_group(&mut self, batch: &mut Vec<AppendRequest>) -> bool {
        let shared = Arc::clone(&self.shared);
        let start = *shared.end_offset.borrow();
        match self.append(start, batch) {
            Ok(end) => {
                shared.last_write_ok.store(true, Ordering::Release);
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared
                    .appended_events
                    .fetch_add(end - start, Ordering::Relaxed);
                let events = batch.iter_mut().flat_map(|request| {
                    let AppendRequest {
                        events, encoded, ..
                    } = request;
                    std::mem::take(events)
                        .into_iter()
                        .zip(encoded.iter().map(Vec::len))
                });
                shared.recent.push(start, events);
                shared.end_offset.send_replace(end);
                let group_topics: Vec<&'static str> = batch
                    .iter()
                    .flat_map(|request| request.topics.iter().copied())
                    .collect();
                shared.topic_ends.advance(&group_topics, end);
                for request in batch.drain(..) {
                    // A caller that gave up waiting is fine: its events are durable anyway.
                    let _ = request.reply.send(Ok(()));
                }
                if self.active.bytes >= self.options.segment_bytes {
                    if let Err(roll_error) = self.roll(end) {
                        error!(error = %roll_error, "could not start a new log segment");
                    }
                }
                true
            }
            Err(write_error) => {
                shared.last_write_ok.store(false, Ordering::Release);
                error!(error = %write_error, requests = batch.len(), "log append failed");
                let cut = self.cut_back();
                let port_error = PortError::from(write_error);
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(port_error.clone()));
                }
                cut
            }
        }
    }

    /// Appends every event of `batch` from offset `start` on and fsyncs; returns the new end.
    fn append(&mut self, start: u64, batch: &[AppendRequest]) -> Result<u64, PersistenceError> {
        self.buffer.clear();
        let mut offset = start;
        for request in batch {
            for event in &request.encoded {
                segment::encode_record(&mut self.buffer, offset, event);
                offset += 1;
            }
        }
        let group_end = self.active.bytes + self.buffer.len() as u64;
        if group_end > self.active.prepared && self.options.prepared_bytes > 0 {
            let prepared = group_end + self.options.prepared_bytes;
            segment::write_zeros(&self.active.file, self.active.prepared, prepared)?;
            self.active.prepared = prepared;
        }
        self.active
            .file
            .write_all_at(&self.buffer, self.active.bytes)?;
        let fsync_started = Instant::now();
        self.active.file.sync_data()?;
        if let Some(observe) = self.shared.fsync_observer.get() {
            observe(fsync_started.elapsed());
        }
        self.active.bytes = group_end;
        self.active.prepared = self.active.prepared.max(group_end);
        Ok(offset)
    }

    /// Cuts a failed group (and the zeros ahead) off the segment; false (and the writer stops)
    /// if that fails too.
    fn cut_back(&mut self) -> bool {
        self.active.prepared = self.active.bytes;
        let cut = self
            .active
            .file
            .set_len(self.active.bytes)
            .and_then(|()| self.active.file.sync_data());
        match cut {
            Ok(()) => true,
            Err(cut_error) => {
                error!(
                    error = %cut_error,
                    "cannot cut a failed append off the log segment; the log writer stops"
                );
                false
            }
        }
    }

    fn roll_if_before(&mut self, before: u64) -> Result<(), PersistenceError> {
        let end = *self.shared.end_offset.borrow();
        if self.active.base < before && self.active.bytes > 0 {
            self.roll(end)?;
        }
        Ok(())
    }

    /// Starts a new segment at offset `end`, after cutting the zeros off the current one (readers
    /// that reach its end then find the file's end, and look for the next segment).
    fn roll(&mut self, end: u64) -> Result<(), PersistenceError> {
        if self.active.prepared > self.active.bytes {
            self.active.file.set_len(self.active.bytes)?;
            self.active.file.sync_all()?;
            self.active.prepared = self.active.bytes;
        }
        let file = segment::create_segment(&self.shared.dir, end)?;
        self.shared.add_segment(end);
        info!(
            base = end,
            previous = self.active.base,
            "embedded log: new segment"
        );
        self.active = ActiveSegment::new(end, file, 0);
        Ok(())
    }
}
