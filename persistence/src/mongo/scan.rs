//! A scan of every stored message, for rebuilding what is derived from the messages (the
//! search role's `ingest reindex`) when the log no longer holds all of them.

use mongodb::bson::{doc, Document};
use ports::PortError;
use wire::log::MessageRecord;
use wire::MessageId;

use super::MongoStore;
use mongo_documents::{message_record, MESSAGES};

impl MongoStore {
    /// Up to `limit` stored messages (each in its stored version, aborted sends' tombstones
    /// included) in message id order, after the message `after`. Each page is one query: a
    /// scan holds one page in memory however many messages there are.
    pub async fn scan_messages(
        &self,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, PortError> {
        let filter = match after {
            Some(after) => doc! { "_id": { "$gt": after.as_str() } },
            None => Document::new(),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = self
            .find_sorted(
                MESSAGES,
                filter,
                Document::new(),
                Some(doc! { "_id": 1 }),
                Some(limit),
            )
            .await?;
        found.iter().map(message_record).collect()
    }
}
