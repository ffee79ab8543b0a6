//! The basic path: token, connect, create, send, receive, history.

mod common;

use common::{create_conversation, send, TestServer};
use serde_json::json;

#[tokio::test]
async fn two_users_chat() {
    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let conversation_id = create_conversation(&mut alice, "direct", &["bob"]).await;
    let joined = bob.event("member.joined").await;
    assert_eq!(joined["conversation_id"], conversation_id.as_str());
    let ack = send(&mut alice, &conversation_id, "m1", "hi bob").await;
    assert_eq!(ack["seq"], 1);
    let new = bob.event("message.new").await;
    assert_eq!(new["message"]["text"], "hi bob");
    assert_eq!(new["message"]["seq"], 1);
    let stored = alice.event("message.stored").await;
    assert_eq!(stored["message_id"], ack["message_id"]);
    let history = bob
        .ok("history.get", json!({ "conversation_id": conversation_id }))
        .await;
    assert_eq!(history["messages"][0]["message_id"], ack["message_id"]);
    assert_eq!(history["has_more"], false);
}
