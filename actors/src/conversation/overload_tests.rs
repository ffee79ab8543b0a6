//! A flood of one conversation is refused once its mailbox and queue are full: the callers get
//! `unavailable` with `retry_after_ms`, counted, and what the actor holds stays bounded.

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use wire::ops::SendAck;
use wire::{ClientMsgId, ErrorCode, UserId};

use super::op::Queued;
use super::{ConversationOp, OpActor, MAILBOX_CAPACITY, MAX_QUEUED_OPS, OVERLOAD_RETRY_AFTER_MS};
use crate::node::Limits;
use crate::ops::message_send::SendMessage;
use crate::testing::Harness;
use crate::OpError;

type Answer = oneshot::Receiver<Result<SendAck, OpError>>;

/// Queues `count` sends of `alice` without yielding to the actor.
fn flood(
    harness: &Harness,
    conversation: &wire::ConversationId,
    round: usize,
    count: usize,
) -> Vec<Answer> {
    (0..count)
        .map(|index| {
            let (reply, answer) = oneshot::channel();
            harness.node.supervisor().enqueue(
                &harness.node,
                conversation,
                ConversationOp::Send(Queued::new(
                    SendMessage {
                        actor: OpActor::Member(UserId::new("alice")),
                        client_msg_id: ClientMsgId::new(format!("flood-{round}-{index}")),
                        text: "x".repeat(1024),
                        reply_to: None,
                        forwarded_from: None,
                        attachments: Vec::new(),
                    },
                    reply,
                )),
            );
            answer
        })
        .collect()
}

/// Lets the actor run: it moves its mailbox into its queue and starts a batch.
async fn let_the_actor_run() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[actix_rt::test]
async fn a_flooded_conversation_refuses_with_unavailable_and_holds_a_bounded_number_of_operations()
{
    let harness = Harness::new(Limits::default());
    let conversation = harness.group("hot", &["alice", "bob"]);
    // The log hangs: nothing the actor takes is ever answered, so everything it holds stays.
    harness.log.stall.store(true, Ordering::SeqCst);

    const ROUNDS: usize = 5;
    const PER_ROUND: usize = 3000;
    let mut answers = Vec::new();
    for round in 0..ROUNDS {
        answers.extend(flood(&harness, &conversation, round, PER_ROUND));
        let_the_actor_run().await;
    }

    let mut refused = 0;
    let mut held = 0;
    for mut answer in answers {
        match answer.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => held += 1,
            Ok(Err(error)) => {
                assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}");
                assert_eq!(error.retry_after_ms, Some(OVERLOAD_RETRY_AFTER_MS));
                refused += 1;
            }
            other => panic!("a send of a stalled log was answered: {other:?}"),
        }
    }
    let in_flight = Limits::default().max_batch_ops;
    let bound = MAILBOX_CAPACITY + MAX_QUEUED_OPS + in_flight;
    assert!(
        held <= bound,
        "the actor holds {held} operations, more than its bound {bound}"
    );
    assert_eq!(held + refused, ROUNDS * PER_ROUND);
    assert_eq!(
        harness.node.metrics().conversation_overloads.get(),
        refused as u64
    );
}
