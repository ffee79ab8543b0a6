//! Frame envelopes: requests from clients, replies and events from the server.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorBody, ErrorCode};
use crate::events::ServerEvent;

/// The client-chosen integer that a reply echoes in `re`.
pub type RequestId = i64;

/// A decoded request frame: `{"id": 7, "op": "message.send", "args": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub op: String,
    /// The `args` object; `{}` when the frame had none.
    pub args: serde_json::Value,
}

/// Why a text frame could not be decoded into a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The request id, when the frame had a readable one.
    pub id: Option<RequestId>,
    pub error: ErrorBody,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    op: Option<serde_json::Value>,
    #[serde(default)]
    args: Option<serde_json::Value>,
}

fn bad_request(id: Option<RequestId>, message: impl Into<String>) -> DecodeError {
    DecodeError {
        id,
        error: ErrorBody::new(ErrorCode::BadRequest, message),
    }
}

/// Decodes a text frame. A frame that is not JSON, not an object, or lacks an integer `id`
/// or a string `op` fails with `re: null`; a frame with a good `id` and `op` but `args`
/// that is not an object fails with its `id`.
pub fn decode_request(text: &str) -> Result<Request, DecodeError> {
    // serde would also read the struct from an array (`[7, "ping"]`): only objects are frames.
    if !looks_like_object(text) {
        return Err(bad_request(None, "frame is not a JSON request object"));
    }
    let raw: RawRequest = serde_json::from_str(text).map_err(|error| {
        bad_request(None, format!("frame is not a JSON request object: {error}"))
    })?;
    let id = match raw.id {
        Some(serde_json::Value::Number(number)) => number
            .as_i64()
            .ok_or_else(|| bad_request(None, "`id` must be an integer"))?,
        Some(_) => return Err(bad_request(None, "`id` must be an integer")),
        None => return Err(bad_request(None, "missing `id`")),
    };
    let op = match raw.op {
        Some(serde_json::Value::String(op)) => op,
        Some(_) => return Err(bad_request(None, "`op` must be a string")),
        None => return Err(bad_request(None, "missing `op`")),
    };
    let args = match raw.args {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(object @ serde_json::Value::Object(_)) => object,
        Some(_) => return Err(bad_request(Some(id), "`args` must be an object")),
    };
    Ok(Request { id, op, args })
}

/// Whether the text starts like a JSON object (after whitespace).
fn looks_like_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// Reads only the `id` of a frame (used for frames too large to process).
pub fn peek_request_id(text: &str) -> Option<RequestId> {
    if !looks_like_object(text) {
        return None;
    }
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .and_then(|frame| frame.id)
        .and_then(|id| id.as_i64())
}

/// Decodes a request's `args` into the operation's argument type.
pub fn decode_args<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, ErrorBody> {
    T::deserialize(&request.args).map_err(|error| {
        ErrorBody::new(
            ErrorCode::BadRequest,
            format!("invalid args for `{}`: {error}", request.op),
        )
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReplyFrame<T> {
    pub re: RequestId,
    pub result: T,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub re: Option<RequestId>,
    pub error: ErrorBody,
}

/// Serializes a success reply around its result, already serialized to JSON (operations
/// serialize their own results; the reply does not parse them again). The text is what
/// serializing a [`ReplyFrame`] gives.
pub fn encode_reply(id: RequestId, result_json: &str) -> String {
    format!("{{\"re\":{id},\"result\":{result_json}}}")
}

/// Serializes a failure reply.
pub fn encode_error(id: Option<RequestId>, error: ErrorBody) -> String {
    serde_json::to_string(&ErrorFrame { re: id, error }).expect("error serializes")
}

/// Serializes a server event.
pub fn encode_event(event: &ServerEvent) -> String {
    serde_json::to_string(event).expect("event serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_request_with_args() {
        let request = decode_request(r#"{"id":7,"op":"ping","args":{"a":1}}"#).unwrap();
        assert_eq!(request.id, 7);
        assert_eq!(request.op, "ping");
        assert_eq!(request.args["a"], 1);
    }

    #[test]
    fn missing_args_are_an_empty_object() {
        let request = decode_request(r#"{"id":1,"op":"ping"}"#).unwrap();
        assert!(request.args.as_object().unwrap().is_empty());
    }

    #[test]
    fn bad_frames_have_no_request_id() {
        for frame in [
            "not json",
            "[1,2]",
            // Found by the frame_decode fuzz target: serde reads a struct from an array too.
            r#"[999,""]"#,
            r#" [7,"ping",{}]"#,
            r#"{"op":"ping"}"#,
            r#"{"id":"7","op":"ping"}"#,
            r#"{"id":1.5,"op":"ping"}"#,
            r#"{"id":7}"#,
            r#"{"id":7,"op":3}"#,
        ] {
            let error = decode_request(frame).unwrap_err();
            assert_eq!(error.id, None, "{frame}");
            assert_eq!(error.error.code, ErrorCode::BadRequest, "{frame}");
        }
    }

    #[test]
    fn non_object_args_keep_the_request_id() {
        let error = decode_request(r#"{"id":9,"op":"ping","args":[1]}"#).unwrap_err();
        assert_eq!(error.id, Some(9));
    }

    #[test]
    fn a_float_argument_reads_exactly_and_survives_reencoding() {
        // Found by the frame_decode fuzzer: this reads as 1.9e24, which encodes as `1.9e+24`,
        // which serde_json's default float parsing read as 1.8999999999999998e24 (one ulp off).
        let text = r#"{"id":1,"op":"x","args":{"n":1900000000000000000000000.00000000000000}}"#;
        let request = decode_request(text).unwrap();
        assert_eq!(request.args["n"].as_f64(), Some(1.9e24));
        let again = serde_json::json!({ "id": request.id, "op": request.op, "args": request.args });
        assert!(again.to_string().contains("1.9e+24"));
        assert_eq!(decode_request(&again.to_string()).unwrap(), request);
    }

    #[test]
    fn peeks_the_id_of_a_frame() {
        assert_eq!(
            peek_request_id(r#"{"id":3,"op":"x","args":{"t":"aaa"}}"#),
            Some(3)
        );
        assert_eq!(peek_request_id(r#"{"op":"x"}"#), None);
        assert_eq!(peek_request_id("garbage"), None);
        assert_eq!(peek_request_id(r#"[3,"x"]"#), None);
        assert_eq!(peek_request_id("\n {\"id\":4}"), Some(4));
    }

    #[test]
    fn reply_is_a_serialized_reply_frame() {
        let result = serde_json::json!({"seq": 3, "text": "a \"quoted\" word", "tags": [1, 2]});
        let result_json = serde_json::to_string(&result).unwrap();
        let expected = serde_json::to_string(&ReplyFrame { re: -7, result }).unwrap();
        assert_eq!(encode_reply(-7, &result_json), expected);
        assert_eq!(encode_reply(1, "null"), r#"{"re":1,"result":null}"#);
    }

    #[test]
    fn error_frame_shape() {
        let text = encode_error(None, ErrorBody::rate_limited(250));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(value["re"].is_null());
        assert_eq!(value["error"]["code"], "rate_limited");
        assert_eq!(value["error"]["retry_after_ms"], 250);
    }
}
