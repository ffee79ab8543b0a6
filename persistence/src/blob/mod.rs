//! The [`BlobStore`](ports::BlobStore) adapters: attachment bytes in files under the data
//! directory (standalone), or in S3-compatible object storage (cluster).
//!
//! - [`local`]: [`LocalBlobStore`], files under a directory; its presigned URLs point at the
//!   node itself (`/blobs/{key}`), signed by [`signature::UrlSigner`].
//! - [`s3`]: [`S3BlobStore`] over the `object_store` crate (ADR 0006).
//! - [`signature`]: HMAC-SHA256 signatures with an expiry for the local store's URLs.

pub mod local;
pub mod s3;
pub mod signature;

pub use local::{BlobDownload, LocalBlobStore, TransferRefused};
pub use s3::{S3BlobStore, S3Config};
pub use signature::{SignedQuery, UrlRefused, UrlSigner};
