//! [`RedisLease`]: a named lease one node of the cluster holds for a while (a key with a TTL
//! naming its holder, `scripts/lease_hold.lua`), so
//! periodic work such as the attachment sweep runs on one node at a time: each round takes it
//! with [`RedisLease::hold_round`], which renews it while the round runs. Other work that may
//! outlast the TTL (an erasure job) renews it as it goes: [`RedisLease::keep`] (or
//! [`RedisLease::try_hold`] step by step). Should a renewal fail, another node may start too,
//! so the work must stay harmless when it overlaps.

use std::time::Duration;

use ports::PortError;

use super::client::LuaScript;
use super::RedisClient;

static HOLD: LuaScript = LuaScript::new("lease_hold", include_str!("scripts/lease_hold.lua"));

#[derive(Clone)]
pub struct RedisLease {
    client: RedisClient,
    key: String,
    holder: String,
}

impl RedisLease {
    /// The lease `name` (key `<prefix>lease:<name>`), taken in the name of `holder`.
    pub fn new(client: RedisClient, name: &str, holder: impl Into<String>) -> Self {
        let key = format!("{}lease:{name}", client.config().key_prefix);
        Self {
            client,
            key,
            holder: holder.into(),
        }
    }

    /// Takes the lease for `ttl` when no one holds it, or extends it when this holder does
    /// (long work renews it as it goes); `false` when another holder does.
    pub async fn try_hold(&self, ttl: Duration) -> Result<bool, PortError> {
        let ttl_ms = ttl.as_millis().max(1).to_string();
        let held: i64 = self
            .client
            .eval(
                &HOLD,
                std::slice::from_ref(&self.key),
                &[self.holder.clone(), ttl_ms],
            )
            .await?;
        Ok(held == 1)
    }

    /// A round of periodic work one node does at a time (a sweep, a reaper round): takes or
    /// extends the lease for `ttl` ([`Self::try_hold`]) and renews it while the returned guard
    /// lives ([`Self::keep`]), so a round that outlasts `ttl` is not joined by another node;
    /// `None` when another holder has it.
    pub async fn hold_round(&self, ttl: Duration) -> Result<Option<LeaseRenewal>, PortError> {
        Ok(self.try_hold(ttl).await?.then(|| self.keep(ttl)))
    }

    /// Renews the lease for `ttl` every third of `ttl` until the returned guard is dropped (work
    /// that may outlast one TTL). A renewal that finds another holder changes nothing; a failed
    /// one is logged and retried at the next.
    pub fn keep(&self, ttl: Duration) -> LeaseRenewal {
        let lease = self.clone();
        LeaseRenewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(error) = lease.try_hold(ttl).await {
                    tracing::warn!(lease = %lease.key, error = %error, "renewing a lease failed");
                }
            }
        }))
    }
}

/// Stops renewing a lease ([`RedisLease::keep`]) when dropped; the lease then lapses at the end
/// of its last renewal.
pub struct LeaseRenewal(tokio::task::JoinHandle<()>);

impl Drop for LeaseRenewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}
