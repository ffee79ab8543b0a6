//! Events the server pushes: `{"ev": "<name>", "data": {...}}`.

use serde::{Deserialize, Serialize};

use crate::{
    Conversation, ConversationId, Message, MessageId, NodeId, Reactions, Seq, SessionId, Timestamp,
    UserId,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Welcome {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub node_id: NodeId,
    pub protocol: u32,
    pub heartbeat_ms: u64,
    /// Protocol v1.1 features this node serves (`"attachments"`, `"search"`); always present.
    #[serde(default)]
    pub features: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TypingState {
    Started,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(tag = "ev", content = "data")]
pub enum ServerEvent {
    #[serde(rename = "welcome")]
    Welcome(Welcome),
    #[serde(rename = "message.new")]
    MessageNew { message: Message },
    #[serde(rename = "message.stored")]
    MessageStored {
        conversation_id: ConversationId,
        message_id: MessageId,
        seq: Seq,
    },
    #[serde(rename = "message.edited")]
    MessageEdited { message: Message },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        conversation_id: ConversationId,
        message_id: MessageId,
        seq: Seq,
    },
    #[serde(rename = "reaction.updated")]
    ReactionUpdated {
        conversation_id: ConversationId,
        message_id: MessageId,
        reactions: Reactions,
    },
    #[serde(rename = "conversation.updated")]
    ConversationUpdated { conversation: Conversation },
    #[serde(rename = "member.joined")]
    MemberJoined {
        conversation_id: ConversationId,
        user_ids: Vec<UserId>,
        by: UserId,
        conversation: Conversation,
    },
    #[serde(rename = "member.left")]
    MemberLeft {
        conversation_id: ConversationId,
        user_ids: Vec<UserId>,
        by: UserId,
        conversation: Conversation,
    },
    #[serde(rename = "receipt.updated")]
    ReceiptUpdated {
        conversation_id: ConversationId,
        user_id: UserId,
        delivered_seq: Seq,
        read_seq: Seq,
    },
    #[serde(rename = "typing")]
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
        state: TypingState,
    },
    #[serde(rename = "presence")]
    Presence {
        user_id: UserId,
        online: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "typescript", ts(optional))]
        last_seen: Option<Timestamp>,
    },
    #[serde(rename = "goaway")]
    Goaway { reconnect_after_ms: u64 },
}

impl ServerEvent {
    /// The `ev` name.
    pub fn name(&self) -> &'static str {
        match self {
            ServerEvent::Welcome(_) => "welcome",
            ServerEvent::MessageNew { .. } => "message.new",
            ServerEvent::MessageStored { .. } => "message.stored",
            ServerEvent::MessageEdited { .. } => "message.edited",
            ServerEvent::MessageDeleted { .. } => "message.deleted",
            ServerEvent::ReactionUpdated { .. } => "reaction.updated",
            ServerEvent::ConversationUpdated { .. } => "conversation.updated",
            ServerEvent::MemberJoined { .. } => "member.joined",
            ServerEvent::MemberLeft { .. } => "member.left",
            ServerEvent::ReceiptUpdated { .. } => "receipt.updated",
            ServerEvent::Typing { .. } => "typing",
            ServerEvent::Presence { .. } => "presence",
            ServerEvent::Goaway { .. } => "goaway",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_adjacently_tagged() {
        let event = ServerEvent::Goaway {
            reconnect_after_ms: 1500,
        };
        let value: serde_json::Value =
            serde_json::from_str(&crate::frames::encode_event(&event)).unwrap();
        assert_eq!(value["ev"], "goaway");
        assert_eq!(value["data"]["reconnect_after_ms"], 1500);
    }
}
