//! `receipt.delivered` and `receipt.read`: a member raises their delivered (or read and
//! delivered) watermark.

use ports::Watermarks;
use wire::events::ServerEvent;
use wire::frames::Request;
use wire::log::LogEventBody;
use wire::ops::{Empty, ReceiptArgs};
use wire::{Seq, UserId};

use super::shared::{ask_json, decode, Answer};
use crate::conversation::op::Applied;
use crate::conversation::{ConversationOp, ConversationState};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Which watermark a receipt raises (a read message is also delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    Delivered,
    Read,
}

/// Raises the user's watermark to `seq` (watermarks never go down).
pub struct RaiseWatermark {
    pub user_id: UserId,
    pub seq: Seq,
    pub watermark: Watermark,
}

/// `receipt.delivered`.
pub(crate) fn delivered(
    node: &Node,
    caller: &Caller,
    request: &Request,
) -> Result<Answer, OpError> {
    start(node, caller, request, Watermark::Delivered)
}

/// `receipt.read`.
pub(crate) fn read(node: &Node, caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    start(node, caller, request, Watermark::Read)
}

fn start(
    node: &Node,
    caller: &Caller,
    request: &Request,
    watermark: Watermark,
) -> Result<Answer, OpError> {
    let args: ReceiptArgs = decode(request)?;
    let raise = RaiseWatermark {
        user_id: caller.user_id.clone(),
        seq: args.seq,
        watermark,
    };
    Ok(ask_json(
        node,
        &args.conversation_id,
        ConversationOp::Receipt,
        raise,
        |()| Empty {},
    ))
}

impl RaiseWatermark {
    /// Applies the receipt to the batch's working state.
    pub(crate) async fn apply(
        self,
        node: &Node,
        working: &mut ConversationState,
    ) -> Result<Applied<()>, OpError> {
        let RaiseWatermark {
            user_id,
            seq,
            watermark,
        } = self;
        working.require_member(&user_id)?;
        if seq > working.last_seq {
            return Err(OpError::bad_request(format!(
                "seq {seq} is past the conversation's last seq {}",
                working.last_seq
            )));
        }
        let current = working.watermarks(node, &user_id).await?;
        let raised = Watermarks {
            delivered_seq: current.delivered_seq.max(seq),
            read_seq: match watermark {
                Watermark::Read => current.read_seq.max(seq),
                Watermark::Delivered => current.read_seq,
            },
        };
        if raised == current {
            return Ok(Applied::Answered(()));
        }
        working.set_watermarks(&user_id, raised);
        let conversation_id = working.record.conversation.conversation_id.clone();
        Ok(Applied::Changed {
            event: LogEventBody::ReceiptUpdated {
                conversation_id: conversation_id.clone(),
                user_id: user_id.clone(),
                delivered_seq: raised.delivered_seq,
                read_seq: raised.read_seq,
            },
            bus_event: ServerEvent::ReceiptUpdated {
                conversation_id,
                user_id,
                delivered_seq: raised.delivered_seq,
                read_seq: raised.read_seq,
            },
            answer: (),
        })
    }
}
