//! `ingest reindex`: rebuilds the search role's index from MongoDB, for when Kafka's retention
//! no longer holds the whole history (a replica's index lost, or a new replica).
//!
//! Run it with the replica stopped. The new index is built beside the old one
//! (`<data_dir>/index.reindex`), page by page (one page of messages in memory), then replaces
//! it under a new consumer group; the replica started afterwards reads the log from the
//! oldest record Kafka still holds. Replaying those records over the rebuilt index changes
//! nothing that MongoDB already had (a version replaces an indexed one only when it supersedes
//! it) and adds what ingest had not stored yet, so no message the log or the store holds is
//! missed.

use std::io;
use std::path::Path;

use ports::SearchIndex;
use search::TantivyIndex;
use tracing::info;

use ingest::settings::ServiceSettings;
use persistence::mongo::MongoStore;

use crate::service::ServiceError;

/// Messages per MongoDB page and per index commit.
const PAGE: usize = 2000;

/// Rebuilds the index in `search.data_dir`; returns how many stored messages it indexed.
pub async fn run(settings: &ServiceSettings) -> Result<u64, ServiceError> {
    let data_dir = &settings.search.data_dir;
    let index_dir = data_dir.join("index");
    let fresh_dir = data_dir.join("index.reindex");
    ensure_not_in_use(settings, &index_dir)?;
    remove_if_present(&fresh_dir).map_err(|error| ServiceError::index(&fresh_dir, error))?;
    let store = MongoStore::connect(settings.mongo_config())
        .await
        .map_err(ServiceError::AdapterConfig)?;
    let indexed = {
        let fresh = open(settings, &fresh_dir)?;
        copy_messages(&store, &fresh).await?
    };
    remove_if_present(&index_dir).map_err(|error| ServiceError::index(&index_dir, error))?;
    let group = search::replica_group(&index_dir)
        .map_err(|error| ServiceError::index(&index_dir, error))?;
    std::fs::rename(&fresh_dir, &index_dir)
        .map_err(|error| ServiceError::index(&index_dir, error))?;
    info!(messages = indexed, group = %group, directory = %index_dir.display(), "search index rebuilt from mongodb");
    Ok(indexed)
}

/// Every stored message into `index`, a page at a time.
async fn copy_messages(store: &MongoStore, index: &TantivyIndex) -> Result<u64, ServiceError> {
    let mut after = None;
    let mut indexed = 0_u64;
    loop {
        let page = store
            .scan_messages(after.as_ref(), PAGE)
            .await
            .map_err(ServiceError::Reindex)?;
        let Some(last) = page.last() else {
            return Ok(indexed);
        };
        after = Some(last.message.message_id.clone());
        indexed += page.len() as u64;
        index.apply(page).await.map_err(ServiceError::Reindex)?;
        if indexed % 100_000 < PAGE as u64 {
            info!(messages = indexed, "reindexing");
        }
    }
}

/// The current index must not be open in a running replica (Tantivy's writer lock).
fn ensure_not_in_use(settings: &ServiceSettings, index_dir: &Path) -> Result<(), ServiceError> {
    if !index_dir.is_dir() {
        return Ok(());
    }
    open(settings, index_dir)
        .map(drop)
        .map_err(|error| match error {
            ServiceError::Index { directory, problem } => ServiceError::Index {
                directory,
                problem: format!("{problem} (stop the search role before `ingest reindex`)"),
            },
            other => other,
        })
}

fn open(settings: &ServiceSettings, directory: &Path) -> Result<TantivyIndex, ServiceError> {
    TantivyIndex::open(directory, settings.search.writer_memory_bytes())
        .map_err(|error| ServiceError::index(directory, error))
}

fn remove_if_present(directory: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(directory) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
