//! How Parley's records map onto MongoDB documents and back: the MongoDB store (crate
//! `persistence`) writes and reads with these, and they are kept free of the driver so the
//! fuzzer (`fuzz/`, target `mongo_documents`) can feed them any document.
//!
//! How records map onto documents. Each document carries the fields queries and indexes need
//! (and a reader of the database expects) plus the exact record as JSON in `record`, so reads
//! give back byte-for-byte what was written (reaction emoji, nanosecond timestamps).
//!
//! - `messages`: `_id` = message id; `conversation_id`, `seq`, `message_id`, `sender_id`,
//!   `client_msg_id`, `version`, `text`, `deleted`, `created_at`, `attachments` (v1.1:
//!   `[{attachment_id, name, content_type, size}]`), `reactors` (v1.1: the distinct users
//!   with a reaction on it, for exports), `record`.
//! - `conversations`: `_id` = conversation id; `version` (0 for a stub created by messages that
//!   arrived first), `kind`, `title`, `members`, `direct_pair`, `created_at`, `updated_at`,
//!   `record`; derived `last_seq` and `activity_micros` (newest message or creation, µs).
//! - `participants`: `conversation_id`, `user_id`, `member` (false for a user with watermarks
//!   only), `membership_version` (conversation version that last listed them), `role`,
//!   `joined_at`, `delivered_seq`, `read_seq`.

use bson::{doc, Bson, Document};
use chrono::DateTime;
use ports::{During, PortError, Service, StoredConversation};
use wire::log::{ConversationRecord, MessageRecord, ParticipantRole};
use wire::{ConversationKind, Seq, Timestamp};

pub const MESSAGES: &str = "messages";
pub const CONVERSATIONS: &str = "conversations";
pub const PARTICIPANTS: &str = "participants";

pub fn micros(timestamp: &Timestamp) -> i64 {
    timestamp.timestamp_micros()
}

pub fn date(timestamp: &Timestamp) -> bson::DateTime {
    bson::DateTime::from_millis(timestamp.timestamp_millis())
}

/// A `u64` (seq, version) as BSON's signed 64-bit integer.
pub fn signed(what: &str, value: u64) -> Result<i64, PortError> {
    i64::try_from(value)
        .map_err(|_| PortError::internal(format!("{what} {value} does not fit a bson int64")))
}

fn unsigned(what: &str, document: &Document, field: &str) -> Result<u64, PortError> {
    let value = integer(document.get(field)).unwrap_or(0);
    u64::try_from(value).map_err(|_| PortError::corrupt(Service::MongoDb, what, "negative"))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<String, PortError> {
    serde_json::to_string(value)
        .map_err(|error| PortError::internal(During::new(format!("encoding {what}"), error)))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, document: &Document) -> Result<T, PortError> {
    let json = document
        .get_str("record")
        .map_err(|error| PortError::corrupt(Service::MongoDb, format!("{what} document"), error))?;
    serde_json::from_str(json).map_err(|error| PortError::corrupt(Service::MongoDb, what, error))
}

/// The `$set` of a message at `record.version`.
pub fn message_fields(record: &MessageRecord) -> Result<Document, PortError> {
    let message = &record.message;
    Ok(doc! {
        "conversation_id": message.conversation_id.as_str(),
        "seq": signed("seq", message.seq.0)?,
        "message_id": message.message_id.as_str(),
        "sender_id": message.sender_id.as_str(),
        "client_msg_id": message.client_msg_id.as_str(),
        "version": signed("version", record.version)?,
        "text": message.text.as_str(),
        "deleted": message.deleted,
        "created_at": date(&message.created_at),
        "attachments": attachment_documents(message)?,
        "reactors": reactors(message),
        "record": encode("message", record)?,
    })
}

/// The distinct users with a reaction on the message, ascending (the `reactors` field).
pub fn reactors(message: &wire::Message) -> Vec<&str> {
    let users: std::collections::BTreeSet<&str> = message
        .reactions
        .values()
        .flatten()
        .map(|user| user.as_str())
        .collect();
    users.into_iter().collect()
}

/// The message's attachments as `{attachment_id, name, content_type, size}` documents.
fn attachment_documents(message: &wire::Message) -> Result<Vec<Document>, PortError> {
    message
        .attachments
        .iter()
        .map(|attachment| {
            Ok(doc! {
                "attachment_id": attachment.attachment_id.as_str(),
                "name": attachment.name.as_str(),
                "content_type": attachment.content_type.as_str(),
                "size": signed("attachment size", attachment.size)?,
            })
        })
        .collect()
}

pub fn message_record(document: &Document) -> Result<MessageRecord, PortError> {
    decode("message", document)
}

/// The `direct_pair` field of a direct conversation: its pair's two user ids, ascending,
/// length-framed.
fn direct_pair(record: &ConversationRecord) -> Option<String> {
    let pair = record.direct_pair()?;
    let lower = pair.lower.as_str();
    Some(format!("{}:{lower}{}", lower.len(), pair.higher.as_str()))
}

/// The `$set` of a conversation at `record.version`.
pub fn conversation_fields(record: &ConversationRecord) -> Result<Document, PortError> {
    let conversation = &record.conversation;
    let members: Vec<&str> = record
        .participants
        .iter()
        .map(|participant| participant.user_id.as_str())
        .collect();
    let kind = match conversation.kind {
        ConversationKind::Direct => "direct",
        ConversationKind::Group => "group",
    };
    Ok(doc! {
        "version": signed("version", record.version)?,
        "kind": kind,
        "title": conversation.title.as_deref().map_or(Bson::Null, |title| Bson::String(title.to_owned())),
        "members": members,
        "direct_pair": direct_pair(record).map_or(Bson::Null, Bson::String),
        "created_at": date(&conversation.created_at),
        "updated_at": date(&record.updated_at),
        "record": encode("conversation", record)?,
    })
}

pub fn role(role: ParticipantRole) -> &'static str {
    match role {
        ParticipantRole::Owner => "owner",
        ParticipantRole::Member => "member",
    }
}

