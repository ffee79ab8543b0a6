//! Contract of [`Sequencer`].

use std::future::Future;

use chrono::Utc;
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, MessageId, Seq, UserId};

use super::fixtures::unique;
use super::Fixture;
use crate::{DedupKey, Reservation, SendIntent, Sequencer};

/// Runs every sequencer case, each on a fresh sequencer (over empty backing state) from `make`.
pub async fn sequencer_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn Sequencer>>,
{
    fresh_seqs_are_dense_and_consecutive(make().await).await;
    a_reservation_reports_the_last_seq_before_it(make().await).await;
    a_confirmed_key_returns_its_original_ack(make().await).await;
    only_the_latest_allocation_can_be_released(make().await).await;
    a_reserved_key_is_in_flight_until_confirmed_or_abandoned(make().await).await;
}

fn key(sender_id: &UserId) -> DedupKey {
    DedupKey {
        sender_id: sender_id.clone(),
        client_msg_id: ClientMsgId::new(unique("client")),
    }
}

/// The sends of `keys`, each with a new message id.
pub fn intents(keys: &[DedupKey]) -> Vec<SendIntent> {
    keys.iter()
        .map(|key| SendIntent::new(key.clone(), Utc::now()))
        .collect()
}

fn fresh(reservations: &[Reservation]) -> Vec<u64> {
    reservations
        .iter()
        .map(|reservation| match reservation {
            Reservation::Fresh(seq) => seq.0,
            other => panic!("expected a fresh seq, got {other:?}"),
        })
        .collect()
}

async fn fresh_seqs_are_dense_and_consecutive(fixture: Fixture<dyn Sequencer>) {
    let sequencer = fixture.port;
    let conversation_id = ConversationId::new(unique("seq-dense"));
    let other_conversation = ConversationId::new(unique("seq-dense-other"));
    let sender = UserId::new(unique("sender"));
    assert_eq!(
        sequencer.last_seq(&conversation_id).await.expect("last"),
        Seq::ZERO
    );
    let first = sequencer
        .reserve(
            &conversation_id,
            &intents(&[key(&sender), key(&sender), key(&sender)]),
        )
        .await
        .expect("reserve");
    assert_eq!(fresh(&first), vec![1, 2, 3]);
    let second = sequencer
        .reserve(&conversation_id, &intents(&[key(&sender), key(&sender)]))
        .await
        .expect("reserve");
    assert_eq!(fresh(&second), vec![4, 5]);
    assert_eq!(
        sequencer.last_seq(&conversation_id).await.expect("last"),
        Seq(5)
    );
    let elsewhere = sequencer
        .reserve(&other_conversation, &intents(&[key(&sender)]))
        .await
        .expect("reserve");
    assert_eq!(fresh(&elsewhere), vec![1], "conversations count separately");
}

/// A batch of sends catches up with other nodes' messages from its reservation: the answer
/// says the highest seq allocated before its fresh ones, repeats of confirmed keys included.
async fn a_reservation_reports_the_last_seq_before_it(fixture: Fixture<dyn Sequencer>) {
    let sequencer = fixture.port;
    let conversation_id = ConversationId::new(unique("seq-last-before"));
    let sender = UserId::new(unique("sender"));
    let first = sequencer
        .reserve_reporting_last(&conversation_id, &intents(&[key(&sender), key(&sender)]))
        .await
        .expect("reserve");
    assert_eq!(first.last_before, Seq::ZERO);
    assert_eq!(fresh(&first.each), vec![1, 2]);
    // Another node's batch in between.
    let others = sequencer
        .reserve(&conversation_id, &intents(&[key(&sender), key(&sender)]))
        .await
        .expect("reserve");
    assert_eq!(fresh(&others), vec![3, 4]);
    let repeated = key(&sender);
    let next = sequencer
        .reserve_reporting_last(&conversation_id, &intents(std::slice::from_ref(&repeated)))
        .await
        .expect("reserve");
    assert_eq!(next.last_before, Seq(4));
    assert_eq!(fresh(&next.each), vec![5]);
    let ack = SendAck {
        message_id: MessageId::new(unique("message")),
        seq: Seq(5),
        created_at: Utc::now(),
    };
    sequencer
        .confirm(&conversation_id, &[(repeated.clone(), ack.clone())])
        .await
        .expect("confirm");
    let again = sequencer
        .reserve_reporting_last(&conversation_id, &intents(&[repeated]))
        .await
        .expect("reserve");
    assert_eq!(again.each, vec![Reservation::Duplicate(ack)]);
    assert_eq!(
        again.last_before,
        Seq(5),
        "nothing allocated: the last seq as it is"
    );
}

