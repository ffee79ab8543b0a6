//! Operations: names, arguments and results (protocol v1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    AttachmentId, ClientMsgId, Conversation, ConversationId, ConversationKind, Message, MessageId,
    Seq, Timestamp, UserId,
};

/// Largest `limit` accepted by `history.get` (and the page size of `sync`).
pub const HISTORY_MAX_LIMIT: u32 = 100;
/// `limit` of `history.get` when the client gives none.
pub const HISTORY_DEFAULT_LIMIT: u32 = 50;
/// Most bytes of encoded messages in one `history.get` or `sync` reply (and a REST history
/// page). A page stops adding messages before it would pass this budget and says `has_more`,
/// so a reply always fits the socket's frame limit however large the messages are; a page
/// holds at least one message when there is one.
pub const REPLY_MESSAGE_BYTES: usize = 512 * 1024;
/// Largest `limit` accepted by `conversation.list`.
pub const LIST_MAX_LIMIT: u32 = 200;
/// `limit` of `conversation.list` when the client gives none.
pub const LIST_DEFAULT_LIMIT: u32 = 50;

macro_rules! ops {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every operation of protocol v1.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op { $($variant),* }

        impl Op {
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            pub fn parse(name: &str) -> Option<Op> {
                match name {
                    $($name => Some(Op::$variant),)*
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Op::$variant => $name),*
                }
            }
        }
    };
}

ops! {
    Ping => "ping",
    ConversationCreate => "conversation.create",
    ConversationGet => "conversation.get",
    ConversationList => "conversation.list",
    ConversationUpdate => "conversation.update",
    ConversationAddMembers => "conversation.add_members",
    ConversationRemoveMembers => "conversation.remove_members",
    ConversationLeave => "conversation.leave",
    MessageSend => "message.send",
    MessageEdit => "message.edit",
    MessageDelete => "message.delete",
    MessageForward => "message.forward",
    ReactionAdd => "reaction.add",
    ReactionRemove => "reaction.remove",
    HistoryGet => "history.get",
    Sync => "sync",
    ReceiptDelivered => "receipt.delivered",
    ReceiptRead => "receipt.read",
    TypingStart => "typing.start",
    TypingStop => "typing.stop",
    PresenceGet => "presence.get",
    SearchMessages => "search.messages",
}

