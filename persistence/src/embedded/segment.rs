//! The embedded log's segment files: append-only files of framed records, each holding a run of
//! offsets and named by the offset of its first record (`00000000000000000042.log`).
//!
//! A record is a 16-byte header — payload length (u32), CRC-32 of the offset and the payload
//! (u32), offset (u64), all little-endian — then the payload (a `LogEvent` as JSON). The writer
//! appends whole groups and fsyncs them before anyone reads them, so a crash can only leave a
//! torn tail on the last segment, which [`recover_tail`] cuts off: those records were never
//! acknowledged. Older segments are immutable until pruning rewrites or deletes them.
//!
//! The last segment is written ahead with zeros (`LogOptions::prepared_bytes`, by default
//! [`PREPARED_BYTES`], at a time) and its groups
//! overwrite them: an fdatasync of a file that does not grow writes its data only, where one
//! that grows also writes the file's inode (one more I/O per group). (Not on ext4 without a
//! journal: there every fdatasync writes the inode, whose mtime each write changed;
//! docs/benchmarks.md, "a durable ceiling".) A header of zeros is where
//! the records end. The writer cuts the zeros off a
//! segment before it starts the next one, so only the last segment has them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::error::PersistenceError;

/// Bytes of a record's header.
pub(crate) const HEADER_BYTES: u64 = 16;
/// A larger length in a header is damage, not a record.
const MAX_PAYLOAD_BYTES: u32 = 64 << 20;
/// Most bytes a reader asks the file for at once.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Fewest bytes a reader asks for.
const MIN_CHUNK_BYTES: usize = 4 << 10;
/// A chat message's record is a few hundred bytes; a larger one is read on its own.
const EXPECTED_RECORD_BYTES: u64 = 1024;
/// Bytes of zeros the writer puts ahead of the last segment's records at a time, by default.
pub(crate) const PREPARED_BYTES: u64 = 1 << 20;

const EXTENSION: &str = "log";

/// The file of the segment whose first offset is `base`.
pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{EXTENSION}"))
}

/// The file a prune writes the kept tail of segment `old_base` into before it replaces it.
pub(crate) fn rewrite_path(dir: &Path, new_base: u64, old_base: u64) -> PathBuf {
    dir.join(format!("{new_base:020}.from-{old_base:020}.tmp"))
}

/// Appends one framed record to `buffer`.
pub(crate) fn encode_record(buffer: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&checksum(offset, payload).to_le_bytes());
    buffer.extend_from_slice(&offset.to_le_bytes());
    buffer.extend_from_slice(payload);
}

fn checksum(offset: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

struct Header {
    length: u32,
    crc: u32,
    offset: u64,
}

impl Header {
    /// Zeros the writer put ahead of its records, not a record: where the records end. (No
    /// record's header is all zeros: the checksum of offset 0 with an empty payload is not 0.)
    fn is_end(&self) -> bool {
        self.length == 0 && self.crc == 0 && self.offset == 0
    }
}

fn parse_header(bytes: &[u8]) -> Header {
    let word = |range: std::ops::Range<usize>| {
        let mut array = [0u8; 4];
        array.copy_from_slice(&bytes[range]);
        u32::from_le_bytes(array)
    };
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[8..16]);
    Header {
        length: word(0..4),
        crc: word(4..8),
        offset: u64::from_le_bytes(offset),
    }
}

/// One record read back from a segment.
pub(crate) struct RawRecord {
    pub(crate) offset: u64,
    pub(crate) payload: Vec<u8>,
}

/// What [`Segment::read`] found.
pub(crate) struct SegmentRead {
    pub(crate) records: Vec<RawRecord>,
    /// Byte position of the next record.
    pub(crate) next_position: u64,
    /// No record starts at `next_position` in this file: the next offset is in the next segment.
    pub(crate) at_end_of_file: bool,
}

/// A segment as readers see it: its first offset and a read handle, kept open so a reader can
/// finish a segment that pruning replaced or deleted meanwhile.
pub(crate) struct Segment {
    pub(crate) base: u64,
    file: File,
}

impl Segment {
    pub(crate) fn open(dir: &Path, base: u64) -> Result<Self, PersistenceError> {
        let file = File::open(segment_path(dir, base))?;
        Ok(Self { base, file })
    }

