//! Retention (protocol v1.1, "Compliance"): the sweep that purges each conversation's expired
//! messages, carried by the log.
//!
//! One purge of a conversation up to seq N, in this order (each step idempotent, so a sweep
//! that stops half-way is finished by the next, which finds the same messages still stored):
//! 1. record `purged_through = N` in the shared [`RetentionPolicies`]: conversation actors that
//!    load from now on start at `first_seq = N + 1`, and no change of those messages is
//!    accepted any more;
//! 2. delete the references of the purged messages to their attachments, and the files no kept
//!    message carries any more;
//! 3. drop them from the shared message cache;
//! 4. append [`LogEventBody::MessagesPurged`] to the log: the store (in-process ingest, or
//!    `ingest` into MongoDB) and the search indexers apply it like any other event;
//! 5. tell the conversation's running actors over the bus ([`BusPayload::MessagesPurged`]).
//!
//! A conversation on legal hold is skipped whole. Erasure (not built yet) must consult the hold
//! the same way: read [`RetentionPolicies::retention`] of every conversation holding the
//! user's messages, leave those with `legal_hold == On` untouched and report them as held back.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use ports::{
    BusEnvelope, BusPayload, BusTopic, ConversationRetention, LegalHold, MessageQuery, PortError,
    RetentionPeriod, RetentionPolicies, RetentionScan,
};
use wire::log::{LogEvent, LogEventBody};
use wire::{ConversationId, Message, Seq, Timestamp};

use crate::attachments::Attachments;
use crate::node::Node;

/// Conversations listed per page of a sweep, and messages read per page of a purge.
const PAGE: usize = 500;

/// The node's retention settings.
#[derive(Debug, Clone, Copy)]
pub struct RetentionRules {
    /// Days a conversation without its own period keeps its messages; 0: forever.
    pub default_days: u32,
    /// The length of a retention day (one day, except in tests).
    pub day: Duration,
}

impl RetentionRules {
    /// Messages created before this are expired; `None`: the conversation keeps everything
    /// (forever, or on legal hold).
    pub fn cutoff(&self, retention: &ConversationRetention, now: Timestamp) -> Option<Timestamp> {
        if retention.legal_hold == LegalHold::On {
            return None;
        }
        let days = match retention.period {
            RetentionPeriod::Default if self.default_days == 0 => return None,
            RetentionPeriod::Default => self.default_days,
            RetentionPeriod::Forever => return None,
            RetentionPeriod::Days(days) => days,
        };
        let kept = chrono::Duration::from_std(self.day * days).ok()?;
        now.checked_sub_signed(kept)
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    pub conversations_purged: u64,
    pub messages_purged: u64,
    pub files_deleted: u64,
    /// Conversations on legal hold (skipped).
    pub conversations_held: u64,
    /// Conversations whose purge failed (retried by the next sweep).
    pub conversations_failed: u64,
}

/// What one conversation's purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub messages: u64,
    pub files_deleted: u64,
}

fn policies(node: &Node) -> Result<&dyn RetentionPolicies, PortError> {
    node.ports()
        .retention
        .as_deref()
        .ok_or_else(|| PortError::internal("this node keeps no retention policies"))
}

/// Purges every expired message of every conversation `scan` lists (the store's).
pub async fn sweep(
    node: &Node,
    scan: &dyn RetentionScan,
    rules: &RetentionRules,
) -> Result<SweepOutcome, PortError> {
    let now = Utc::now();
    let changed: HashMap<ConversationId, ConversationRetention> =
        policies(node)?.changed().await?.into_iter().collect();
    let mut outcome = SweepOutcome {
        conversations_held: changed
            .values()
            .filter(|retention| retention.legal_hold == LegalHold::On)
            .count() as u64,
        ..SweepOutcome::default()
    };
    let mut after: Option<ConversationId> = None;
    loop {
        let page = scan
            .conversations_with_messages(after.as_ref(), PAGE)
            .await?;
        let Some(last) = page.last().cloned() else {
            return Ok(outcome);
        };
        for conversation_id in page {
            let retention = changed.get(&conversation_id).copied().unwrap_or_default();
            let Some(cutoff) = rules.cutoff(&retention, now) else {
                continue;
            };
            let Some(through) = scan.newest_seq_before(&conversation_id, cutoff).await? else {
                continue;
            };
            match purge_conversation(node, &conversation_id, through).await {
                Ok(purged) => {
                    outcome.conversations_purged += 1;
                    outcome.messages_purged += purged.messages;
                    outcome.files_deleted += purged.files_deleted;
                }
                Err(error) => {
                    outcome.conversations_failed += 1;
                    tracing::warn!(conversation_id = %conversation_id, through_seq = through.0, error = %error, "retention purge failed");
                }
            }
        }
        after = Some(last);
    }
}

