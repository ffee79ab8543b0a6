//! The blob store contract against both adapters: local files (presigned requests go through
//! the store's own request handling, as the node's HTTP handlers do) and S3 over a private
//! SeaweedFS (presigned requests go over HTTP).

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use common::seaweedfs::{SeaweedServer, ACCESS_KEY, BUCKET, SECRET_KEY};
use persistence::blob::{LocalBlobStore, S3BlobStore, S3Config, SignedQuery, UrlSigner};
use ports::contract::blob::Transfer;
use ports::contract::{self, Fixture};
use ports::{BlobKey, BlobStore, PresignedRequest, TransferMethod};

/// Calls a local store's presigned URL the way the node's `/blobs/{key}` handlers do.
struct LocalTransfer {
    store: Arc<LocalBlobStore>,
}

/// The key and signed query of a local URL `http://host/blobs/{key}?expires=…&max=…&signature=…`.
fn parse_local_url(url: &str) -> (BlobKey, SignedQuery) {
    let (path, query) = url.split_once('?').expect("a query");
    let key = path.split_once("/blobs/").expect("a /blobs/ path").1;
    let field = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .expect("a signed query field")
            .to_owned()
    };
    let signed = SignedQuery {
        expires: field("expires").parse().expect("expires"),
        max: field("max").parse().expect("max"),
        signature: field("signature"),
    };
    (BlobKey::parse(key).expect("key"), signed)
}

impl Transfer for LocalTransfer {
    async fn call(&self, request: PresignedRequest, body: Option<Vec<u8>>) -> Result<Vec<u8>, u16> {
        let (key, query) = parse_local_url(&request.url);
        let answer = match request.method {
            TransferMethod::Put => {
                let chunks = body
                    .unwrap_or_default()
                    .chunks(16 * 1024)
                    .map(|chunk| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(chunk)))
                    .collect::<Vec<_>>();
                let stream = futures::stream::iter(chunks);
                self.store
                    .receive_upload(&key, &query, stream)
                    .await
                    .map(|_| Vec::new())
            }
            TransferMethod::Get => match self.store.serve_download(&key, &query).await {
                Ok(download) => {
                    let chunks: Vec<bytes::Bytes> =
                        download.chunks.try_collect().await.expect("read the file");
                    Ok(chunks.concat())
                }
                Err(refused) => Err(refused),
            },
        };
        answer.map_err(|_| 403)
    }
}

/// A local store in a fresh temporary directory (kept as long as the guard).
fn local_store() -> (Arc<LocalBlobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let signer = UrlSigner::new(b"k");
    let store = LocalBlobStore::open(dir.path().join("blobs"), "http://127.0.0.1:1", signer);
    (Arc::new(store.expect("open")), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_keep_the_blob_store_contract() {
    let (store, _dir) = local_store();
    let transfer = LocalTransfer {
        store: store.clone(),
    };
    contract::blob_store_suite(
        || async {
            let port: Arc<dyn BlobStore> = store.clone();
            Fixture::unguarded(port)
        },
        &transfer,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_upload_larger_than_signed_is_refused_and_leaves_nothing() {
    let (store, _dir) = local_store();
    let key = BlobKey::parse("big/one").expect("key");
    let upload = store
        .upload_url(&key, 10, Duration::from_secs(60))
        .await
        .expect("url");
    let transfer = LocalTransfer {
        store: store.clone(),
    };
    assert_eq!(transfer.call(upload, Some(vec![1; 11])).await, Err(403));
    assert_eq!(store.head(&key).await.expect("head"), None);
}

/// Calls presigned S3 URLs over HTTP.
struct HttpTransfer {
    client: reqwest::Client,
}

impl Transfer for HttpTransfer {
    async fn call(&self, request: PresignedRequest, body: Option<Vec<u8>>) -> Result<Vec<u8>, u16> {
        let builder = match request.method {
            TransferMethod::Put => self.client.put(&request.url).body(body.unwrap_or_default()),
            TransferMethod::Get => self.client.get(&request.url),
        };
        let response = builder.send().await.expect("an HTTP answer");
        let status = response.status();
        let body = response.bytes().await.expect("the body").to_vec();
        if status.is_success() {
            Ok(body)
        } else {
            Err(status.as_u16())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_over_seaweedfs_keeps_the_blob_store_contract() {
    let server = SeaweedServer::start();
    let config = S3Config {
        endpoint: server.endpoint(),
        public_endpoint: None,
        bucket: BUCKET.to_owned(),
        region: "us-east-1".to_owned(),
        access_key: ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
        request_timeout: Duration::from_secs(10),
    };
    let transfer = HttpTransfer {
        client: reqwest::Client::new(),
    };
    contract::blob_store_suite(
        || async {
            let port: Arc<dyn BlobStore> = Arc::new(S3BlobStore::new(config.clone()).expect("s3"));
            Fixture::unguarded(port)
        },
        &transfer,
    )
    .await;
}

/// A storage that accepts connections and never answers (a SeaweedFS whose volumes went
/// read-only on a full disk did that to every non-empty write): a write fails `unavailable`
/// within twice the request timeout, not after object_store's default retries (10, for up to
/// 3 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_never_answers_fails_within_twice_the_request_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let endpoint = format!("http://{}", silent.local_addr().expect("address"));
    // Accepts and holds every connection, reading nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let timeout = Duration::from_millis(500);
    let store = S3BlobStore::new(S3Config {
        endpoint,
        public_endpoint: None,
        bucket: BUCKET.to_owned(),
        region: "us-east-1".to_owned(),
        access_key: ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
        request_timeout: timeout,
    })
    .expect("s3");
    let key = BlobKey::parse("silent/record").expect("key");
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        store.put(&key, b"not empty".to_vec()),
    )
    .await
    .expect("the put gave up before the test's own deadline");
    assert!(
        matches!(result, Err(ports::PortError::Unavailable { .. })),
        "got {result:?}"
    );
    assert!(
        started.elapsed() < timeout * 2 + Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
}
