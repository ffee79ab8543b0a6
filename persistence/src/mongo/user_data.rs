//! [`UserDataScan`] on MongoDB: the user's `messages` documents by `sender_id` (index
//! `sender_conversation_seq`) or by `reactors` (index `reactors_conversation_seq`, a multikey
//! index over the users with a reaction), ascending by (conversation id, seq) after the
//! cursor.

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use ports::{PortError, UserDataScan, UserMessageCursor, UserMessagePage, UserMessages};
use wire::UserId;

use mongo_documents::{message_record, signed, MESSAGES};

use super::MongoStore;

/// The filter of the user's messages of kind `which` after `after`.
fn filter_of(
    user_id: &UserId,
    which: UserMessages,
    after: Option<&UserMessageCursor>,
) -> Result<Document, PortError> {
    let field = match which {
        UserMessages::SentBy => "sender_id",
        UserMessages::ReactedBy => "reactors",
    };
    let mut filter = doc! { field: user_id.as_str() };
    if let Some(cursor) = after {
        let conversation_id = cursor.conversation_id.as_str();
        filter.insert(
            "$or",
            vec![
                doc! { "conversation_id": { "$gt": conversation_id } },
                doc! {
                    "conversation_id": conversation_id,
                    "seq": { "$gt": signed("seq", cursor.seq.0)? },
                },
            ],
        );
    }
    Ok(filter)
}

#[async_trait]
impl UserDataScan for MongoStore {
    async fn user_messages(
        &self,
        user_id: &UserId,
        which: UserMessages,
        after: Option<&UserMessageCursor>,
        limit: usize,
    ) -> Result<UserMessagePage, PortError> {
        let limit = limit.max(1);
        let found = self
            .find_sorted(
                MESSAGES,
                filter_of(user_id, which, after)?,
                doc! { "record": 1 },
                Some(doc! { "conversation_id": 1, "seq": 1 }),
                Some(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .await?;
        let records = found
            .iter()
            .map(message_record)
            .collect::<Result<Vec<_>, _>>()?;
        let next = (records.len() == limit)
            .then(|| records.last().map(UserMessageCursor::after))
            .flatten();
        Ok(UserMessagePage { records, next })
    }
}
