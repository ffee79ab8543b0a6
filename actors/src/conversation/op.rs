//! The operations a conversation actor performs, each a command of its operation's file in
//! [`crate::ops`] queued with the channel its answer goes to, and what applying one yields.

use tokio::sync::oneshot;
use wire::events::ServerEvent;
use wire::log::{LogEventBody, MessageRecord};
use wire::ops::{HistoryResult, SendAck};
use wire::{Conversation, Message, UserId};

use crate::abandoned_sends::TombstoneAbandoned;
use crate::ops::conversation_add_members::AddMembers;
use crate::ops::conversation_get::GetConversation;
use crate::ops::conversation_list::TakeSnapshot;
use crate::ops::conversation_remove_members::RemoveMembers;
use crate::ops::conversation_update::UpdateTitle;
use crate::ops::history_get::ReadHistory;
use crate::ops::message_delete::DeleteMessage;
use crate::ops::message_edit::EditMessage;
use crate::ops::message_forward::ReadMessage;
use crate::ops::message_send::SendMessage;
use crate::ops::reaction::ChangeReaction;
use crate::ops::receipt::RaiseWatermark;
use crate::ops::typing::RelayTyping;
use crate::OpError;

pub type Reply<T> = oneshot::Sender<Result<T, OpError>>;

/// Who asks: a member's session, or the app backend (API key) acting for a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Member(UserId),
    Backend(UserId),
}

/// A command queued on a conversation actor, with the channel its answer goes to.
pub struct Queued<C, T> {
    pub command: C,
    pub reply: Reply<T>,
}

impl<C, T> Queued<C, T> {
    pub fn new(command: C, reply: Reply<T>) -> Self {
        Self { command, reply }
    }

    /// Answers with an error.
    pub fn fail(self, error: OpError) {
        let _ = self.reply.send(Err(error));
    }
}

/// Everything a conversation actor can be asked to do, one variant per command.
pub enum ConversationOp {
    Send(Queued<SendMessage, SendAck>),
    Edit(Queued<EditMessage, Message>),
    Delete(Queued<DeleteMessage, ()>),
    React(Queued<ChangeReaction, MessageRecord>),
    Receipt(Queued<RaiseWatermark, ()>),
    Typing(Queued<RelayTyping, ()>),
    Get(Queued<GetConversation, Conversation>),
    Snapshot(Queued<TakeSnapshot, super::state::Snapshot>),
    History(Queued<ReadHistory, HistoryResult>),
    ReadMessage(Queued<ReadMessage, Message>),
    UpdateTitle(Queued<UpdateTitle, Conversation>),
    AddMembers(Queued<AddMembers, Conversation>),
    RemoveMembers(Queued<RemoveMembers, Conversation>),
    /// The reaper's: settles the seq of a send whose node died and that nobody retried.
    TombstoneAbandoned(Queued<TombstoneAbandoned, ()>),
}

impl ConversationOp {
    /// Membership and title changes run alone in their own batch.
    pub fn changes_membership(&self) -> bool {
        matches!(
            self,
            ConversationOp::UpdateTitle(_)
                | ConversationOp::AddMembers(_)
                | ConversationOp::RemoveMembers(_)
        )
    }

    /// A send whose validation reads nothing another node may have just accepted (a reply
    /// looks up the message it answers): a batch of these catches up from its reservation.
    pub fn is_send_without_reply(&self) -> bool {
        matches!(self, ConversationOp::Send(queued) if queued.command.reply_to.is_none())
    }

    /// Answers the operation with an error, whatever its result type.
    pub fn fail(self, error: OpError) {
        match self {
            ConversationOp::Send(queued) => queued.fail(error),
            ConversationOp::Edit(queued) => queued.fail(error),
            ConversationOp::Delete(queued) => queued.fail(error),
            ConversationOp::React(queued) => queued.fail(error),
            ConversationOp::Receipt(queued) => queued.fail(error),
            ConversationOp::Typing(queued) => queued.fail(error),
            ConversationOp::Get(queued) => queued.fail(error),
            ConversationOp::Snapshot(queued) => queued.fail(error),
            ConversationOp::History(queued) => queued.fail(error),
            ConversationOp::ReadMessage(queued) => queued.fail(error),
            ConversationOp::UpdateTitle(queued) => queued.fail(error),
            ConversationOp::AddMembers(queued) => queued.fail(error),
            ConversationOp::RemoveMembers(queued) => queued.fail(error),
            ConversationOp::TombstoneAbandoned(queued) => queued.fail(error),
        }
    }
}

/// What applying one command (other than a send or a membership change) to the state yields.
/// An `Err` instead is answered at once.
// Short-lived per operation; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
pub enum Applied<T> {
    /// Nothing to log or relay (a read, or nothing changed): answered at once.
    Answered(T),
    /// A change that goes to the log, then to the members; answered after the append.
    Changed {
        event: LogEventBody,
        bus_event: ServerEvent,
        answer: T,
    },
    /// Not persisted, relayed to the members after the batch; answered with the batch.
    Relayed { bus_event: ServerEvent, answer: T },
}
