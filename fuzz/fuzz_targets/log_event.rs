//! A payload ingest reads from a Kafka record or the embedded log: decoding never panics, and
//! every event that decodes keeps its meaning through a round trip (so re-appending or
//! re-consuming it cannot change what a store applies).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::log::LogEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<LogEvent>(data) else {
        return;
    };
    let encoded = serde_json::to_vec(&event).expect("a decoded event encodes");
    let again: LogEvent = serde_json::from_slice(&encoded).expect("an encoded event decodes");
    assert_eq!(again, event);
    // What every consumer asks of an event.
    let _ = event.body.topic();
    let _ = event.body.conversation_id();
});
