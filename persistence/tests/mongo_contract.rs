//! The store contract suite against `MongoStore` over a real, private SecantusDB (a
//! MongoDB-wire server, see `common/secantus.rs`), plus what only the database shows: documents
//! and indexes checked by direct queries through the driver, and failing fast when the server
//! is gone.

// Each test crate uses part of `common` (this one: the SecantusDB server).
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::secantus::{free_port, SecantusServer};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use persistence::mongo::{
    Backfilled, MongoConfig, MongoStore, CONVERSATIONS_COLLECTION, JOBS_COLLECTION,
    MESSAGES_COLLECTION, PARTICIPANTS_COLLECTION,
};
use ports::contract::fixtures::{at, conversation_record, message_record, unique};
use ports::contract::{self, Fixture};
use ports::{MessageQuery, PortError, Store, StoreWrite, UserDataScan, UserMessages};
use wire::{ConversationId, ConversationKind, MessageId, Seq, UserId};

/// A store over a fresh database of `server`, indexes created.
async fn open_store(server: &SecantusServer) -> MongoStore {
    let config = MongoConfig::new(server.uri(), unique("parley").replace('-', "_"));
    let store = MongoStore::connect(config).await.expect("connect");
    store
        .ensure_indexes()
        .await
        .unwrap_or_else(|error| panic!("ensure_indexes: {error}\nserver log:\n{}", server.log()));
    store
}

/// Every document of `collection`, sorted by `_id`.
async fn documents(store: &MongoStore, collection: &str) -> Vec<Document> {
    store
        .database()
        .collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect")
}

