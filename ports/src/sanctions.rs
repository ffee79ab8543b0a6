//! Sanctions: the bans and token revocations of users (the admin API of protocol v1.1), shared
//! by every node of a cluster. Token issue and WebSocket upgrades read a user's [`Standing`];
//! the admin calls change it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::{Timestamp, UserId};

use crate::PortError;

/// A ban: the user may neither get a token nor connect until it is lifted or `until` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub reason: String,
    /// When the ban ends by itself; `None`: until lifted.
    pub until: Option<Timestamp>,
    /// When the ban was set.
    pub banned_at: Timestamp,
}

impl Ban {
    /// Whether the ban holds at `now`.
    pub fn holds_at(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// What the sanctions say about one user. The default: no ban, no revocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub ban: Option<Ban>,
    /// Tokens whose `iat` (seconds since the epoch) is below this are refused; tokens without
    /// `iat` too, once a revocation exists.
    pub tokens_valid_from: Option<i64>,
}

/// Whether a token passes a user's revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStanding {
    Valid,
    Revoked,
}

impl Standing {
    /// The ban in force at `now`, if any (an expired ban is none).
    pub fn ban_at(&self, now: Timestamp) -> Option<&Ban> {
        self.ban.as_ref().filter(|ban| ban.holds_at(now))
    }

    /// Whether a token issued at `issued_at` (its `iat`, seconds) passes the revocation.
    pub fn token(&self, issued_at: Option<i64>) -> TokenStanding {
        match (self.tokens_valid_from, issued_at) {
            (None, _) => TokenStanding::Valid,
            (Some(valid_from), Some(issued_at)) if issued_at >= valid_from => TokenStanding::Valid,
            (Some(_), _) => TokenStanding::Revoked,
        }
    }
}

#[async_trait]
pub trait Sanctions: Send + Sync + 'static {
    /// The user's standing (the default for a user never sanctioned).
    async fn standing(&self, user_id: &UserId) -> Result<Standing, PortError>;

    /// Bans the user, replacing any earlier ban.
    async fn ban(&self, user_id: &UserId, ban: &Ban) -> Result<(), PortError>;

    /// Lifts the user's ban. Returns whether there was one (expired or not).
    async fn lift_ban(&self, user_id: &UserId) -> Result<bool, PortError>;

    /// Refuses the user's tokens issued before `valid_from` (seconds since the epoch). The
    /// limit never moves back: an older `valid_from` than the one recorded changes nothing.
    async fn revoke_tokens(&self, user_id: &UserId, valid_from: i64) -> Result<(), PortError>;
}
