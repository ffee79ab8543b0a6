//! A message record as the stores keep it (MongoDB's `record` field, the embedded store's
//! value bytes): decoding never panics, a record round-trips, and the version rules that
//! decide which copy wins (`supersedes`, reaction deltas) behave for any decoded record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::log::{MessageRecord, ReactionDelta};

fuzz_target!(|data: &[u8]| {
    let (record_bytes, delta_bytes) = match data.iter().position(|byte| *byte == 0) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &[][..]),
    };
    let Ok(record) = serde_json::from_slice::<MessageRecord>(record_bytes) else {
        return;
    };
    let encoded = serde_json::to_vec(&record).expect("a decoded record encodes");
    let again: MessageRecord = serde_json::from_slice(&encoded).expect("an encoded record decodes");
    assert_eq!(again, record);
    assert!(
        !record.supersedes(&record),
        "a version never replaces itself"
    );
    if let Ok(delta) = serde_json::from_slice::<ReactionDelta>(delta_bytes) {
        let mut changed = record.clone();
        if delta.apply_to(&mut changed) {
            assert_eq!(changed.version, delta.version);
            let mut twice = changed.clone();
            assert!(!delta.apply_to(&mut twice), "a delta applies once");
            assert_eq!(twice, changed);
        } else {
            assert_eq!(
                changed, record,
                "a delta that does not apply changes nothing"
            );
        }
    }
});
