//! Retention on MongoDB: applying a purge (`StoreWrite::Purge`) and the [`RetentionScan`] of the
//! sweep.
//!
//! A purge deletes the conversation's `messages` documents up to its seq (their reactions live
//! in them; receipts are watermarks, which stay) and raises `purged_through` on the
//! conversation's document. Applying it again, or an older one, deletes nothing more.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use ports::{PortError, RetentionScan};
use wire::{ConversationId, Seq, Timestamp, UserId};

use mongo_documents::{date, integer, signed, CONVERSATIONS, MESSAGES};

use super::client::{within, BulkCommand};
use super::MongoStore;

impl MongoStore {
    /// Applies the purges of a batch: conversation id → the highest seq to forget.
    pub(super) async fn purge_messages(
        &self,
        purges: &BTreeMap<String, u64>,
    ) -> Result<(), PortError> {
        let mut deletes = Vec::with_capacity(purges.len());
        let mut marks = Vec::with_capacity(purges.len());
        for (conversation_id, through) in purges {
            let through = signed("seq", *through)?;
            deletes.push(doc! {
                "q": { "conversation_id": conversation_id, "seq": { "$lte": through } },
                "limit": 0,
            });
            marks.push(doc! {
                "q": { "_id": conversation_id },
                "u": { "$max": { "purged_through": through } },
            });
        }
        for (command, collection, statements) in [
            (BulkCommand::Delete, MESSAGES, deletes),
            (BulkCommand::Update, CONVERSATIONS, marks),
        ] {
            self.write_all("purge", command, collection, statements)
                .await?;
        }
        Ok(())
    }

    /// The seq of the conversation's message found first by `filter` in `seq_order`.
    async fn first_seq_where(
        &self,
        filter: Document,
        seq_order: i32,
    ) -> Result<Option<u64>, PortError> {
        let found = self
            .find_sorted(
                MESSAGES,
                filter,
                doc! { "seq": 1 },
                Some(doc! { "seq": seq_order }),
                Some(1),
            )
            .await?;
        Ok(found
            .first()
            .and_then(|document| integer(document.get("seq")))
            .and_then(|seq| u64::try_from(seq).ok()))
    }
}

#[async_trait]
impl RetentionScan for MongoStore {
    async fn conversations_with_messages(
        &self,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<ConversationId>, PortError> {
        let mut filter = doc! { "last_seq": { "$gt": 0_i64 } };
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": after.as_str() });
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = self
            .find_sorted(
                CONVERSATIONS,
                filter,
                doc! { "_id": 1 },
                Some(doc! { "_id": 1 }),
                Some(limit),
            )
            .await?;
        Ok(found
            .iter()
            .filter_map(|document| document.get_str("_id").ok())
            .map(ConversationId::new)
            .collect())
    }

    async fn conversations_with_messages_from(
        &self,
        sender_id: &UserId,
        after: Option<&ConversationId>,
        limit: usize,
    ) -> Result<Vec<ConversationId>, PortError> {
        let mut filter = doc! { "sender_id": sender_id.as_str() };
        if let Some(after) = after {
            filter.insert("conversation_id", doc! { "$gt": after.as_str() });
        }
        let messages = self.database.collection::<Document>(MESSAGES);
        let distinct = within(
            self.config.operation_timeout,
            messages.distinct("conversation_id", filter),
        )
        .await?;
        let mut found: Vec<ConversationId> = distinct
            .iter()
            .filter_map(|id| id.as_str())
            .map(ConversationId::new)
            .collect();
        found.sort();
        found.truncate(limit);
        Ok(found)
    }

    async fn newest_seq_before(
        &self,
        conversation_id: &ConversationId,
        before: Timestamp,
    ) -> Result<Option<Seq>, PortError> {
        let id = conversation_id.as_str();
        // Oldest first, so only the expired messages and the first kept one are read.
        let younger = doc! { "conversation_id": id, "created_at": { "$gte": date(&before) } };
        let mut older = doc! { "conversation_id": id };
        if let Some(first_younger) = self.first_seq_where(younger, 1).await? {
            older.insert("seq", doc! { "$lt": signed("seq", first_younger)? });
        }
        Ok(self.first_seq_where(older, -1).await?.map(Seq))
    }
}
