//! Contract of [`Store`].

use std::future::Future;

use wire::{ConversationId, ConversationKind, Seq, UserId};

use super::fixtures::{at, conversation_record, message_record, unique};
use super::Fixture;
use crate::{MessageQuery, Store, StoreWrite, Watermarks};

/// Runs every store case, each on a fresh store from `make`.
pub async fn store_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn Store>>,
{
    applying_a_message_twice_or_an_older_version_changes_nothing(make().await).await;
    conversation_versions_only_move_forward(make().await).await;
    replacing_participants_keeps_watermarks_of_those_who_stay(make().await).await;
    watermarks_only_go_up(make().await).await;
    message_queries_page_both_ways(make().await).await;
    activity_follows_messages_even_before_the_conversation(make().await).await;
    messages_are_found_by_id_and_client_id(make().await).await;
    aborted_sends_read_as_deleted_and_never_shadow_their_retry(make().await).await;
    super::store_reactions::reaction_deltas_apply_once_in_order(make().await).await;
    super::store_erasure::erasure_deletes_the_users_messages_once(make().await).await;
    assert!(make().await.port.is_ready().await, "a fresh store is ready");
}

fn ids(records: &[wire::log::MessageRecord]) -> Vec<u64> {
    records.iter().map(|record| record.message.seq.0).collect()
}

async fn applying_a_message_twice_or_an_older_version_changes_nothing(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-idem"));
    let sender = UserId::new(unique("sender"));
    let first = message_record(&conversation_id, 1, &sender, 1, at(1));
    store
        .apply(vec![StoreWrite::Message(first.clone())])
        .await
        .expect("apply");
    store
        .apply(vec![StoreWrite::Message(first.clone())])
        .await
        .expect("apply again");
    let query = MessageQuery {
        after_seq: None,
        before_seq: None,
        limit: 10,
    };
    let stored = store.messages(&conversation_id, query).await.expect("read");
    assert_eq!(stored, vec![first.clone()], "one message after two applies");

    let mut edited = first.clone();
    edited.version = 2;
    edited.message.text = "edited".to_owned();
    edited.message.edited_at = Some(at(5));
    store
        .apply(vec![
            StoreWrite::Message(edited.clone()),
            StoreWrite::Message(first.clone()),
        ])
        .await
        .expect("apply newer then older");
    let stored = store.messages(&conversation_id, query).await.expect("read");
    assert_eq!(stored, vec![edited], "the newer version wins");
}

async fn conversation_versions_only_move_forward(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-conv"));
    let owner = UserId::new(unique("owner"));
    let first = conversation_record(
        &conversation_id,
        ConversationKind::Group,
        &[&owner],
        1,
        at(0),
    );
    let mut second = first.clone();
    second.version = 2;
    second.conversation.title = Some("renamed".to_owned());
    store
        .apply(vec![StoreWrite::Conversation(second.clone())])
        .await
        .expect("apply v2");
    store
        .apply(vec![StoreWrite::Conversation(first)])
        .await
        .expect("apply v1 late");
    let stored = store
        .conversation(&conversation_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.record, second);
    assert_eq!(stored.last_seq, Seq::ZERO);
    assert_eq!(stored.last_activity_at, at(0), "no messages: creation time");
    assert!(store
        .conversation(&ConversationId::new(unique("missing")))
        .await
        .expect("read")
        .is_none());
}

