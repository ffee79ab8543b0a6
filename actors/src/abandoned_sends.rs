//! Sends nobody retried (issue #19): a send whose node died between reserving its seq and the
//! log append leaves that seq allocated with nothing for it, a hole every member's client
//! would see for good. A retry of the same `client_msg_id` settles it
//! ([`ports::Reservation::Resent`]); when none comes, the reaper does: one node of the cluster
//! at a time runs [`settle_round`] every few seconds (the server's background task, under a
//! Redis lease). Each abandoned reservation is settled once cluster-wide
//! ([`ports::Sequencer::claim_abandoned`]): one the store holds becomes its ack; any other is
//! tombstoned through its conversation's actor and normal batch, exactly like the tombstone a
//! retry appends, and the batch settles its claim. A claim whose tombstone failed (or whose
//! node died) is handed out again once its lease lapses; so is a retry's claim of the send it
//! replaced when the retry's batch failed or its node died too.

use std::time::Duration;

use ports::{AbandonedSend, PortError, Reaped};

use crate::conversation::ConversationOp;
use crate::node::Node;
use crate::ops::shared::ask;
use crate::OpError;

/// How long a claim is the claimer's: far more than one tombstone's batch takes.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// At most this many abandoned reservations are settled per round.
pub const CLAIMS_PER_ROUND: usize = 100;

/// Queued on a conversation's actor: append the tombstone of a claimed abandoned send.
pub struct TombstoneAbandoned {
    pub send: AbandonedSend,
}

/// What one round settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Sends tombstoned through the log.
    pub tombstoned: u64,
    /// Sends the store held: their acks were recorded.
    pub stored: u64,
    /// Claimed sends whose tombstone failed (their claims are handed out again later).
    pub failed: u64,
}

/// Claims the abandoned reservations of every conversation and settles them.
pub async fn settle_round(node: &Node) -> Result<Settled, PortError> {
    let reaped = node
        .ports()
        .sequencer
        .claim_abandoned(CLAIM_LEASE, CLAIMS_PER_ROUND)
        .await?;
    let mut settled = Settled::default();
    for item in reaped {
        match item {
            Reaped::Stored(send) => {
                tracing::info!(conversation_id = %send.conversation_id, seq = %send.ack.seq, "an abandoned send was stored: its ack is recorded");
                settled.stored += 1;
            }
            Reaped::Claimed(send) => match tombstone(node, &send).await {
                Ok(()) => {
                    tracing::warn!(conversation_id = %send.conversation_id, abandoned_seq = %send.ack.seq, sender_id = %send.key.sender_id, "tombstoned a send whose node died before answering and that nobody retried");
                    settled.tombstoned += 1;
                }
                Err(error) => {
                    tracing::warn!(conversation_id = %send.conversation_id, abandoned_seq = %send.ack.seq, error = %error, "tombstoning an abandoned send failed; retried when its claim lapses");
                    settled.failed += 1;
                }
            },
        }
    }
    Ok(settled)
}

/// Appends the send's tombstone through its conversation's actor, whose batch then settles
/// the claim.
async fn tombstone(node: &Node, send: &AbandonedSend) -> Result<(), OpError> {
    let command = TombstoneAbandoned { send: send.clone() };
    ask(
        node,
        &send.conversation_id,
        ConversationOp::TombstoneAbandoned,
        command,
    )
    .await
}
