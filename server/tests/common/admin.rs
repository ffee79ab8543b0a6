//! Admin API calls of the tests (docs/protocol.md §16): the admin key and reading the audit log.

use std::time::Duration;

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
        tokio::time::sleep(Duration::from_millis(50)).await;
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

/// Polls job `job_id` (of `kind`) at `node` until it is final: its last answer. Every answer
/// before is `running`, without a `download_url`.
pub async fn final_job(node: &TestServer, job_id: &str, kind: &str, limit: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    let path = format!("/api/v1/admin/jobs/{job_id}");
    loop {
        let (status, job) = admin(node, "GET", &path, None).await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(job["kind"], kind, "{job}");
        if job["state"] != "running" {
            return job;
        }
        assert!(job.get("download_url").is_none(), "{job}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job_id} still running: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