async fn replacing_participants_keeps_watermarks_of_those_who_stay(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-members"));
    let stays = UserId::new(unique("stays"));
    let leaves = UserId::new(unique("leaves"));
    let first = conversation_record(
        &conversation_id,
        ConversationKind::Group,
        &[&stays, &leaves],
        1,
        at(0),
    );
    store
        .apply(vec![
            StoreWrite::Conversation(first),
            StoreWrite::Watermarks {
                conversation_id: conversation_id.clone(),
                user_id: stays.clone(),
                delivered_seq: Seq(5),
                read_seq: Seq(3),
            },
            StoreWrite::Watermarks {
                conversation_id: conversation_id.clone(),
                user_id: leaves.clone(),
                delivered_seq: Seq(2),
                read_seq: Seq(2),
            },
        ])
        .await
        .expect("apply");
    let second = conversation_record(
        &conversation_id,
        ConversationKind::Group,
        &[&stays],
        2,
        at(0),
    );
    store
        .apply(vec![StoreWrite::Conversation(second)])
        .await
        .expect("apply v2");

    assert_eq!(
        store
            .watermarks(&conversation_id, &leaves)
            .await
            .expect("read"),
        Watermarks::default(),
        "a removed user stops participating: their watermarks go"
    );
    assert_eq!(
        store
            .watermarks(&conversation_id, &stays)
            .await
            .expect("read"),
        Watermarks {
            delivered_seq: Seq(5),
            read_seq: Seq(3)
        },
        "watermarks of a remaining participant are kept"
    );
}

async fn watermarks_only_go_up(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-marks"));
    let user = UserId::new(unique("user"));
    assert_eq!(
        store
            .watermarks(&conversation_id, &user)
            .await
            .expect("read"),
        Watermarks::default(),
        "zero when none recorded"
    );
    let raise = |delivered: u64, read: u64| StoreWrite::Watermarks {
        conversation_id: conversation_id.clone(),
        user_id: user.clone(),
        delivered_seq: Seq(delivered),
        read_seq: Seq(read),
    };
    store.apply(vec![raise(5, 3)]).await.expect("apply");
    store.apply(vec![raise(4, 6)]).await.expect("apply");
    store.apply(vec![raise(4, 6)]).await.expect("apply twice");
    assert_eq!(
        store
            .watermarks(&conversation_id, &user)
            .await
            .expect("read"),
        Watermarks {
            delivered_seq: Seq(5),
            read_seq: Seq(6)
        }
    );
}

async fn message_queries_page_both_ways(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-query"));
    let other_conversation = ConversationId::new(unique("store-query-other"));
    let sender = UserId::new(unique("sender"));
    let mut writes: Vec<StoreWrite> = (1..=10)
        .map(|seq| {
            StoreWrite::Message(message_record(
                &conversation_id,
                seq,
                &sender,
                1,
                at(seq as i64),
            ))
        })
        .collect();
    writes.push(StoreWrite::Message(message_record(
        &other_conversation,
        11,
        &sender,
        1,
        at(11),
    )));
    store.apply(writes).await.expect("apply");
    let query = |after: Option<u64>, before: Option<u64>, limit: usize| MessageQuery {
        after_seq: after.map(Seq),
        before_seq: before.map(Seq),
        limit,
    };
    let cases: [(MessageQuery, Vec<u64>); 9] = [
        (query(Some(3), None, 4), vec![4, 5, 6, 7]),
        (query(Some(8), None, 5), vec![9, 10]),
        (query(Some(0), None, 11), (1..=10).collect()),
        (query(Some(10), None, 5), vec![]),
        (query(None, Some(6), 3), vec![3, 4, 5]),
        (query(None, None, 3), vec![8, 9, 10]),
        (query(None, Some(3), 10), vec![1, 2]),
        (query(Some(2), Some(5), 10), vec![3, 4]),
        (query(None, None, 0), vec![]),
    ];
    for (message_query, expected) in cases {
        let found = store
            .messages(&conversation_id, message_query)
            .await
            .expect("read");
        assert_eq!(ids(&found), expected, "{message_query:?}");
    }
}

async fn activity_follows_messages_even_before_the_conversation(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-activity"));
    let member = UserId::new(unique("member"));
    store
        .apply(vec![
            StoreWrite::Message(message_record(&conversation_id, 2, &member, 1, at(20))),
            StoreWrite::Message(message_record(&conversation_id, 1, &member, 1, at(10))),
        ])
        .await
        .expect("messages first");
    assert!(store
        .conversation(&conversation_id)
        .await
        .expect("read")
        .is_none());
    store
        .apply(vec![StoreWrite::Conversation(conversation_record(
            &conversation_id,
            ConversationKind::Group,
            &[&member],
            1,
            at(0),
        ))])
        .await
        .expect("conversation later");
    let stored = store
        .conversation(&conversation_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.last_seq, Seq(2));
    assert_eq!(stored.last_activity_at, at(20));
}

