//! `apply`: a batch of `StoreWrite`s as a few unordered bulk commands, each idempotent.
//!
//! Versioned documents use guarded upserts: filter `{_id, version: {$lt: new}}` with
//! `upsert: true`. When the stored version is older the update applies; when none is stored
//! the upsert inserts; when the stored version is the same or newer the filter misses and the
//! insert collides on `_id` (duplicate key 11000), which means "already there" — verified, not
//! assumed. Watermarks and derived activity only move up through `$max`.
//!
//! Steps: messages and the activity they raise; conversations; the participant sets of the
//! conversations whose stored version is now the batch's (also when an earlier attempt stored
//! the conversation and failed before its participants, so a retry repairs them); watermarks;
//! then retention purges (`retention.rs`), so a purge also removes messages of its batch;
//! last, erasures (`erasure.rs`), which also reach messages of their batch.

use std::collections::BTreeMap;

use mongodb::bson::{doc, Document};
use ports::{PortError, Service, StoreWrite};
use wire::log::{ConversationRecord, MessageRecord, ReactionDelta};

use super::client::{bulk, none_refused, only_duplicates, BulkCommand, StatementError};
use super::erasure::Erasure;
use super::MongoStore;
use mongo_documents::integer;
use mongo_documents::{
    conversation_fields, date, message_fields, micros, role, signed, CONVERSATIONS, MESSAGES,
    PARTICIPANTS,
};

/// One batch, folded: per key only the newest version and the highest watermarks; reaction
/// changes in log order (`fold_reactions` turns them into message versions).
#[derive(Default)]
pub(super) struct Folded {
    pub(super) messages: BTreeMap<String, MessageRecord>,
    pub(super) reactions: Vec<ReactionDelta>,
    /// conversation id → (highest seq, newest message time in µs)
    activity: BTreeMap<String, (u64, i64)>,
    conversations: BTreeMap<String, ConversationRecord>,
    /// (conversation id, user id) → (delivered, read)
    watermarks: BTreeMap<(String, String), (u64, u64)>,
    /// conversation id → the highest seq retention purged (applied after the messages)
    purges: BTreeMap<String, u64>,
    /// erasures in log order (applied last, after the purges)
    erasures: Vec<Erasure>,
}

impl Folded {
    fn new(writes: Vec<StoreWrite>) -> Self {
        let mut folded = Folded::default();
        for write in writes {
            match write {
                StoreWrite::Message(record) => {
                    let message = &record.message;
                    let activity = folded
                        .activity
                        .entry(message.conversation_id.as_str().to_owned())
                        .or_insert((0, i64::MIN));
                    activity.0 = activity.0.max(message.seq.0);
                    activity.1 = activity.1.max(micros(&message.created_at));
                    let key = message.message_id.as_str().to_owned();
                    match folded.messages.get(&key) {
                        Some(held) if held.version >= record.version => {}
                        _ => {
                            folded.messages.insert(key, record);
                        }
                    }
                }
                StoreWrite::Reaction(delta) => folded.reactions.push(delta),
                StoreWrite::Purge {
                    conversation_id,
                    through_seq,
                } => {
                    let through = folded
                        .purges
                        .entry(conversation_id.as_str().to_owned())
                        .or_insert(0);
                    *through = (*through).max(through_seq.0);
                }
                StoreWrite::Erase {
                    conversation_id,
                    user_id,
                    through_seq,
                } => folded.erasures.push(Erasure {
                    conversation_id,
                    user_id,
                    through_seq,
                }),
                StoreWrite::Conversation(record) => {
                    let key = record.conversation.conversation_id.as_str().to_owned();
                    match folded.conversations.get(&key) {
                        Some(held) if held.version >= record.version => {}
                        _ => {
                            folded.conversations.insert(key, record);
                        }
                    }
                }
                StoreWrite::Watermarks {
                    conversation_id,
                    user_id,
                    delivered_seq,
                    read_seq,
                } => {
                    let marks = folded
                        .watermarks
                        .entry((
                            conversation_id.as_str().to_owned(),
                            user_id.as_str().to_owned(),
                        ))
                        .or_insert((0, 0));
                    marks.0 = marks.0.max(delivered_seq.0);
                    marks.1 = marks.1.max(read_seq.0);
                }
            }
        }
        folded
    }
}

