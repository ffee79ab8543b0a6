//! [`S3BlobStore`]: attachment bytes in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS…)
//! through the `object_store` crate (ADR 0006). Clients upload and download with SigV4
//! presigned URLs: the bytes never pass through a node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use ports::{
    BlobKey, BlobMeta, BlobStore, BlobWriter, PortError, PresignedRequest, Service, TransferMethod,
};

/// Bytes of one multipart part (S3's smallest but for the last).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts being uploaded at once by one writer: its memory is about this many parts.
const PARTS_IN_FLIGHT: usize = 2;

/// Where the bucket is and how to sign for it (`[attachments]` settings).
#[derive(Clone)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:8333`: where the node sends its own requests.
    pub endpoint: String,
    /// Where clients reach the same storage (the host of the presigned URLs, e.g. through a
    /// proxy that keeps the `Host` header); `None`: `endpoint`.
    pub public_endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Per request (connect, send, read the answer).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("public_endpoint", &self.public_endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

#[derive(Clone)]
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    /// Signs the presigned URLs (built on the public endpoint when there is one).
    signer: Arc<AmazonS3>,
}

fn s3_error(error: object_store::Error) -> PortError {
    match error {
        object_store::Error::Generic { .. } => {
            PortError::unavailable(Service::ObjectStorage, error)
        }
        other => PortError::rejected(Service::ObjectStorage, other),
    }
}

fn path_of(key: &BlobKey) -> Path {
    Path::from(key.as_str())
}

fn meta_of(meta: ObjectMeta) -> Result<BlobMeta, PortError> {
    let key = BlobKey::parse(meta.location.to_string())
        .map_err(|error| PortError::corrupt(Service::ObjectStorage, "object key", error))?;
    Ok(BlobMeta {
        key,
        size: meta.size,
        last_modified: meta.last_modified,
    })
}

/// Retries of a failed request (object_store's default is 10 within 3 minutes: a declare or a
/// download then hung for minutes behind a storage that stopped answering).
const MAX_RETRIES: usize = 3;

/// A path-style client of the bucket at `endpoint`. A failed request is retried while within
/// `request_timeout` of its first attempt, so a call gives up within twice that.
fn client(config: &S3Config, endpoint: &str) -> Result<AmazonS3, PortError> {
    let options = ClientOptions::new()
        .with_allow_http(true)
        .with_timeout(config.request_timeout)
        .with_connect_timeout(config.request_timeout);
    let retry = RetryConfig {
        max_retries: MAX_RETRIES,
        retry_timeout: config.request_timeout,
        ..RetryConfig::default()
    };
    AmazonS3Builder::new()
        .with_retry(retry)
        .with_endpoint(endpoint)
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_access_key_id(&config.access_key)
        .with_secret_access_key(&config.secret_key)
        .with_virtual_hosted_style_request(false)
        .with_client_options(options)
        .build()
        .map_err(|error| PortError::rejected(Service::ObjectStorage, error))
}

impl S3BlobStore {
    /// Builds the client (no request is made: the bucket must exist).
    pub fn new(config: S3Config) -> Result<Self, PortError> {
        let store = Arc::new(client(&config, &config.endpoint)?);
        let signer = match &config.public_endpoint {
            Some(public_endpoint) => Arc::new(client(&config, public_endpoint)?),
            None => store.clone(),
        };
        Ok(Self { store, signer })
    }

    async fn presign(
        &self,
        method: TransferMethod,
        key: &BlobKey,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError> {
        let http_method = match method {
            TransferMethod::Put => http::Method::PUT,
            TransferMethod::Get => http::Method::GET,
        };
        let expires_at = Utc::now()
            + chrono::Duration::from_std(valid_for)
                .map_err(|error| PortError::internal(error.to_string()))?;
        let url = self
            .signer
            .signed_url(http_method, &path_of(key), valid_for)
            .await
            .map_err(s3_error)?;
        Ok(PresignedRequest {
            method,
            url: url.to_string(),
            headers: Vec::new(),
            expires_at,
        })
    }
}

/// A multipart upload: parts of [`PART_BYTES`], at most [`PARTS_IN_FLIGHT`] at once.
struct S3Writer {
    upload: WriteMultipart,
    written: u64,
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), PortError> {
        self.upload
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(s3_error)?;
        self.upload.write(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<u64, PortError> {
        self.upload.finish().await.map_err(s3_error)?;
        Ok(self.written)
    }

    async fn abort(self: Box<Self>) -> Result<(), PortError> {
        self.upload.abort().await.map_err(s3_error)
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, PortError> {
        let upload = self
            .store
            .put_multipart(&path_of(key))
            .await
            .map_err(s3_error)?;
        Ok(Box::new(S3Writer {
            upload: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            written: 0,
        }))
    }

    async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<(), PortError> {
        self.store
            .put(&path_of(key), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(s3_error)
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, PortError> {
        match self.store.get(&path_of(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(s3_error)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(s3_error(error)),
        }
    }

    async fn head(&self, key: &BlobKey) -> Result<Option<BlobMeta>, PortError> {
        match self.store.head(&path_of(key)).await {
            Ok(meta) => meta_of(meta).map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(s3_error(error)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), PortError> {
        match self.store.delete(&path_of(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(s3_error(error)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, PortError> {
        let prefix = Path::from(prefix.trim_end_matches('/'));
        let listed: Vec<ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(s3_error)?;
        listed.into_iter().map(meta_of).collect()
    }

    /// S3 cannot bound a presigned PUT's size: a larger upload is stored, and a send refuses
    /// it (its size differs from the declared one).
    async fn upload_url(
        &self,
        key: &BlobKey,
        _max_bytes: u64,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError> {
        self.presign(TransferMethod::Put, key, valid_for).await
    }

    async fn download_url(
        &self,
        key: &BlobKey,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError> {
        self.presign(TransferMethod::Get, key, valid_for).await
    }
}
