//! Contract of [`UserDataScan`], over a store the suite writes through [`Store::apply`].

use std::future::Future;

use wire::log::MessageRecord;
use wire::{ConversationId, MessageId, UserId};

use super::fixtures::{at, message_record, unique};
use super::Fixture;
use crate::{Store, StoreWrite, UserDataScan, UserMessageCursor, UserMessages};

/// A store that also answers the user-data scan (the embedded store, MongoDB).
pub trait ScannableStore: Store + UserDataScan {}

impl<T: Store + UserDataScan> ScannableStore for T {}

/// Runs every user-data case, each on a fresh adapter from `make`.
pub async fn user_data_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn ScannableStore>>,
{
    a_users_messages_are_listed_in_pages_across_conversations(make().await).await;
}

/// Every message id the scan lists, page by page of `limit`.
async fn scanned(
    store: &dyn ScannableStore,
    user_id: &UserId,
    which: UserMessages,
    limit: usize,
) -> Vec<MessageId> {
    let mut listed = Vec::new();
    let mut cursor: Option<UserMessageCursor> = None;
    for _ in 0..1000 {
        let page = store
            .user_messages(user_id, which, cursor.as_ref(), limit)
            .await
            .expect("user_messages");
        assert!(page.records.len() <= limit, "a page holds at most `limit`");
        listed.extend(
            page.records
                .iter()
                .map(|record| record.message.message_id.clone()),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => return listed,
        }
    }
    panic!("the scan of {user_id} never ended");
}

fn reacted(mut record: MessageRecord, emoji: &str, users: &[&UserId]) -> MessageRecord {
    record.version += 1;
    record.message.reactions.insert(
        emoji.to_owned(),
        users.iter().map(|user| (*user).clone()).collect(),
    );
    record
}

fn ids(records: &[&MessageRecord]) -> Vec<MessageId> {
    records
        .iter()
        .map(|record| record.message.message_id.clone())
        .collect()
}

async fn a_users_messages_are_listed_in_pages_across_conversations(
    fixture: Fixture<dyn ScannableStore>,
) {
    let store = fixture.port;
    let base = unique("scan");
    let (first, second) = (
        ConversationId::new(format!("{base}-a")),
        ConversationId::new(format!("{base}-b")),
    );
    let alice = UserId::new(unique("alice"));
    let bob = UserId::new(unique("bob"));
    let message = |conversation: &ConversationId, seq: u64, sender: &UserId| {
        message_record(conversation, seq, sender, 1, at(seq as i64))
    };
    let alice_first = reacted(message(&first, 1, &alice), "👍", &[&bob]);
    let bob_first = reacted(message(&first, 2, &bob), "🎉", &[&bob, &alice]);
    let alice_second = message(&second, 1, &alice);
    let bob_second = reacted(message(&second, 2, &bob), "👍", &[&alice]);
    let mut alice_deleted = message(&second, 3, &alice);
    alice_deleted.message.deleted = true;
    alice_deleted.message.text.clear();
    // Written second conversation first: the order is the scan's own.
    let writes = [
        &bob_second,
        &alice_deleted,
        &alice_second,
        &bob_first,
        &alice_first,
    ]
    .into_iter()
    .map(|record| StoreWrite::Message(record.clone()))
    .collect();
    store.apply(writes).await.expect("apply");

    let sent_by_alice = ids(&[&alice_first, &alice_second, &alice_deleted]);
    for limit in [1, 2, 100] {
        assert_eq!(
            scanned(store.as_ref(), &alice, UserMessages::SentBy, limit).await,
            sent_by_alice,
            "alice's messages, deleted too, by (conversation, seq), pages of {limit}"
        );
    }
    assert_eq!(
        scanned(store.as_ref(), &alice, UserMessages::ReactedBy, 1).await,
        ids(&[&bob_first, &bob_second]),
        "the messages alice reacted to"
    );
    assert_eq!(
        scanned(store.as_ref(), &bob, UserMessages::ReactedBy, 10).await,
        ids(&[&alice_first, &bob_first])
    );

    let mut unreacted = bob_second.clone();
    unreacted.version += 1;
    unreacted.message.reactions.clear();
    store
        .apply(vec![StoreWrite::Message(unreacted)])
        .await
        .expect("remove the reaction");
    assert_eq!(
        scanned(store.as_ref(), &alice, UserMessages::ReactedBy, 10).await,
        ids(&[&bob_first]),
        "a removed reaction is no longer listed"
    );
    let nobody = UserId::new(unique("nobody"));
    assert!(scanned(store.as_ref(), &nobody, UserMessages::SentBy, 10)
        .await
        .is_empty());
}
