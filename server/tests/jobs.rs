//! `GET /api/v1/admin/jobs/{job_id}` (docs/protocol.md §16): where an admin job stands. The
//! jobs themselves (exports) are tested in `export.rs`.

mod common;

use common::admin::{actions, admin, ADMIN_ENV};
use common::TestServer;

#[tokio::test]
async fn an_unknown_job_is_not_found_and_the_read_is_audited() {
    let server = TestServer::start_with(&[ADMIN_ENV]).await;
    let unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for job_id in [unknown, "not-a-uuid"] {
        let (status, body) = admin(
            &server,
            "GET",
            &format!("/api/v1/admin/jobs/{job_id}"),
            None,
        )
        .await;
        assert_eq!(status, 404, "{job_id}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{job_id}");
    }
    let (status, body) = server
        .http("GET", &format!("/api/v1/admin/jobs/{unknown}"), &[], None)
        .await
        .expect("request");
    assert_eq!(status, 401, "no admin key: {body}");

    let target = format!("job:{unknown}");
    let (_, page) = admin(
        &server,
        "GET",
        &format!("/api/v1/admin/audit?target={target}"),
        None,
    )
    .await;
    // The refused read is recorded under its path (it was refused before routing).
    assert_eq!(actions(&page), ["admin.read_job"], "{page}");
    assert_eq!(page["records"][0]["details"]["status"], 404);
    assert_eq!(page["records"][0]["actor"], "admin");
}
