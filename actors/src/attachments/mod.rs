//! Attachments (protocol v1.1): uploads recorded in the node's [`BlobStore`], checked when a
//! message carries them, served to who may see them, swept when never used.
//!
//! Everything about an attachment lives in the blob store, which every node of a cluster shares
//! (S3) and which a standalone node owns (files): no other database takes part, and the bytes
//! and their record cannot drift apart.
//!
//! - `attachments/{id}/blob`: the bytes, uploaded by the client through a presigned URL;
//! - `attachments/{id}/meta.json`: the [`AttachmentRecord`] (owner, name, type, declared size);
//! - `attachments/{id}/refs/{conversation}/{message}` (hex-encoded ids): a message carries it;
//! - `pending/{id}`: there until a message first carries it; the sweep lists these;
//! - `swept/{id}`: the sweep deleted the upload; one orphan TTL later it deletes the bytes
//!   again (a PUT begun just before its URL expired may land after the sweep) and this marker.
//!
//! A send and the sweep never both win: the sweep deletes uploads whose `pending/` marker is
//! older than the orphan TTL (bytes, record, then the marker), and a send looks at the marker
//! first and refuses an upload in the last [`expiry_margin`] of its TTL. A send that saw a
//! younger marker deletes it well before any sweep could list it as old; one that finds no
//! marker finds no record either if a sweep took it (the marker goes last).
//!
//! Submodules: [`access`] decides who may download.

pub mod access;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::try_join_all;
use ports::{BlobKey, BlobMeta, BlobStore, PortError, PresignedRequest};
use serde::{Deserialize, Serialize};
use wire::ops::MAX_ATTACHMENTS;
use wire::{AttachmentId, AttachmentRef, ConversationId, MessageId, Timestamp, UserId};

use crate::node::Node;
use crate::OpError;

/// What `POST /api/v1/attachments` records, next to the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    pub attachment_id: AttachmentId,
    pub owner: UserId,
    pub name: String,
    pub content_type: String,
    /// The size the client declared; a message may carry the attachment once the stored bytes
    /// have exactly this size.
    pub size: u64,
    #[serde(default)]
    pub sha256: Option<String>,
    pub created_at: Timestamp,
}

impl AttachmentRecord {
    pub fn to_ref(&self) -> AttachmentRef {
        AttachmentRef {
            attachment_id: self.attachment_id.clone(),
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
        }
    }
}

/// A new upload the caller asks for (checked by the HTTP layer against the settings).
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: Option<String>,
}

/// What the sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Uploads older than the orphan TTL that no message carried: deleted.
    pub deleted: usize,
    /// Pending uploads still young enough to be attached.
    pub kept: usize,
    /// Bytes found one orphan TTL after their upload was swept (their PUT landed after the
    /// sweep): deleted.
    pub late_uploads_deleted: usize,
}

/// The attachment records and bytes over one blob store.
#[derive(Clone)]
pub struct Attachments {
    blobs: Arc<dyn BlobStore>,
    /// Uploads no message carried for this long are swept.
    orphan_ttl: Duration,
}

/// The end of an orphan TTL in which a send refuses the upload, as the sweep may take it
/// meanwhile: a quarter of the TTL, at most a minute (room for the send to take the upload
/// out of the sweep's reach, and for the clocks of nodes and object storage to differ).
pub fn expiry_margin(orphan_ttl: Duration) -> Duration {
    (orphan_ttl / 4).min(Duration::from_secs(60))
}

