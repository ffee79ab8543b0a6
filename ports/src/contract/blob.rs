//! Contract of [`BlobStore`]. Presigned URLs are exercised through a [`Transfer`] the adapter's
//! test supplies: an HTTP client for S3, the node's own handler logic for local files.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;

use super::fixtures::unique;
use super::Fixture;
use crate::{BlobKey, BlobStore, PresignedRequest, TransferMethod};

/// How a client would call a presigned request: the response body on success, the HTTP status
/// on refusal.
pub trait Transfer {
    fn call(
        &self,
        request: PresignedRequest,
        body: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<Vec<u8>, u16>>;
}

/// Runs every blob store case; `make` returns a fresh store (a shared backend is fine: keys
/// are unique per case).
pub async fn blob_store_suite<F, Fut>(make: F, transfer: &impl Transfer)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn BlobStore>>,
{
    put_get_head_and_delete(make().await).await;
    written_piece_by_piece(make().await).await;
    list_finds_exactly_a_prefix(make().await).await;
    presigned_upload_then_download(make().await, transfer).await;
    expired_urls_are_refused(make().await, transfer).await;
}

fn key(prefix: &str) -> BlobKey {
    BlobKey::parse(unique(prefix)).expect("a valid key")
}

async fn put_get_head_and_delete(fixture: Fixture<dyn BlobStore>) {
    let store = fixture.port;
    let blob = key("blob");
    assert_eq!(store.get(&blob).await.expect("get"), None, "nothing yet");
    assert_eq!(store.head(&blob).await.expect("head"), None, "nothing yet");
    let before = Utc::now() - chrono::Duration::seconds(5);
    store.put(&blob, b"hello".to_vec()).await.expect("put");
    assert_eq!(
        store.get(&blob).await.expect("get"),
        Some(b"hello".to_vec())
    );
    let meta = store.head(&blob).await.expect("head").expect("stored");
    assert_eq!((meta.key.clone(), meta.size), (blob.clone(), 5));
    assert!(meta.last_modified >= before, "last_modified is recent");
    store.put(&blob, b"bye".to_vec()).await.expect("replace");
    assert_eq!(
        store.head(&blob).await.expect("head").map(|meta| meta.size),
        Some(3)
    );
    store.delete(&blob).await.expect("delete");
    assert_eq!(store.head(&blob).await.expect("head"), None, "deleted");
    store
        .delete(&blob)
        .await
        .expect("deleting a missing blob is fine");
}

/// Pieces of a written object: one larger than an S3 part (5 MiB), so S3 needs two parts.
fn pieces() -> Vec<Vec<u8>> {
    vec![
        b"first line\n".to_vec(),
        (0..6 * 1024 * 1024)
            .map(|index| (index % 251) as u8)
            .collect(),
        b"last line\n".to_vec(),
    ]
}

async fn written_piece_by_piece(fixture: Fixture<dyn BlobStore>) {
    let store = fixture.port;
    let blob = key("written");
    store.put(&blob, b"old".to_vec()).await.expect("put");
    let mut writer = store.writer(&blob).await.expect("writer");
    for piece in pieces() {
        writer.write(&piece).await.expect("write");
    }
    assert_eq!(
        store.get(&blob).await.expect("get"),
        Some(b"old".to_vec()),
        "nothing shows before finish"
    );
    let whole: Vec<u8> = pieces().concat();
    assert_eq!(writer.finish().await.expect("finish"), whole.len() as u64);
    assert!(
        store.get(&blob).await.expect("get") == Some(whole),
        "the object holds every piece in order"
    );

    let aborted = key("aborted");
    let mut writer = store.writer(&aborted).await.expect("writer");
    writer.write(b"never stored").await.expect("write");
    writer.abort().await.expect("abort");
    assert_eq!(store.head(&aborted).await.expect("head"), None);
    store.delete(&blob).await.expect("delete");
}

async fn list_finds_exactly_a_prefix(fixture: Fixture<dyn BlobStore>) {
    let store = fixture.port;
    let prefix = unique("list");
    let other = unique("list");
    let wanted = [format!("{prefix}/a"), format!("{prefix}/sub/b")];
    for name in wanted
        .iter()
        .chain([&format!("{other}/c"), &format!("{prefix}x/d")])
    {
        let blob = BlobKey::parse(name.clone()).expect("a valid key");
        store.put(&blob, vec![7; 2]).await.expect("put");
    }
    let mut listed: Vec<String> = store
        .list(&format!("{prefix}/"))
        .await
        .expect("list")
        .into_iter()
        .map(|meta| meta.key.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, wanted, "only the keys under the prefix");
    assert!(store
        .list(&format!("{}/", unique("none")))
        .await
        .expect("list")
        .is_empty());
}

async fn presigned_upload_then_download(fixture: Fixture<dyn BlobStore>, transfer: &impl Transfer) {
    let store = fixture.port;
    let blob = key("presigned");
    let bytes: Vec<u8> = (0..70_000u32).map(|index| (index % 251) as u8).collect();
    let upload = store
        .upload_url(&blob, bytes.len() as u64, Duration::from_secs(60))
        .await
        .expect("upload url");
    assert_eq!(upload.method, TransferMethod::Put);
    assert!(upload.expires_at > Utc::now() + chrono::Duration::seconds(50));
    transfer
        .call(upload, Some(bytes.clone()))
        .await
        .expect("presigned PUT");
    let meta = store.head(&blob).await.expect("head").expect("uploaded");
    assert_eq!(meta.size, bytes.len() as u64);
    let download = store
        .download_url(&blob, Duration::from_secs(60))
        .await
        .expect("download url");
    assert_eq!(download.method, TransferMethod::Get);
    let read = transfer.call(download, None).await.expect("presigned GET");
    assert!(read == bytes, "the same bytes come back");
}

async fn expired_urls_are_refused(fixture: Fixture<dyn BlobStore>, transfer: &impl Transfer) {
    let store = fixture.port;
    let blob = key("expired");
    store.put(&blob, b"old".to_vec()).await.expect("put");
    let upload = store
        .upload_url(&blob, 3, Duration::from_secs(1))
        .await
        .expect("upload url");
    let download = store
        .download_url(&blob, Duration::from_secs(1))
        .await
        .expect("download url");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(
        transfer.call(download, None).await.is_err(),
        "expired GET refused"
    );
    assert!(
        transfer.call(upload, Some(b"new".to_vec())).await.is_err(),
        "expired PUT refused"
    );
    assert_eq!(store.get(&blob).await.expect("get"), Some(b"old".to_vec()));
}
