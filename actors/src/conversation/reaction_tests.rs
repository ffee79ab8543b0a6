//! Reaction changes go to the log as deltas, not as the whole message again.

use tokio::sync::oneshot;
use wire::log::{LogEventBody, MessageRecord, ReactionChange};
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, UserId};

use super::op::Queued;
use super::{ConversationOp, OpActor};
use crate::node::Limits;
use crate::ops::message_forward::ReadMessage;
use crate::ops::message_send::SendMessage;
use crate::ops::reaction::ChangeReaction;
use crate::testing::Harness;

const REACTORS: usize = 30;

async fn ask<T>(
    harness: &Harness,
    conversation_id: &ConversationId,
    op: impl FnOnce(oneshot::Sender<Result<T, crate::OpError>>) -> ConversationOp,
) -> T {
    let (reply, answer) = oneshot::channel();
    harness
        .node
        .supervisor()
        .enqueue(&harness.node, conversation_id, op(reply));
    answer.await.expect("answered").expect("succeeded")
}

fn react(user: &str, ack: &SendAck, change: ReactionChange) -> ChangeReaction {
    ChangeReaction {
        user_id: UserId::new(user),
        message_id: ack.message_id.clone(),
        emoji: "👍".to_owned(),
        change,
    }
}

/// Logged events of reaction changes, each as its JSON size in bytes.
fn logged_reaction_sizes(harness: &Harness) -> Vec<usize> {
    let events = harness.log.events.lock().unwrap();
    events
        .iter()
        .filter(|event| {
            matches!(
                event.body,
                LogEventBody::ReactionChanged { .. } | LogEventBody::MessageReacted { .. }
            )
        })
        .map(|event| {
            assert!(
                matches!(event.body, LogEventBody::ReactionChanged { .. }),
                "a reaction is logged as a delta, not as the whole message"
            );
            serde_json::to_vec(event).expect("encode").len()
        })
        .collect()
}

#[actix_rt::test]
async fn reactions_are_logged_as_deltas_and_readers_see_them_all() {
    let harness = Harness::new(Limits::default());
    let users: Vec<String> = (0..REACTORS).map(|index| format!("u{index}")).collect();
    let mut members: Vec<&str> = vec!["alice"];
    members.extend(users.iter().map(String::as_str));
    let conversation_id = harness.group("c-react", &members);
    let text = "long text ".repeat(800);
    let ack: SendAck = ask(&harness, &conversation_id, |reply| {
        ConversationOp::Send(Queued::new(
            SendMessage {
                actor: OpActor::Member(UserId::new("alice")),
                client_msg_id: ClientMsgId::new("m1"),
                text: text.clone(),
                reply_to: None,
                forwarded_from: None,
                attachments: Vec::new(),
            },
            reply,
        ))
    })
    .await;
    for user in &users {
        let command = react(user, &ack, ReactionChange::Add);
        let _: MessageRecord = ask(&harness, &conversation_id, |reply| {
            ConversationOp::React(Queued::new(command, reply))
        })
        .await;
    }
    let command = react("u0", &ack, ReactionChange::Remove);
    let last: MessageRecord = ask(&harness, &conversation_id, |reply| {
        ConversationOp::React(Queued::new(command, reply))
    })
    .await;

    let sizes = logged_reaction_sizes(&harness);
    assert_eq!(sizes.len(), REACTORS + 1, "one event per change");
    let largest = sizes.iter().max().copied().unwrap_or(0);
    assert!(
        largest < 512,
        "a reaction event does not grow with the message ({largest} bytes, text {} bytes)",
        text.len()
    );
    assert_eq!(last.version, REACTORS as u64 + 2);
    let read = ask(&harness, &conversation_id, |reply| {
        ConversationOp::ReadMessage(Queued::new(
            ReadMessage {
                user_id: UserId::new("alice"),
                message_id: ack.message_id.clone(),
            },
            reply,
        ))
    })
    .await;
    assert_eq!(read.reactions["👍"].len(), REACTORS - 1);
    assert_eq!(read.text, text);
}
