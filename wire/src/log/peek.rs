//! The topic of a serialized [`LogEvent`](super::LogEvent) without decoding it: a consumer of
//! the embedded log (one sequence of every topic) skips the records of topics it does not read
//! this way, instead of decoding each message only to drop it.
//!
//! What this build writes is read from its first bytes: `{"event_id":"…","v":…,"at":"…",
//! "body":{"type":"…"` (serde's compact output in field order, the body's tag first), each
//! step anchored after the one before, so nothing inside a string or a nested object can pass
//! for it. Anything else (other spacing, field order or writer) is parsed as JSON, skipping
//! every field but the type.

use std::borrow::Cow;

use serde::Deserialize;

use super::topics;

/// The topic of a JSON-serialized log event, read from its body's `type` alone. `None` when
/// the payload is not JSON with a known body type: decode it to learn what is wrong with it.
pub fn topic_of_serialized(payload: &[u8]) -> Option<&'static str> {
    topic_of_compact(payload).or_else(|| topic_of_parsed(payload))
}

/// The topic of a payload in this build's layout, `None` for any other.
fn topic_of_compact(payload: &[u8]) -> Option<&'static str> {
    let rest = payload.strip_prefix(br#"{"event_id":"#)?;
    let rest = skip_string(rest)?.strip_prefix(br#","v":"#)?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(br#","at":"#)?;
    let rest = skip_string(rest)?.strip_prefix(br#","body":{"type":""#)?;
    let end = rest
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\')?;
    topic_of_type(std::str::from_utf8(&rest[..end]).ok()?)
}

/// What follows the JSON string `bytes` starts with (escapes skipped whole).
fn skip_string(bytes: &[u8]) -> Option<&[u8]> {
    let mut index = 1;
    if bytes.first() != Some(&b'"') {
        return None;
    }
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'"' => return Some(&bytes[index + 1..]),
            b'\\' => index += 2,
            _ => index += 1,
        }
    }
    None
}

/// The topic of any JSON log event, parsed with every field but the body's type skipped.
fn topic_of_parsed(payload: &[u8]) -> Option<&'static str> {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        body: Body<'a>,
    }
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
    }
    let event: Event<'_> = serde_json::from_slice(payload).ok()?;
    topic_of_type(&event.body.kind)
}

