//! The reaper (issue #19): a send whose node died after reserving its seq, and that nobody
//! retried, is tombstoned through the conversation's actor, so no seq hole remains.

use tokio::sync::oneshot;
use wire::log::{LogEventBody, MessageRecord};
use wire::ops::HistoryResult;
use wire::{ClientMsgId, ConversationId, Seq, UserId};

use super::op::Queued;
use super::ConversationOp;
use crate::abandoned_sends::{settle_round, Settled};
use crate::node::Limits;
use crate::ops::history_get::{PageBudget, ReadHistory};
use crate::testing::Harness;

/// The tombstones of abandoned sends in the log, in append order.
pub(super) fn aborted_records(harness: &Harness) -> Vec<MessageRecord> {
    harness
        .log
        .bodies()
        .into_iter()
        .filter_map(|body| match body {
            LogEventBody::MessageAborted { record } => Some(record),
            _ => None,
        })
        .collect()
}

/// Reserves a seq for `client_msg_id` of `user` straight from the sequencer, as a node that
/// then dies would (its reservation expires); returns the send's intent and reservation.
pub(super) async fn reserve_then_die(
    harness: &Harness,
    conversation_id: &ConversationId,
    user: &str,
    client_msg_id: &str,
) -> (ports::SendIntent, ports::Reservation) {
    let key = ports::DedupKey {
        sender_id: UserId::new(user),
        client_msg_id: ClientMsgId::new(client_msg_id),
    };
    let intent = ports::SendIntent::new(key, chrono::Utc::now());
    let mut reserved = harness
        .node
        .ports()
        .sequencer
        .reserve(conversation_id, std::slice::from_ref(&intent))
        .await
        .unwrap();
    harness.sequencer.expire_reservations();
    (intent, reserved.pop().expect("one reservation"))
}

/// [`reserve_then_die`] for a new key.
pub(super) async fn reserve_and_die(
    harness: &Harness,
    conversation_id: &ConversationId,
    user: &str,
    client_msg_id: &str,
) -> ports::SendIntent {
    let (intent, reserved) = reserve_then_die(harness, conversation_id, user, client_msg_id).await;
    assert!(matches!(reserved, ports::Reservation::Fresh(_)));
    intent
}

/// The first page of the conversation's history read through its actor, as `user` (`None`:
/// any reader).
pub(super) async fn first_page(
    harness: &Harness,
    conversation_id: &ConversationId,
    user: Option<&str>,
) -> HistoryResult {
    let read = ReadHistory {
        user_id: user.map(UserId::new),
        query: ports::MessageQuery {
            after_seq: Some(Seq::ZERO),
            before_seq: None,
            limit: 100,
        },
        budget: PageBudget::REPLY,
    };
    let (reply, answer) = oneshot::channel();
    let node = &harness.node;
    node.supervisor().enqueue(
        node,
        conversation_id,
        ConversationOp::History(Queued::new(read, reply)),
    );
    answer.await.expect("answered").expect("history")
}

async fn history(harness: &Harness, conversation_id: &ConversationId, user: &str) -> HistoryResult {
    first_page(harness, conversation_id, Some(user)).await
}

#[actix_rt::test]
async fn an_abandoned_send_nobody_retried_is_tombstoned_by_the_reaper() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let first = reserve_and_die(&harness, &conversation_id, "alice", "given-up").await;
    let later = super::tests::send(&harness.node, &conversation_id, "bob", "later")
        .await
        .unwrap();
    assert_eq!(later.seq, Seq(2));

    let settled = settle_round(&harness.node).await.unwrap();
    assert_eq!(
        settled,
        Settled {
            tombstoned: 1,
            ..Settled::default()
        }
    );
    let tombstones = aborted_records(&harness);
    assert_eq!(
        tombstones.len(),
        1,
        "the abandoned send's tombstone is in the log"
    );
    assert_eq!(tombstones[0].message.message_id, first.message_id);
    assert_eq!(tombstones[0].message.seq, Seq(1));
    assert!(tombstones[0].is_aborted() && tombstones[0].message.deleted);
    assert_eq!(
        harness.sequencer.unsettled_claims(),
        0,
        "the claim is settled"
    );

    // Another member reads no hole: seq 1 is a deleted message.
    let page = history(&harness, &conversation_id, "bob").await;
    let seqs: Vec<(Seq, bool)> = page
        .messages
        .iter()
        .map(|message| (message.seq, message.deleted))
        .collect();
    assert_eq!(seqs, [(Seq(1), true), (Seq(2), false)]);

    assert_eq!(
        settle_round(&harness.node).await.unwrap(),
        Settled::default()
    );
    // A late retry is a new message; the reaper's tombstone is not appended again.
    let retry = super::tests::send(&harness.node, &conversation_id, "alice", "given-up")
        .await
        .unwrap();
    assert_eq!(retry.seq, Seq(3));
    assert_ne!(retry.message_id, first.message_id);
    assert_eq!(aborted_records(&harness).len(), 1);
}

/// A retry claims the send it replaces; when its own append fails, the claim is left to the
/// reaper, which tombstones the first send (the retry's tombstone never reached the log).
#[actix_rt::test]
async fn a_retry_whose_append_fails_leaves_the_first_send_to_the_reaper() {
    use std::sync::atomic::Ordering;

    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let first = reserve_and_die(&harness, &conversation_id, "alice", "retried").await;
    harness.log.fail.store(true, Ordering::SeqCst);
    let failed = super::tests::send(&harness.node, &conversation_id, "alice", "retried").await;
    assert_eq!(failed.unwrap_err().code, wire::ErrorCode::Unavailable);
    harness.log.fail.store(false, Ordering::SeqCst);
    assert!(aborted_records(&harness).is_empty());
    assert_eq!(harness.sequencer.unsettled_claims(), 1, "the retry's claim");

    let settled = settle_round(&harness.node).await.unwrap();
    assert_eq!(settled.tombstoned, 1);
    let tombstones = aborted_records(&harness);
    assert_eq!(tombstones.len(), 1);
    assert_eq!(tombstones[0].message.message_id, first.message_id);
    assert_eq!(tombstones[0].message.seq, Seq(1));
    assert_eq!(harness.sequencer.unsettled_claims(), 0);
}
