//! `typing.start` and `typing.stop`: relayed to the other members, never logged.

use wire::events::{ServerEvent, TypingState};
use wire::frames::Request;
use wire::ops::{ConversationRef, Empty};
use wire::UserId;

use super::shared::{ask_json, decode, Answer};
use crate::conversation::op::Applied;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Tells the other members that the user started or stopped typing.
pub struct RelayTyping {
    pub user_id: UserId,
    pub state: TypingState,
}

/// `typing.start`.
pub(crate) fn start(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    relay(node, caller, request, TypingState::Started)
}

/// `typing.stop`.
pub(crate) fn stop(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    relay(node, caller, request, TypingState::Stopped)
}

fn relay(
    node: &Node,
    caller: &Caller,
    request: &Request,
    state: TypingState,
) -> Result<Answer, OpError> {
    let args: ConversationRef = decode(request)?;
    let typing = RelayTyping {
        user_id: caller.user_id.clone(),
        state,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::Typing,
        typing,
        |()| Empty {},
    ))
}

impl RelayTyping {
    pub(crate) fn apply(self, committed: &ConversationState) -> Result<Applied<()>, OpError> {
        committed.require_member(&self.user_id)?;
        Ok(Applied::Relayed {
            bus_event: ServerEvent::Typing {
                conversation_id: committed.record.conversation.conversation_id.clone(),
                user_id: self.user_id,
                state: self.state,
            },
            answer: (),
        })
    }
}
