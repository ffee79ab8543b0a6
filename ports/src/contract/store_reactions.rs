//! Contract of [`Store`] for reaction changes logged as deltas ([`StoreWrite::Reaction`]).

use wire::log::{MessageRecord, ReactionChange, ReactionDelta};
use wire::{ConversationId, UserId};

use super::fixtures::{at, message_record, unique};
use super::Fixture;
use crate::{Store, StoreWrite};

fn delta(record: &MessageRecord, user: &str, change: ReactionChange, version: u64) -> StoreWrite {
    let message = &record.message;
    StoreWrite::Reaction(ReactionDelta {
        conversation_id: message.conversation_id.clone(),
        message_id: message.message_id.clone(),
        seq: message.seq,
        user_id: UserId::new(user),
        emoji: "🎉".to_owned(),
        change,
        version,
    })
}

async fn stored(store: &dyn Store, record: &MessageRecord) -> MessageRecord {
    let message = &record.message;
    store
        .message(&message.conversation_id, &message.message_id)
        .await
        .expect("read")
        .expect("the message is stored")
}

fn reacting_users(record: &MessageRecord) -> Vec<String> {
    record
        .message
        .reactions
        .get("🎉")
        .map(|users| users.iter().map(|user| user.as_str().to_owned()).collect())
        .unwrap_or_default()
}

/// Deltas apply on top of the stored message in order, in the same batch as the send or in
/// later ones; a repeat, or one older than the stored version, changes nothing; a delta for a
/// message the store does not hold is skipped without failing the batch.
pub(super) async fn reaction_deltas_apply_once_in_order(fixture: Fixture<dyn Store>) {
    let store = fixture.port;
    let conversation_id = ConversationId::new(unique("store-react"));
    let sender = UserId::new(unique("sender"));
    let sent = message_record(&conversation_id, 1, &sender, 1, at(1));
    let unknown = message_record(&conversation_id, 9, &sender, 1, at(9));
    store
        .apply(vec![
            StoreWrite::Message(sent.clone()),
            delta(&sent, "bob", ReactionChange::Add, 2),
            delta(&unknown, "bob", ReactionChange::Add, 2),
        ])
        .await
        .expect("send and react in one batch");
    let after_first = stored(&*store, &sent).await;
    assert_eq!(reacting_users(&after_first), ["bob"]);
    assert_eq!(after_first.version, 2);
    assert_eq!(
        after_first.message.text, sent.message.text,
        "the rest is kept"
    );

    store
        .apply(vec![
            delta(&sent, "carol", ReactionChange::Add, 3),
            delta(&sent, "bob", ReactionChange::Remove, 4),
        ])
        .await
        .expect("two more changes");
    store
        .apply(vec![
            delta(&sent, "bob", ReactionChange::Add, 2),
            delta(&sent, "carol", ReactionChange::Add, 3),
        ])
        .await
        .expect("re-delivered changes");
    let latest = stored(&*store, &sent).await;
    assert_eq!(reacting_users(&latest), ["carol"], "repeats change nothing");
    assert_eq!(latest.version, 4);

    let mut edited = latest.clone();
    edited.version = 5;
    edited.message.text = "edited".to_owned();
    store
        .apply(vec![
            StoreWrite::Message(edited.clone()),
            delta(&sent, "dave", ReactionChange::Add, 5),
        ])
        .await
        .expect("an edit, then a change at the same version");
    assert_eq!(
        stored(&*store, &sent).await,
        edited,
        "the edit's version wins"
    );
}
