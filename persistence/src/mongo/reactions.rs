//! Reaction changes (logged as deltas) become message versions before a batch is written:
//! each applies, in log order, to the batch's newest version of its message, else to the
//! stored one, read once per batch for all of them.

use std::collections::BTreeSet;

use mongodb::bson::doc;
use ports::PortError;

use super::write::Folded;
use super::MongoStore;
use mongo_documents::{message_record, MESSAGES};

impl MongoStore {
    pub(super) async fn fold_reactions(&self, folded: &mut Folded) -> Result<(), PortError> {
        if folded.reactions.is_empty() {
            return Ok(());
        }
        let unread: BTreeSet<&str> = folded
            .reactions
            .iter()
            .map(|delta| delta.message_id.as_str())
            .filter(|id| !folded.messages.contains_key(*id))
            .collect();
        let mut stored = std::collections::BTreeMap::new();
        if !unread.is_empty() {
            let ids: Vec<&str> = unread.into_iter().collect();
            let documents = self
                .find_all(
                    MESSAGES,
                    doc! { "_id": { "$in": ids } },
                    doc! { "record": 1 },
                )
                .await?;
            for document in &documents {
                let record = message_record(document)?;
                stored.insert(record.message.message_id.as_str().to_owned(), record);
            }
        }
        for delta in std::mem::take(&mut folded.reactions) {
            let key = delta.message_id.as_str();
            if let Some(record) = folded.messages.get_mut(key) {
                delta.apply_to(record);
                continue;
            }
            let Some(mut record) = stored.remove(key) else {
                tracing::warn!(conversation_id = %delta.conversation_id, message_id = %delta.message_id, "reaction change for a message not in the store: skipped");
                continue;
            };
            if delta.apply_to(&mut record) {
                folded.messages.insert(key.to_owned(), record);
            } else {
                stored.insert(key.to_owned(), record);
            }
        }
        Ok(())
    }
}
