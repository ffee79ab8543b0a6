//! [`TantivyIndex`]: the [`SearchIndex`] adapter over a Tantivy index in one directory.
//!
//! One writer (behind a mutex), one reader reloaded by hand after every commit, so what
//! [`SearchIndex::apply`] returned for is searchable at once. Tantivy's calls block: they run
//! on tokio's blocking pool. Commit policy: one commit per `apply` call (the indexer calls it
//! once per batch of log records) and per `erase_user` and `purge` that changed something; Tantivy merges segments in the
//! background with its default log merge policy.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use ports::{PortError, SearchIndex, SearchPage, SearchQuery, SearchReader};
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};
use wire::log::MessageRecord;
use wire::{ConversationId, Seq, UserId};

use crate::error::SearchError;
use crate::query::ranked_search;
use crate::schema::{register_analyzer, schema, Fields, DELETED, LIVE};

/// The smallest writer memory budget Tantivy accepts (15 MB).
pub const MIN_WRITER_MEMORY_BYTES: usize = 15_000_000;

#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The directory the index and its merge threads read through (clones share one mmap
    /// cache).
    directory: MmapDirectory,
    pub(crate) reader: IndexReader,
    writer: Mutex<IndexWriter>,
    pub(crate) fields: Fields,
}

impl TantivyIndex {
    /// Opens the index in `directory` (created when missing) with one indexing thread and
    /// `writer_memory_bytes` of indexing buffer (at least [`MIN_WRITER_MEMORY_BYTES`]).
    pub fn open(directory: &Path, writer_memory_bytes: usize) -> Result<Self, SearchError> {
        std::fs::create_dir_all(directory).map_err(SearchError::CreateDirectory)?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(directory)?;
        let index = Index::open_or_create(directory.clone(), schema)?;
        register_analyzer(&index);
        let writer =
            index.writer_with_num_threads(1, writer_memory_bytes.max(MIN_WRITER_MEMORY_BYTES))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            inner: Arc::new(Inner {
                directory,
                reader,
                writer: Mutex::new(writer),
                fields,
            }),
        })
    }

    /// How many segments the last reload sees.
    pub fn segment_count(&self) -> usize {
        self.inner.reader.searcher().segment_readers().len()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, PortError> {
        let inner = Arc::clone(&self.inner);
        let outcome = tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(SearchError::from)?;
        Ok(outcome?)
    }
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn apply(&self, records: Vec<MessageRecord>) -> Result<(), PortError> {
        if records.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| inner.apply(records)).await
    }

    async fn erase_user(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
        through: Seq,
    ) -> Result<u64, PortError> {
        let (conversation_id, user_id) = (conversation_id.clone(), user_id.clone());
        self.blocking(move |inner| inner.erase_user(&conversation_id, &user_id, through))
            .await
    }

    async fn purge(&self, conversation_id: &ConversationId, through: Seq) -> Result<(), PortError> {
        let conversation_id = conversation_id.clone();
        let purged = self
            .blocking(move |inner| inner.purge(&conversation_id, through))
            .await?;
        tracing::debug!(purged, "search index purged");
        Ok(())
    }
}

#[async_trait]
impl SearchReader for TantivyIndex {
    async fn search(&self, query: SearchQuery) -> Result<SearchPage, PortError> {
        self.blocking(move |inner| ranked_search(inner, &query))
            .await
    }

    async fn live_messages(&self) -> Result<u64, PortError> {
        self.blocking(|inner| {
            let query = inner.term_query(inner.fields.state, LIVE);
            Ok(inner.reader.searcher().search(&query, &Count)? as u64)
        })
        .await
    }
}

