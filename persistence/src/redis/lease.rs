//! [`RedisLease`]: a named lease one node of the cluster holds for a while (`SET NX PX`), so
//! periodic work such as the attachment sweep runs on one node at a time. It is not renewed:
//! the holder finishes within the TTL or another node may start too (the work must stay
//! harmless when it overlaps).

use std::time::Duration;

use deadpool_redis::redis;
use ports::PortError;

use super::RedisClient;

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

    /// Takes the lease for `ttl` when no one holds it; `false` when another holder does.
    pub async fn try_acquire(&self, ttl: Duration) -> Result<bool, PortError> {
        let mut command = redis::cmd("SET");
        command
            .arg(&self.key)
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let answer: Option<String> = self.client.query(command).await?;
        Ok(answer.is_some())
    }
}
