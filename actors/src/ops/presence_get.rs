//! `presence.get`: who of some users is online, and when the others were last seen.

use futures::FutureExt;
use wire::frames::Request;
use wire::ops::{PresenceGetArgs, PresenceResult};

use super::shared::{check_user_id, decode, json, Answer};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

/// Most users one `presence.get` may ask about.
pub const MAX_PRESENCE_USERS: usize = 500;

pub(crate) fn start(node: &Node, _caller: &Caller, request: &Request) -> Result<Answer, OpError> {
    let args: PresenceGetArgs = decode(request)?;
    if args.user_ids.len() > MAX_PRESENCE_USERS {
        return Err(OpError::bad_request(format!(
            "at most {MAX_PRESENCE_USERS} users per presence.get"
        )));
    }
    for user_id in &args.user_ids {
        check_user_id(user_id)?;
    }
    let node = node.clone();
    Ok(async move {
        let presence = node.ports().presence.get(&args.user_ids).await?;
        json(&PresenceResult { presence })
    }
    .boxed_local())
}
