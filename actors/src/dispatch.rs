//! Turns a decoded request into work: one table from the operation to the entry point of its
//! file in [`crate::ops`], which decodes and checks the arguments, then queues the command on
//! the conversation's actor (synchronously, so one session's operations keep their order) or
//! runs against the ports. Every answer is the result object serialized as JSON.

use wire::frames::Request;
use wire::ops::Op;
use wire::{ErrorCode, SessionId, UserId};

use crate::node::Node;
use crate::ops::shared::{ready, Start};
use crate::ops::{
    conversation_add_members, conversation_create, conversation_get, conversation_leave,
    conversation_list, conversation_remove_members, conversation_update, history_get,
    message_delete, message_edit, message_forward, message_send, ping, presence_get, reaction,
    receipt, search_messages, sync, typing,
};
use crate::OpError;

pub use crate::ops::history_get::backend_history;
pub use crate::ops::message_send::backend_send;
pub use crate::ops::presence_get::MAX_PRESENCE_USERS;
pub use crate::ops::reaction::MAX_EMOJI_BYTES;
pub use crate::ops::shared::{check_client_msg_id, check_user_id, Answer, MAX_ID_BYTES};
pub use crate::ops::sync::MAX_SYNC_CONVERSATIONS;
pub use crate::presence::{announce_offline, close_session, open_session};

/// Who sent the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: SessionId,
}

/// Starts the work of one request. Conversation operations are queued before this returns.
pub fn start(node: &Node, caller: &Caller, request: Request) -> Answer {
    let Some(op) = Op::parse(&request.op) else {
        return ready(Err(OpError::new(
            ErrorCode::UnknownOp,
            format!("unknown op `{}`", request.op),
        )));
    };
    match entry_point(op)(node, caller, &request) {
        Ok(answer) => answer,
        Err(error) => ready(Err(error)),
    }
}

/// The file that handles each operation.
fn entry_point(op: Op) -> Start {
    match op {
        Op::Ping => ping::start,
        Op::ConversationCreate => conversation_create::start,
        Op::ConversationGet => conversation_get::start,
        Op::ConversationList => conversation_list::start,
        Op::ConversationUpdate => conversation_update::start,
        Op::ConversationAddMembers => conversation_add_members::start,
        Op::ConversationRemoveMembers => conversation_remove_members::start,
        Op::ConversationLeave => conversation_leave::start,
        Op::MessageSend => message_send::start,
        Op::MessageEdit => message_edit::start,
        Op::MessageDelete => message_delete::start,
        Op::MessageForward => message_forward::start,
        Op::ReactionAdd => reaction::add,
        Op::ReactionRemove => reaction::remove,
        Op::HistoryGet => history_get::start,
        Op::Sync => sync::start,
        Op::ReceiptDelivered => receipt::delivered,
        Op::ReceiptRead => receipt::read,
        Op::TypingStart => typing::start,
        Op::TypingStop => typing::stop,
        Op::PresenceGet => presence_get::start,
        Op::SearchMessages => search_messages::start,
    }
}
