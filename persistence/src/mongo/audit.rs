//! [`AuditLog`] over MongoDB: the `audit` collection, one document per record, written by the
//! nodes themselves (durable cluster mode): `{_id: id, at_ms, actor, action, target, record}`
//! where `record` is the record's JSON and the other fields serve the filters. Appends are
//! upserts with `$setOnInsert`, so appending a record twice changes nothing.

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use ports::{AuditLog, AuditPage, AuditQuery, AuditRecord, PortError, Service};

use super::client::within;
use super::MongoStore;

/// The collection of audit records.
pub const AUDIT: &str = "audit";

fn corrupt(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PortError {
    PortError::corrupt(Service::MongoDb, "audit record", error)
}

fn filter_of(query: &AuditQuery) -> Document {
    let mut filter = Document::new();
    if let Some(cursor) = &query.cursor {
        filter.insert("_id", doc! { "$gt": cursor.as_str() });
    }
    if let Some(since) = query.since {
        filter.insert("at_ms", doc! { "$gte": since.timestamp_millis() });
    }
    for (field, value) in [
        ("actor", &query.actor),
        ("target", &query.target),
        ("action", &query.action),
    ] {
        if let Some(value) = value {
            filter.insert(field, value.as_str());
        }
    }
    filter
}

#[async_trait]
impl AuditLog for MongoStore {
    async fn append(&self, record: AuditRecord) -> Result<(), PortError> {
        let json = serde_json::to_string(&record).map_err(PortError::internal)?;
        let fields = doc! {
            "at_ms": record.at.timestamp_millis(),
            "actor": &record.actor,
            "action": &record.action,
            "target": &record.target,
            "record": json,
        };
        let collection = self.database.collection::<Document>(AUDIT);
        let upsert = collection
            .update_one(doc! { "_id": &record.id }, doc! { "$setOnInsert": fields })
            .upsert(true);
        within(self.config.operation_timeout, upsert).await?;
        Ok(())
    }

    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, PortError> {
        let wanted = query.limit.max(1);
        let found = self
            .find_sorted(
                AUDIT,
                filter_of(query),
                doc! { "record": 1 },
                Some(doc! { "_id": 1 }),
                Some(wanted as i64 + 1),
            )
            .await?;
        let more = found.len() > wanted;
        let records = found
            .iter()
            .take(wanted)
            .map(|document| {
                let json = document.get_str("record").map_err(corrupt)?;
                serde_json::from_str::<AuditRecord>(json).map_err(corrupt)
            })
            .collect::<Result<Vec<_>, PortError>>()?;
        let next_cursor = more
            .then(|| records.last().map(|record| record.id.clone()))
            .flatten();
        Ok(AuditPage {
            records,
            next_cursor,
        })
    }
}
