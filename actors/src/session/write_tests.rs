//! A session's socket writes, seen from a client and the node's
//! `parley_ws_socket_writes_total`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use wire::UserId;

use super::{Session, SessionParams};
use crate::conversation::ConversationOp;
use crate::node::Limits;
use crate::ops::conversation_get::GetConversation;
use crate::ops::shared::ask;
use crate::testing::Harness;

/// The client's end of a session's socket.
struct Client {
    socket: WebSocketStream<TcpStream>,
}

impl Client {
    /// Opens a session of `user` on the harness's node (the HTTP upgrade is the server's, not
    /// the session's: the session starts on the raw connection).
    async fn connect(harness: &Harness, user: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let stream = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server_side, _) = listener.accept().await.expect("accept");
        let user_id = UserId::new(user);
        let permit = harness
            .node
            .admit_connection(&user_id)
            .expect("under the caps");
        let params = SessionParams {
            user_id,
            token_expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            permit,
        };
        Session::serve(harness.node.clone(), params, server_side, Vec::new());
        Self {
            socket: WebSocketStream::from_raw_socket(stream, Role::Client, None).await,
        }
    }

    async fn send(&mut self, value: Value) {
        let frame = Message::Text(value.to_string().into());
        self.socket.send(frame).await.expect("write");
    }

    /// The next text frame's JSON (other frames are skipped).
    async fn next(&mut self) -> Value {
        loop {
            let read = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a frame within 10 s");
            match read {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
                Some(Ok(_)) => {}
                other => panic!("the session's socket ended: {other:?}"),
            }
        }
    }
}

/// A send's ack and the `message.new` its own session gets leave in one socket write, also when
/// the conversation actor fans the message out before the session's request future has queued
/// the ack (another operation queued behind the send makes the actor go on at once, and it
/// handles the fan-out in that same turn).
#[actix_rt::test]
async fn a_sends_ack_and_its_own_message_new_leave_in_one_socket_write() {
    let harness = Harness::new(Limits::default());
    harness.bus.reach_this_node_only();
    let conversation = harness.group("chat", &["alice", "bob"]);
    let mut alice = Client::connect(&harness, "alice").await;
    assert_eq!(alice.next().await["ev"], "welcome");

    // The log hangs: alice's send waits in its batch while an operation queues behind it.
    harness.log.stall.store(true, Ordering::SeqCst);
    alice
        .send(json!({"id": 1, "op": "message.send", "args": {
            "conversation_id": "chat", "client_msg_id": "k1", "text": "hello"}}))
        .await;
    while harness.log.appends_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let queued_behind = ask(
        &harness.node,
        &conversation,
        ConversationOp::Get,
        GetConversation {
            user_id: UserId::new("bob"),
        },
    );
    let writes_before = harness.node.metrics().socket_writes.get();
    harness.log.stall.store(false, Ordering::SeqCst);

    let mut frames = vec![alice.next().await, alice.next().await];
    frames.sort_by_key(|frame| frame.get("re").is_none());
    assert_eq!(frames[0]["re"], 1, "{frames:?}");
    assert!(frames[0]["result"]["seq"].is_u64(), "{frames:?}");
    assert_eq!(frames[1]["ev"], "message.new", "{frames:?}");
    queued_behind
        .await
        .expect("the queued operation is answered");
    let writes = harness.node.metrics().socket_writes.get() - writes_before;
    assert_eq!(
        writes, 1,
        "the ack and the message.new went out in {writes} socket writes"
    );
}
