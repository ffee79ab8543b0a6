//! The router: takes the envelopes of this node's bus subscriptions and hands them on —
//! conversation events to the conversation actor (which fans out in seq order), user events
//! to that user's sessions, membership changes to the local registry.

use bytestring::ByteString;
use ports::{BusEnvelope, BusPayload, BusTopic, PortError, Publishing};
use wire::events::ServerEvent;
use wire::frames::encode_event;
use wire::UserId;

use crate::conversation::{excluded_user, Deliver};
use crate::node::Node;

/// Starts routing. Must be called on an actix arbiter; fails if the bus's incoming stream was
/// already taken.
pub fn start(node: Node) -> Result<(), PortError> {
    let mut incoming = node
        .ports()
        .bus
        .take_incoming()
        .ok_or_else(|| PortError::internal("bus incoming stream already taken"))?;
    actix_rt::spawn(async move {
        while let Some(envelope) = incoming.recv().await {
            route(&node, envelope).await;
        }
        tracing::info!("bus closed, router stopped");
    });
    Ok(())
}

/// Publishes `envelope` on the bus. On a bus that reaches this node only (standalone) a
/// publisher on an actix arbiter routes the envelope itself, on its own task: through the
/// router it would cross to the router's thread and back to the conversation actor's (two
/// thread switches of the five a one-to-one message costs; 7 % of a standalone send's CPU,
/// docs/benchmarks.md). Routing ends before this returns, so a publisher's envelopes are routed
/// in its order and before anything it does next, as they are through the router's channel.
/// Off an arbiter (routing may start a conversation actor, which needs one) the envelope goes
/// through the channel.
pub async fn publish(node: &Node, envelope: BusEnvelope) -> Result<(), PortError> {
    let bus = &node.ports().bus;
    if actix_rt::Arbiter::try_current().is_none() {
        return bus.publish(envelope).await;
    }
    match bus.route_here(envelope) {
        Publishing::RouteHere(envelope) => {
            route(node, envelope).await;
            Ok(())
        }
        Publishing::Dropped => Ok(()),
        Publishing::Publish(envelope) => bus.publish(envelope).await,
    }
}

pub async fn route(node: &Node, envelope: BusEnvelope) {
    let kind = match envelope.topic {
        BusTopic::Conversation(_) => "conversation",
        BusTopic::User(_) => "user",
    };
    node.metrics().bus_received.with_label_values(&[kind]).inc();
    let origin = envelope.origin;
    match (envelope.topic, envelope.payload) {
        (BusTopic::Conversation(conversation_id), BusPayload::Event { seq, event }) => {
            deliver_conversation_event(node, &origin, &conversation_id, seq, event).await;
        }
        (BusTopic::User(user_id), BusPayload::Event { event, .. }) => {
            // Membership events travel on user topics: the conversation's actor on this node
            // (if any) must reload the record.
            if let ServerEvent::MemberJoined {
                conversation_id, ..
            }
            | ServerEvent::MemberLeft {
                conversation_id, ..
            } = &event
            {
                if let Some(handle) = node.supervisor().running(conversation_id) {
                    handle.invalidate_record();
                }
            }
            let event = joined_as_of_now(node, &user_id, event).await;
            let frame = ByteString::from(encode_event(&event));
            let delivered = node.registry().deliver_to_user(&user_id, &frame);
            node.metrics().fanout_deliveries.inc_by(delivered);
        }
        (
            BusTopic::User(user_id),
            BusPayload::MembershipChanged {
                conversation_id,
                added,
                removed,
            },
        ) => {
            if added.contains(&user_id) {
                if let Err(error) = node
                    .registry()
                    .add_members(&conversation_id, std::slice::from_ref(&user_id))
                    .await
                {
                    tracing::warn!(conversation_id = %conversation_id, error = %error, "subscribing to a joined conversation failed");
                }
            }
            if removed.contains(&user_id) {
                node.registry()
                    .remove_members(&conversation_id, std::slice::from_ref(&user_id));
            }
        }
        (BusTopic::User(user_id), BusPayload::CloseSessions { reason }) => {
            crate::moderation::close_local_sessions(node, &user_id, reason);
        }
        (BusTopic::Conversation(conversation_id), BusPayload::MessagesPurged { through_seq }) => {
            if let Some(handle) = node.supervisor().running(&conversation_id) {
                handle.purged(through_seq);
            }
        }
        (BusTopic::Conversation(conversation_id), BusPayload::Resubscribed) => {
            if let Some(handle) = node.supervisor().running(&conversation_id) {
                handle.resubscribed();
            }
        }
        (
            BusTopic::Conversation(_),
            BusPayload::MembershipChanged { .. } | BusPayload::CloseSessions { .. },
        )
        // What a user's topic carried meanwhile (events of one user, a close of sessions) is
        // not repaired: the sessions' next `sync` has the messages.
        | (BusTopic::User(_), BusPayload::MessagesPurged { .. } | BusPayload::Resubscribed) => {}
    }
}

