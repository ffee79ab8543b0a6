//! The reads of the `Store` port.

use mongodb::bson::{doc, Document};
use ports::{MessageQuery, PortError, StoredConversation, Watermarks};
use wire::log::MessageRecord;
use wire::{ClientMsgId, ConversationId, MessageId, UserId};

use super::client::within;
use super::MongoStore;
use mongo_documents::{
    message_record, signed, stored_conversation, watermark, CONVERSATIONS, MESSAGES, PARTICIPANTS,
};

impl MongoStore {
    /// Every document matching `filter`, with `projection`, within the operation timeout.
    pub(super) async fn find_all(
        &self,
        collection: &str,
        filter: Document,
        projection: Document,
    ) -> Result<Vec<Document>, PortError> {
        self.find_sorted(collection, filter, projection, None, None)
            .await
    }

    pub(super) async fn find_sorted(
        &self,
        collection: &str,
        filter: Document,
        projection: Document,
        sort: Option<Document>,
        limit: Option<i64>,
    ) -> Result<Vec<Document>, PortError> {
        use futures::TryStreamExt;
        let collection = self.database.collection::<Document>(collection);
        let query = async move {
            let mut find = collection.find(filter);
            if !projection.is_empty() {
                find = find.projection(projection);
            }
            if let Some(sort) = sort {
                find = find.sort(sort);
            }
            if let Some(limit) = limit {
                find = find.limit(limit);
            }
            find.await?.try_collect::<Vec<Document>>().await
        };
        within(self.config.operation_timeout, query).await
    }

    async fn find_one(
        &self,
        collection: &str,
        filter: Document,
        sort: Option<Document>,
    ) -> Result<Option<Document>, PortError> {
        let found = self
            .find_sorted(collection, filter, Document::new(), sort, Some(1))
            .await?;
        Ok(found.into_iter().next())
    }

    pub(super) async fn read_conversation(
        &self,
        conversation_id: &ConversationId,
    ) -> Result<Option<StoredConversation>, PortError> {
        let filter = doc! { "_id": conversation_id.as_str(), "version": { "$gt": 0_i64 } };
        match self.find_one(CONVERSATIONS, filter, None).await? {
            Some(document) => stored_conversation(&document).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn read_watermarks(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
    ) -> Result<Watermarks, PortError> {
        let filter =
            doc! { "conversation_id": conversation_id.as_str(), "user_id": user_id.as_str() };
        match self.find_one(PARTICIPANTS, filter, None).await? {
            Some(document) => Ok(Watermarks {
                delivered_seq: watermark(&document, "delivered_seq")?,
                read_seq: watermark(&document, "read_seq")?,
            }),
            None => Ok(Watermarks::default()),
        }
    }

    pub(super) async fn read_message(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, PortError> {
        let filter =
            doc! { "_id": message_id.as_str(), "conversation_id": conversation_id.as_str() };
        match self.find_one(MESSAGES, filter, None).await? {
            Some(document) => message_record(&document).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn read_message_by_client_id(
        &self,
        conversation_id: &ConversationId,
        sender_id: &UserId,
        client_msg_id: &ClientMsgId,
    ) -> Result<Option<MessageRecord>, PortError> {
        let filter = doc! {
            "conversation_id": conversation_id.as_str(),
            "sender_id": sender_id.as_str(),
            "client_msg_id": client_msg_id.as_str(),
            "version": not_aborted(),
        };
        match self
            .find_one(MESSAGES, filter, Some(doc! { "seq": 1 }))
            .await?
        {
            Some(document) => message_record(&document).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn read_messages(
        &self,
        conversation_id: &ConversationId,
        query: MessageQuery,
    ) -> Result<Vec<MessageRecord>, PortError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut range = Document::new();
        if let Some(after) = query.after_seq {
            range.insert("$gt", signed("seq", after.0)?);
        }
        if let Some(before) = query.before_seq {
            range.insert("$lt", signed("seq", before.0)?);
        }
        let mut filter = doc! { "conversation_id": conversation_id.as_str() };
        if !range.is_empty() {
            filter.insert("seq", range);
        }
        // After a seq: the oldest ones going up; otherwise the newest ones, reversed.
        let ascending = query.after_seq.is_some();
        let sort = doc! { "seq": if ascending { 1 } else { -1 } };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let found = self
            .find_sorted(MESSAGES, filter, Document::new(), Some(sort), Some(limit))
            .await?;
        let mut records = found
            .iter()
            .map(message_record)
            .collect::<Result<Vec<_>, _>>()?;
        if !ascending {
            records.reverse();
        }
        Ok(records)
    }
}

/// Matches the versions of real messages: an aborted send's tombstone never answers for its
/// `client_msg_id` (its retry does).
fn not_aborted() -> Document {
    doc! { "$lt": wire::log::ABORTED_VERSION as i64 }
}