    /// Reads the records from byte `position` on, which must hold offset `first`, stopping
    /// before offset `end`, after `max` records or at the end of what one chunk holds (at least
    /// one record). Everything before `end` is durable and whole, so damage there is an error.
    pub(crate) fn read(
        &self,
        position: u64,
        first: u64,
        end: u64,
        max: usize,
    ) -> Result<SegmentRead, PersistenceError> {
        let mut chunk = vec![0u8; chunk_bytes(end.saturating_sub(first).min(max as u64))];
        let filled = read_at_most(&self.file, &mut chunk, position)?;
        chunk.truncate(filled);
        let mut records = Vec::new();
        let mut cursor = 0usize;
        let mut offset = first;
        while offset < end && records.len() < max {
            let rest = &chunk[cursor..];
            if rest.len() < HEADER_BYTES as usize {
                break;
            }
            let header = parse_header(rest);
            if header.is_end() {
                break;
            }
            let whole = HEADER_BYTES as usize + header.length as usize;
            let fits = rest.len() >= whole;
            let payload = if fits {
                rest[HEADER_BYTES as usize..whole].to_vec()
            } else if records.is_empty() {
                self.read_payload(position, &header)?
            } else {
                break;
            };
            check_record(&header, &payload, offset, self.base)?;
            records.push(RawRecord { offset, payload });
            cursor += whole;
            offset += 1;
            if !fits {
                // Read on its own, past the chunk: the next read starts after it.
                break;
            }
        }
        let at_end_of_file = records.is_empty()
            && offset < end
            && (filled < HEADER_BYTES as usize || parse_header(&chunk).is_end());
        Ok(SegmentRead {
            records,
            next_position: position + cursor as u64,
            at_end_of_file,
        })
    }

    /// The payload of a record too large for one chunk.
    fn read_payload(&self, position: u64, header: &Header) -> Result<Vec<u8>, PersistenceError> {
        if header.length > MAX_PAYLOAD_BYTES {
            return Err(damaged(self.base, position, "record length out of range"));
        }
        let mut payload = vec![0u8; header.length as usize];
        self.file
            .read_exact_at(&mut payload, position + HEADER_BYTES)?;
        Ok(payload)
    }

    /// The byte position of the record with offset `offset`, or where the records end when this
    /// segment ends before it. Reads the file a chunk at a time and looks at the headers only.
    pub(crate) fn locate(&self, offset: u64) -> Result<u64, PersistenceError> {
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        let mut chunk_start = 0u64;
        let mut position = 0u64;
        loop {
            let filled = read_at_most(&self.file, &mut chunk, chunk_start)?;
            let mut parsed_any = false;
            loop {
                let within = (position - chunk_start) as usize;
                if filled.saturating_sub(within) < HEADER_BYTES as usize {
                    break;
                }
                let header = parse_header(&chunk[within..]);
                if header.offset >= offset || header.is_end() {
                    return Ok(position);
                }
                position += HEADER_BYTES + u64::from(header.length);
                parsed_any = true;
            }
            if filled < chunk.len() && !parsed_any {
                // Fewer than a header's bytes are left at `position`: the file ends there.
                return Ok(position);
            }
            chunk_start = position;
        }
    }
}

fn check_record(
    header: &Header,
    payload: &[u8],
    expected: u64,
    base: u64,
) -> Result<(), PersistenceError> {
    if header.offset != expected || header.crc != checksum(header.offset, payload) {
        return Err(PersistenceError::Corrupted(format!(
            "embedded log segment {base}: record {expected} is damaged (found offset {})",
            header.offset
        )));
    }
    Ok(())
}

fn damaged(base: u64, position: u64, what: &str) -> PersistenceError {
    PersistenceError::Corrupted(format!(
        "embedded log segment {base} at byte {position}: {what}"
    ))
}

/// How many bytes to read for about `records` records: a reader near the log's end wants a
/// few, and zeroing a whole chunk for each of its polls would cost more than reading them.
fn chunk_bytes(records: u64) -> usize {
    let guess = records.saturating_mul(EXPECTED_RECORD_BYTES);
    usize::try_from(guess).map_or(READ_CHUNK_BYTES, |bytes| {
        bytes.clamp(MIN_CHUNK_BYTES, READ_CHUNK_BYTES)
    })
}

