//! The objects clients see: conversations and messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AttachmentId, ClientMsgId, ConversationId, MessageId, Seq, Timestamp, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Conversation {
    pub conversation_id: ConversationId,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub members: Vec<UserId>,
    pub created_by: UserId,
    pub created_at: Timestamp,
    pub last_seq: Seq,
}

/// Emoji → users who reacted with it, in the order they reacted.
pub type Reactions = BTreeMap<String, Vec<UserId>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ForwardedFrom {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
}

/// A file a message carries (protocol v1.1): its bytes are downloaded through
/// `GET /api/v1/attachments/{attachment_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct AttachmentRef {
    pub attachment_id: AttachmentId,
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Message {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub sender_id: UserId,
    pub client_msg_id: ClientMsgId,
    pub text: String,
    pub reply_to: Option<MessageId>,
    pub forwarded_from: Option<ForwardedFrom>,
    pub reactions: Reactions,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
    /// Always serialized (an empty list when none); absent in records written before v1.1.
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
}