async fn messages_are_found_by_id_and_client_id(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-lookup"));
    let elsewhere = ConversationId::new(unique("store-lookup-other"));
    let sender = UserId::new(unique("sender"));
    let record = message_record(&conversation_id, 7, &sender, 1, at(7));
    store
        .apply(vec![StoreWrite::Message(record.clone())])
        .await
        .expect("apply");
    let message = &record.message;
    assert_eq!(
        store
            .message(&conversation_id, &message.message_id)
            .await
            .expect("read"),
        Some(record.clone())
    );
    assert_eq!(
        store
            .message(&elsewhere, &message.message_id)
            .await
            .expect("read"),
        None,
        "a message is only found in its own conversation"
    );
    assert_eq!(
        store
            .message_by_client_id(&conversation_id, &sender, &message.client_msg_id)
            .await
            .expect("read"),
        Some(record.clone())
    );
    let someone_else = UserId::new(unique("someone"));
    assert_eq!(
        store
            .message_by_client_id(&conversation_id, &someone_else, &message.client_msg_id)
            .await
            .expect("read"),
        None,
        "client ids are per sender"
    );
}

/// A send whose append failed ambiguously: its tombstone may arrive before or after the send
/// itself (different topics), and a retry of the same `client_msg_id` got another seq. The
/// tombstone reads as a deleted message at the send's seq (seqs stay dense), whatever the order.
async fn aborted_sends_read_as_deleted_and_never_shadow_their_retry(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-aborted"));
    let sender = UserId::new(unique("sender"));
    let before = message_record(&conversation_id, 1, &sender, 1, at(1));
    let orphan = message_record(&conversation_id, 2, &sender, 1, at(2));
    let mut retry = message_record(&conversation_id, 3, &sender, 1, at(3));
    retry.message.client_msg_id = orphan.message.client_msg_id.clone();
    let tombstone = orphan.aborted();
    assert!(tombstone.is_aborted() && !orphan.is_aborted());
    assert!(tombstone.message.deleted && tombstone.message.text.is_empty());
    // Tombstone first, then the late send, then the retry.
    for write in [&before, &tombstone, &orphan, &retry] {
        store
            .apply(vec![StoreWrite::Message(write.clone())])
            .await
            .expect("apply");
    }
    let everything = MessageQuery {
        after_seq: None,
        before_seq: None,
        limit: 10,
    };
    let stored = store
        .messages(&conversation_id, everything)
        .await
        .expect("read");
    assert_eq!(
        stored,
        vec![before.clone(), tombstone.clone(), retry.clone()],
        "the aborted seq reads as a deleted message"
    );
    assert_eq!(
        store
            .message(&conversation_id, &orphan.message.message_id)
            .await
            .expect("read"),
        Some(tombstone)
    );
    assert_eq!(
        store
            .message_by_client_id(&conversation_id, &sender, &orphan.message.client_msg_id)
            .await
            .expect("read"),
        Some(retry.clone()),
        "the retry, not the aborted send, answers for the client_msg_id"
    );
    // A send applied before its tombstone is replaced by it.
    let late = message_record(&conversation_id, 4, &sender, 1, at(4));
    store
        .apply(vec![StoreWrite::Message(late.clone())])
        .await
        .expect("apply");
    store
        .apply(vec![StoreWrite::Message(late.aborted())])
        .await
        .expect("apply");
    let after = MessageQuery {
        after_seq: Some(Seq(3)),
        before_seq: None,
        limit: 10,
    };
    let stored = store.messages(&conversation_id, after).await.expect("read");
    assert_eq!(stored, vec![late.aborted()]);
    assert_eq!(
        store
            .message_by_client_id(&conversation_id, &sender, &late.message.client_msg_id)
            .await
            .expect("read"),
        None,
        "an aborted send without a retry answers for nothing"
    );
}
