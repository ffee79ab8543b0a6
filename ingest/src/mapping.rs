//! From log events to store writes and stored-acknowledgments.

use chrono::Utc;
use ports::StoreWrite;
use wire::log::{topics, LogEvent, LogEventBody};

/// The topics ingest consumes: every topic except its own output, `message.delivered`.
pub fn ingest_topics() -> Vec<&'static str> {
    topics::ALL
        .into_iter()
        .filter(|topic| *topic != topics::MESSAGE_DELIVERED)
        .collect()
}

/// The store write an event becomes, if any.
pub fn store_write(event: &LogEvent) -> Option<StoreWrite> {
    match &event.body {
        LogEventBody::MessageSent { record }
        | LogEventBody::MessageEdited { record }
        | LogEventBody::MessageDeleted { record }
        | LogEventBody::MessageAborted { record }
        | LogEventBody::MessageReacted { record } => Some(StoreWrite::Message(record.clone())),
        LogEventBody::ReactionChanged { delta } => Some(StoreWrite::Reaction(delta.clone())),
        LogEventBody::ConversationUpdated { record } => {
            Some(StoreWrite::Conversation(record.clone()))
        }
        LogEventBody::ReceiptUpdated {
            conversation_id,
            user_id,
            delivered_seq,
            read_seq,
        } => Some(StoreWrite::Watermarks {
            conversation_id: conversation_id.clone(),
            user_id: user_id.clone(),
            delivered_seq: *delivered_seq,
            read_seq: *read_seq,
        }),
        LogEventBody::MessagesPurged {
            conversation_id,
            through_seq,
        } => Some(StoreWrite::Purge {
            conversation_id: conversation_id.clone(),
            through_seq: *through_seq,
        }),
        LogEventBody::UserErased {
            conversation_id,
            user_id,
            through_seq,
        } => Some(StoreWrite::Erase {
            conversation_id: conversation_id.clone(),
            user_id: user_id.clone(),
            through_seq: *through_seq,
        }),
        LogEventBody::MessageStored { .. } => None,
    }
}

/// The "stored" acknowledgment of a sent message. Its event id is derived from the message id,
/// so a re-consumed send produces an acknowledgment consumers can recognise as a repeat.
pub fn stored_ack(event: &LogEvent) -> Option<LogEvent> {
    let LogEventBody::MessageSent { record } = &event.body else {
        return None;
    };
    let message = &record.message;
    Some(LogEvent::new(
        format!("stored:{}", message.message_id),
        Utc::now(),
        LogEventBody::MessageStored {
            conversation_id: message.conversation_id.clone(),
            message_id: message.message_id.clone(),
            seq: message.seq,
            sender_id: message.sender_id.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use wire::{ConversationId, Seq, UserId};

    use super::*;

    #[test]
    fn a_retention_purge_becomes_a_store_purge() {
        let conversation_id = ConversationId::new("c");
        let body = LogEventBody::MessagesPurged {
            conversation_id: conversation_id.clone(),
            through_seq: Seq(7),
        };
        let event = LogEvent::new("e", Utc::now(), body);
        assert_eq!(event.body.topic(), topics::MESSAGE_DELETED);
        assert_eq!(
            store_write(&event),
            Some(StoreWrite::Purge {
                conversation_id,
                through_seq: Seq(7),
            })
        );
        assert_eq!(stored_ack(&event), None, "only sends are acknowledged");
    }

    #[test]
    fn an_erasure_becomes_a_store_erasure() {
        let (conversation_id, user_id) = (ConversationId::new("c"), UserId::new("erin"));
        let body = LogEventBody::UserErased {
            conversation_id: conversation_id.clone(),
            user_id: user_id.clone(),
            through_seq: Seq(9),
        };
        let event = LogEvent::new("e", Utc::now(), body);
        assert_eq!(event.body.topic(), topics::MESSAGE_DELETED);
        assert_eq!(event.body.conversation_id(), &conversation_id);
        let expected = StoreWrite::Erase {
            conversation_id,
            user_id,
            through_seq: Seq(9),
        };
        assert_eq!(store_write(&event), Some(expected));
    }
}