async fn a_confirmed_key_returns_its_original_ack(fixture: Fixture<dyn Sequencer>) {
    let sequencer = fixture.port;
    let conversation_id = ConversationId::new(unique("seq-dedup"));
    let sender = UserId::new(unique("sender"));
    let retried = key(&sender);
    let reserved = sequencer
        .reserve(&conversation_id, &intents(std::slice::from_ref(&retried)))
        .await
        .expect("reserve");
    assert_eq!(fresh(&reserved), vec![1]);
    let ack = SendAck {
        message_id: MessageId::new(unique("message")),
        seq: Seq(1),
        created_at: Utc::now(),
    };
    sequencer
        .confirm(&conversation_id, &[(retried.clone(), ack.clone())])
        .await
        .expect("confirm");
    let again = sequencer
        .reserve(&conversation_id, &intents(&[retried.clone(), key(&sender)]))
        .await
        .expect("reserve");
    assert_eq!(
        again,
        vec![Reservation::Duplicate(ack), Reservation::Fresh(Seq(2))],
        "the retry gets the original ack and allocates nothing"
    );
    let other_sender = UserId::new(unique("other"));
    let same_client_id = DedupKey {
        sender_id: other_sender,
        client_msg_id: retried.client_msg_id.clone(),
    };
    let other = sequencer
        .reserve(&conversation_id, &intents(&[same_client_id]))
        .await
        .expect("reserve");
    assert_eq!(fresh(&other), vec![3], "keys are per sender");
}

async fn only_the_latest_allocation_can_be_released(fixture: Fixture<dyn Sequencer>) {
    let sequencer = fixture.port;
    let conversation_id = ConversationId::new(unique("seq-release"));
    let sender = UserId::new(unique("sender"));
    let batch = sequencer
        .reserve(
            &conversation_id,
            &intents(&[key(&sender), key(&sender), key(&sender)]),
        )
        .await
        .expect("reserve");
    assert_eq!(fresh(&batch), vec![1, 2, 3]);
    assert!(sequencer
        .release(&conversation_id, Seq(1), 3)
        .await
        .expect("release"));
    assert_eq!(
        sequencer.last_seq(&conversation_id).await.expect("last"),
        Seq::ZERO
    );
    let retry = sequencer
        .reserve(&conversation_id, &intents(&[key(&sender), key(&sender)]))
        .await
        .expect("reserve");
    assert_eq!(fresh(&retry), vec![1, 2], "released seqs are reused");
    let later = sequencer
        .reserve(&conversation_id, &intents(&[key(&sender)]))
        .await
        .expect("reserve");
    assert_eq!(fresh(&later), vec![3]);
    assert!(
        !sequencer
            .release(&conversation_id, Seq(1), 2)
            .await
            .expect("release"),
        "an allocation followed by another cannot be released"
    );
    assert_eq!(
        sequencer.last_seq(&conversation_id).await.expect("last"),
        Seq(3)
    );
}

/// A key reserved by one batch (on one node) and not yet confirmed is `InFlight` to every other
/// reservation (a retry through another node), which allocates nothing for it; the confirm
/// turns it into the ack, an abandon frees it for a fresh seq.
async fn a_reserved_key_is_in_flight_until_confirmed_or_abandoned(fixture: Fixture<dyn Sequencer>) {
    let sequencer = fixture.port;
    let conversation_id = ConversationId::new(unique("seq-in-flight"));
    let sender = UserId::new(unique("sender"));
    let (confirmed, abandoned) = (key(&sender), key(&sender));
    let reserved = sequencer
        .reserve(
            &conversation_id,
            &intents(&[confirmed.clone(), abandoned.clone()]),
        )
        .await
        .expect("reserve");
    assert_eq!(fresh(&reserved), vec![1, 2]);
    let retried = sequencer
        .reserve(
            &conversation_id,
            &intents(&[confirmed.clone(), abandoned.clone()]),
        )
        .await
        .expect("reserve the retries");
    assert_eq!(retried, vec![Reservation::InFlight, Reservation::InFlight]);
    assert_eq!(
        sequencer.last_seq(&conversation_id).await.expect("last"),
        Seq(2),
        "nothing allocated for keys in flight"
    );
    let ack = SendAck {
        message_id: MessageId::new(unique("message")),
        seq: Seq(1),
        created_at: Utc::now(),
    };
    sequencer
        .confirm(&conversation_id, &[(confirmed.clone(), ack.clone())])
        .await
        .expect("confirm");
    sequencer
        .abandon(&conversation_id, &[abandoned.clone(), confirmed.clone()])
        .await
        .expect("abandon");
    let after = sequencer
        .reserve(&conversation_id, &intents(&[confirmed, abandoned]))
        .await
        .expect("reserve after");
    assert_eq!(
        after,
        vec![Reservation::Duplicate(ack), Reservation::Fresh(Seq(3))],
        "a confirmed key keeps its ack through an abandon; an abandoned one is sent again"
    );
}