impl MongoStore {
    pub(super) async fn apply_writes(&self, writes: Vec<StoreWrite>) -> Result<(), PortError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut folded = Folded::new(writes);
        self.fold_reactions(&mut folded).await?;
        self.put_messages(&folded).await?;
        self.raise_activity(&folded).await?;
        self.put_conversations(&folded).await?;
        self.replace_participants(&folded).await?;
        self.raise_watermarks(&folded).await?;
        self.purge_messages(&folded.purges).await?;
        self.erase_users(&folded.erasures).await
    }

    async fn update(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<Vec<StatementError>, PortError> {
        bulk(
            &self.database,
            self.config.operation_timeout,
            &self.write_concern,
            BulkCommand::Update,
            collection,
            statements,
        )
        .await
    }

    async fn put_messages(&self, folded: &Folded) -> Result<(), PortError> {
        let records: Vec<&MessageRecord> = folded.messages.values().collect();
        let mut statements = Vec::with_capacity(records.len());
        for record in &records {
            statements.push(doc! {
                "q": {
                    "_id": record.message.message_id.as_str(),
                    "version": { "$lt": signed("version", record.version)? },
                },
                "u": { "$set": message_fields(record)? },
                "upsert": true,
            });
        }
        let refused = self.update(MESSAGES, statements).await?;
        only_duplicates(MESSAGES, &refused)?;
        if refused.is_empty() {
            return Ok(());
        }
        // A duplicate is fine only when this very message is stored at this or a newer
        // version; anything else (another message at the same seq) is a bug upstream.
        let collided: Vec<&MessageRecord> = refused
            .iter()
            .filter_map(|error| records.get(error.index).copied())
            .collect();
        let ids: Vec<&str> = collided
            .iter()
            .map(|record| record.message.message_id.as_str())
            .collect();
        let stored = self
            .find_all(
                MESSAGES,
                doc! { "_id": { "$in": ids } },
                doc! { "_id": 1, "version": 1, "conversation_id": 1, "seq": 1 },
            )
            .await?;
        for record in collided {
            let message = &record.message;
            let same = stored
                .iter()
                .find(|document| document.get_str("_id") == Ok(message.message_id.as_str()));
            let newer = same.is_some_and(|document| {
                document.get_str("conversation_id") == Ok(message.conversation_id.as_str())
                    && integer(document.get("seq")) == Some(message.seq.0 as i64)
                    && integer(document.get("version")).unwrap_or(0) >= record.version as i64
            });
            if !newer {
                return Err(PortError::internal(format!(
                    "message {} (conversation {}, seq {}) collides with another stored message",
                    message.message_id, message.conversation_id, message.seq.0
                )));
            }
        }
        Ok(())
    }

    /// Raises `last_seq` and `activity_micros`, creating a stub conversation (version 0) when
    /// messages arrive before their conversation.
    async fn raise_activity(&self, folded: &Folded) -> Result<(), PortError> {
        let mut statements = Vec::with_capacity(folded.activity.len());
        for (conversation_id, (last_seq, activity)) in &folded.activity {
            statements.push(doc! {
                "q": { "_id": conversation_id },
                "u": {
                    "$max": { "last_seq": signed("seq", *last_seq)?, "activity_micros": *activity },
                    "$setOnInsert": { "version": 0_i64 },
                },
                "upsert": true,
            });
        }
        self.upsert_retrying_races(CONVERSATIONS, statements).await
    }

    async fn put_conversations(&self, folded: &Folded) -> Result<(), PortError> {
        let mut statements = Vec::with_capacity(folded.conversations.len());
        for (conversation_id, record) in &folded.conversations {
            statements.push(doc! {
                "q": {
                    "_id": conversation_id,
                    "version": { "$lt": signed("version", record.version)? },
                },
                "u": {
                    "$set": conversation_fields(record)?,
                    "$max": {
                        "last_seq": 0_i64,
                        "activity_micros": micros(&record.conversation.created_at),
                    },
                },
                "upsert": true,
            });
        }
        // A duplicate key: the stored version is the same or newer (checked next step).
        let refused = self.update(CONVERSATIONS, statements).await?;
        only_duplicates(CONVERSATIONS, &refused)
    }

    /// For each conversation now stored at the batch's version: its participants are exactly
    /// the record's, each keeping its watermarks. `membership_version` keeps an older record
    /// from undoing a newer one's membership.
    async fn replace_participants(&self, folded: &Folded) -> Result<(), PortError> {
        if folded.conversations.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = folded.conversations.keys().map(String::as_str).collect();
        let stored = self
            .find_all(
                CONVERSATIONS,
                doc! { "_id": { "$in": ids } },
                doc! { "_id": 1, "version": 1 },
            )
            .await?;
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (conversation_id, record) in &folded.conversations {
            let version = signed("version", record.version)?;
            let current = stored.iter().any(|document| {
                document.get_str("_id") == Ok(conversation_id.as_str())
                    && integer(document.get("version")) == Some(version)
            });
            if !current {
                continue;
            }
            let users: Vec<&str> = record
                .participants
                .iter()
                .map(|participant| participant.user_id.as_str())
                .collect();
            deletes.push(doc! {
                "q": {
                    "conversation_id": conversation_id,
                    "user_id": { "$nin": users },
                    "membership_version": { "$lt": version },
                },
                "limit": 0,
            });
            for participant in &record.participants {
                upserts.push(doc! {
                    "q": {
                        "conversation_id": conversation_id,
                        "user_id": participant.user_id.as_str(),
                        "membership_version": { "$lte": version },
                    },
                    "u": {
                        "$set": {
                            "member": true,
                            "membership_version": version,
                            "role": role(participant.role),
                            "joined_at": date(&participant.joined_at),
                        },
                        "$max": { "delivered_seq": 0_i64, "read_seq": 0_i64 },
                    },
                    "upsert": true,
                });
            }
        }
        let refused = bulk(
            &self.database,
            self.config.operation_timeout,
            &self.write_concern,
            BulkCommand::Delete,
            PARTICIPANTS,
            deletes,
        )
        .await?;
        none_refused("delete from participants", &refused)?;
        // A duplicate key: a newer conversation version already set this participant.
        let refused = self.update(PARTICIPANTS, upserts).await?;
        only_duplicates(PARTICIPANTS, &refused)
    }

    async fn raise_watermarks(&self, folded: &Folded) -> Result<(), PortError> {
        let mut statements = Vec::with_capacity(folded.watermarks.len());
        for ((conversation_id, user_id), (delivered, read)) in &folded.watermarks {
            statements.push(doc! {
                "q": { "conversation_id": conversation_id, "user_id": user_id },
                "u": {
                    "$max": {
                        "delivered_seq": signed("seq", *delivered)?,
                        "read_seq": signed("seq", *read)?,
                    },
                    "$setOnInsert": { "member": false, "membership_version": 0_i64 },
                },
                "upsert": true,
            });
        }
        self.upsert_retrying_races(PARTICIPANTS, statements).await
    }

    /// Sends unguarded upserts. They only collide (duplicate key) when a concurrent writer
    /// inserted the same document first; sent once more, the update then finds it.
    async fn upsert_retrying_races(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<(), PortError> {
        let refused = self.update(collection, statements.clone()).await?;
        only_duplicates(collection, &refused)?;
        let again: Vec<Document> = refused
            .iter()
            .filter_map(|error| statements.get(error.index).cloned())
            .collect();
        let refused = self.update(collection, again).await?;
        match refused.first() {
            None => Ok(()),
            Some(error) => Err(PortError::unavailable(
                Service::MongoDb,
                format!(
                    "write to {collection} refused again (code {}): {}",
                    error.code, error.message
                ),
            )),
        }
    }
}
