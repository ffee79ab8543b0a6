//! The lines of an export file (JSON Lines, protocol §18.2): one typed object per line, built
//! from what the store holds. Only the user's own data: no other member's ids or text.

use serde_json::{json, Value};
use wire::log::{MessageRecord, Participant};
use wire::UserId;

use ports::{StoredConversation, Watermarks};

/// What an export counts per line type (the audit record of its completion carries these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LineCounts {
    pub conversations: u64,
    pub memberships: u64,
    pub messages: u64,
    pub reactions: u64,
    pub receipts: u64,
}

/// `{"type":"conversation"}`: the conversation's id, kind, title and creation time.
pub fn conversation_line(stored: &StoredConversation) -> Value {
    let conversation = &stored.record.conversation;
    json!({
        "type": "conversation",
        "conversation_id": conversation.conversation_id,
        "kind": conversation.kind,
        "title": conversation.title,
        "created_at": conversation.created_at,
    })
}

/// `{"type":"membership"}`: the user's role in the conversation and when they joined.
pub fn membership_line(stored: &StoredConversation, participant: &Participant) -> Value {
    json!({
        "type": "membership",
        "conversation_id": stored.record.conversation.conversation_id,
        "role": participant.role,
        "joined_at": participant.joined_at,
    })
}

/// `{"type":"receipt"}`: how far the user received and read the conversation; `None` when
/// they have no receipt there.
pub fn receipt_line(stored: &StoredConversation, watermarks: Watermarks) -> Option<Value> {
    (watermarks != Watermarks::default()).then(|| {
        json!({
            "type": "receipt",
            "conversation_id": stored.record.conversation.conversation_id,
            "delivered_seq": watermarks.delivered_seq,
            "read_seq": watermarks.read_seq,
        })
    })
}

/// `{"type":"message"}`: a message the user sent, with its attachments' metadata; a deleted
/// one as `"deleted": true` without text or attachments. Others' reactions are left out.
pub fn message_line(record: &MessageRecord) -> Value {
    let message = &record.message;
    let mut line = json!({
        "type": "message",
        "conversation_id": message.conversation_id,
        "message_id": message.message_id,
        "seq": message.seq,
        "client_msg_id": message.client_msg_id,
        "created_at": message.created_at,
        "edited_at": message.edited_at,
        "deleted": message.deleted,
        "reply_to": message.reply_to,
        "forwarded_from": message.forwarded_from,
    });
    if !message.deleted {
        line["text"] = message.text.as_str().into();
        line["attachments"] = json!(message.attachments);
    }
    line
}

/// `{"type":"reaction"}` lines: one per emoji the user put on the message.
pub fn reaction_lines(record: &MessageRecord, user_id: &UserId) -> Vec<Value> {
    let message = &record.message;
    message
        .reactions
        .iter()
        .filter(|(_, users)| users.contains(user_id))
        .map(|(emoji, _)| {
            json!({
                "type": "reaction",
                "conversation_id": message.conversation_id,
                "message_id": message.message_id,
                "seq": message.seq,
                "emoji": emoji,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_record(sender_id: &UserId) -> MessageRecord {
        serde_json::from_value(json!({
            "message": {
                "message_id": "m3", "conversation_id": "c", "seq": 3, "sender_id": sender_id,
                "client_msg_id": "client-3", "text": "message 3 v1", "reply_to": null,
                "forwarded_from": null, "reactions": {}, "created_at": "2026-12-03T12:00:00Z",
                "edited_at": null, "deleted": false, "attachments": [],
            },
            "version": 1,
        }))
        .expect("a message record")
    }

    #[test]
    fn a_deleted_message_has_no_text_and_others_reactions_are_left_out() {
        let alice = UserId::new("alice");
        let bob = UserId::new("bob");
        let mut record = message_record(&alice);
        record
            .message
            .reactions
            .insert("👍".into(), vec![bob.clone()]);
        let line = message_line(&record);
        assert_eq!(line["text"], "message 3 v1");
        assert!(line.get("reactions").is_none());
        assert!(!line.to_string().contains("bob"), "{line}");
        record.message.deleted = true;
        let deleted = message_line(&record);
        assert_eq!(deleted["deleted"], true);
        assert!(deleted.get("text").is_none() && deleted.get("attachments").is_none());
        assert_eq!(reaction_lines(&record, &alice), Vec::<Value>::new());
        assert_eq!(reaction_lines(&record, &bob)[0]["emoji"], "👍");
    }
}
