//! Presence: which users have sessions somewhere in the cluster.

use std::collections::BTreeMap;

use async_trait::async_trait;
use wire::ops::PresenceInfo;
use wire::{NodeId, SessionId, UserId};

use crate::PortError;

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Registers a session. Returns true when the user just came online (first session).
    async fn connect(
        &self,
        user_id: &UserId,
        session_id: &SessionId,
        node_id: &NodeId,
    ) -> Result<bool, PortError>;

    /// Removes a session. Returns true when the user just went offline (last session).
    async fn disconnect(
        &self,
        user_id: &UserId,
        session_id: &SessionId,
        node_id: &NodeId,
    ) -> Result<bool, PortError>;

    /// Presence of each requested user (offline with `last_seen: null` when never seen).
    async fn get(&self, user_ids: &[UserId]) -> Result<BTreeMap<UserId, PresenceInfo>, PortError>;

    /// How many live sessions the user has, on every node (what an admin disconnect closes).
    async fn session_count(&self, user_id: &UserId) -> Result<usize, PortError>;
}