// ---- arguments -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[cfg_attr(feature = "typescript", ts(optional_fields))]
pub struct CreateConversationArgs {
    pub kind: ConversationKind,
    pub members: Vec<UserId>,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ConversationRef {
    pub conversation_id: ConversationId,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[cfg_attr(feature = "typescript", ts(optional_fields))]
pub struct ListConversationsArgs {
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `conversation_id` of the last item of the previous page.
    #[serde(default)]
    pub after: Option<ConversationId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct UpdateConversationArgs {
    pub conversation_id: ConversationId,
    pub title: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct MembersArgs {
    pub conversation_id: ConversationId,
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[cfg_attr(feature = "typescript", ts(optional_fields))]
pub struct SendArgs {
    pub conversation_id: ConversationId,
    pub client_msg_id: ClientMsgId,
    pub text: String,
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    /// Uploaded files to carry (protocol v1.1), at most [`MAX_ATTACHMENTS`].
    #[serde(default)]
    #[cfg_attr(feature = "typescript", ts(as = "Option<Vec<AttachmentId>>", optional))]
    pub attachments: Vec<AttachmentId>,
}

/// Most attachments one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct EditArgs {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct MessageRef {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ForwardArgs {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub to_conversation_id: ConversationId,
    pub client_msg_id: ClientMsgId,
    /// The caller's own uploads to add to the forwarded message's attachments (protocol v1.1).
    #[serde(default)]
    #[cfg_attr(feature = "typescript", ts(as = "Option<Vec<AttachmentId>>", optional))]
    pub attachments: Vec<AttachmentId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ReactionArgs {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub emoji: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
#[cfg_attr(feature = "typescript", ts(optional_fields))]
pub struct HistoryArgs {
    pub conversation_id: ConversationId,
    #[serde(default)]
    pub before_seq: Option<Seq>,
    #[serde(default)]
    pub after_seq: Option<Seq>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SyncArgs {
    pub conversations: BTreeMap<ConversationId, Seq>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ReceiptArgs {
    pub conversation_id: ConversationId,
    pub seq: Seq,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PresenceGetArgs {
    pub user_ids: Vec<UserId>,
}

// ---- results ---------------------------------------------------------------------------

/// `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ConversationResult {
    pub conversation: Conversation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ConversationListItem {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// Messages after the caller's `read_seq`.
    pub unread: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct ConversationListResult {
    pub conversations: Vec<ConversationListItem>,
}

/// The "accepted" ack of `message.send` / `message.forward`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SendAck {
    pub message_id: MessageId,
    pub seq: Seq,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct MessageResult {
    pub message: Message,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct HistoryResult {
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// The oldest seq retention still keeps (v1.1): seqs below it were purged, not lost. 1 when
    /// nothing was purged.
    pub first_seq: Seq,
}

/// Which end of a page [`HistoryResult::keep_within`] keeps: the oldest messages when the
/// client pages forward (`after_seq`), the newest when it pages backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Oldest,
    Newest,
}

/// Whether [`HistoryResult::keep_within`] keeps a first message that alone passes the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtLeast {
    OneMessage,
    Nothing,
}

impl HistoryResult {
    /// Keeps the messages, from the `keep` end, whose encoded size fits `budget` bytes; sets
    /// `has_more` when some were left out. Returns the bytes kept.
    pub fn keep_within(&mut self, keep: Keep, budget: usize, at_least: AtLeast) -> usize {
        let sizes = self.messages.iter().map(encoded_bytes);
        let sizes: Vec<usize> = match keep {
            Keep::Oldest => sizes.collect(),
            Keep::Newest => sizes.rev().collect(),
        };
        let mut used = 0;
        let mut fitting = 0;
        for size in sizes {
            let first_allowed = fitting == 0 && at_least == AtLeast::OneMessage;
            if used + size > budget && !first_allowed {
                break;
            }
            used += size;
            fitting += 1;
        }
        let dropped = self.messages.len() - fitting;
        if dropped > 0 {
            match keep {
                Keep::Oldest => self.messages.truncate(fitting),
                Keep::Newest => drop(self.messages.drain(..dropped)),
            }
            self.has_more = true;
        }
        used
    }
}

/// The length of a message encoded as JSON.
fn encoded_bytes(message: &Message) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Encoding a `Message` into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, message);
    counter.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SyncResult {
    pub conversations: BTreeMap<ConversationId, HistoryResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PresenceInfo {
    pub online: bool,
    pub last_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct PresenceResult {
    pub presence: BTreeMap<UserId, PresenceInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Some(*op));
        }
        assert_eq!(Op::parse("message.explode"), None);
        assert_eq!(Op::ALL.len(), 22);
    }

    fn page(texts: &[usize]) -> HistoryResult {
        let messages = texts
            .iter()
            .enumerate()
            .map(|(index, length)| Message {
                message_id: MessageId::new(format!("m{index}")),
                conversation_id: ConversationId::new("c"),
                seq: Seq(index as u64 + 1),
                sender_id: UserId::new("alice"),
                client_msg_id: ClientMsgId::new(format!("k{index}")),
                text: "x".repeat(*length),
                reply_to: None,
                forwarded_from: None,
                reactions: Default::default(),
                created_at: chrono::DateTime::UNIX_EPOCH,
                edited_at: None,
                deleted: false,
                attachments: Vec::new(),
            })
            .collect();
        HistoryResult {
            messages,
            has_more: false,
            first_seq: Seq(1),
        }
    }

    fn page_seqs(page: &HistoryResult) -> Vec<u64> {
        page.messages.iter().map(|message| message.seq.0).collect()
    }

    #[test]
    fn a_page_keeps_what_fits_its_byte_budget_from_the_paging_end() {
        let one = encoded_bytes(&page(&[1000]).messages[0]);
        let mut forward = page(&[1000, 1000, 1000]);
        assert_eq!(
            forward.keep_within(Keep::Oldest, 2 * one, AtLeast::Nothing),
            2 * one
        );
        assert_eq!((page_seqs(&forward), forward.has_more), (vec![1, 2], true));

        let mut backward = page(&[1000, 1000, 1000]);
        backward.keep_within(Keep::Newest, 2 * one + 10, AtLeast::Nothing);
        assert_eq!(
            (page_seqs(&backward), backward.has_more),
            (vec![2, 3], true)
        );

        let mut everything = page(&[1000, 1000]);
        everything.keep_within(Keep::Oldest, usize::MAX, AtLeast::Nothing);
        assert_eq!(
            (page_seqs(&everything), everything.has_more),
            (vec![1, 2], false)
        );
    }

    #[test]
    fn a_message_over_the_budget_is_kept_alone_only_when_asked() {
        let mut alone = page(&[5000, 10]);
        alone.keep_within(Keep::Oldest, 100, AtLeast::OneMessage);
        assert_eq!((page_seqs(&alone), alone.has_more), (vec![1], true));

        let mut none = page(&[5000, 10]);
        assert_eq!(none.keep_within(Keep::Oldest, 100, AtLeast::Nothing), 0);
        assert_eq!((page_seqs(&none), none.has_more), (vec![], true));
    }
}
