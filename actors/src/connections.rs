//! The node's connection caps: how many WebSocket sessions one user may hold on this node
//! (`limits.max_connections_per_user`) and how many the node holds in all
//! (`limits.max_connections`). A connection takes a [`ConnectionPermit`] before its upgrade is
//! answered and gives it back when its session ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wire::UserId;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionRefused {
    #[error("this user already has {max} connections to this node")]
    UserAtCap { max: usize },
    #[error("this node is at its limit of {max} connections, try another node or later")]
    NodeAtCap { max: usize },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_user: HashMap<UserId, usize>,
}

/// Counts the connections of this node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCounter {
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionCounter {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a permit for one more connection of `user_id`, unless a cap is reached.
    pub fn admit(
        &self,
        user_id: &UserId,
        max_per_user: usize,
        max_total: usize,
    ) -> Result<ConnectionPermit, ConnectionRefused> {
        let mut counts = self.counts();
        if counts.total >= max_total {
            return Err(ConnectionRefused::NodeAtCap { max: max_total });
        }
        let of_user = counts.per_user.get(user_id).copied().unwrap_or(0);
        if of_user >= max_per_user {
            return Err(ConnectionRefused::UserAtCap { max: max_per_user });
        }
        counts.total += 1;
        counts.per_user.insert(user_id.clone(), of_user + 1);
        Ok(ConnectionPermit {
            counter: self.clone(),
            user_id: user_id.clone(),
        })
    }

    /// Connections held now.
    pub fn total(&self) -> usize {
        self.counts().total
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    counter: ConnectionCounter,
    user_id: UserId,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.counter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(of_user) = counts.per_user.get_mut(&self.user_id) {
            *of_user -= 1;
            if *of_user == 0 {
                counts.per_user.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_user_and_per_node_and_permits_give_their_place_back() {
        let counter = ConnectionCounter::default();
        let alice = UserId::new("alice");
        let bob = UserId::new("bob");
        let first = counter.admit(&alice, 2, 3).unwrap();
        let _second = counter.admit(&alice, 2, 3).unwrap();
        assert_eq!(
            counter.admit(&alice, 2, 3).unwrap_err(),
            ConnectionRefused::UserAtCap { max: 2 }
        );
        let _third = counter.admit(&bob, 2, 3).unwrap();
        assert_eq!(
            counter.admit(&bob, 2, 3).unwrap_err(),
            ConnectionRefused::NodeAtCap { max: 3 }
        );
        drop(first);
        assert_eq!(counter.total(), 2);
        assert!(counter.admit(&alice, 2, 3).is_ok());
    }
}
