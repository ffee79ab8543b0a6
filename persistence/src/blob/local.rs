//! [`LocalBlobStore`]: attachment bytes as files under a directory (`storage.data_dir/blobs`),
//! one file per key. Its presigned URLs point at the node (`{base_url}/blobs/{key}?…`), whose
//! HTTP handlers hand the request to [`LocalBlobStore::receive_upload`] and
//! [`LocalBlobStore::serve_download`]: the client flow is the one of S3.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use ports::{
    BlobKey, BlobMeta, BlobStore, BlobWriter, PortError, PresignedRequest, Service, TransferMethod,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use super::signature::{SignedQuery, UrlRefused, UrlSigner};

/// Uploads are written here first and renamed into place (`#` never occurs in a key).
const PARTIAL_DIR: &str = "#partial";

/// Bytes read from a file per chunk of a download.
const DOWNLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// A blob on its way to a client: its size, then its bytes in chunks.
pub struct BlobDownload {
    pub size: u64,
    pub chunks: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>,
}

/// Why a presigned request to the node is refused.
#[derive(Debug, thiserror::Error)]
pub enum TransferRefused {
    #[error(transparent)]
    Url(#[from] UrlRefused),
    #[error("the upload is larger than the {max_bytes} bytes it was signed for")]
    TooLarge { max_bytes: u64 },
    #[error("no such blob")]
    Missing,
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Failed(#[from] PortError),
}

pub struct LocalBlobStore {
    root: PathBuf,
    /// The node's HTTP address as clients reach it, e.g. `http://127.0.0.1:8080`.
    base_url: String,
    signer: UrlSigner,
}

fn io_error(error: std::io::Error) -> PortError {
    PortError::unavailable(Service::Embedded, error)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, PortError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| PortError::internal(error.to_string()))?
        .map_err(io_error)
}

impl LocalBlobStore {
    /// Creates `root` when missing.
    pub fn open(
        root: impl Into<PathBuf>,
        base_url: impl Into<String>,
        signer: UrlSigner,
    ) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join(PARTIAL_DIR))?;
        Ok(Self {
            root,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            signer,
        })
    }

    fn path_of(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn partial_path(&self) -> PathBuf {
        self.root
            .join(PARTIAL_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn presign(
        &self,
        method: TransferMethod,
        key: &BlobKey,
        max_bytes: u64,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError> {
        let expires_at = Utc::now()
            + chrono::Duration::from_std(valid_for)
                .map_err(|error| PortError::internal(error.to_string()))?;
        let query = self.signer.sign(method, key, expires_at, max_bytes);
        Ok(PresignedRequest {
            method,
            url: format!("{}/blobs/{key}?{}", self.base_url, query.to_query_string()),
            headers: Vec::new(),
            expires_at: DateTime::from_timestamp(query.expires, 0).unwrap_or(expires_at),
        })
    }

    /// Takes a presigned PUT: checks the URL, writes the body (refusing more than it was
    /// signed for) and puts it in place whole. Returns the size stored.
    pub async fn receive_upload<E: std::fmt::Display>(
        &self,
        key: &BlobKey,
        query: &SignedQuery,
        mut body: impl Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    ) -> Result<u64, TransferRefused> {
        self.signer
            .check(TransferMethod::Put, key, query, Utc::now())?;
        let partial = self.partial_path();
        let mut file = tokio::fs::File::create(&partial).await.map_err(io_error)?;
        let mut written = 0u64;
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|error| TransferRefused::Interrupted(error.to_string()))?;
                written += chunk.len() as u64;
                if written > query.max {
                    return Err(TransferRefused::TooLarge {
                        max_bytes: query.max,
                    });
                }
                file.write_all(&chunk).await.map_err(io_error)?;
            }
            file.flush().await.map_err(io_error)?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(refused) = outcome {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(refused);
        }
        let target = self.path_of(key);
        blocking(move || place(&partial, &target)).await?;
        Ok(written)
    }

    /// Serves a presigned GET: the blob's size and its bytes in chunks (a large blob is never
    /// whole in memory).
    pub async fn serve_download(
        &self,
        key: &BlobKey,
        query: &SignedQuery,
    ) -> Result<BlobDownload, TransferRefused> {
        self.signer
            .check(TransferMethod::Get, key, query, Utc::now())?;
        let file = match tokio::fs::File::open(self.path_of(key)).await {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(TransferRefused::Missing)
            }
            Err(error) => return Err(io_error(error).into()),
        };
        let size = file.metadata().await.map_err(io_error)?.len();
        let chunks = futures::stream::try_unfold(file, |mut file| async move {
            let mut chunk = vec![0; DOWNLOAD_CHUNK_BYTES];
            let read = file.read(&mut chunk).await?;
            if read == 0 {
                return Ok(None);
            }
            chunk.truncate(read);
            Ok(Some((bytes::Bytes::from(chunk), file)))
        });
        Ok(BlobDownload {
            size,
            chunks: Box::pin(chunks),
        })
    }
}

