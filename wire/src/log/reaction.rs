//! Reaction changes as the log carries them: one user's emoji added to or taken from one
//! message, not the whole message again (a message with hundreds of reactions would otherwise
//! be re-logged whole for each).

use serde::{Deserialize, Serialize};

use super::MessageRecord;
use crate::{ConversationId, Message, MessageId, Seq, UserId};

/// Whether a reaction is added or taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionChange {
    Add,
    Remove,
}

/// One reaction change of a message, at the message version it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionDelta {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub seq: Seq,
    pub user_id: UserId,
    pub emoji: String,
    pub change: ReactionChange,
    /// The message's version after this change (the version before it + 1).
    pub version: u64,
}

impl ReactionDelta {
    /// Applies the change to `record` (the same message) when the record is older than this
    /// change; returns whether it applied. Applying it again, or to a newer version (which
    /// already holds it, or a deletion), changes nothing.
    pub fn apply_to(&self, record: &mut MessageRecord) -> bool {
        if record.message.message_id != self.message_id || record.version >= self.version {
            return false;
        }
        if !record.message.deleted {
            change_reaction(&mut record.message, &self.emoji, &self.user_id, self.change);
        }
        record.version = self.version;
        true
    }
}

/// Adds or removes `user_id`'s reaction with `emoji`; returns whether the message changed.
/// An emoji nobody reacts with any more is dropped.
pub fn change_reaction(
    message: &mut Message,
    emoji: &str,
    user_id: &UserId,
    change: ReactionChange,
) -> bool {
    let reactions = &mut message.reactions;
    match change {
        ReactionChange::Add => {
            let users = reactions.entry(emoji.to_owned()).or_default();
            if users.contains(user_id) {
                return false;
            }
            users.push(user_id.clone());
            true
        }
        ReactionChange::Remove => {
            let Some(users) = reactions.get_mut(emoji) else {
                return false;
            };
            let before = users.len();
            users.retain(|user| user != user_id);
            let changed = users.len() != before;
            if users.is_empty() {
                reactions.remove(emoji);
            }
            changed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64) -> MessageRecord {
        let message: Message = serde_json::from_value(serde_json::json!({
            "message_id": "m", "conversation_id": "c", "seq": 3, "sender_id": "alice",
            "client_msg_id": "k", "text": "hi", "reply_to": null, "forwarded_from": null,
            "reactions": {}, "created_at": "2026-01-01T00:00:00Z", "edited_at": null,
            "deleted": false
        }))
        .expect("message");
        MessageRecord { message, version }
    }

    fn delta(user: &str, change: ReactionChange, version: u64) -> ReactionDelta {
        ReactionDelta {
            conversation_id: ConversationId::new("c"),
            message_id: MessageId::new("m"),
            seq: Seq(3),
            user_id: UserId::new(user),
            emoji: "👍".to_owned(),
            change,
            version,
        }
    }

    fn users(record: &MessageRecord) -> Vec<&str> {
        record
            .message
            .reactions
            .get("👍")
            .map(|users| users.iter().map(UserId::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn deltas_apply_in_order_once_each() {
        let mut stored = record(1);
        assert!(delta("bob", ReactionChange::Add, 2).apply_to(&mut stored));
        assert!(delta("carol", ReactionChange::Add, 3).apply_to(&mut stored));
        assert!(
            !delta("bob", ReactionChange::Add, 2).apply_to(&mut stored),
            "a repeat"
        );
        assert_eq!(users(&stored), ["bob", "carol"]);
        assert!(delta("bob", ReactionChange::Remove, 4).apply_to(&mut stored));
        assert_eq!(users(&stored), ["carol"]);
        assert!(delta("carol", ReactionChange::Remove, 5).apply_to(&mut stored));
        assert!(
            stored.message.reactions.is_empty(),
            "an emoji without users goes"
        );
        assert_eq!(stored.version, 5);
    }

    #[test]
    fn a_newer_version_or_another_message_is_left_alone() {
        let mut newer = record(7);
        assert!(!delta("bob", ReactionChange::Add, 6).apply_to(&mut newer));
        assert_eq!(newer, record(7));
        let mut other = record(1);
        other.message.message_id = MessageId::new("other");
        assert!(!delta("bob", ReactionChange::Add, 2).apply_to(&mut other));
        assert_eq!(other.version, 1);
    }
}