async fn snapshot(store: &MongoStore) -> Vec<Vec<Document>> {
    let mut all = Vec::new();
    for collection in [
        MESSAGES_COLLECTION,
        CONVERSATIONS_COLLECTION,
        PARTICIPANTS_COLLECTION,
    ] {
        all.push(documents(store, collection).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_keeps_the_store_contract() {
    let server = SecantusServer::start();
    let server = &server;
    contract::store_suite(|| async move {
        let store: Arc<dyn Store> = Arc::new(open_store(server).await);
        Fixture::unguarded(store)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_keeps_the_store_retention_contract() {
    let server = SecantusServer::start();
    let server = &server;
    contract::store_retention_suite(|| async move {
        let store: Arc<dyn contract::RetainingStore> = Arc::new(open_store(server).await);
        Fixture::unguarded(store)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_a_batch_changes_no_document() {
    let server = SecantusServer::start();
    let store = open_store(&server).await;
    let conversation_id = ConversationId::new(unique("mongo-idem"));
    let owner = UserId::new(unique("owner"));
    let member = UserId::new(unique("member"));
    let conversation = conversation_record(
        &conversation_id,
        ConversationKind::Group,
        &[&owner, &member],
        2,
        at(0),
    );
    let mut older_conversation = conversation.clone();
    older_conversation.version = 1;
    older_conversation.participants.truncate(1);
    let messages: Vec<_> = (1..=20)
        .map(|seq| message_record(&conversation_id, seq, &owner, 2, at(seq as i64)))
        .collect();
    let mut batch: Vec<StoreWrite> = messages.iter().cloned().map(StoreWrite::Message).collect();
    batch.push(StoreWrite::Conversation(conversation.clone()));
    batch.push(StoreWrite::Watermarks {
        conversation_id: conversation_id.clone(),
        user_id: member.clone(),
        delivered_seq: Seq(20),
        read_seq: Seq(15),
    });
    store.apply(batch.clone()).await.expect("apply");
    let before = snapshot(&store).await;
    assert_eq!(before[0].len(), 20, "one document per message");
    assert_eq!(before[1].len(), 1, "one conversation document");
    assert_eq!(before[2].len(), 2, "one document per participant");

    store.apply(batch.clone()).await.expect("apply again");
    let mut stale: Vec<StoreWrite> = messages
        .iter()
        .map(|record| {
            let mut older = record.clone();
            older.version = 1;
            older.message.text = "stale".to_owned();
            StoreWrite::Message(older)
        })
        .collect();
    stale.push(StoreWrite::Conversation(older_conversation));
    stale.push(StoreWrite::Watermarks {
        conversation_id: conversation_id.clone(),
        user_id: member.clone(),
        delivered_seq: Seq(3),
        read_seq: Seq(2),
    });
    store.apply(stale).await.expect("apply older versions");
    let after = snapshot(&store).await;
    assert_eq!(before, after, "re-applying changed documents");

    let stored = store
        .database()
        .collection::<Document>(MESSAGES_COLLECTION)
        .find_one(doc! { "conversation_id": conversation_id.as_str(), "seq": 7_i64 })
        .await
        .expect("direct query")
        .expect("message 7 is in the database");
    assert_eq!(
        stored.get_str("message_id"),
        Ok(messages[6].message.message_id.as_str())
    );
    assert_eq!(stored.get_i64("version"), Ok(2));
    let participant = store
        .database()
        .collection::<Document>(PARTICIPANTS_COLLECTION)
        .find_one(doc! { "conversation_id": conversation_id.as_str(), "user_id": member.as_str() })
        .await
        .expect("direct query")
        .expect("participant");
    assert_eq!(participant.get_i64("delivered_seq"), Ok(20));
    assert_eq!(participant.get_i64("read_seq"), Ok(15));
    assert_eq!(participant.get_str("role"), Ok("member"));

    // An attempt that stored the conversation but died before its participants: the retry
    // of the same batch repairs them although the conversation version is already there.
    store
        .database()
        .collection::<Document>(PARTICIPANTS_COLLECTION)
        .delete_many(doc! { "conversation_id": conversation_id.as_str() })
        .await
        .expect("direct delete");
    store.apply(batch).await.expect("retry");
    assert_eq!(
        documents(&store, PARTICIPANTS_COLLECTION).await.len(),
        2,
        "the member participates again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_exist_and_enforce_unique_seqs() {
    let server = SecantusServer::start();
    let store = open_store(&server).await;
    store
        .ensure_indexes()
        .await
        .expect("ensure_indexes is idempotent");
    let expected = [
        (
            MESSAGES_COLLECTION,
            &[
                "conversation_seq",
                "message_id",
                "conversation_sender_client_msg",
                "sender_conversation_seq",
                "reactors_conversation_seq",
            ][..],
        ),
        (CONVERSATIONS_COLLECTION, &["direct_pair", "activity"][..]),
        (
            PARTICIPANTS_COLLECTION,
            &["conversation_user", "user_id"][..],
        ),
        (JOBS_COLLECTION, &["kind_state"][..]),
    ];
    for (collection, names) in expected {
        let found = store
            .database()
            .collection::<Document>(collection)
            .list_index_names()
            .await
            .expect("list_index_names");
        for name in names {
            assert!(
                found.iter().any(|index| index == name),
                "{collection}: {name} missing in {found:?}"
            );
        }
    }

    let conversation_id = ConversationId::new(unique("mongo-unique"));
    let sender = UserId::new(unique("sender"));
    let first = message_record(&conversation_id, 1, &sender, 1, at(1));
    store
        .apply(vec![StoreWrite::Message(first.clone())])
        .await
        .expect("apply");
    let messages = store.database().collection::<Document>(MESSAGES_COLLECTION);
    let duplicate = messages
        .insert_one(doc! {
            "_id": unique("other-message"),
            "message_id": unique("other-message"),
            "conversation_id": conversation_id.as_str(),
            "seq": 1_i64,
        })
        .await;
    let error = duplicate.expect_err("a second message at the same seq is refused");
    assert!(
        error.to_string().contains("11000") || error.to_string().contains("uplicate"),
        "{error}"
    );

    let mut impostor = message_record(&conversation_id, 1, &sender, 3, at(2));
    impostor.message.message_id = MessageId::new(unique("impostor"));
    impostor.message.text = "impostor".to_owned();
    let refused = store.apply(vec![StoreWrite::Message(impostor)]).await;
    assert!(
        matches!(refused, Err(PortError::Internal { .. })),
        "another message at a stored seq is a bug, not a silent no-op: {refused:?}"
    );
    let stored = store
        .messages(
            &conversation_id,
            MessageQuery {
                after_seq: None,
                before_seq: None,
                limit: 10,
            },
        )
        .await
        .expect("read");
    assert_eq!(stored, vec![first]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_within_the_timeout() {
    let timeout = Duration::from_millis(500);
    let config = MongoConfig::new(format!("mongodb://127.0.0.1:{}/", free_port()), "parley")
        .with_timeouts(timeout);
    let store = MongoStore::connect(config).await.expect("connect is lazy");
    let conversation_id = ConversationId::new(unique("mongo-down"));
    let sender = UserId::new(unique("sender"));
    let started = Instant::now();
    let written = store
        .apply(vec![StoreWrite::Message(message_record(
            &conversation_id,
            1,
            &sender,
            1,
            at(1),
        ))])
        .await;
    assert!(
        matches!(written, Err(PortError::Unavailable { .. })),
        "{written:?}"
    );
    let read = store
        .messages(
            &conversation_id,
            MessageQuery {
                after_seq: None,
                before_seq: None,
                limit: 10,
            },
        )
        .await;
    assert!(
        matches!(read, Err(PortError::Unavailable { .. })),
        "{read:?}"
    );
    let indexes = store.ensure_indexes().await;
    assert!(
        matches!(indexes, Err(PortError::Unavailable { .. })),
        "{indexes:?}"
    );
    assert!(!store.is_ready().await);
    let elapsed = started.elapsed();
    assert!(
        elapsed < timeout * 4 + Duration::from_secs(1),
        "took {elapsed:?}"
    );
}

/// What the write path relies on: a version-guarded upsert that misses a stored newer version
/// tries to insert and is refused with a duplicate key (11000) on `_id`, changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_upsert_against_a_newer_version_is_a_duplicate_key() {
    let server = SecantusServer::start();
    let store = open_store(&server).await;
    let id = unique("guarded");
    let upsert = |version: i64| {
        doc! {
            "update": MESSAGES_COLLECTION,
            "updates": [{
                "q": { "_id": id.as_str(), "version": { "$lt": version } },
                "u": { "$set": { "version": version, "message_id": id.as_str(), "seq": version } },
                "upsert": true,
            }],
            "ordered": false,
            "writeConcern": { "w": "majority", "j": true },
        }
    };
    let inserted = store
        .database()
        .run_command(upsert(2))
        .await
        .expect("insert");
    assert!(inserted.get_array("writeErrors").is_err(), "{inserted}");
    let refused = store
        .database()
        .run_command(upsert(1))
        .await
        .expect("command");
    let errors = refused.get_array("writeErrors").expect("a write error");
    let code = errors[0]
        .as_document()
        .and_then(|error| error.get("code").cloned());
    assert_eq!(
        code.and_then(|code| code.as_i32()),
        Some(11000),
        "{refused}"
    );
    let stored = documents(&store, MESSAGES_COLLECTION).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].get_i64("version"), Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_keeps_the_audit_log_contract() {
    let server = SecantusServer::start();
    let server = &server;
    contract::audit_log_suite(|| async move {
        let audit: Arc<dyn ports::AuditLog> = Arc::new(open_store(server).await);
        Fixture::unguarded(audit)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_keeps_the_jobs_contract() {
    let server = SecantusServer::start();
    let server = &server;
    contract::jobs_suite(|| async move {
        let jobs: Arc<dyn ports::Jobs> = Arc::new(open_store(server).await);
        Fixture::unguarded(jobs)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_keeps_the_user_data_contract() {
    let server = SecantusServer::start();
    let server = &server;
    contract::user_data_suite(|| async move {
        let store: Arc<dyn contract::ScannableStore> = Arc::new(open_store(server).await);
        Fixture::unguarded(store)
    })
    .await;
}

/// The users whose reactions `store`'s export scan finds on messages of `user`.
async fn reacted_by(store: &MongoStore, user: &UserId) -> Vec<MessageId> {
    let page = store
        .user_messages(user, UserMessages::ReactedBy, None, 10)
        .await
        .expect("scan");
    (page.records.into_iter())
        .map(|record| record.message.message_id)
        .collect()
}

/// Message documents written before v1.1 lack `reactors`: older ones than a backfill round
/// (500) holds, so that it pages.
const OLDER_MESSAGES: u64 = 502;

/// Message documents written before v1.1 lack `reactors`, so exports missed their reactions:
/// `ingest setup`'s backfill gives it to them from their record, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_gives_older_message_documents_their_reactors() {
    let server = SecantusServer::start();
    let store = open_store(&server).await;
    let conversation_id = ConversationId::new(unique("backfill"));
    let sender = UserId::new(unique("sender"));
    let fan = UserId::new(unique("fan"));
    let mut reacted = message_record(&conversation_id, 1, &sender, 1, at(1));
    let both = vec![fan.clone(), sender.clone()];
    reacted.message.reactions.insert("👍".to_owned(), both);
    let mut writes = vec![StoreWrite::Message(reacted.clone())];
    writes.extend(
        (2..=OLDER_MESSAGES).map(|seq| {
            StoreWrite::Message(message_record(&conversation_id, seq, &sender, 1, at(2)))
        }),
    );
    store.apply(writes).await.expect("apply");
    let messages = store.database().collection::<Document>(MESSAGES_COLLECTION);
    let older = doc! { "$unset": { "reactors": "" } };
    messages.update_many(doc! {}, older).await.expect("unset");
    let missed = reacted_by(&store, &fan).await;
    assert_eq!(missed, [], "missed without the field");

    let filled = store.backfill_reactors().await.expect("backfill");
    let every = Backfilled {
        filled: OLDER_MESSAGES,
        unreadable: 0,
    };
    assert_eq!(filled, every);
    let mut both: Vec<String> = [&fan, &sender]
        .iter()
        .map(|user| user.to_string())
        .collect();
    both.sort();
    for document in documents(&store, MESSAGES_COLLECTION).await {
        let field = document.get_array("reactors").expect("reactors");
        let users: Vec<String> = (field.iter())
            .map(|user| user.as_str().expect("a user id").to_owned())
            .collect();
        let id = document.get_str("_id").expect("_id");
        let want = if id == reacted.message.message_id.as_str() {
            both.clone()
        } else {
            vec![]
        };
        assert_eq!(users, want, "{id}");
    }
    assert_eq!(reacted_by(&store, &fan).await, [reacted.message.message_id]);
    let again = store.backfill_reactors().await.expect("backfill again");
    assert_eq!(again, Backfilled::default(), "nothing left to do");
}