/// Moves a finished file to `target`, creating its directory.
fn place(partial: &Path, target: &Path) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(partial, target)
}

fn meta_of(root: &Path, path: &Path, metadata: &std::fs::Metadata) -> Option<BlobMeta> {
    let relative = path.strip_prefix(root).ok()?.to_str()?;
    let key = BlobKey::parse(relative.replace(std::path::MAIN_SEPARATOR, "/")).ok()?;
    let last_modified: DateTime<Utc> = metadata.modified().ok()?.into();
    Some(BlobMeta {
        key,
        size: metadata.len(),
        last_modified,
    })
}

/// Every file below `dir`, as blobs relative to `root`.
fn walk(root: &Path, dir: &Path, found: &mut Vec<BlobMeta>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            walk(root, &entry.path(), found)?;
        } else if let Some(meta) = meta_of(root, &entry.path(), &metadata) {
            found.push(meta);
        }
    }
    Ok(())
}

/// Removes `path`, then its parent directories up to `root` while they are empty.
fn remove_with_empty_parents(root: &Path, path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    }
    let mut parent = path.parent();
    while let Some(dir) = parent.filter(|dir| *dir != root) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
        parent = dir.parent();
    }
    Ok(())
}

/// A blob written into a partial file, moved into place by `finish`.
struct LocalWriter {
    file: BufWriter<tokio::fs::File>,
    partial: PathBuf,
    target: PathBuf,
    written: u64,
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), PortError> {
        self.file.write_all(bytes).await.map_err(io_error)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, PortError> {
        self.file.flush().await.map_err(io_error)?;
        self.file.get_ref().sync_all().await.map_err(io_error)?;
        let LocalWriter {
            file,
            partial,
            target,
            written,
        } = *self;
        drop(file);
        blocking(move || place(&partial, &target)).await?;
        Ok(written)
    }

    async fn abort(self: Box<Self>) -> Result<(), PortError> {
        let partial = self.partial.clone();
        drop(self);
        match tokio::fs::remove_file(&partial).await {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(io_error(error)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, PortError> {
        let partial = self.partial_path();
        let file = tokio::fs::File::create(&partial).await.map_err(io_error)?;
        Ok(Box::new(LocalWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            partial,
            target: self.path_of(key),
            written: 0,
        }))
    }

    async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<(), PortError> {
        let partial = self.partial_path();
        let target = self.path_of(key);
        blocking(move || {
            std::fs::write(&partial, bytes)?;
            place(&partial, &target)
        })
        .await
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, PortError> {
        match tokio::fs::read(self.path_of(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(error)),
        }
    }

    async fn head(&self, key: &BlobKey) -> Result<Option<BlobMeta>, PortError> {
        let path = self.path_of(key);
        match tokio::fs::metadata(&path).await {
            Ok(metadata) if metadata.is_file() => Ok(meta_of(&self.root, &path, &metadata)),
            Ok(_) => Ok(None),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(error)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), PortError> {
        let root = self.root.clone();
        let path = self.path_of(key);
        blocking(move || remove_with_empty_parents(&root, &path)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, PortError> {
        let root = self.root.clone();
        let dir = root.join(prefix.trim_end_matches('/'));
        if BlobKey::parse(prefix.trim_end_matches('/')).is_err() {
            return Err(PortError::internal(format!(
                "invalid list prefix {prefix:?}"
            )));
        }
        blocking(move || {
            let mut found = Vec::new();
            walk(&root, &dir, &mut found)?;
            Ok(found)
        })
        .await
    }

    async fn upload_url(
        &self,
        key: &BlobKey,
        max_bytes: u64,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError> {
        self.presign(TransferMethod::Put, key, max_bytes, valid_for)
    }

    async fn download_url(
        &self,
        key: &BlobKey,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError> {
        self.presign(TransferMethod::Get, key, 0, valid_for)
    }
}
