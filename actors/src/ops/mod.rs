//! One file per client operation (in the manner of mini-redis's `cmd/`). Each file owns the
//! operation's argument decoding and checks (its entry point, named in
//! [`dispatch`](crate::dispatch)'s table), the command it queues on the conversation actor (or
//! the work it runs against the ports), and, for commands the conversation actor applies, the
//! apply step its batch (`conversation/batch.rs`) or membership change (`conversation/members.rs`)
//! calls.

pub mod conversation_add_members;
pub mod conversation_create;
pub mod conversation_get;
pub mod conversation_leave;
pub mod conversation_list;
pub mod conversation_remove_members;
pub mod conversation_update;
pub mod history_get;
pub mod membership;
pub mod message_delete;
pub mod message_edit;
pub mod message_forward;
pub mod message_send;
pub mod ping;
pub mod presence_get;
pub mod reaction;
pub mod receipt;
pub mod search_messages;
pub mod shared;
pub mod sync;
pub mod typing;