/// A `member.joined` that adds the topic's user reaches their sessions after this node began
/// routing the conversation to them (the membership change came first on the same topic), so
/// every seq allocated from now on reaches them live. Messages sent between the change and now
/// may not have (published before this node subscribed): the event's `last_seq` is raised to
/// the conversation's last seq now, so the client counts them as history, not as missing
/// (protocol.md: every message above `member.joined`'s `last_seq` arrives live).
async fn joined_as_of_now(node: &Node, user_id: &UserId, mut event: ServerEvent) -> ServerEvent {
    let ServerEvent::MemberJoined {
        user_ids,
        conversation,
        ..
    } = &mut event
    else {
        return event;
    };
    if !user_ids.contains(user_id) {
        return event;
    }
    let conversation_id = &conversation.conversation_id;
    match node.ports().sequencer.last_seq(conversation_id).await {
        Ok(last) => conversation.last_seq = conversation.last_seq.max(last),
        Err(error) => {
            tracing::warn!(conversation_id = %conversation_id, error = %error, "reading the last seq for member.joined failed; its last_seq stays the change's")
        }
    }
    event
}

/// An event of a conversation this node has sessions in: to its actor, which fans it out
/// (sequenced ones in seq order).
async fn deliver_conversation_event(
    node: &Node,
    origin: &wire::NodeId,
    conversation_id: &wire::ConversationId,
    seq: Option<wire::Seq>,
    event: ServerEvent,
) {
    if !node.registry().has_local_sessions(conversation_id) {
        return;
    }
    let invalidates_record = matches!(
        event,
        ServerEvent::MemberJoined { .. }
            | ServerEvent::MemberLeft { .. }
            | ServerEvent::ConversationUpdated { .. }
    );
    let from_elsewhere = origin != node.node_id();
    let invalidates_messages = from_elsewhere
        && matches!(
            event,
            ServerEvent::MessageEdited { .. }
                | ServerEvent::MessageDeleted { .. }
                | ServerEvent::ReactionUpdated { .. }
        );
    let deliver = Deliver {
        seq,
        invalidates_record,
        invalidates_messages,
        exclude: excluded_user(&event).cloned(),
        frame: ByteString::from(encode_event(&event)),
    };
    node.supervisor()
        .conversation(node, conversation_id)
        .deliver(deliver)
        .await;
}

#[cfg(test)]
mod tests {
    use wire::{Conversation, ConversationId, ConversationKind, Seq, Timestamp};

    use super::*;
    use crate::node::Limits;
    use crate::session::{DetachedSession, Outbound, SessionHandle};
    use crate::testing::Harness;