/// Purges the conversation's messages up to `through` (see the module documentation).
pub async fn purge_conversation(
    node: &Node,
    conversation_id: &ConversationId,
    through: Seq,
) -> Result<Purged, PortError> {
    let ports = node.ports();
    policies(node)?
        .record_purge(conversation_id, through)
        .await?;
    let purged = forget_stored_messages(node, conversation_id, through).await?;
    ports.cache.forget_through(conversation_id, through).await?;
    let body = LogEventBody::MessagesPurged {
        conversation_id: conversation_id.clone(),
        through_seq: through,
    };
    let event = LogEvent::new(uuid::Uuid::now_v7().to_string(), Utc::now(), body);
    ports.log.append(vec![event]).await?;
    let purged_envelope = BusEnvelope {
        topic: BusTopic::Conversation(conversation_id.clone()),
        origin: node.node_id().clone(),
        payload: BusPayload::MessagesPurged {
            through_seq: through,
        },
    };
    crate::router::publish(node, purged_envelope).await?;
    tracing::info!(
        conversation_id = %conversation_id,
        through_seq = through.0,
        messages = purged.messages,
        files_deleted = purged.files_deleted,
        "retention purged messages"
    );
    Ok(purged)
}

/// Counts the stored messages up to `through` and lets go of their attachments (a file is
/// deleted once no message carries it).
async fn forget_stored_messages(
    node: &Node,
    conversation_id: &ConversationId,
    through: Seq,
) -> Result<Purged, PortError> {
    let attachments = Attachments::on(node);
    let mut purged = Purged::default();
    let mut pages = StoredPages::new(conversation_id, through);
    while let Some(messages) = pages.next(node).await? {
        for message in messages {
            purged.messages += 1;
            if let (Some(attachments), false) = (&attachments, message.attachments.is_empty()) {
                purged.files_deleted += attachments
                    .forget_references(conversation_id, &message.message_id, &message.attachments)
                    .await?;
            }
        }
    }
    Ok(purged)
}

/// The stored messages of a conversation up to a seq, a page at a time, oldest first
/// (retention and erasure walk them).
pub(crate) struct StoredPages<'a> {
    conversation_id: &'a ConversationId,
    through: Seq,
    after: Seq,
}

impl<'a> StoredPages<'a> {
    pub(crate) fn new(conversation_id: &'a ConversationId, through: Seq) -> Self {
        Self {
            conversation_id,
            through,
            after: Seq::ZERO,
        }
    }

    /// The next page; `None` once every message was read.
    pub(crate) async fn next(&mut self, node: &Node) -> Result<Option<Vec<Message>>, PortError> {
        let query = MessageQuery {
            after_seq: Some(self.after),
            before_seq: Some(self.through.next()),
            limit: PAGE,
        };
        let records = node
            .ports()
            .store
            .messages(self.conversation_id, query)
            .await?;
        let Some(last) = records.last().map(|record| record.message.seq) else {
            return Ok(None);
        };
        self.after = last;
        Ok(Some(
            records.into_iter().map(|record| record.message).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_follows_the_period_and_the_hold() {
        let rules = RetentionRules {
            default_days: 30,
            day: Duration::from_secs(86_400),
        };
        let now = chrono::DateTime::from_timestamp(1_000_000_000, 0).expect("time");
        let days_ago = |days: i64| Some(now - chrono::Duration::days(days));
        let with = |period, legal_hold| ConversationRetention {
            period,
            legal_hold,
            purged_through: Seq::ZERO,
        };
        let default = with(RetentionPeriod::Default, LegalHold::Off);
        assert_eq!(rules.cutoff(&default, now), days_ago(30));
        let own = with(RetentionPeriod::Days(7), LegalHold::Off);
        assert_eq!(rules.cutoff(&own, now), days_ago(7));
        let forever = with(RetentionPeriod::Forever, LegalHold::Off);
        assert_eq!(rules.cutoff(&forever, now), None);
        let held = with(RetentionPeriod::Days(7), LegalHold::On);
        assert_eq!(rules.cutoff(&held, now), None, "a hold keeps everything");
        let keep_all = RetentionRules {
            default_days: 0,
            ..rules
        };
        assert_eq!(keep_all.cutoff(&default, now), None, "0 days: forever");
        assert_eq!(keep_all.cutoff(&own, now), days_ago(7));
    }
}