pub fn stored_conversation(document: &Document) -> Result<StoredConversation, PortError> {
    let record: ConversationRecord = decode("conversation", document)?;
    let last_seq = unsigned("last_seq", document, "last_seq")?;
    let activity = integer(document.get("activity_micros")).unwrap_or(i64::MIN);
    let created_at = record.conversation.created_at;
    let last_activity_at = DateTime::from_timestamp_micros(activity)
        .filter(|activity_at| activity > micros(&created_at) && *activity_at > created_at)
        .unwrap_or(created_at);
    Ok(StoredConversation {
        record,
        last_seq: Seq(last_seq),
        last_activity_at,
    })
}

pub fn watermark(document: &Document, field: &str) -> Result<Seq, PortError> {
    unsigned(field, document, field).map(Seq)
}

/// A BSON integer as `i64` (MongoDB may hand back an int32, an int64 or, from other writers, a
/// double); `None` for a missing field or another type.
pub fn integer(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(value) => Some(i64::from(*value)),
        Bson::Int64(value) => Some(*value),
        Bson::Double(value) => Some(*value as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use ports::contract::fixtures::{at, conversation_record, message_record as fixture_message};
    use wire::{ConversationId, UserId};

    use super::*;

    fn alices_message(seq: u64, version: u64, created_at: Timestamp) -> MessageRecord {
        fixture_message(
            &ConversationId::new("c1"),
            seq,
            &UserId::new("alice"),
            version,
            created_at,
        )
    }

    #[test]
    fn a_message_reads_back_as_written_with_its_query_fields() {
        let record = alices_message(7, 2, at(5));
        let document = message_fields(&record).unwrap();
        assert_eq!(integer(document.get("seq")), Some(7));
        assert_eq!(document.get_str("sender_id").unwrap(), "alice");
        assert_eq!(message_record(&document).unwrap(), record);

        let mut reacted = record.clone();
        let (bob, carol) = (UserId::new("bob"), UserId::new("carol"));
        reacted
            .message
            .reactions
            .insert("👍".into(), vec![carol.clone(), bob.clone()]);
        reacted.message.reactions.insert("🎉".into(), vec![bob]);
        let document = message_fields(&reacted).unwrap();
        let reactors: Vec<&str> = document
            .get_array("reactors")
            .unwrap()
            .iter()
            .filter_map(Bson::as_str)
            .collect();
        assert_eq!(reactors, ["bob", "carol"], "each reacting user once");
    }

    #[test]
    fn a_conversation_reads_back_with_its_derived_fields() {
        let alice = UserId::new("alice");
        let bob = UserId::new("bob");
        let record = conversation_record(
            &ConversationId::new("c1"),
            ConversationKind::Direct,
            &[&alice, &bob],
            3,
            at(0),
        );
        let mut document = conversation_fields(&record).unwrap();
        assert_eq!(document.get_str("direct_pair").unwrap(), "5:alicebob");
        document.insert("last_seq", Bson::Int32(9));
        document.insert("activity_micros", micros(&at(60)));
        let stored = stored_conversation(&document).unwrap();
        assert_eq!(stored.record, record);
        assert_eq!(stored.last_seq, Seq(9));
        assert_eq!(stored.last_activity_at, at(60));
    }

    #[test]
    fn negative_numbers_and_broken_records_are_corrupt_not_panics() {
        let record = alices_message(1, 1, at(0));
        let mut document = message_fields(&record).unwrap();
        document.insert("read_seq", Bson::Int64(-1));
        assert!(matches!(
            watermark(&document, "read_seq"),
            Err(PortError::Corrupt { .. })
        ));
        document.insert("record", "{not json");
        assert!(matches!(
            message_record(&document),
            Err(PortError::Corrupt { .. })
        ));
        assert!(matches!(
            signed("seq", u64::MAX),
            Err(PortError::Internal { .. })
        ));
    }
}
