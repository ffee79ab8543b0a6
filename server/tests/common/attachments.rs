//! Attachment helpers for the end-to-end tests: declare an upload over the node's REST API,
//! move the bytes through the presigned URL with a plain HTTP client (reqwest), and follow a
//! download's 302 by hand.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::TestServer;

/// A client that never follows redirects (the test reads the 302 itself).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bytes that differ from one test file to the next.
pub fn file_of(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `POST /api/v1/attachments` at `node` with `token`: the status and body.
pub async fn declare(node: &TestServer, token: &str, body: Value) -> (u16, Value) {
    node.http(
        "POST",
        "/api/v1/attachments",
        &[("Authorization", &format!("Bearer {token}"))],
        Some(&body),
    )
    .await
    .expect("declare upload")
}

/// Sends `bytes` with the upload's method and headers; the status.
pub async fn put_bytes(upload: &Value, bytes: Vec<u8>) -> u16 {
    assert_eq!(upload["upload_method"], "PUT", "{upload}");
    let mut request = http_client().put(upload["upload_url"].as_str().expect("upload_url"));
    for (name, value) in upload["upload_headers"]
        .as_object()
        .expect("upload_headers")
    {
        request = request.header(name, value.as_str().expect("header value"));
    }
    let response = request.body(bytes).send().await.expect("upload answer");
    response.status().as_u16()
}

/// Declares a `content_type` upload of `bytes` and sends them: the attachment id.
pub async fn upload(node: &TestServer, token: &str, name: &str, bytes: &[u8]) -> String {
    let (status, created) = declare(
        node,
        token,
        json!({ "name": name, "content_type": "image/png", "size": bytes.len(), "sha256": sha256(bytes) }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        put_bytes(&created, bytes.to_vec()).await,
        200,
        "upload of {name}"
    );
    created["attachment_id"]
        .as_str()
        .expect("attachment_id")
        .to_owned()
}

/// `GET /api/v1/attachments/{id}` as `token`: the download URL of a 302, else the status.
pub async fn download_url(
    node: &TestServer,
    token: &str,
    attachment_id: &str,
) -> Result<String, u16> {
    let url = format!("http://{}/api/v1/attachments/{attachment_id}", node.addr);
    let response = http_client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("download answer");
    match response.status().as_u16() {
        302 => Ok(response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned()),
        status => Err(status),
    }
}

/// GETs a download URL: the bytes, else the status.
pub async fn fetch(url: &str) -> Result<Vec<u8>, u16> {
    let response = http_client().get(url).send().await.expect("fetch answer");
    match response.status().as_u16() {
        200 => Ok(response.bytes().await.expect("body").to_vec()),
        status => Err(status),
    }
}

/// Downloads through the node as `token`: the bytes, else the first refusing status.
pub async fn download(node: &TestServer, token: &str, attachment_id: &str) -> Result<Vec<u8>, u16> {
    fetch(&download_url(node, token, attachment_id).await?).await
}
