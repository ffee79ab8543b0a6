//! Erasure on MongoDB: applying `StoreWrite::Erase` (a user erased from one conversation).
//!
//! The conversation's messages up to the erased seq are read page by page (a user's reactions
//! live only in the `record` of the messages they reacted to), each is erased in Rust
//! ([`MessageRecord::erase_user`]) and the changed ones are written back whole; then the user's
//! `participants` document (their watermarks) is deleted. Applying it again finds nothing
//! left to change.

use mongodb::bson::{doc, Document};
use ports::PortError;
use wire::log::{ErasedChange, MessageRecord};
use wire::{ConversationId, Seq, UserId};

use mongo_documents::{message_fields, message_record, signed, MESSAGES, PARTICIPANTS};

use super::client::BulkCommand;
use super::MongoStore;

/// Messages read per page of an erasure.
const PAGE: i64 = 500;

/// One user erased from one conversation up to a seq.
#[derive(Debug, Clone)]
pub(super) struct Erasure {
    pub(super) conversation_id: ConversationId,
    pub(super) user_id: UserId,
    pub(super) through_seq: Seq,
}

impl MongoStore {
    /// Applies the erasures of a batch, in log order.
    pub(super) async fn erase_users(&self, erasures: &[Erasure]) -> Result<(), PortError> {
        for erasure in erasures {
            self.erase_user(erasure).await?;
        }
        Ok(())
    }

    async fn erase_user(&self, erasure: &Erasure) -> Result<(), PortError> {
        let id = erasure.conversation_id.as_str();
        let through = signed("seq", erasure.through_seq.0)?;
        let mut after = 0_i64;
        loop {
            let filter = doc! { "conversation_id": id, "seq": { "$gt": after, "$lte": through } };
            let page = self
                .find_sorted(
                    MESSAGES,
                    filter,
                    doc! { "record": 1 },
                    Some(doc! { "seq": 1 }),
                    Some(PAGE),
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = signed("seq", message_record(last)?.message.seq.0)?;
            let mut rewrites = Vec::new();
            for document in &page {
                let mut record = message_record(document)?;
                if record.erase_user(&erasure.user_id, erasure.through_seq)
                    != ErasedChange::Unchanged
                {
                    rewrites.push(rewrite(&record)?);
                }
            }
            self.write_all("erasure", BulkCommand::Update, MESSAGES, rewrites)
                .await?;
        }
        let forget = doc! {
            "q": { "conversation_id": id, "user_id": erasure.user_id.as_str() },
            "limit": 0,
        };
        self.write_all("erasure", BulkCommand::Delete, PARTICIPANTS, vec![forget])
            .await
    }
}

/// The update that stores `record` whole over its message's document.
fn rewrite(record: &MessageRecord) -> Result<Document, PortError> {
    Ok(doc! {
        "q": { "_id": record.message.message_id.as_str() },
        "u": { "$set": message_fields(record)? },
    })
}
