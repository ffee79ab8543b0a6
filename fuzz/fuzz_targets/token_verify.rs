//! Tokens as `parley-server` verifies them (`tokens::Tokens::verify`, the check behind every
//! socket upgrade and REST call): any string is a verified token or an `AuthError`, never a
//! panic. Inputs starting with `{` are a claims object signed with the fuzzer's secret, so the
//! claim checks (`exp`, `nbf`, `sub`) are reached too, not only the signature check; a token
//! that verifies names a user id the server accepts.
#![no_main]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use tokens::Tokens;

const SECRET: &[u8] = b"fuzzing-secret-that-is-long-enough-123";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tokens = Tokens::new(SECRET);
    let token = if text.starts_with('{') {
        let Ok(claims) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        let key = EncodingKey::from_secret(SECRET);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signs")
    } else {
        text.to_owned()
    };
    if let Ok(verified) = tokens.verify(&token) {
        assert!(verified.user_id.problem().is_none(), "{verified:?}");
    }
});
