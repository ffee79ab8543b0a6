//! Who may download an attachment: its uploader while no message carries it yet; afterwards a
//! current member of a conversation where a message that is not deleted carries it (a deleted
//! message drops its attachments). Everyone else learns nothing: the answer is `not_found`.

use wire::{AttachmentId, UserId};

use super::{AttachmentRecord, Attachments};
use crate::conversation::ConversationOp;
use crate::node::Node;
use crate::ops::message_forward::ReadMessage;
use crate::ops::shared::ask;
use crate::OpError;

fn not_found() -> OpError {
    OpError::not_found("no such attachment")
}

impl Attachments {
    /// The attachment's record when `user_id` may download it, else `not_found`.
    pub async fn authorize_download(
        &self,
        node: &Node,
        user_id: &UserId,
        attachment_id: &AttachmentId,
    ) -> Result<AttachmentRecord, OpError> {
        let record = self.record(attachment_id).await?.ok_or_else(not_found)?;
        if &record.owner == user_id && self.is_pending(attachment_id).await? {
            return Ok(record);
        }
        for (conversation_id, message_id) in self.references(attachment_id).await? {
            let read = ReadMessage {
                user_id: user_id.clone(),
                message_id,
            };
            let Ok(message) = ask(node, &conversation_id, ConversationOp::ReadMessage, read).await
            else {
                continue;
            };
            let carries = message
                .attachments
                .iter()
                .any(|attachment| &attachment.attachment_id == attachment_id);
            if carries && !message.deleted {
                return Ok(record);
            }
        }
        Err(not_found())
    }
}
