//! The development web chat: `web_chat.dir` served under `/chat/`, and the dev-only token route
//! that exists only while a public development secret is in use.

mod common;

use common::{TestServer, API_KEY};
use serde_json::{json, Value};

/// A directory holding a built web chat (two files are enough).
fn web_chat_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>chat</title>",
    )
    .unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log('chat')").unwrap();
    dir
}

async fn dev_token(server: &TestServer, user_id: &str) -> (u16, Value) {
    let body = json!({ "user_id": user_id });
    server
        .http("POST", "/api/v1/dev/token", &[], Some(&body))
        .await
        .expect("dev token request")
}

#[tokio::test]
async fn with_development_secrets_the_chat_is_served_and_signs_in_by_name() {
    let dir = web_chat_dir();
    let path = dir.path().to_str().expect("utf-8 path");
    // Empty secrets: the public development defaults (accepted on loopback only).
    let server = TestServer::start_with(&[
        ("PARLEY__WEB_CHAT__DIR", path),
        ("PARLEY__AUTH__API_KEY", ""),
        ("PARLEY__AUTH__JWT_SECRET", ""),
    ])
    .await;
    let (status, page) = server.http("GET", "/chat/", &[], None).await.unwrap();
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap_or_default().contains("<title>chat"));
    let (status, script) = server.http("GET", "/chat/app.js", &[], None).await.unwrap();
    assert_eq!((status, script), (200, json!("console.log('chat')")));
    for hostile in ["/chat/..%2Fsecret", "/chat/.hidden", "/chat/missing.js"] {
        let (status, body) = server.http("GET", hostile, &[], None).await.unwrap();
        assert_eq!(status, 404, "{hostile}: {body}");
    }
    let (status, body) = dev_token(&server, "alice").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token");
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url(token))
        .await
        .expect("the dev token opens a session");
    drop(ws);
    let (status, body) = dev_token(&server, "").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_request"))
    );
}

#[tokio::test]
async fn with_real_secrets_there_is_no_dev_token_route() {
    let dir = web_chat_dir();
    let path = dir.path().to_str().expect("utf-8 path");
    let server = TestServer::start_with(&[("PARLEY__WEB_CHAT__DIR", path)]).await;
    let (status, _) = server.http("GET", "/chat/", &[], None).await.unwrap();
    assert_eq!(status, 200, "the page is still served");
    let (status, body) = dev_token(&server, "alice").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/dev/token",
            &[("X-Api-Key", API_KEY)],
            Some(&json!({ "user_id": "alice" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn without_web_chat_dir_nothing_is_served() {
    let server = TestServer::start_with(&[
        ("PARLEY__AUTH__API_KEY", ""),
        ("PARLEY__AUTH__JWT_SECRET", ""),
    ])
    .await;
    let (status, _) = server.http("GET", "/chat/", &[], None).await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = dev_token(&server, "alice").await;
    assert_eq!(status, 401);
}
