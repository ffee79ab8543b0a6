//! Object storage for attachment bytes: S3-compatible storage in a cluster, files under the data
//! directory on a standalone node. Clients move the bytes themselves through presigned URLs, so
//! the bytes never pass through a node's actors (nor, with S3, through the node at all).
//!
//! Keys are `/`-separated paths of safe characters (letters, digits, `-`, `_`, `.`, `/`; no
//! empty segment, no `..`): see [`BlobKey`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::PortError;

/// A checked object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

/// Why a string is not a [`BlobKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid blob key {key:?}: letters, digits, `-_.` and non-empty `/`-separated segments other than `..` only")]
pub struct InvalidBlobKey {
    pub key: String,
}

impl BlobKey {
    pub fn parse(key: impl Into<String>) -> Result<Self, InvalidBlobKey> {
        let key = key.into();
        let segment_ok = |segment: &str| {
            !segment.is_empty()
                && segment != ".."
                && segment != "."
                && segment
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
        };
        if key.len() > 512 || !key.split('/').all(segment_ok) {
            return Err(InvalidBlobKey { key });
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// What the store knows of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: BlobKey,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// The HTTP method a presigned URL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMethod {
    Put,
    Get,
}

impl TransferMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMethod::Put => "PUT",
            TransferMethod::Get => "GET",
        }
    }
}

/// A URL a client calls with `method` (and `headers`) until `expires_at`, without other
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: TransferMethod,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

/// An object being written piece by piece (a large file never held whole in memory): S3
/// multipart parts, or a partial file. Nothing shows under the key until [`finish`]; dropping
/// the writer without finishing leaves nothing under it (the adapter may leave an unfinished
/// upload for its store to expire: call [`abort`] to clean it up).
///
/// [`finish`]: BlobWriter::finish
/// [`abort`]: BlobWriter::abort
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends `bytes` (any size: the adapter buffers them into the parts its store needs).
    async fn write(&mut self, bytes: &[u8]) -> Result<(), PortError>;

    /// Stores everything written under the key, whole, replacing what was there. Answers the
    /// object's size.
    async fn finish(self: Box<Self>) -> Result<u64, PortError>;

    /// Drops what was written.
    async fn abort(self: Box<Self>) -> Result<(), PortError>;
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing what was there.
    async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<(), PortError>;

    /// Starts writing the object under `key` piece by piece.
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, PortError>;

    /// The object's bytes, `None` when there is none.
    async fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, PortError>;

    /// The object's size and age, `None` when there is none.
    async fn head(&self, key: &BlobKey) -> Result<Option<BlobMeta>, PortError>;

    /// Removes the object; removing a missing one is not an error.
    async fn delete(&self, key: &BlobKey) -> Result<(), PortError>;

    /// Every object whose key starts with `prefix` (a whole segment path, e.g. `meta/`), in
    /// any order.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, PortError>;

    /// A URL through which a client stores at most `max_bytes` under `key` (a PUT) for `valid_for`.
    async fn upload_url(
        &self,
        key: &BlobKey,
        max_bytes: u64,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError>;

    /// A URL through which a client reads `key` (a GET) for `valid_for`.
    async fn download_url(
        &self,
        key: &BlobKey,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_paths() {
        assert!(BlobKey::parse("blobs/0192-ab_c.d").is_ok());
        for bad in [
            "", "a//b", "../x", "a/../b", "a b", "a/", "/a", "é", "a/./b",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?} is refused");
        }
    }
}
