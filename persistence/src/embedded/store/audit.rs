//! [`AuditLog`] over the embedded store: the `audit` table, id (UUIDv7 text, in append order)
//! → serde_json of the record. A query scans from its cursor and filters (standalone volumes).

use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use ports::{AuditLog, AuditPage, AuditQuery, AuditRecord, PortError};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::EmbeddedStore;
use crate::error::{run_blocking, PersistenceError};

/// id → serde_json of the `AuditRecord`.
pub(super) const AUDIT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");

#[async_trait]
impl AuditLog for EmbeddedStore {
    async fn append(&self, record: AuditRecord) -> Result<(), PortError> {
        let database = Arc::clone(&self.database);
        run_blocking(move || {
            let write = database.begin_write()?;
            {
                let mut table = write.open_table(AUDIT)?;
                if table.get(record.id.as_str())?.is_none() {
                    table.insert(record.id.as_str(), serde_json::to_vec(&record)?.as_slice())?;
                }
            }
            write.commit()?;
            Ok::<_, PersistenceError>(())
        })
        .await
    }

    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, PortError> {
        let database = Arc::clone(&self.database);
        let query = query.clone();
        run_blocking(move || {
            let read = database.begin_read()?;
            let table = read.open_table(AUDIT)?;
            let start = match &query.cursor {
                Some(cursor) => Bound::Excluded(cursor.as_str()),
                None => Bound::Unbounded,
            };
            let mut records = Vec::new();
            let mut more = false;
            for entry in table.range::<&str>((start, Bound::Unbounded))? {
                let (_, value) = entry?;
                let record: AuditRecord = serde_json::from_slice(value.value())?;
                if !query.matches(&record) {
                    continue;
                }
                if records.len() == query.limit {
                    more = true;
                    break;
                }
                records.push(record);
            }
            let next_cursor = more
                .then(|| records.last().map(|record: &AuditRecord| record.id.clone()))
                .flatten();
            Ok::<_, PersistenceError>(AuditPage {
                records,
                next_cursor,
            })
        })
        .await
    }
}
