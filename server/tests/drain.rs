//! Graceful stop: SIGTERM → not ready, `goaway` then close 1001 for every session, exit.

mod common;

use std::time::Duration;

use common::TestServer;

#[tokio::test]
async fn sigterm_sends_goaway_then_closes_with_1001() {
    let mut server = TestServer::start_with(&[("PARLEY__SERVER__DRAIN_WINDOW_MS", "300")]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    server.terminate();
    for client in [&mut alice, &mut bob] {
        let goaway = client.event("goaway").await;
        let delay = goaway["reconnect_after_ms"]
            .as_u64()
            .expect("reconnect_after_ms");
        assert!(delay > 0);
        let closed = client.closed().await;
        assert_eq!(closed.code, 1001, "{closed:?}");
    }
    assert!(
        server.exited_within(Duration::from_secs(15)).await,
        "the server exits after draining"
    );
}
