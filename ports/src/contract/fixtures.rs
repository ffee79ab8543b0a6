//! Record builders and helpers shared by the suites.

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use wire::log::{
    ConversationRecord, LogEvent, LogEventBody, MessageRecord, Participant, ParticipantRole,
};
use wire::{
    ClientMsgId, Conversation, ConversationId, ConversationKind, Message, MessageId, Seq,
    Timestamp, UserId,
};

/// A unique id with a readable prefix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fixed instant plus `seconds`, so orderings in tests do not depend on the clock.
pub fn at(seconds: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("valid fixed date")
        + Duration::seconds(seconds)
}

pub fn conversation_record(
    conversation_id: &ConversationId,
    kind: ConversationKind,
    members: &[&UserId],
    version: u64,
    created_at: Timestamp,
) -> ConversationRecord {
    let members: Vec<UserId> = members.iter().map(|member| (*member).clone()).collect();
    let created_by = members
        .first()
        .cloned()
        .unwrap_or_else(|| UserId::new("nobody"));
    ConversationRecord {
        participants: members
            .iter()
            .map(|user_id| Participant {
                user_id: user_id.clone(),
                role: if *user_id == created_by {
                    ParticipantRole::Owner
                } else {
                    ParticipantRole::Member
                },
                joined_at: created_at,
            })
            .collect(),
        conversation: Conversation {
            conversation_id: conversation_id.clone(),
            kind,
            title: match kind {
                ConversationKind::Group => Some(format!("group v{version}")),
                ConversationKind::Direct => None,
            },
            members,
            created_by,
            created_at,
            last_seq: Seq::ZERO,
        },
        version,
        updated_at: created_at,
    }
}

pub fn message_record(
    conversation_id: &ConversationId,
    seq: u64,
    sender_id: &UserId,
    version: u64,
    created_at: Timestamp,
) -> MessageRecord {
    MessageRecord {
        message: Message {
            message_id: MessageId::new(format!("{conversation_id}-m{seq}")),
            conversation_id: conversation_id.clone(),
            seq: Seq(seq),
            sender_id: sender_id.clone(),
            client_msg_id: ClientMsgId::new(format!("client-{seq}")),
            text: format!("message {seq} v{version}"),
            reply_to: None,
            forwarded_from: None,
            reactions: BTreeMap::new(),
            created_at,
            edited_at: None,
            deleted: false,
            attachments: Vec::new(),
        },
        version,
    }
}

pub fn log_event(body: LogEventBody) -> LogEvent {
    LogEvent::new(unique("event"), Utc::now(), body)
}

pub fn sent_event(conversation_id: &ConversationId, seq: u64, sender_id: &UserId) -> LogEvent {
    log_event(LogEventBody::MessageSent {
        record: message_record(conversation_id, seq, sender_id, 1, at(seq as i64)),
    })
}
