//! Attachments on the node (protocol v1.1): the blob store the settings choose, the REST
//! endpoints, the local store's upload/download endpoints, the orphan sweep and the metrics.
//!
//! - `routes`: `POST /api/v1/attachments` and `GET /api/v1/attachments/{id}` (Bearer token).
//! - `blob_routes`: `PUT`/`GET /blobs/{key}`, the local store's signed URLs.
//! - `sweep`: the periodic deletion of uploads no message carried.
//! - `metrics`: `parley_attachment_*`.

mod blob_routes;
pub(crate) mod metrics;
pub mod routes;
pub mod sweep;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::attachments::Attachments;
use anyhow::Context as _;
use persistence::blob::{LocalBlobStore, S3BlobStore, S3Config, UrlSigner};
use ports::BlobStore;
use prometheus::Registry;

use crate::config::{AttachmentSettings, EffectiveStore, Settings};
pub use metrics::AttachmentMetrics;

/// What the attachment endpoints and the sweep share.
pub struct AttachmentService {
    pub attachments: Attachments,
    /// The local store, whose signed URLs this node serves; `None` with S3.
    pub local: Option<Arc<LocalBlobStore>>,
    pub settings: AttachmentSettings,
    pub metrics: AttachmentMetrics,
}

/// Opens the blob store the settings choose (`None` when attachments are off).
pub fn open(
    settings: &Settings,
    local_addr: SocketAddr,
    registry: &Registry,
) -> anyhow::Result<Option<Arc<AttachmentService>>> {
    let section = &settings.attachments;
    let (blobs, local): (Arc<dyn BlobStore>, _) = match settings.attachment_store() {
        EffectiveStore::Off => return Ok(None),
        EffectiveStore::Local => {
            let local = Arc::new(open_local(settings, local_addr)?);
            (local.clone(), Some(local))
        }
        EffectiveStore::S3 => (Arc::new(open_s3(section)?), None),
    };
    tracing::info!(
        store = ?settings.attachment_store(),
        max_bytes = section.max_bytes,
        "attachments enabled"
    );
    Ok(Some(Arc::new(AttachmentService {
        attachments: Attachments::new(blobs, section.orphan_ttl()),
        local,
        settings: section.clone(),
        metrics: AttachmentMetrics::new(registry),
    })))
}

fn open_local(settings: &Settings, local_addr: SocketAddr) -> anyhow::Result<LocalBlobStore> {
    let root = settings.storage.data_dir.join("blobs");
    let base_url = match settings.attachments.public_url.as_str() {
        "" => format!("http://{local_addr}"),
        configured => configured.to_owned(),
    };
    // The URL key is derived from the JWT secret under its own label: one secret to manage.
    let key = format!("parley-blob-urls\n{}", settings.auth.jwt_secret.expose());
    LocalBlobStore::open(&root, base_url, UrlSigner::new(key.as_bytes()))
        .with_context(|| format!("cannot create the blob directory {}", root.display()))
}

fn open_s3(section: &AttachmentSettings) -> anyhow::Result<S3BlobStore> {
    let config = S3Config {
        endpoint: section.s3_endpoint.clone(),
        public_endpoint: Some(section.s3_public_endpoint.clone()).filter(|url| !url.is_empty()),
        bucket: section.s3_bucket.clone(),
        region: section.s3_region.clone(),
        access_key: section.s3_access_key.expose().to_owned(),
        secret_key: section.s3_secret_key.expose().to_owned(),
        request_timeout: Duration::from_millis(section.s3_timeout_ms),
    };
    S3BlobStore::new(config).map_err(|error| anyhow::anyhow!("attachments.s3_*: {error}"))
}