/// The topic of a [`LogEventBody`](super::LogEventBody) by its serialized `type`; the same
/// mapping as `LogEventBody::topic` (the tests hold them together).
fn topic_of_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "message_sent" => topics::MESSAGE_SENT,
        "message_edited" => topics::MESSAGE_EDITED,
        "message_deleted" | "message_aborted" | "messages_purged" | "user_erased" => {
            topics::MESSAGE_DELETED
        }
        "message_reacted" | "reaction_changed" => topics::MESSAGE_REACTED,
        "conversation_updated" => topics::CONVERSATION_UPDATED,
        "receipt_updated" => topics::RECEIPT_UPDATED,
        "message_stored" => topics::MESSAGE_DELIVERED,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::log::{
        AbortedSend, ConversationRecord, LogEvent, LogEventBody, MessageRecord, ReactionChange,
        ReactionDelta,
    };
    use crate::{
        ClientMsgId, Conversation, ConversationId, ConversationKind, MessageId, Seq, UserId,
    };

    /// One body of every variant: a new variant fails to compile in `variant_is_listed`,
    /// a reminder to add it here (and the count below) and to `topic_of_type`.
    fn one_of_each() -> Vec<LogEventBody> {
        let at = DateTime::from_timestamp(0, 0).expect("epoch");
        let conversation_id = ConversationId::new("c\"with \\ escapes");
        let record = MessageRecord::tombstone(AbortedSend {
            message_id: MessageId::new("m"),
            conversation_id: conversation_id.clone(),
            seq: Seq(1),
            sender_id: UserId::new("u"),
            client_msg_id: ClientMsgId::new("k"),
            created_at: at,
        });
        let conversation = ConversationRecord {
            conversation: Conversation {
                conversation_id: conversation_id.clone(),
                kind: ConversationKind::Group,
                title: Some("{\"type\": \"message_stored\"}".to_owned()),
                members: vec![UserId::new("u")],
                created_by: UserId::new("u"),
                created_at: at,
                last_seq: Seq::ZERO,
            },
            participants: Vec::new(),
            version: 1,
            updated_at: at,
        };
        vec![
            LogEventBody::MessageSent {
                record: record.clone(),
            },
            LogEventBody::MessageEdited {
                record: record.clone(),
            },
            LogEventBody::MessageDeleted {
                record: record.clone(),
            },
            LogEventBody::MessageReacted {
                record: record.clone(),
            },
            LogEventBody::ReactionChanged {
                delta: ReactionDelta {
                    conversation_id: conversation_id.clone(),
                    message_id: MessageId::new("m"),
                    seq: Seq(1),
                    user_id: UserId::new("u"),
                    emoji: "👍".to_owned(),
                    change: ReactionChange::Add,
                    version: 2,
                },
            },
            LogEventBody::ConversationUpdated {
                record: conversation,
            },
            LogEventBody::ReceiptUpdated {
                conversation_id: conversation_id.clone(),
                user_id: UserId::new("u"),
                delivered_seq: Seq(1),
                read_seq: Seq(1),
            },
            LogEventBody::MessageAborted { record },
            LogEventBody::MessagesPurged {
                conversation_id: conversation_id.clone(),
                through_seq: Seq(1),
            },
            LogEventBody::UserErased {
                conversation_id: conversation_id.clone(),
                user_id: UserId::new("u"),
                through_seq: Seq(1),
            },
            LogEventBody::MessageStored {
                conversation_id,
                message_id: MessageId::new("m"),
                seq: Seq(1),
                sender_id: UserId::new("u"),
            },
        ]
    }

    fn variant_is_listed(body: &LogEventBody) {
        match body {
            LogEventBody::MessageSent { .. }
            | LogEventBody::MessageEdited { .. }
            | LogEventBody::MessageDeleted { .. }
            | LogEventBody::MessageReacted { .. }
            | LogEventBody::ReactionChanged { .. }
            | LogEventBody::ConversationUpdated { .. }
            | LogEventBody::ReceiptUpdated { .. }
            | LogEventBody::MessageAborted { .. }
            | LogEventBody::MessagesPurged { .. }
            | LogEventBody::UserErased { .. }
            | LogEventBody::MessageStored { .. } => {}
        }
    }

    #[test]
    fn every_body_peeks_to_the_topic_it_decodes_to() {
        let bodies = one_of_each();
        assert_eq!(bodies.len(), 11, "one of each variant");
        for body in bodies {
            variant_is_listed(&body);
            let topic = body.topic();
            let event = LogEvent::new("e", DateTime::from_timestamp(0, 0).expect("epoch"), body);
            let payload = serde_json::to_vec(&event).expect("serialize");
            assert_eq!(
                topic_of_serialized(&payload),
                Some(topic),
                "{}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    /// A consumer of the embedded log may take an event as appended instead of decoding its
    /// record (`persistence`'s `log_recent`): the two must be equal.
    #[test]
    fn every_event_decodes_to_itself() {
        for body in one_of_each() {
            let event = LogEvent::new(
                "e",
                DateTime::from_timestamp(7, 123_456_789).expect("t"),
                body,
            );
            let payload = serde_json::to_vec(&event).expect("serialize");
            let decoded: LogEvent = serde_json::from_slice(&payload).expect("decode");
            assert_eq!(decoded, event);
        }
    }

    /// This build's own payloads take the compact path; the same events spaced out, or with
    /// their fields in another order, are parsed, to the same topic.
    #[test]
    fn own_payloads_are_read_from_their_first_bytes_others_parsed() {
        for body in one_of_each() {
            let topic = body.topic();
            let at = DateTime::from_timestamp(0, 0).expect("epoch");
            let event = LogEvent::new("e\\\",\"v\":1,\"at\":\"", at, body);
            let compact = serde_json::to_vec(&event).expect("serialize");
            assert_eq!(topic_of_compact(&compact), Some(topic));
            let pretty = serde_json::to_vec_pretty(&event).expect("serialize");
            let mut value: serde_json::Value = serde_json::from_slice(&compact).expect("json");
            let body = value["body"].take();
            let reordered = serde_json::to_vec(&serde_json::json!({ "body": body, "v": 1 }))
                .expect("serialize");
            for other in [pretty, reordered] {
                assert_eq!(topic_of_compact(&other), None);
                assert_eq!(topic_of_serialized(&other), Some(topic));
            }
        }
    }

    #[test]
    fn what_is_not_a_known_event_has_no_topic() {
        for payload in [
            &b"not json"[..],
            b"{}",
            b"{\"body\": {}}",
            b"{\"body\": {\"type\": \"message_exploded\"}}",
            b"{\"body\": {\"type\": 7}}",
            b"{\"body\": {\"type\": \"message_sent\"",
            b"{\"event_id\":\"e\",\"v\":1,\"at\":\"t\",\"body\":{\"type\":\"message_exploded\"}}",
            b"{\"event_id\":\"e\",\"v\":1,\"at\":\"t\",\"body\":{\"type\":\"message_sent",
        ] {
            assert_eq!(
                topic_of_serialized(payload),
                None,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
