//! Graceful stop: SIGTERM → not ready, `goaway` then close 1001 for every session, exit.

mod common;

use std::time::Duration;

use common::{TestServer, API_KEY};

#[tokio::test]
async fn sigterm_sends_goaway_then_closes_with_1001() {
    let mut server = TestServer::start_with(&[("PARLEY__SERVER__DRAIN_WINDOW_MS", "1500")]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    server.terminate();
    // Readiness flips before the first session is told to go.
    let goaway = alice.event("goaway").await;
    assert!(
        goaway["reconnect_after_ms"]
            .as_u64()
            .expect("reconnect_after_ms")
            > 0
    );
    let (status, body) = server.http("GET", "/readyz", &[], None).await.unwrap();
    assert_eq!(status, 503, "{body}");
    // New work is refused with `unavailable` while the node drains.
    let (status, body) = server
        .http(
            "GET",
            "/api/v1/conversations/any/messages",
            &[("X-Api-Key", API_KEY)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let token = server.token("carol").await;
    match tokio_tungstenite::connect_async(server.ws_url(&token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("an upgrade during the drain should be refused, got {other:?}"),
    }
    assert_eq!(alice.closed().await.code, 1001);
    let goaway = bob.event("goaway").await;
    assert!(
        goaway["reconnect_after_ms"]
            .as_u64()
            .expect("reconnect_after_ms")
            > 0
    );
    assert_eq!(bob.closed().await.code, 1001);
    assert!(
        server.exited_within(Duration::from_secs(15)).await,
        "the server exits after draining"
    );
}