    fn joined(conversation_id: &ConversationId, added: &[&str], last_seq: u64) -> ServerEvent {
        ServerEvent::MemberJoined {
            conversation_id: conversation_id.clone(),
            user_ids: added.iter().map(|user| UserId::new(*user)).collect(),
            by: UserId::new("alice"),
            conversation: Conversation {
                conversation_id: conversation_id.clone(),
                kind: ConversationKind::Group,
                title: None,
                members: vec![UserId::new("alice"), UserId::new("bob")],
                created_by: UserId::new("alice"),
                created_at: Timestamp::default(),
                last_seq: Seq(last_seq),
            },
        }
    }

    /// A session of bob's on the node (in no conversation yet), and what it is sent.
    async fn bob_connected(harness: &Harness) -> DetachedSession {
        let (session, outbound) =
            SessionHandle::detached(UserId::new("bob"), 16, harness.node.metrics().clone());
        harness
            .node
            .registry()
            .register_session(&session, &[], None)
            .await
            .unwrap();
        outbound
    }

    /// Regression (the two-node chat load test): messages sent between a membership change
    /// and the new member's node subscribing never reached that member live, yet its
    /// `member.joined` said the conversation was at the change's seq.
    #[actix_rt::test]
    async fn member_joined_of_a_new_member_carries_the_last_seq_of_when_it_arrives() {
        let harness = Harness::new(Limits::default());
        let conversation_id = harness.group("c1", &["alice", "bob"]);
        // Three messages were sent since the change the event reports (at seq 0).
        let sends: Vec<ports::SendIntent> = ["k1", "k2", "k3"]
            .map(|key| {
                let key = ports::DedupKey {
                    sender_id: UserId::new("alice"),
                    client_msg_id: wire::ClientMsgId::new(key),
                };
                ports::SendIntent::new(key, chrono::Utc::now())
            })
            .to_vec();
        let sequencer = &harness.node.ports().sequencer;
        sequencer.reserve(&conversation_id, &sends).await.unwrap();
        let outbound = bob_connected(&harness).await;
        for (added, expected) in [
            (&["bob"][..], "\"last_seq\":3"),
            (&["carol"][..], "\"last_seq\":0"),
        ] {
            let envelope = BusEnvelope {
                topic: BusTopic::User(UserId::new("bob")),
                origin: harness.node.node_id().clone(),
                payload: BusPayload::Event {
                    seq: None,
                    event: joined(&conversation_id, added, 0),
                },
            };
            route(&harness.node, envelope).await;
            let Some(Outbound::Text(frame)) = outbound.try_recv() else {
                panic!("bob got no member.joined");
            };
            assert!(frame.contains(expected), "{frame}");
        }
    }

    /// A bus that reaches this node only hands a publisher on an arbiter its envelope to route:
    /// bob's session gets the event though no router runs. Off an arbiter the envelope waits in
    /// the router's channel.
    #[actix_rt::test]
    async fn a_publisher_routes_its_envelope_itself_on_a_bus_that_reaches_this_node_only() {
        let harness = Harness::new(Limits::default());
        harness.bus.reach_this_node_only();
        let conversation_id = ConversationId::new("c-local");
        let outbound = bob_connected(&harness).await;
        let envelope = BusEnvelope {
            topic: BusTopic::User(UserId::new("bob")),
            origin: harness.node.node_id().clone(),
            payload: BusPayload::Event {
                seq: None,
                event: joined(&conversation_id, &["bob"], 0),
            },
        };
        publish(&harness.node, envelope.clone()).await.unwrap();
        let Some(Outbound::Text(frame)) = outbound.try_recv() else {
            panic!("bob got no member.joined");
        };
        assert!(frame.contains("member.joined"), "{frame}");

        let node = harness.node.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(publish(&node, envelope))
        })
        .join()
        .unwrap()
        .unwrap();
        assert!(outbound.try_recv().is_none(), "routed off an arbiter");
        let mut incoming = ports::Bus::take_incoming(harness.bus.as_ref()).unwrap();
        assert!(
            incoming.try_recv().is_ok(),
            "the channel holds the envelope"
        );
    }
}
