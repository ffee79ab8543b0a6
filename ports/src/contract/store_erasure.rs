//! Contract of [`Store`] for erasure ([`StoreWrite::Erase`]).

use wire::log::MessageRecord;
use wire::{ConversationId, Seq, UserId};

use super::fixtures::{at, message_record, unique};
use super::Fixture;
use crate::{MessageQuery, Store, StoreWrite, Watermarks};

async fn all_messages(store: &dyn Store, conversation_id: &ConversationId) -> Vec<MessageRecord> {
    let query = MessageQuery {
        after_seq: Some(Seq::ZERO),
        before_seq: None,
        limit: 100,
    };
    store.messages(conversation_id, query).await.expect("read")
}

/// (seq, deleted, text, reacting users) of each stored message.
fn summary(records: &[MessageRecord]) -> Vec<(u64, bool, String, Vec<String>)> {
    records
        .iter()
        .map(|record| {
            let message = &record.message;
            let reacting = (message.reactions.values().flatten())
                .map(|user| user.as_str().to_owned())
                .collect();
            (
                message.seq.0,
                message.deleted,
                message.text.clone(),
                reacting,
            )
        })
        .collect()
}

/// The erased user's messages up to the seq become deleted (seq kept, text gone, one version
/// up), their reactions and watermarks go; other senders' messages, later messages and other
/// conversations stay; applying it again, or replaying an older version, changes nothing.
pub(super) async fn erasure_deletes_the_users_messages_once(fixture: Fixture<dyn Store>) {
    let store = fixture.port.as_ref();
    let conversation_id = ConversationId::new(unique("store-erase"));
    let elsewhere = ConversationId::new(unique("store-erase"));
    let erased = UserId::new(unique("erased"));
    let other = UserId::new(unique("other"));
    let theirs = message_record(&conversation_id, 1, &erased, 1, at(1));
    let mut others = message_record(&conversation_id, 2, &other, 1, at(2));
    for user in [&erased, &other] {
        others
            .message
            .reactions
            .entry("👍".to_owned())
            .or_default()
            .push(user.clone());
    }
    let later = message_record(&conversation_id, 3, &erased, 1, at(3));
    let kept_elsewhere = message_record(&elsewhere, 1, &erased, 1, at(1));
    let mut writes: Vec<StoreWrite> = [&theirs, &others, &later, &kept_elsewhere]
        .into_iter()
        .cloned()
        .map(StoreWrite::Message)
        .collect();
    writes.push(StoreWrite::Watermarks {
        conversation_id: conversation_id.clone(),
        user_id: erased.clone(),
        delivered_seq: Seq(2),
        read_seq: Seq(2),
    });
    store.apply(writes).await.expect("apply");
    let erase = StoreWrite::Erase {
        conversation_id: conversation_id.clone(),
        user_id: erased.clone(),
        through_seq: Seq(2),
    };
    store.apply(vec![erase.clone()]).await.expect("erase");
    let expected = vec![
        (1, true, String::new(), vec![]),
        (
            2,
            false,
            others.message.text.clone(),
            vec![other.as_str().to_owned()],
        ),
        (3, false, later.message.text.clone(), vec![]),
    ];
    let erased_view = all_messages(store, &conversation_id).await;
    assert_eq!(summary(&erased_view), expected);
    assert_eq!(
        erased_view[0].version, 2,
        "one version above the erased one"
    );
    let marks = store.watermarks(&conversation_id, &erased).await;
    assert_eq!(marks.expect("watermarks"), Watermarks::default());

    store
        .apply(vec![erase, StoreWrite::Message(theirs)])
        .await
        .expect("apply again");
    assert_eq!(all_messages(store, &conversation_id).await, erased_view);
    let untouched = all_messages(store, &elsewhere).await;
    assert_eq!(
        untouched,
        vec![kept_elsewhere],
        "another conversation stays"
    );
}
