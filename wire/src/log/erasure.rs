//! What [`super::LogEventBody::UserErased`] does to one stored message of its conversation.

use super::MessageRecord;
use crate::{Seq, UserId};

/// How erasing a user changed one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasedChange {
    /// Neither theirs nor reacted to by them (or already erased): unchanged.
    Unchanged,
    /// Their message: now deleted (text, attachments, reactions and links gone), one version up
    /// so that it supersedes every earlier copy.
    Deleted,
    /// Another sender's message: their reactions on it are gone (the version is kept, so a
    /// later reaction change of another member still applies).
    ReactionsRemoved,
}

impl MessageRecord {
    /// Erases `user_id` from this message when its seq is at most `through` (see
    /// [`ErasedChange`]). Applying it again changes nothing.
    pub fn erase_user(&mut self, user_id: &UserId, through: Seq) -> ErasedChange {
        let message = &mut self.message;
        if message.seq > through {
            return ErasedChange::Unchanged;
        }
        if &message.sender_id == user_id {
            if message.deleted {
                return ErasedChange::Unchanged;
            }
            message.deleted = true;
            message.text.clear();
            message.reactions.clear();
            message.attachments.clear();
            message.reply_to = None;
            message.forwarded_from = None;
            self.version += 1;
            return ErasedChange::Deleted;
        }
        let before: usize = message.reactions.values().map(Vec::len).sum();
        for users in message.reactions.values_mut() {
            users.retain(|user| user != user_id);
        }
        message.reactions.retain(|_, users| !users.is_empty());
        let after: usize = message.reactions.values().map(Vec::len).sum();
        if after == before {
            ErasedChange::Unchanged
        } else {
            ErasedChange::ReactionsRemoved
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::{ConversationId, Message, MessageId};

    fn record(seq: u64, sender: &str, reactions: &[(&str, &[&str])]) -> MessageRecord {
        let users = |names: &[&str]| names.iter().map(|name| UserId::new(*name)).collect();
        MessageRecord {
            message: Message {
                message_id: MessageId::new(format!("m{seq}")),
                conversation_id: ConversationId::new("c"),
                seq: Seq(seq),
                sender_id: UserId::new(sender),
                client_msg_id: crate::ClientMsgId::new(format!("k{seq}")),
                text: format!("words of {sender}"),
                reply_to: None,
                forwarded_from: None,
                reactions: reactions
                    .iter()
                    .map(|(emoji, names)| ((*emoji).to_owned(), users(names)))
                    .collect(),
                created_at: DateTime::from_timestamp(0, 0).expect("epoch"),
                edited_at: None,
                deleted: false,
                attachments: Vec::new(),
            },
            version: 3,
        }
    }

    #[test]
    fn their_message_becomes_deleted_once() {
        let erin = UserId::new("erin");
        let mut theirs = record(2, "erin", &[("👍", &["bob"])]);
        assert_eq!(theirs.erase_user(&erin, Seq(5)), ErasedChange::Deleted);
        let message = &theirs.message;
        assert!(message.deleted && message.text.is_empty() && message.reactions.is_empty());
        assert_eq!((message.seq, theirs.version), (Seq(2), 4));
        assert_eq!(theirs.erase_user(&erin, Seq(5)), ErasedChange::Unchanged);
        assert_eq!(theirs.version, 4, "a replay changes nothing");
    }

    #[test]
    fn only_their_reactions_leave_other_messages() {
        let erin = UserId::new("erin");
        let mut other = record(1, "bob", &[("👍", &["erin", "bob"]), ("🎉", &["erin"])]);
        assert_eq!(
            other.erase_user(&erin, Seq(5)),
            ErasedChange::ReactionsRemoved
        );
        let kept: Vec<_> = other.message.reactions.keys().cloned().collect();
        assert_eq!(kept, vec!["👍".to_owned()]);
        assert_eq!(other.message.reactions["👍"], vec![UserId::new("bob")]);
        assert_eq!((other.version, other.message.deleted), (3, false));
        assert_eq!(other.erase_user(&erin, Seq(5)), ErasedChange::Unchanged);
    }

    #[test]
    fn messages_after_the_erased_seq_stay() {
        let erin = UserId::new("erin");
        let mut later = record(6, "erin", &[]);
        assert_eq!(later.erase_user(&erin, Seq(5)), ErasedChange::Unchanged);
        assert!(!later.message.deleted);
    }
}
