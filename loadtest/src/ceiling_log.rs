//! The durable variant of `ws-ceiling` (`--log PATH`): every frame is written to a file and
//! fdatasync'd before it is broadcast, the least a server must do to ack only what is durable
//! (Parley's standalone guarantee). It measures what that guarantee costs on a machine, apart
//! from everything else Parley does (issue #14's goals compare Parley with the bare
//! broadcaster, which keeps nothing).
//!
//! One writer thread, Parley's log writer's shape made as cheap as it gets: each group is one
//! `pwrite` of every queued frame (length-prefixed) over zeros written ahead, then one
//! fdatasync, then the group's frames are broadcast; a group that follows the previous one by
//! less than the group commit delay waits that long first, as Parley's writer does. The file is
//! a ring of [`RING_BYTES`]: nothing is ever read back, only the cost of writing is wanted.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The file's size: groups wrap around to its start once they reach it, so every write lands
/// on blocks written before (the file never grows after it is prepared).
pub const RING_BYTES: u64 = 64 << 20;

/// Zeros written ahead of the groups at a time (Parley's `PREPARED_BYTES`).
const PREPARED_BYTES: u64 = 1 << 20;

/// Most frames in one group (Parley's writer folds at most 1 024 requests).
const MAX_GROUP: usize = 1024;

/// A frame to make durable, and the room to broadcast it to once it is.
pub struct Pending {
    pub frame: Utf8Bytes,
    pub room: broadcast::Sender<Utf8Bytes>,
}

/// The writer's side of the log: cheap to clone.
#[derive(Clone)]
pub struct DurableLog {
    queue: mpsc::UnboundedSender<Pending>,
}

impl DurableLog {
    /// Creates (or truncates) `path` and starts the writer thread.
    pub fn open(path: &Path, group_commit_delay: Duration) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let writer = RingWriter::new(file, RING_BYTES);
        std::thread::Builder::new()
            .name("ceiling-log".into())
            .spawn(move || writer.run(receiver, group_commit_delay))?;
        Ok(Self { queue })
    }

    /// Queues `pending`; its frame is broadcast once it is durable.
    pub fn append(&self, pending: Pending) {
        let _ = self.queue.send(pending);
    }
}

struct RingWriter {
    file: File,
    /// The file's size once prepared ([`RING_BYTES`]).
    ring: u64,
    /// Where the next group starts.
    offset: u64,
    /// How far zeros (or earlier groups) were written: blocks the file already has.
    prepared: u64,
    buffer: Vec<u8>,
}

impl RingWriter {
    fn new(file: File, ring: u64) -> Self {
        Self {
            file,
            ring,
            offset: 0,
            prepared: 0,
            buffer: Vec::new(),
        }
    }

    fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Pending>, delay: Duration) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        let mut previous_group_ended: Option<Instant> = None;
        while let Some(first) = receiver.blocking_recv() {
            if previous_group_ended.is_some_and(|ended| ended.elapsed() < delay) {
                std::thread::sleep(delay);
            }
            group.push(first);
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(pending) => group.push(pending),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.write_group(&group) {
                eprintln!("ceiling log: {error}");
                return;
            }
            previous_group_ended = Some(Instant::now());
            for Pending { frame, room } in group.drain(..) {
                let _ = room.send(frame);
            }
        }
    }

    fn write_group(&mut self, group: &[Pending]) -> std::io::Result<()> {
        self.buffer.clear();
        for pending in group {
            let frame = pending.frame.as_bytes();
            self.buffer
                .extend_from_slice(&(frame.len() as u32).to_le_bytes());
            self.buffer.extend_from_slice(frame);
        }
        let length = self.buffer.len() as u64;
        if self.offset + length > self.ring {
            self.offset = 0;
        }
        while self.prepared < self.offset + length {
            let zeros = vec![0u8; PREPARED_BYTES as usize];
            self.file.write_all_at(&zeros, self.prepared)?;
            self.prepared += PREPARED_BYTES;
        }
        self.file.write_all_at(&self.buffer, self.offset)?;
        self.file.sync_data()?;
        self.offset += length;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_is_broadcast_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ceiling.log");
        let log = DurableLog::open(&path, Duration::ZERO).unwrap();
        let (room, mut member) = broadcast::channel(16);
        log.append(Pending {
            frame: Utf8Bytes::from("hello"),
            room: room.clone(),
        });
        let frame = tokio::time::timeout(Duration::from_secs(5), member.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.as_str(), "hello");
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[..9], b"\x05\0\0\0hello");
        assert_eq!(written.len() as u64, PREPARED_BYTES);
    }

    #[test]
    fn groups_wrap_to_the_start_and_the_file_never_grows_past_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.log");
        let file = File::create(&path).unwrap();
        let mut writer = RingWriter::new(file, PREPARED_BYTES);
        let (room, _member) = broadcast::channel(1);
        let frame = |fill: char| Pending {
            frame: Utf8Bytes::from(fill.to_string().repeat(300 << 10)),
            room: room.clone(),
        };
        for fill in ['a', 'b', 'c', 'd'] {
            writer.write_group(&[frame(fill)]).unwrap();
        }
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len() as u64, PREPARED_BYTES);
        assert_eq!(written[4], b'd', "the fourth group starts the ring again");
        assert_eq!(writer.offset, (300 << 10) + 4);
    }
}
