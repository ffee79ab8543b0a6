//! Admin API calls of the tests (docs/protocol.md §16): the admin key and reading the audit log.

use serde_json::Value;

use super::{TestServer, WAIT};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const ADMIN_ENV: (&str, &str) = ("PARLEY__AUTH__ADMIN_API_KEY", ADMIN_KEY);

/// An admin call with the admin key.
pub async fn admin(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    server
        .http(method, path, &[("X-Admin-Key", ADMIN_KEY)], body.as_ref())
        .await
        .expect("admin request")
}

/// The audit page at `path` once its records' actions are `want` (users' conversation changes
/// are recorded in the background, after the answer).
pub async fn audit_listing(server: &TestServer, path: &str, want: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, page) = admin(server, "GET", path, None).await;
        assert_eq!(status, 200, "{page}");
        if actions(&page) == want {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never listed {want:?}: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The `action` of each record.
pub fn actions(page: &Value) -> Vec<&str> {
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| record["action"].as_str().unwrap())
        .collect()
}
