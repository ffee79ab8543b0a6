//! Backfills of fields that documents written by an older version lack, run by `ingest setup`
//! after the indexes: `reactors` on `messages` (v1.1: the distinct users with a reaction on the
//! message, which exports query through the index `reactors_conversation_seq`). Idempotent: a
//! document that has the field is never read or written again, and each write is conditional
//! on the field still missing, so a message that ingest rewrites meanwhile keeps ingest's value.

use mongodb::bson::{doc, Document};
use ports::PortError;

use super::client::within;
use super::MongoStore;
use mongo_documents::{message_record, reactors, MESSAGES};

/// Messages read per round of the backfill.
const BATCH: i64 = 500;

/// What one backfill did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backfilled {
    /// Documents that got the field.
    pub filled: u64,
    /// Documents whose record could not be read (left without the field; logged).
    pub unreadable: u64,
}

impl MongoStore {
    /// Gives every message document without `reactors` the field, from its record, in
    /// batches of [`BATCH`] in `_id` order.
    pub async fn backfill_reactors(&self) -> Result<Backfilled, PortError> {
        let mut done = Backfilled::default();
        let mut after: Option<String> = None;
        loop {
            let mut filter = doc! { "reactors": { "$exists": false } };
            if let Some(after) = &after {
                filter.insert("_id", doc! { "$gt": after.as_str() });
            }
            let sort = Some(doc! { "_id": 1 });
            let batch =
                (self.find_sorted(MESSAGES, filter, doc! { "record": 1 }, sort, Some(BATCH)))
                    .await?;
            for document in &batch {
                self.fill_reactors(document, &mut done).await?;
            }
            match batch.last().and_then(|last| last.get_str("_id").ok()) {
                Some(last) if batch.len() as i64 == BATCH => after = Some(last.to_owned()),
                _ => return Ok(done),
            }
        }
    }

    async fn fill_reactors(
        &self,
        document: &Document,
        done: &mut Backfilled,
    ) -> Result<(), PortError> {
        let (Ok(id), Ok(record)) = (document.get_str("_id"), message_record(document)) else {
            tracing::warn!(id = ?document.get("_id"), "backfill: a message document without a readable record: left as it is");
            done.unreadable += 1;
            return Ok(());
        };
        let collection = self.database.collection::<Document>(MESSAGES);
        let update = collection.update_one(
            doc! { "_id": id, "reactors": { "$exists": false } },
            doc! { "$set": { "reactors": reactors(&record.message) } },
        );
        within(self.config.operation_timeout, update).await?;
        done.filled += 1;
        Ok(())
    }
}
