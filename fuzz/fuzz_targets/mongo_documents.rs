//! MongoDB documents as the store reads them back (`mongo-documents`): any document — raw BSON
//! bytes as the driver would hand them over, or a JSON object converted to BSON — maps to a
//! record or to a `corrupt` error, never a panic; a message or conversation that maps writes
//! back to a document that reads as the same record.
#![no_main]

use bson::Document;
use libfuzzer_sys::fuzz_target;
use mongo_documents::{
    conversation_fields, message_fields, message_record, stored_conversation, watermark,
};

fuzz_target!(|data: &[u8]| {
    let Some(document) = document_of(data) else {
        return;
    };
    let _ = watermark(&document, "read_seq");
    if let Ok(record) = message_record(&document) {
        // Seqs and versions above i64::MAX do not fit a document: a clean error, not a panic.
        if let Ok(fields) = message_fields(&record) {
            let again = message_record(&fields).expect("a written message reads back");
            assert_eq!(again, record);
        }
    }
    if let Ok(stored) = stored_conversation(&document) {
        assert!(stored.last_activity_at >= stored.record.conversation.created_at);
        if let Ok(fields) = conversation_fields(&stored.record) {
            let again = stored_conversation(&fields).expect("a written conversation reads back");
            assert_eq!(again.record, stored.record);
        }
    }
});

/// A JSON object (input starting with `{`) converted to BSON, or raw BSON bytes.
fn document_of(data: &[u8]) -> Option<Document> {
    if data.first() == Some(&b'{') {
        let value: serde_json::Value = serde_json::from_slice(data).ok()?;
        bson::to_document(&value).ok()
    } else {
        Document::from_reader(data).ok()
    }
}
