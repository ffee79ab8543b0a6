//! One export, start to end: the user's conversations (with their membership and receipts),
//! the messages they sent, the reactions they gave, as JSON Lines streamed into a blob in
//! pieces. Memory stays flat: the store is read a page at a time and the file leaves in
//! [`FLUSH_BYTES`] pieces.

use ports::{
    BlobKey, BlobWriter, Directory, PortError, Store, UserDataScan, UserMessageCursor, UserMessages,
};
use serde_json::Value;
use wire::{ConversationId, UserId};

use super::lines::{self, LineCounts};

/// Conversations read per page of the user's list.
const CONVERSATIONS_PER_PAGE: usize = 100;
/// Messages read per page of a scan.
const MESSAGES_PER_PAGE: usize = 500;
/// The file leaves the buffer in pieces of about this size.
const FLUSH_BYTES: usize = 256 * 1024;

/// What one export reads from.
pub struct Sources<'a> {
    pub directory: &'a dyn Directory,
    pub store: &'a dyn Store,
    pub scan: &'a dyn UserDataScan,
}

/// Lines on their way into the blob.
struct LineSink {
    writer: Box<dyn BlobWriter>,
    buffer: Vec<u8>,
    counts: LineCounts,
}

impl LineSink {
    async fn push(&mut self, line: &Value) -> Result<(), PortError> {
        serde_json::to_writer(&mut self.buffer, line).map_err(PortError::internal)?;
        self.buffer.push(b'\n');
        if self.buffer.len() >= FLUSH_BYTES {
            self.writer.write(&self.buffer).await?;
            self.buffer.clear();
        }
        Ok(())
    }
}

/// The file's key in the blob store.
pub fn export_key(job_id: &ports::JobId) -> BlobKey {
    BlobKey::parse(format!("exports/{job_id}.jsonl")).expect("a job id makes a valid key")
}

/// Writes the export of `user_id` through `writer`: finished (the file complete under its
/// key) on success, aborted on failure. Answers the counts and the file's size.
pub async fn write_export(
    sources: &Sources<'_>,
    user_id: &UserId,
    writer: Box<dyn BlobWriter>,
) -> Result<(LineCounts, u64), PortError> {
    let mut sink = LineSink {
        writer,
        buffer: Vec::with_capacity(FLUSH_BYTES + 64 * 1024),
        counts: LineCounts::default(),
    };
    match write_lines(sources, user_id, &mut sink).await {
        Ok(()) => {
            let LineSink {
                mut writer,
                buffer,
                counts,
            } = sink;
            writer.write(&buffer).await?;
            let bytes = writer.finish().await?;
            Ok((counts, bytes))
        }
        Err(error) => {
            if let Err(abort_error) = sink.writer.abort().await {
                tracing::warn!(error = %abort_error, "export: aborting the file failed");
            }
            Err(error)
        }
    }
}

async fn write_lines(
    sources: &Sources<'_>,
    user_id: &UserId,
    sink: &mut LineSink,
) -> Result<(), PortError> {
    write_conversations(sources, user_id, sink).await?;
    for which in [UserMessages::SentBy, UserMessages::ReactedBy] {
        write_messages(sources.scan, user_id, which, sink).await?;
    }
    Ok(())
}

/// The user's conversations: each one's line, the membership and the receipt.
async fn write_conversations(
    sources: &Sources<'_>,
    user_id: &UserId,
    sink: &mut LineSink,
) -> Result<(), PortError> {
    let mut after: Option<ConversationId> = None;
    loop {
        let page = sources
            .directory
            .list_for_user(user_id, after.as_ref(), CONVERSATIONS_PER_PAGE)
            .await?;
        for stored in &page {
            let Some(participant) = stored
                .record
                .participants
                .iter()
                .find(|participant| &participant.user_id == user_id)
            else {
                continue;
            };
            let conversation_id = &stored.record.conversation.conversation_id;
            sink.push(&lines::conversation_line(stored)).await?;
            sink.counts.conversations += 1;
            sink.push(&lines::membership_line(stored, participant))
                .await?;
            sink.counts.memberships += 1;
            let watermarks = sources.store.watermarks(conversation_id, user_id).await?;
            if let Some(receipt) = lines::receipt_line(stored, watermarks) {
                sink.push(&receipt).await?;
                sink.counts.receipts += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() == CONVERSATIONS_PER_PAGE => {
                after = Some(last.record.conversation.conversation_id.clone());
            }
            _ => return Ok(()),
        }
    }
}

/// The messages the user sent (`SentBy`) or the reactions they gave (`ReactedBy`).
async fn write_messages(
    scan: &dyn UserDataScan,
    user_id: &UserId,
    which: UserMessages,
    sink: &mut LineSink,
) -> Result<(), PortError> {
    let mut after: Option<UserMessageCursor> = None;
    loop {
        let page = scan
            .user_messages(user_id, which, after.as_ref(), MESSAGES_PER_PAGE)
            .await?;
        // An aborted send's tombstone was never a message.
        for record in page.records.iter().filter(|record| !record.is_aborted()) {
            match which {
                UserMessages::SentBy => {
                    sink.push(&lines::message_line(record)).await?;
                    sink.counts.messages += 1;
                }
                UserMessages::ReactedBy => {
                    for line in lines::reaction_lines(record, user_id) {
                        sink.push(&line).await?;
                        sink.counts.reactions += 1;
                    }
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}
