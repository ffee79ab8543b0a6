//! [`MemoryPresence`]: who is online on this node, with last-seen times.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use ports::{PortError, Presence};
use wire::ops::PresenceInfo;
use wire::{NodeId, SessionId, Timestamp, UserId};

#[derive(Debug, Default)]
struct UserPresence {
    /// A user has a few sessions at most: a vector sized to them, not a hash set (whose
    /// smallest table is four slots, ≈ 200 bytes per online user).
    sessions: Vec<(NodeId, SessionId)>,
    last_seen: Option<Timestamp>,
}

/// Presence kept in memory. A user's entry stays after they go offline, to answer `last_seen`.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    users: Mutex<HashMap<UserId, UserPresence>>,
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, UserPresence>> {
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn connect(
        &self,
        user_id: &UserId,
        session_id: &SessionId,
        node_id: &NodeId,
    ) -> Result<bool, PortError> {
        let mut users = self.users();
        let presence = users.entry(user_id.clone()).or_default();
        let was_offline = presence.sessions.is_empty();
        let known = presence
            .sessions
            .iter()
            .any(|(node, session)| node == node_id && session == session_id);
        if !known {
            presence.sessions.reserve_exact(1);
            presence
                .sessions
                .push((node_id.clone(), session_id.clone()));
        }
        Ok(was_offline && !known)
    }

    async fn disconnect(
        &self,
        user_id: &UserId,
        session_id: &SessionId,
        node_id: &NodeId,
    ) -> Result<bool, PortError> {
        let mut users = self.users();
        let Some(presence) = users.get_mut(user_id) else {
            return Ok(false);
        };
        let before = presence.sessions.len();
        presence
            .sessions
            .retain(|(node, session)| !(node == node_id && session == session_id));
        let removed = presence.sessions.len() < before;
        if presence.sessions.is_empty() {
            presence.sessions = Vec::new();
        }
        let went_offline = removed && presence.sessions.is_empty();
        if went_offline {
            presence.last_seen = Some(Utc::now());
        }
        Ok(went_offline)
    }

    async fn get(&self, user_ids: &[UserId]) -> Result<BTreeMap<UserId, PresenceInfo>, PortError> {
        let users = self.users();
        let presence = user_ids
            .iter()
            .map(|user_id| {
                let info = match users.get(user_id) {
                    Some(presence) => PresenceInfo {
                        online: !presence.sessions.is_empty(),
                        last_seen: presence.last_seen,
                    },
                    None => PresenceInfo {
                        online: false,
                        last_seen: None,
                    },
                };
                (user_id.clone(), info)
            })
            .collect();
        Ok(presence)
    }

    async fn session_count(&self, user_id: &UserId) -> Result<usize, PortError> {
        Ok(self
            .users()
            .get(user_id)
            .map_or(0, |presence| presence.sessions.len()))
    }
}
