//! `conversation.leave`: the caller removes themselves from a group.

use wire::frames::Request;
use wire::ops::{ConversationRef, Empty};

use super::conversation_remove_members::RemoveMembers;
use super::shared::{ask_json, decode, Answer};
use crate::audit::{audited, conversation_record};
use crate::conversation::ConversationOp;
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: ConversationRef = decode(request)?;
    let leave = RemoveMembers {
        user_id: caller.user_id.clone(),
        user_ids: vec![caller.user_id.clone()],
    };
    let record = conversation_record(
        &caller.user_id,
        "conversation.leave",
        &args.conversation_id,
        serde_json::json!({}),
    );
    let answer = ask_json(
        node,
        &args.conversation_id,
        ConversationOp::RemoveMembers,
        leave,
        |_| Empty {},
    );
    Ok(audited(node, answer, record))
}