/// Fills as much of `buffer` as the file has from `position` on.
fn read_at_most(file: &File, buffer: &mut [u8], position: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], position + filled as u64)? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// The whole records at the start of a segment file that begins at offset `base`: how many,
/// and how many bytes they take.
pub(crate) fn valid_prefix(bytes: &[u8], base: u64) -> (u64, u64) {
    let mut position = 0usize;
    let mut offset = base;
    while bytes.len() - position >= HEADER_BYTES as usize {
        let header = parse_header(&bytes[position..]);
        let whole = HEADER_BYTES as usize + header.length as usize;
        if header.is_end() || header.length > MAX_PAYLOAD_BYTES || bytes.len() - position < whole {
            break;
        }
        let payload = &bytes[position + HEADER_BYTES as usize..position + whole];
        if check_record(&header, payload, offset, base).is_err() {
            break;
        }
        position += whole;
        offset += 1;
    }
    (offset - base, position as u64)
}

/// Opens the last segment for writing after cutting off what follows its whole records: the
/// zeros written ahead of them and any torn tail (records a crash interrupted, never
/// acknowledged; the next groups must not leave pieces of them behind). Returns the file, the
/// bytes its records take and the log's end offset.
pub(crate) fn recover_tail(dir: &Path, base: u64) -> Result<(File, u64, u64), PersistenceError> {
    let path = segment_path(dir, base);
    let bytes = std::fs::read(&path)?;
    let (records, valid) = valid_prefix(&bytes, base);
    let file = OpenOptions::new().write(true).open(&path)?;
    if valid < bytes.len() as u64 {
        let cut = &bytes[valid as usize..];
        if cut.iter().any(|&byte| byte != 0) {
            warn!(
                segment = %path.display(),
                kept_bytes = valid,
                cut_bytes = cut.len(),
                "embedded log: cutting off a torn tail left by a crash"
            );
        }
        file.set_len(valid)?;
        file.sync_all()?;
    }
    Ok((file, valid, base + records))
}

/// Creates an empty segment starting at `base` and makes its name durable. Writes go where the
/// writer says (no append mode: it overwrites the zeros it wrote ahead).
pub(crate) fn create_segment(dir: &Path, base: u64) -> Result<File, PersistenceError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(segment_path(dir, base))?;
    if let Err(sync_error) = sync_directory(dir) {
        let _ = std::fs::remove_file(segment_path(dir, base));
        return Err(sync_error);
    }
    Ok(file)
}

/// Writes zeros over `from..to` of `file` (the space the next groups overwrite).
pub(crate) fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut position = from;
    while position < to {
        let piece = (to - position).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..piece], position)?;
        position += piece as u64;
    }
    Ok(())
}

pub(crate) fn sync_directory(dir: &Path) -> Result<(), PersistenceError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The first offsets of the segments in `dir`, ascending, after finishing or undoing a prune's
/// rewrite that a crash interrupted.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, PersistenceError> {
    let mut bases = Vec::new();
    let mut rewrites = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u64>().ok())
        {
            bases.push(base);
        } else if let Some(rewrite) = parse_rewrite_name(name) {
            rewrites.push(rewrite);
        }
    }
    for (new_base, old_base) in rewrites {
        let temporary = rewrite_path(dir, new_base, old_base);
        if bases.contains(&old_base) {
            // The old segment is still whole: the rewrite had not finished. The next prune redoes it.
            std::fs::remove_file(&temporary)?;
        } else {
            // The rewrite was complete and synced when the old segment went: finish it.
            std::fs::rename(&temporary, segment_path(dir, new_base))?;
            bases.push(new_base);
        }
    }
    sync_directory(dir)?;
    bases.sort_unstable();
    Ok(bases)
}

fn parse_rewrite_name(name: &str) -> Option<(u64, u64)> {
    let (new_base, rest) = name.strip_suffix(".tmp")?.split_once(".from-")?;
    Some((new_base.parse().ok()?, rest.parse().ok()?))
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
