//! The router: takes the envelopes of this node's bus subscriptions and hands them on —
//! conversation events to the conversation actor (which fans out in seq order), user events
//! to that user's sessions, membership changes to the local registry.

use bytestring::ByteString;
use ports::{BusEnvelope, BusPayload, BusTopic, PortError};
use wire::events::ServerEvent;
use wire::frames::encode_event;

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

pub async fn route(node: &Node, envelope: BusEnvelope) {
    let kind = match envelope.topic {
        BusTopic::Conversation(_) => "conversation",
        BusTopic::User(_) => "user",
    };
    node.metrics().bus_received.with_label_values(&[kind]).inc();
    let origin = envelope.origin;
    match (envelope.topic, envelope.payload) {
        (BusTopic::Conversation(conversation_id), BusPayload::Event { seq, event }) => {
            if !node.registry().has_local_sessions(&conversation_id) {
                return;
            }
            let invalidates_record = matches!(
                event,
                ServerEvent::MemberJoined { .. }
                    | ServerEvent::MemberLeft { .. }
                    | ServerEvent::ConversationUpdated { .. }
            );
            let from_elsewhere = &origin != node.node_id();
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
                .conversation(node, &conversation_id)
                .deliver(deliver)
                .await;
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
        (
            BusTopic::Conversation(_),
            BusPayload::MembershipChanged { .. } | BusPayload::CloseSessions { .. },
        )
        | (BusTopic::User(_), BusPayload::MessagesPurged { .. }) => {}
    }
}
