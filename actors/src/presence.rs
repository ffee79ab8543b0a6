//! Sessions coming and going: registering a session with the registry and presence, and
//! telling a user's co-members when the user comes online or goes offline.

use std::collections::BTreeSet;

use chrono::Utc;
use ports::StoredConversation;
use wire::events::ServerEvent;
use wire::UserId;

use crate::conversation::publish;
use crate::node::Node;
use crate::session::SessionHandle;
use crate::OpError;

/// All conversations of a user.
async fn all_conversations(
    node: &Node,
    user_id: &UserId,
) -> Result<Vec<StoredConversation>, OpError> {
    // One call, one snapshot: paging by the activity cursor could skip a conversation whose
    // activity changed between two pages (the adapters load a user's whole list per call).
    const EVERY: usize = 1_000_000;
    Ok(node
        .ports()
        .directory
        .list_for_user(user_id, None, EVERY)
        .await?)
}

fn co_members(user_id: &UserId, conversations: &[StoredConversation]) -> BTreeSet<UserId> {
    conversations
        .iter()
        .flat_map(|stored| stored.record.conversation.members.iter())
        .filter(|member| *member != user_id)
        .cloned()
        .collect()
}

/// Tells co-members a user came online (`last_seen: None`) or went offline at `last_seen`.
async fn announce_presence(
    node: &Node,
    user_id: &UserId,
    last_seen: Option<wire::Timestamp>,
    co_members: BTreeSet<UserId>,
) {
    let online = last_seen.is_none();
    for member in co_members {
        publish(
            node,
            ports::BusTopic::User(member),
            ServerEvent::Presence {
                user_id: user_id.clone(),
                online,
                last_seen,
            },
        )
        .await;
    }
}

/// Registers a new session: queues `welcome` as its first frame, routes its user's
/// conversations to it and marks the user online.
pub async fn open_session(
    node: &Node,
    session: &SessionHandle,
    welcome: bytestring::ByteString,
) -> Result<(), OpError> {
    let user_id = session.user_id();
    // A user with a session on this node already: the new session is routed the same
    // conversations, without reading them from the directory again.
    let (ids, loaded) = match node.registry().sibling_conversations(user_id) {
        Some(ids) => (ids, None),
        None => {
            let conversations = all_conversations(node, user_id).await?;
            let ids = conversations
                .iter()
                .map(|stored| stored.record.conversation.conversation_id.clone())
                .collect();
            (ids, Some(conversations))
        }
    };
    node.registry()
        .register_session(session, &ids, Some(welcome))
        .await?;
    let came_online = node
        .ports()
        .presence
        .connect(user_id, session.session_id(), node.node_id())
        .await?;
    if came_online {
        let conversations = match loaded {
            Some(conversations) => conversations,
            None => all_conversations(node, user_id).await?,
        };
        announce_presence(node, user_id, None, co_members(user_id, &conversations)).await;
    }
    Ok(())
}

/// Unregisters a closed session; announces the user offline when it was their last.
pub async fn close_session(node: &Node, session: &SessionHandle) {
    node.registry().unregister_session(session);
    let user_id = session.user_id();
    let went_offline = match node
        .ports()
        .presence
        .disconnect(user_id, session.session_id(), node.node_id())
        .await
    {
        Ok(went_offline) => went_offline,
        Err(error) => {
            tracing::warn!(user_id = %user_id, error = %error, "presence disconnect failed");
            return;
        }
    };
    if went_offline {
        announce_offline(node, user_id).await;
    }
}

/// Tells the user's co-members that the user went offline, with the recorded `last_seen`.
pub async fn announce_offline(node: &Node, user_id: &UserId) {
    let conversations = match all_conversations(node, user_id).await {
        Ok(conversations) => conversations,
        Err(error) => {
            tracing::warn!(user_id = %user_id, error = %error, "announcing offline failed");
            return;
        }
    };
    let last_seen = node
        .ports()
        .presence
        .get(std::slice::from_ref(user_id))
        .await
        .ok()
        .and_then(|mut presence| presence.remove(user_id))
        .and_then(|info| info.last_seen)
        .unwrap_or_else(Utc::now);
    announce_presence(
        node,
        user_id,
        Some(last_seen),
        co_members(user_id, &conversations),
    )
    .await
}

#[cfg(test)]
mod tests {
    use bytestring::ByteString;
    use wire::UserId;

    use super::open_session;
    use crate::node::Limits;
    use crate::session::SessionHandle;
    use crate::testing::Harness;

    /// A user's second session on a node is routed the first one's conversations without
    /// reading the directory again (issue #13, item 3).
    #[actix_rt::test]
    async fn a_second_session_copies_the_first_ones_conversations() {
        let harness = Harness::new(Limits::default());
        let first_conversation = harness.group("c1", &["alice", "bob"]);
        let metrics = harness.node.metrics().clone();
        let (first, _first_frames) =
            SessionHandle::detached(UserId::new("alice"), 16, metrics.clone());
        open_session(&harness.node, &first, ByteString::from("welcome"))
            .await
            .unwrap();
        // Written behind the node's back: only a directory read would find it.
        let unseen = harness.group("c2", &["alice", "carol"]);
        let (second, _second_frames) = SessionHandle::detached(UserId::new("alice"), 16, metrics);
        open_session(&harness.node, &second, ByteString::from("welcome"))
            .await
            .unwrap();
        let registry = harness.node.registry();
        assert!(registry.session_in_conversation(second.session_id(), &first_conversation));
        assert!(
            !registry.session_in_conversation(second.session_id(), &unseen),
            "the second session read the directory again"
        );
    }
}