/// An attachment id is what [`Attachments::create`] makes: 32 lowercase hex digits. Anything
/// else names no attachment (and never reaches the store as a key).
fn is_valid_id(attachment_id: &AttachmentId) -> bool {
    let id = attachment_id.as_str();
    id.len() == 32
        && id
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn key(path: String) -> Result<BlobKey, PortError> {
    BlobKey::parse(path).map_err(PortError::internal)
}

fn blob_key(id: &AttachmentId) -> Result<BlobKey, PortError> {
    key(format!("attachments/{id}/blob"))
}

fn meta_key(id: &AttachmentId) -> Result<BlobKey, PortError> {
    key(format!("attachments/{id}/meta.json"))
}

fn pending_key(id: &AttachmentId) -> Result<BlobKey, PortError> {
    key(format!("pending/{id}"))
}

fn swept_key(id: &AttachmentId) -> Result<BlobKey, PortError> {
    key(format!("swept/{id}"))
}

fn refs_prefix(id: &AttachmentId) -> String {
    format!("attachments/{id}/refs/")
}

fn ref_key(
    id: &AttachmentId,
    conversation_id: &ConversationId,
    message_id: &MessageId,
) -> Result<BlobKey, PortError> {
    key(format!(
        "{}{}/{}",
        refs_prefix(id),
        hex::encode(conversation_id.as_str()),
        hex::encode(message_id.as_str())
    ))
}

/// The (conversation, message) a reference key names.
fn parse_ref(prefix: &str, key: &BlobKey) -> Option<(ConversationId, MessageId)> {
    let rest = key.as_str().strip_prefix(prefix)?;
    let (conversation, message) = rest.split_once('/')?;
    let decode = |part: &str| String::from_utf8(hex::decode(part).ok()?).ok();
    Some((
        ConversationId::new(decode(conversation)?),
        MessageId::new(decode(message)?),
    ))
}

impl Attachments {
    pub fn new(blobs: Arc<dyn BlobStore>, orphan_ttl: Duration) -> Self {
        Self { blobs, orphan_ttl }
    }

    /// The node's attachments, `None` when they are off.
    pub fn on(node: &Node) -> Option<Self> {
        let orphan_ttl = node.limits().attachment_orphan_ttl;
        (node.ports().blobs.clone()).map(|blobs| Self::new(blobs, orphan_ttl))
    }

    /// The node's attachments, or `bad_request` when they are off.
    pub fn of(node: &Node) -> Result<Self, OpError> {
        Self::on(node)
            .ok_or_else(|| OpError::bad_request("attachments are not enabled on this server"))
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Records a pending upload of `owner` and signs the URL its bytes go to, valid for
    /// `upload_valid_for` but never past the time a send may carry the upload: bytes that
    /// landed after the sweep took their record would stay in storage for good.
    pub async fn create(
        &self,
        owner: &UserId,
        upload: NewUpload,
        upload_valid_for: Duration,
    ) -> Result<(AttachmentRecord, PresignedRequest), PortError> {
        let record = AttachmentRecord {
            attachment_id: AttachmentId::new(uuid::Uuid::now_v7().simple().to_string()),
            owner: owner.clone(),
            name: upload.name,
            content_type: upload.content_type,
            size: upload.size,
            sha256: upload.sha256,
            created_at: Utc::now(),
        };
        let id = &record.attachment_id;
        let meta = serde_json::to_vec(&record).map_err(PortError::internal)?;
        self.blobs.put(&pending_key(id)?, Vec::new()).await?;
        self.blobs.put(&meta_key(id)?, meta).await?;
        let valid_for = upload_valid_for.min(self.sendable_for());
        let url = self
            .blobs
            .upload_url(&blob_key(id)?, record.size, valid_for)
            .await?;
        Ok((record, url))
    }

    /// The record of `attachment_id`, `None` when there is none (or the id is malformed).
    pub async fn record(
        &self,
        attachment_id: &AttachmentId,
    ) -> Result<Option<AttachmentRecord>, PortError> {
        if !is_valid_id(attachment_id) {
            return Ok(None);
        }
        let Some(bytes) = self.blobs.get(&meta_key(attachment_id)?).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            PortError::corrupt(ports::Service::ObjectStorage, "attachment record", error)
        })
    }

    /// The references a message of `sender` may carry: at most [`MAX_ATTACHMENTS`], each
    /// distinct, the sender's own, completely uploaded (stored size == declared size), and
    /// not about to be swept ([`expiry_margin`]).
    pub async fn resolve_for_send(
        &self,
        sender: &UserId,
        ids: &[AttachmentId],
    ) -> Result<Vec<AttachmentRef>, OpError> {
        check_count(ids)?;
        try_join_all(ids.iter().map(|id| self.resolve_one(sender, id))).await
    }

    async fn resolve_one(
        &self,
        sender: &UserId,
        attachment_id: &AttachmentId,
    ) -> Result<AttachmentRef, OpError> {
        // The marker first: the sweep deletes it last (module docs).
        self.check_not_expiring(attachment_id).await?;
        let record = self
            .record(attachment_id)
            .await?
            .filter(|record| &record.owner == sender)
            .ok_or_else(|| {
                OpError::bad_request(format!("no attachment {attachment_id} of yours"))
            })?;
        let stored = self.blobs.head(&blob_key(attachment_id)?).await?;
        match stored {
            Some(meta) if meta.size == record.size => Ok(record.to_ref()),
            Some(meta) => Err(OpError::bad_request(format!(
                "attachment {attachment_id} holds {} bytes, {} were declared",
                meta.size, record.size
            ))),
            None => Err(OpError::bad_request(format!(
                "attachment {attachment_id} is not uploaded yet"
            ))),
        }
    }

    /// How long after its upload a send may carry an attachment: the orphan TTL but its last
    /// [`expiry_margin`].
    fn sendable_for(&self) -> Duration {
        self.orphan_ttl - expiry_margin(self.orphan_ttl)
    }

    /// Refuses an upload still pending in the last [`expiry_margin`] of its orphan TTL.
    async fn check_not_expiring(&self, attachment_id: &AttachmentId) -> Result<(), OpError> {
        if !is_valid_id(attachment_id) {
            return Ok(()); // No such attachment: the record lookup says so.
        }
        let Some(pending) = self.blobs.head(&pending_key(attachment_id)?).await? else {
            return Ok(()); // Carried by a message already (or swept: no record then).
        };
        let sendable_for = self.sendable_for();
        if Utc::now() - pending.last_modified < to_chrono(sendable_for)? {
            return Ok(());
        }
        Err(OpError::bad_request(format!(
            "attachment {attachment_id} was uploaded {} s ago or more and no message carried \
             it: it is being deleted, upload it again",
            sendable_for.as_secs()
        )))
    }

    /// Takes the uploads out of the sweep's reach (before the message that carries them is
    /// sent: a failed send leaves them kept, never a sent one swept).
    pub async fn mark_attached(&self, attachments: &[AttachmentRef]) -> Result<(), PortError> {
        for attachment in attachments {
            self.blobs
                .delete(&pending_key(&attachment.attachment_id)?)
                .await?;
        }
        Ok(())
    }

    /// Records that `message_id` in `conversation_id` carries `attachments`.
    pub async fn record_references(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
        attachments: &[AttachmentRef],
    ) -> Result<(), PortError> {
        for attachment in attachments {
            let reference = ref_key(&attachment.attachment_id, conversation_id, message_id)?;
            self.blobs.put(&reference, Vec::new()).await?;
        }
        Ok(())
    }

    /// The messages recorded as carrying `attachment_id`.
    pub async fn references(
        &self,
        attachment_id: &AttachmentId,
    ) -> Result<Vec<(ConversationId, MessageId)>, PortError> {
        let prefix = refs_prefix(attachment_id);
        let listed = self.blobs.list(&prefix).await?;
        Ok(listed
            .iter()
            .filter_map(|meta| parse_ref(&prefix, &meta.key))
            .collect())
    }

    /// Forgets that `message_id` carried `attachments` (retention purged it), and deletes the
    /// bytes and record of each that no other message carries. Returns how many were deleted.
    pub async fn forget_references(
        &self,
        conversation_id: &ConversationId,
        message_id: &MessageId,
        attachments: &[AttachmentRef],
    ) -> Result<u64, PortError> {
        let mut deleted = 0;
        for attachment in attachments {
            let id = &attachment.attachment_id;
            let reference = ref_key(id, conversation_id, message_id)?;
            self.blobs.delete(&reference).await?;
            if self.references(id).await?.is_empty() {
                self.blobs.delete(&blob_key(id)?).await?;
                self.blobs.delete(&meta_key(id)?).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Whether no message carried `attachment_id` yet.
    pub async fn is_pending(&self, attachment_id: &AttachmentId) -> Result<bool, PortError> {
        Ok(self
            .blobs
            .head(&pending_key(attachment_id)?)
            .await?
            .is_some())
    }

    /// A short-lived URL to read the bytes.
    pub async fn download_url(
        &self,
        attachment_id: &AttachmentId,
        valid_for: Duration,
    ) -> Result<PresignedRequest, PortError> {
        self.blobs
            .download_url(&blob_key(attachment_id)?, valid_for)
            .await
    }

    /// Deletes the uploads pending for longer than the orphan TTL (bytes, record, then the
    /// pending marker, so an interrupted sweep is finished by the next), then the bytes that
    /// landed after an earlier sweep took their upload.
    pub async fn sweep(&self) -> Result<SweepOutcome, PortError> {
        let cutoff = Utc::now() - to_chrono(self.orphan_ttl)?;
        let mut outcome = SweepOutcome::default();
        self.sweep_orphans(cutoff, &mut outcome).await?;
        self.sweep_late_uploads(cutoff, &mut outcome).await?;
        Ok(outcome)
    }

    /// Deletes the uploads whose `pending/` marker is older than `cutoff`, leaving a `swept/`
    /// marker for [`Self::sweep_late_uploads`] (written before the pending marker goes).
    async fn sweep_orphans(
        &self,
        cutoff: chrono::DateTime<Utc>,
        outcome: &mut SweepOutcome,
    ) -> Result<(), PortError> {
        let (old, young) = self.markers_before("pending/", cutoff).await?;
        outcome.kept += young;
        for (id, pending) in old {
            self.blobs.delete(&blob_key(&id)?).await?;
            self.blobs.delete(&meta_key(&id)?).await?;
            self.blobs.put(&swept_key(&id)?, Vec::new()).await?;
            self.blobs.delete(&pending.key).await?;
            tracing::debug!(attachment_id = %id, uploaded = %pending.last_modified, "orphan upload swept");
            outcome.deleted += 1;
        }
        Ok(())
    }

    /// One orphan TTL after a sweep took an upload, deletes its bytes again: a PUT begun just
    /// before its URL expired can land after the sweep, and nothing else would ever delete
    /// them (no record, no marker). Then the `swept/` marker.
    async fn sweep_late_uploads(
        &self,
        cutoff: chrono::DateTime<Utc>,
        outcome: &mut SweepOutcome,
    ) -> Result<(), PortError> {
        let (old, _) = self.markers_before("swept/", cutoff).await?;
        for (id, swept) in old {
            let blob = blob_key(&id)?;
            if self.blobs.head(&blob).await?.is_some() {
                self.blobs.delete(&blob).await?;
                tracing::info!(attachment_id = %id, "bytes uploaded after their sweep deleted");
                outcome.late_uploads_deleted += 1;
            }
            self.blobs.delete(&swept.key).await?;
        }
        Ok(())
    }

    /// The markers under `prefix` (`pending/`, `swept/`) last written before `cutoff`, with
    /// the attachment each names, and how many others there are.
    async fn markers_before(
        &self,
        prefix: &str,
        cutoff: chrono::DateTime<Utc>,
    ) -> Result<(Vec<(AttachmentId, BlobMeta)>, usize), PortError> {
        let mut old = Vec::new();
        let mut young = 0;
        for marker in self.blobs.list(prefix).await? {
            if marker.last_modified > cutoff {
                young += 1;
            } else if let Some(id) = marker.key.as_str().strip_prefix(prefix) {
                old.push((AttachmentId::new(id), marker));
            }
        }
        Ok((old, young))
    }
}

fn to_chrono(duration: Duration) -> Result<chrono::Duration, PortError> {
    chrono::Duration::from_std(duration).map_err(PortError::internal)
}

fn check_count(ids: &[AttachmentId]) -> Result<(), OpError> {
    if ids.len() > MAX_ATTACHMENTS {
        return Err(OpError::bad_request(format!(
            "a message carries at most {MAX_ATTACHMENTS} attachments, got {}",
            ids.len()
        )));
    }
    let mut distinct: Vec<&AttachmentId> = ids.iter().collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != ids.len() {
        return Err(OpError::bad_request("`attachments` lists an id twice"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_key_names_its_conversation_and_message() {
        let id = AttachmentId::new("0".repeat(32));
        let conversation = ConversationId::new("group/with odd chars");
        let message = MessageId::new("m-1");
        let reference = ref_key(&id, &conversation, &message).expect("key");
        assert_eq!(
            parse_ref(&refs_prefix(&id), &reference),
            Some((conversation, message))
        );
    }

    #[test]
    fn only_generated_ids_are_valid() {
        assert!(is_valid_id(&AttachmentId::new(
            "0123456789abcdef0123456789abcdef"
        )));
        for bad in ["", "../../etc", "0123456789ABCDEF0123456789ABCDEF", "abc"] {
            assert!(!is_valid_id(&AttachmentId::new(bad)), "{bad:?}");
        }
    }

    #[test]
    fn more_than_ten_or_repeated_ids_are_refused() {
        let ids: Vec<AttachmentId> = (0..11)
            .map(|index| AttachmentId::new(format!("{index}")))
            .collect();
        assert!(check_count(&ids).is_err());
        assert!(check_count(&ids[..10]).is_ok());
        let twice = [ids[0].clone(), ids[0].clone()];
        assert!(check_count(&twice).is_err());
    }
}