impl Inner {
    fn writer(&self) -> MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, records: Vec<MessageRecord>) -> Result<(), SearchError> {
        let mut writer = self.writer();
        let searcher = self.reader.searcher();
        let mut replaced = 0_usize;
        for record in newest_per_message(records) {
            let indexed = self.indexed(&searcher, record.message.message_id.as_str())?;
            if indexed.is_some_and(|indexed| !record.supersedes(&indexed)) {
                continue;
            }
            self.replace(&writer, &record)?;
            replaced += 1;
        }
        if replaced > 0 {
            self.commit(&mut writer)?;
        }
        Ok(())
    }

    fn erase_user(
        &self,
        conversation_id: &ConversationId,
        user_id: &UserId,
        through: Seq,
    ) -> Result<u64, SearchError> {
        let theirs_there = BooleanQuery::new(vec![
            (
                Occur::Must,
                self.term_query(self.fields.conversation_id, conversation_id.as_str()),
            ),
            (
                Occur::Must,
                self.term_query(self.fields.sender_id, user_id.as_str()),
            ),
        ]);
        self.erase_live(Box::new(theirs_there), |record| {
            record.message.seq <= through
        })
    }

    fn purge(&self, conversation_id: &ConversationId, through: Seq) -> Result<u64, SearchError> {
        let conversation = self.term_query(self.fields.conversation_id, conversation_id.as_str());
        self.erase_live(conversation, |record| record.message.seq <= through)
    }

    /// Turns the live messages that `matching` finds and `chosen` picks into tombstones (no
    /// text, never found; kept so that an older version applied later stays hidden). Returns
    /// how many.
    fn erase_live(
        &self,
        matching: Box<dyn Query>,
        chosen: impl Fn(&MessageRecord) -> bool,
    ) -> Result<u64, SearchError> {
        let mut writer = self.writer();
        let searcher = self.reader.searcher();
        let query = BooleanQuery::new(vec![
            (Occur::Must, matching),
            (Occur::Must, self.term_query(self.fields.state, LIVE)),
        ]);
        let mut erased_count = 0_u64;
        for address in searcher.search(&query, &DocSetCollector)? {
            let record = self.record_at(&searcher, address)?;
            if chosen(&record) {
                self.replace(&writer, &erased(record))?;
                erased_count += 1;
            }
        }
        if erased_count > 0 {
            self.commit(&mut writer)?;
        }
        Ok(erased_count)
    }

    fn commit(&self, writer: &mut IndexWriter) -> Result<(), SearchError> {
        writer.commit()?;
        self.reader.reload()?;
        self.forget_closed_files();
        Ok(())
    }

    /// Drops the mmap cache's entries of files no reader maps any more. Tantivy (0.27) keeps
    /// a path and a weak reference for every file it ever opened and removes dead ones only
    /// when asked for the cache's figures: with a commit every half second and the merges
    /// after them, that was the live heap's steady growth in the soak (≈ 3.8 MB in 27 minutes;
    /// docs/reliability.md).
    fn forget_closed_files(&self) {
        let _live_files = self.directory.get_cache_info();
    }

    /// Deletes the indexed version of the record's message and adds this one (applied together
    /// at the next commit).
    fn replace(&self, writer: &IndexWriter, record: &MessageRecord) -> Result<(), SearchError> {
        let fields = &self.fields;
        let message = &record.message;
        writer.delete_term(Term::from_field_text(
            fields.message_id,
            message.message_id.as_str(),
        ));
        let mut document = TantivyDocument::default();
        document.add_text(fields.message_id, message.message_id.as_str());
        document.add_text(fields.conversation_id, message.conversation_id.as_str());
        document.add_text(fields.sender_id, message.sender_id.as_str());
        let state = if message.deleted { DELETED } else { LIVE };
        document.add_text(fields.state, state);
        if !message.deleted {
            document.add_text(fields.text, &message.text);
        }
        document.add_i64(fields.created_at_us, message.created_at.timestamp_micros());
        document.add_u64(
            fields.tiebreak,
            ports::search::message_tiebreak(message.message_id.as_str()),
        );
        document.add_text(fields.record, serde_json::to_string(record)?);
        writer.add_document(document)?;
        Ok(())
    }

    /// The indexed version of a message, if any.
    fn indexed(
        &self,
        searcher: &Searcher,
        message_id: &str,
    ) -> Result<Option<MessageRecord>, SearchError> {
        let query = self.term_query(self.fields.message_id, message_id);
        let found = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        found
            .first()
            .map(|(_, address)| self.record_at(searcher, *address))
            .transpose()
    }

    pub(crate) fn record_at(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<MessageRecord, SearchError> {
        let document: TantivyDocument = searcher.doc(address)?;
        let json = document
            .get_first(self.fields.record)
            .and_then(|value| value.as_str().map(str::to_owned))
            .ok_or(SearchError::MissingRecord)?;
        Ok(serde_json::from_str(&json)?)
    }

    pub(crate) fn term_query(&self, field: tantivy::schema::Field, text: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::Basic,
        ))
    }
}

/// The version of each message that supersedes the others in `records`.
fn newest_per_message(records: Vec<MessageRecord>) -> Vec<MessageRecord> {
    let mut newest: HashMap<String, MessageRecord> = HashMap::new();
    for record in records {
        let key = record.message.message_id.as_str().to_owned();
        match newest.get(&key) {
            Some(kept) if !record.supersedes(kept) => {}
            _ => {
                newest.insert(key, record);
            }
        }
    }
    newest.into_values().collect()
}

/// An erased message: deleted, without text, one version above what was indexed.
fn erased(mut record: MessageRecord) -> MessageRecord {
    record.message.text.clear();
    record.message.deleted = true;
    record.version += 1;
    record
}
