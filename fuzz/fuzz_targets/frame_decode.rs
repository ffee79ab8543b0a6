//! A client's text frame: `decode_request` never panics, agrees with `peek_request_id` (used
//! for frames too large to decode) on the id, and a decoded request encodes back to a frame
//! that decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::frames::{decode_request, peek_request_id};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let peeked = peek_request_id(text);
    match decode_request(text) {
        Ok(request) => {
            assert_eq!(
                peeked,
                Some(request.id),
                "peek and decode disagree on the id"
            );
            assert!(request.args.is_object(), "args is always an object");
            let again =
                serde_json::json!({ "id": request.id, "op": request.op, "args": request.args });
            let decoded = decode_request(&again.to_string()).expect("a re-encoded request decodes");
            assert_eq!(decoded, request);
        }
        Err(error) => {
            if let Some(id) = error.id {
                assert_eq!(peeked, Some(id), "an error's id is the frame's id");
            }
        }
    }
});
